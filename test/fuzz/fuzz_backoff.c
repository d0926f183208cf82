/*
 * fuzz_backoff.c
 *		libFuzzer harness for hi_backoff: the invariants of the capped
 *		exponential backoff with equal jitter, and Retry-After parsing
 *		against a reference.
 *
 * Input layout (little-endian, zero-padded when short): int32 attempt,
 * int64 base_ms, int64 cap_ms, 8 raw bytes of a double rnd (any bit
 * pattern: NaN, infinities, negatives), int64 retry_after_ms; the remaining
 * bytes are a Retry-After header value.
 *
 * Invariants (abort() on violation), with A = max(attempt, 1),
 * B = max(base, 0), C = max(cap, 0), raw = min(C, B * 2^(A-1)) computed
 * here by shifting, and ra = min(retry_after, 3600000):
 *  - without Retry-After: raw/2 <= delay <= raw;
 *  - delay never decreases when attempt grows by one or rnd grows;
 *  - with Retry-After: delay == max(ra, delay without it) <= max(C, ra);
 *  - hi_parse_retry_after_seconds agrees with a reference parser.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_backoff.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void Fail(const char *what);
static uint64_t Take(const uint8_t **p, const uint8_t *end, int nbytes);
static long RefRaw(int attempt, long base, long cap);
static long RefRetryAfter(const char *v);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_backoff: invariant violated: %s\n", what);
	abort();
}

/* Read nbytes little-endian bytes (zeros past the end). */
static uint64_t
Take(const uint8_t **p, const uint8_t *end, int nbytes)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < nbytes; i++)
	{
		uint64_t	b = 0;

		if (*p < end)
		{
			b = **p;
			(*p)++;
		}
		v |= b << (8 * i);
	}
	return v;
}

/* Reference raw delay: min(cap, base << (attempt-1)) by shifting cap down. */
static long
RefRaw(int attempt, long base, long cap)
{
	int			k = attempt - 1;

	if (base == 0)
		return 0;
	if (k >= 63)
		return cap;
	/* base * 2^k > cap  <=>  base > floor(cap / 2^k) */
	if (base > (cap >> k))
		return cap;
	return base << k;
}

/* Reference delta-seconds parser: -1, or ms saturating at LONG_MAX. */
static long
RefRetryAfter(const char *v)
{
	size_t		a = 0;
	size_t		b = strlen(v);
	size_t		i;
	unsigned long long s = 0;

	while (a < b && (v[a] == ' ' || v[a] == '\t'))
		a++;
	while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
		b--;
	if (a == b)
		return -1;
	for (i = a; i < b; i++)
	{
		if (v[i] < '0' || v[i] > '9')
			return -1;
	}
	while (b - a > 1 && v[a] == '0')
		a++;
	if (b - a > 19)
		return LONG_MAX;
	for (i = a; i < b; i++)
		s = s * 10 + (unsigned long long) (v[i] - '0');
	if (s > (unsigned long long) LONG_MAX / 1000)
		return LONG_MAX;
	return (long) s * 1000;
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	const uint8_t *end = data + size;
	int			attempt;
	long		base;
	long		cap;
	double		rnd;
	double		rnd_s;
	long		ra_in;
	uint64_t	bits;
	int			A;
	long		B;
	long		C;
	long		raw;
	long		d;
	long		d_ra;
	long		d_next;
	long		d_lower;
	char	   *str;
	size_t		slen;

	attempt = (int) (int32_t) (uint32_t) Take(&p, end, 4);
	base = (long) (int64_t) Take(&p, end, 8);
	cap = (long) (int64_t) Take(&p, end, 8);
	bits = Take(&p, end, 8);
	memcpy(&rnd, &bits, sizeof(rnd));
	ra_in = (long) (int64_t) Take(&p, end, 8);

	/* the invariants use the sanitised inputs that the function documents */
	A = attempt < 1 ? 1 : attempt;
	B = base < 0 ? 0 : base;
	C = cap < 0 ? 0 : cap;
	rnd_s = (rnd >= 0.0 && rnd < 1.0) ? rnd : 0.0;
	raw = RefRaw(A, B, C);
	if (raw > C)
		raw = C;

	d = hi_backoff_delay_ms(attempt, base, cap, rnd, -1);
	if (d < raw / 2 || d > raw)
		Fail("delay outside [raw/2, raw]");
	if (d != hi_backoff_delay_ms(attempt, base, cap, rnd_s, -2))
		Fail("rnd sanitising or negative retry_after changes the result");

	if (A < INT_MAX)
	{
		d_next = hi_backoff_delay_ms(A + 1, base, cap, rnd, -1);
		if (d_next < d)
			Fail("delay decreases with attempt");
	}
	d_lower = hi_backoff_delay_ms(attempt, base, cap, rnd_s / 2, -1);
	if (d_lower > d)
		Fail("delay decreases with rnd");
	if (hi_backoff_delay_ms(attempt, base, cap, 0.0, -1) != raw / 2)
		Fail("rnd 0 is not raw/2");

	if (ra_in >= 0)
	{
		long		ra = ra_in < HI_RETRY_AFTER_MAX_MS ? ra_in : HI_RETRY_AFTER_MAX_MS;
		long		ceiling = C > ra ? C : ra;

		d_ra = hi_backoff_delay_ms(attempt, base, cap, rnd, ra_in);
		if (d_ra != (ra > d ? ra : d))
			Fail("delay with Retry-After is not max(ra, jittered)");
		if (d_ra > ceiling)
			Fail("delay with Retry-After above max(cap, ra)");
	}

	/* the rest is a Retry-After value */
	slen = (size_t) (end - p);
	str = malloc(slen + 1);
	if (str == NULL)
		abort();
	if (slen > 0)
		memcpy(str, p, slen);
	str[slen] = '\0';
	if (hi_parse_retry_after_seconds(str) != RefRetryAfter(str))
		Fail("Retry-After parse differs from reference");
	free(str);
	return 0;
}
