/*
 * fuzz_template.c
 *		libFuzzer harness for hi_template: validation messages and rendering
 *		against an independent reference implementation.
 *
 * Input layout: template \0 sid \0 title \0 severity (NUL-separated; a
 * missing part is NULL).  The error buffer size is derived from the input,
 * and the buffer is malloc'd at exactly that size so that ASan catches any
 * write past it.
 *
 * Invariants (abort() on violation):
 *  - validate's code equals the reference's, and its message is the exact
 *    expected message (for unknown variables: prefix, position and, for
 *    short names, the whole text);
 *  - a short error buffer receives the NUL-terminated prefix of the message
 *    and nothing outside it is written; errlen 0 leaves it untouched;
 *  - render returns NULL exactly when the template is invalid, and
 *    otherwise the reference rendering, byte for byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_template.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct
{
	char	   *buf;
	size_t		len;
	size_t		cap;
} Buf;

static void Fail(const char *what);
static void Append(Buf *b, const char *s, size_t n);
static char *RefRender(const char *tpl, const char *const vals[3], int *code,
					   size_t *errpos);
static size_t CharPos(const char *tpl, size_t bytepos);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_template: invariant violated: %s\n", what);
	abort();
}

/* Append n bytes to a growing buffer (always NUL-terminated). */
static void
Append(Buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = (b->len + n + 1) * 2;
		char	   *nb = realloc(b->buf, cap);

		if (nb == NULL)
			abort();
		b->buf = nb;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* Reference: character-by-character rendering; NULL and *code on error. */
static char *
RefRender(const char *tpl, const char *const vals[3], int *code, size_t *errpos)
{
	static const char *const names[3] = {"sid", "title", "severity"};
	Buf			b = {NULL, 0, 0};
	size_t		n;
	size_t		i = 0;

	*errpos = 0;
	if (tpl == NULL || tpl[0] == '\0')
	{
		*code = HI_TEMPLATE_EMPTY;
		return NULL;
	}
	n = strlen(tpl);
	Append(&b, "", 0);
	while (i < n)
	{
		if (tpl[i] == '{' && i + 1 < n && tpl[i + 1] == '{')
		{
			size_t		j = i + 2;
			int			k;
			int			found = -1;

			while (j + 1 < n && !(tpl[j] == '}' && tpl[j + 1] == '}'))
				j++;
			if (j + 1 >= n)
			{
				*code = HI_TEMPLATE_UNCLOSED;
				*errpos = i;
				free(b.buf);
				return NULL;
			}
			for (k = 0; k < 3; k++)
			{
				if (j - (i + 2) == strlen(names[k]) &&
					strncmp(tpl + i + 2, names[k], strlen(names[k])) == 0)
					found = k;
			}
			if (found < 0)
			{
				*code = HI_TEMPLATE_UNKNOWN;
				*errpos = i;
				free(b.buf);
				return NULL;
			}
			if (vals[found] != NULL)
				Append(&b, vals[found], strlen(vals[found]));
			i = j + 2;
		}
		else
		{
			Append(&b, tpl + i, 1);
			i++;
		}
	}
	*code = HI_TEMPLATE_OK;
	return b.buf;
}

/* 1-based UTF-8 character position of byte offset bytepos. */
static size_t
CharPos(const char *tpl, size_t bytepos)
{
	size_t		pos = 1;
	size_t		i;

	for (i = 0; i < bytepos; i++)
	{
		if ((((unsigned char) tpl[i]) & 0xC0) != 0x80)
			pos++;
	}
	return pos;
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *copy;
	const char *parts[4] = {NULL, NULL, NULL, NULL};
	const char *vals[3];
	size_t		i;
	int			nparts = 0;
	char		full[256];
	char		expect[256];
	char	   *small;
	size_t		errlen;
	int			code;
	int			code2;
	int			refcode;
	size_t		errpos;
	char	   *ref;
	char	   *got;

	copy = malloc(size + 1);
	if (copy == NULL)
		abort();
	if (size > 0)
		memcpy(copy, data, size);
	copy[size] = '\0';

	/* split on NUL bytes: template, sid, title, severity */
	parts[nparts++] = copy;
	for (i = 0; i < size && nparts < 4; i++)
	{
		if (copy[i] == '\0')
			parts[nparts++] = copy + i + 1;
	}
	vals[0] = parts[1];
	vals[1] = parts[2];
	vals[2] = parts[3];

	/* a NULL template too, now and then */
	if (size == 1 && data[0] == 0xFF)
		parts[0] = NULL;

	code = hi_template_validate(parts[0], full, sizeof(full));
	ref = RefRender(parts[0], vals, &refcode, &errpos);
	if (code != refcode)
		Fail("validate code differs from reference");
	if (strlen(full) >= 128)
		Fail("message unexpectedly long");

	switch (code)
	{
		case HI_TEMPLATE_OK:
			if (full[0] != '\0')
				Fail("message not empty for a valid template");
			break;
		case HI_TEMPLATE_EMPTY:
			if (strcmp(full, "template is empty") != 0)
				Fail("wrong empty message");
			break;
		case HI_TEMPLATE_UNCLOSED:
			snprintf(expect, sizeof(expect), "unclosed \"{{\" at position %zu",
					 CharPos(parts[0], errpos));
			if (strcmp(full, expect) != 0)
				Fail("wrong unclosed message");
			break;
		case HI_TEMPLATE_UNKNOWN:
			{
				const char *name = parts[0] + errpos + 2;
				size_t		nlen = (size_t) (strstr(name, "}}") - name);
				char		suffix[64];
				size_t		flen = strlen(full);
				size_t		slen;

				snprintf(suffix, sizeof(suffix), "}}\" at position %zu",
						 CharPos(parts[0], errpos));
				slen = strlen(suffix);
				if (strncmp(full, "unknown variable \"{{", 20) != 0 ||
					flen < 20 + slen ||
					strcmp(full + flen - slen, suffix) != 0)
					Fail("wrong unknown-variable message shape");
				if (nlen <= 40)
				{
					snprintf(expect, sizeof(expect),
							 "unknown variable \"{{%.*s}}\" at position %zu",
							 (int) nlen, name, CharPos(parts[0], errpos));
					if (strcmp(full, expect) != 0)
						Fail("wrong unknown-variable message");
				}
				else if (flen - 20 - slen > 43 ||
						 memcmp(full + flen - slen - 3, "...", 3) != 0)
					Fail("long name not shortened with ...");
				break;
			}
		default:
			Fail("unexpected code");
	}

	/* a short error buffer gets a NUL-terminated prefix, nothing more */
	errlen = (size > 0 ? data[size - 1] : 0) % 48;
	small = malloc(errlen > 0 ? errlen : 1);
	if (small == NULL)
		abort();
	small[0] = 'Q';
	code2 = hi_template_validate(parts[0], small, errlen);
	if (code2 != code)
		Fail("validate code depends on errlen");
	if (errlen == 0)
	{
		if (small[0] != 'Q')
			Fail("errlen 0 but buffer written");
	}
	else
	{
		size_t		n = 0;

		while (n < errlen && small[n] != '\0')
			n++;
		if (n == errlen)
			Fail("short buffer not NUL-terminated");
		if (n != (strlen(full) < errlen - 1 ? strlen(full) : errlen - 1) ||
			memcmp(small, full, n) != 0)
			Fail("short buffer is not a prefix of the message");
	}
	free(small);

	/* rendering against the reference */
	got = hi_template_render(parts[0], vals[0], vals[1], vals[2]);
	if ((got == NULL) != (ref == NULL))
		Fail("render success differs from reference");
	if (got != NULL && strcmp(got, ref) != 0)
		Fail("render output differs from reference");

	free(got);
	free(ref);
	free(copy);
	return 0;
}
