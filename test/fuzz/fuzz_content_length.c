/*
 * fuzz_content_length.c
 *		libFuzzer harness for the header-value helpers of hi_signature:
 *		hi_trim_header_value, hi_header_value_valid and
 *		hi_content_length_matches, against references.
 *
 * Input layout: 8 bytes little-endian body length (zero-padded when short),
 * then the header value (may contain NUL bytes: trimming sees all of them,
 * the C-string functions see the part before the first NUL).
 *
 * Invariants (abort() on violation):
 *  - trimming removes exactly the leading and trailing spaces and tabs and
 *    stays inside the input;
 *  - hi_header_value_valid agrees with a reference;
 *  - hi_content_length_matches agrees with strtoull on all-digit values
 *    (n matches, n + 1 and n - 1 do not) and rejects everything else.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_signature.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void Fail(const char *what);
static int	IsBlank(char c);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_content_length: invariant violated: %s\n", what);
	abort();
}

/* Space or tab? */
static int
IsBlank(char c)
{
	return c == ' ' || c == '\t';
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t	body64 = 0;
	size_t		body_len;
	size_t		vlen;
	char	   *v;
	const char *t;
	size_t		tlen;
	size_t		i;
	size_t		a;
	size_t		slen;
	int			digits;
	int			valid;

	for (i = 0; i < 8; i++)
		body64 |= (uint64_t) (i < size ? data[i] : 0) << (8 * i);
	body_len = (size_t) body64;
	vlen = size > 8 ? size - 8 : 0;
	v = malloc(vlen + 1);
	if (v == NULL)
		abort();
	if (vlen > 0)
		memcpy(v, data + 8, vlen);
	v[vlen] = '\0';

	/* trimming over the full length, NULs included */
	t = hi_trim_header_value(v, vlen, &tlen);
	if (t == NULL || t < v || tlen > vlen || (size_t) (t - v) > vlen - tlen)
		Fail("trim result outside the input");
	for (a = 0; a < (size_t) (t - v); a++)
	{
		if (!IsBlank(v[a]))
			Fail("trim removed a non-blank leading byte");
	}
	for (a = (size_t) (t - v) + tlen; a < vlen; a++)
	{
		if (!IsBlank(v[a]))
			Fail("trim removed a non-blank trailing byte");
	}
	if (tlen > 0 && (IsBlank(t[0]) || IsBlank(t[tlen - 1])))
		Fail("trim left a blank at an end");
	if (tlen == 0 && vlen > 0)
	{
		for (a = 0; a < vlen; a++)
		{
			if (!IsBlank(v[a]))
				Fail("trimmed to empty but input was not all blank");
		}
	}

	/* the C-string view: up to the first NUL */
	slen = strlen(v);
	t = hi_trim_header_value(v, slen, &tlen);
	valid = tlen > 0;
	digits = tlen > 0;
	for (i = 0; i < tlen; i++)
	{
		unsigned char c = (unsigned char) t[i];

		if (c == 0x7F || (c < 0x20 && c != '\t'))
			valid = 0;
		if (c < '0' || c > '9')
			digits = 0;
	}
	if (hi_header_value_valid(v) != valid)
		Fail("hi_header_value_valid differs from reference");

	if (!digits)
	{
		if (hi_content_length_matches(v, body_len))
			Fail("non-digit value accepted");
	}
	else
	{
		unsigned long long n;
		char	   *endp;
		char	   *num = malloc(tlen + 1);

		if (num == NULL)
			abort();
		memcpy(num, t, tlen);
		num[tlen] = '\0';
		errno = 0;
		n = strtoull(num, &endp, 10);
		if (*endp != '\0')
			Fail("reference strtoull did not consume the digits");
		if (errno == ERANGE || n > SIZE_MAX)
		{
			if (hi_content_length_matches(v, body_len) ||
				hi_content_length_matches(v, SIZE_MAX))
				Fail("overflowing value accepted");
		}
		else
		{
			if (!hi_content_length_matches(v, (size_t) n))
				Fail("value does not match its own number");
			if (n < SIZE_MAX && hi_content_length_matches(v, (size_t) n + 1))
				Fail("value matches n + 1");
			if (n > 0 && hi_content_length_matches(v, (size_t) n - 1))
				Fail("value matches n - 1");
			if (hi_content_length_matches(v, body_len) != ((size_t) n == body_len))
				Fail("content-length check differs from strtoull");
		}
		free(num);
	}
	free(v);
	return 0;
}
