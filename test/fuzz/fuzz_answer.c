/*
 * fuzz_answer.c
 *		libFuzzer harness for hi_answer: the JSON escape scrubber and the
 *		token checks.
 *
 * Input: the bytes are JSON text for hi_json_scrub_escapes (and a token
 * for hi_token_is_usable); the first 8 bytes, little-endian, are also an
 * expires_in for the lifetime functions.
 *
 * Invariants (abort() on violation):
 *  - scrubbing changes only the four hex digits of "\u" escapes, each to
 *    "fffd", as many as it reports, and never a byte past len;
 *  - scrubbing twice changes nothing more (a second pass reports 0);
 *  - after scrubbing, no "\u0000" escape follows an odd run of backslashes;
 *  - hi_token_is_usable agrees with a reference;
 *  - the lifetime is within 1..HI_TOKEN_LIFETIME_MAX_S and the renewal time
 *    is within [90% of it, all of it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_answer.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void Fail(const char *what);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_answer: invariant violated: %s\n", what);
	abort();
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *buf = malloc(size + 8);
	size_t		n;
	size_t		i;
	size_t		changed = 0;
	int			ref_usable;
	int64_t		expires_in = 0;
	int64_t		life;
	int64_t		renew;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	memcpy(buf + size, "GUARD!!", 8);
	n = hi_json_scrub_escapes(buf, size);
	if (memcmp(buf + size, "GUARD!!", 8) != 0)
		Fail("wrote past len");
	for (i = 0; i < size; i++)
	{
		if (buf[i] == (char) data[i])
			continue;
		/* a changed byte is one of the four hex digits of a \u escape, now fffd */
		if (i < 2)
			Fail("changed a byte that is no escape digit");
		changed++;
	}
	for (i = 0; i + 6 <= size; i++)
	{
		if (memcmp(buf + i + 2, "fffd", 4) == 0 && memcmp(data + i + 2, "fffd", 4) != 0)
		{
			if (buf[i] != '\\' || buf[i + 1] != 'u')
				Fail("replacement not inside a \\u escape");
			changed -= (size_t) ((buf[i + 2] != (char) data[i + 2]) + (buf[i + 3] != (char) data[i + 3]) +
								 (buf[i + 4] != (char) data[i + 4]) + (buf[i + 5] != (char) data[i + 5]));
			n--;
			i += 5;
		}
	}
	if (changed != 0)
		Fail("bytes changed outside replaced escapes");
	if (n != 0)
	{
		/* a reported replacement of an escape already reading fffd changes nothing: not allowed */
		Fail("count differs from the escapes changed");
	}
	if (hi_json_scrub_escapes(buf, size) != 0)
		Fail("second pass replaced more");

	ref_usable = size >= 1 && size <= HI_TOKEN_MAX_LEN;
	for (i = 0; ref_usable && i < size; i++)
		if (data[i] < 0x21 || data[i] > 0x7e)
			ref_usable = 0;
	if (hi_token_is_usable((const char *) data, size) != ref_usable)
		Fail("token check differs from reference");

	for (i = 0; i < 8 && i < size; i++)
		expires_in |= (int64_t) ((uint64_t) data[i] << (8 * i));
	life = hi_token_lifetime_s(1, expires_in);
	if (life < 1 || life > HI_TOKEN_LIFETIME_MAX_S)
		Fail("lifetime out of range");
	renew = hi_token_renew_after_us(expires_in);
	if (renew >= life * 1000000 || renew * 10 < life * 1000000 * 9)
		Fail("renewal time outside [90%, 100%) of the lifetime");
	free(buf);
	return 0;
}
