/*
 * hi_test.h
 *		A tiny assertion helper for halo_itsm's plain-C unit tests (no
 *		framework): each check prints "ok - name" or "not ok - name: detail",
 *		and hi_test_summary() prints "N passed, N failed".
 *
 * Header-only; include it from exactly one test program.
 */
#ifndef HI_TEST_H
#define HI_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int	hi_test_passed = 0;
static int	hi_test_failed = 0;

#if defined(__GNUC__) || defined(__clang__)
#define HI_TEST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HI_TEST_PRINTF(f, a)
#endif

static void hi_check(int cond, const char *name, const char *fmt, ...) HI_TEST_PRINTF(3, 4);

/* Record one check; on failure print the printf-style detail. */
static void
hi_check(int cond, const char *name, const char *fmt, ...)
{
	va_list		ap;

	if (cond)
	{
		hi_test_passed++;
		printf("ok - %s\n", name);
		return;
	}
	hi_test_failed++;
	printf("not ok - %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Print bytes with C escapes for non-printable ones (for failure details). */
static void
hi_print_escaped(const char *s, size_t len)
{
	size_t		i;

	putchar('"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c >= 0x20 && c < 0x7F)
			putchar(c);
		else
			printf("\\x%02x", c);
	}
	putchar('"');
}

/* Quote a C string into out with C escapes, truncating; returns out. */
static const char *
hi_escape(const char *s, char *out, size_t outlen)
{
	size_t		o = 0;
	char		tmp[8];

	if (outlen < 3)
	{
		if (outlen > 0)
			out[0] = '\0';
		return out;
	}
	out[o++] = '"';
	for (; *s != '\0'; s++)
	{
		unsigned char c = (unsigned char) *s;
		size_t		n;

		if (c == '"' || c == '\\')
			n = (size_t) snprintf(tmp, sizeof(tmp), "\\%c", c);
		else if (c >= 0x20 && c < 0x7F)
			n = (size_t) snprintf(tmp, sizeof(tmp), "%c", c);
		else
			n = (size_t) snprintf(tmp, sizeof(tmp), "\\x%02x", c);
		if (o + n + 2 > outlen)
			break;
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

/* Check that two byte strings are equal (got may be NULL). */
static void
hi_check_mem(const char *name, const void *got, size_t got_len,
			 const void *want, size_t want_len)
{
	if (got != NULL && got_len == want_len &&
		(want_len == 0 || memcmp(got, want, want_len) == 0))
	{
		hi_check(1, name, "%s", "");
		return;
	}
	hi_test_failed++;
	printf("not ok - %s: got ", name);
	if (got == NULL)
		printf("NULL");
	else
		hi_print_escaped(got, got_len);
	printf(" (%zu bytes), want ", got_len);
	hi_print_escaped(want, want_len);
	printf(" (%zu bytes)\n", want_len);
}

/* Check that two NUL-terminated strings are equal (got may be NULL). */
static void
hi_check_str(const char *name, const char *got, const char *want)
{
	hi_check_mem(name, got, got ? strlen(got) : 0, want, strlen(want));
}

/* Check that two longs are equal. */
static void
hi_check_long(const char *name, long got, long want)
{
	hi_check(got == want, name, "got %ld, want %ld", got, want);
}

/* Print the summary line; returns the process exit status. */
static int
hi_test_summary(void)
{
	printf("%d passed, %d failed\n", hi_test_passed, hi_test_failed);
	return hi_test_failed == 0 ? 0 : 1;
}

#endif							/* HI_TEST_H */
