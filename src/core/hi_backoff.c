/*
 * hi_backoff.c
 *		Retry delays for outbound halo_itsm requests: capped exponential
 *		backoff with equal jitter, and the delta-seconds form of Retry-After.
 *
 * Plain C99 + libc, no PostgreSQL headers.  All arithmetic is checked so
 * that no input, however large, overflows a long.
 */
#include "hi_backoff.h"

#include <limits.h>
#include <stddef.h>

static long RawDelay(int attempt, long base_ms, long cap_ms);

/* min(cap_ms, base_ms * 2^(attempt-1)) for sanitised, non-negative inputs. */
static long
RawDelay(int attempt, long base_ms, long cap_ms)
{
	long		raw = base_ms;
	int			i;

	/* doubling stops as soon as the cap is reached, so <= 63 rounds */
	for (i = 1; i < attempt && raw > 0 && raw < cap_ms; i++)
	{
		if (raw > cap_ms / 2)
			raw = cap_ms;
		else
			raw *= 2;
	}
	return raw < cap_ms ? raw : cap_ms;
}

/* Capped exponential backoff with equal jitter and Retry-After; see header. */
long
hi_backoff_delay_ms(int attempt, long base_ms, long cap_ms, double rnd,
					long retry_after_ms)
{
	long		raw;
	long		half;
	long		span;
	long		jitter;
	long		delay;

	if (attempt < 1)
		attempt = 1;
	if (base_ms < 0)
		base_ms = 0;
	if (cap_ms < 0)
		cap_ms = 0;
	if (!(rnd >= 0.0))			/* also catches NaN */
		rnd = 0.0;
	if (rnd >= 1.0)
		rnd = 0.0;

	raw = RawDelay(attempt, base_ms, cap_ms);
	half = raw / 2;
	span = raw - half;
	/* rnd < 1, so this is < span <= 2^62: the conversion cannot overflow */
	jitter = (long) (rnd * (double) span);
	if (jitter > span)
		jitter = span;			/* guard against rounding */
	if (jitter < 0)
		jitter = 0;
	delay = half + jitter;

	if (retry_after_ms >= 0)
	{
		long		ra = retry_after_ms < HI_RETRY_AFTER_MAX_MS ?
			retry_after_ms : HI_RETRY_AFTER_MAX_MS;

		if (ra > delay)
			delay = ra;
	}
	return delay;
}

/* Parse delta-seconds into milliseconds, or -1; see header. */
long
hi_parse_retry_after_seconds(const char *value)
{
	const char *p;
	const char *end;
	long		seconds = 0;
	int			saturated = 0;

	if (value == NULL)
		return -1;
	p = value;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p;
	while (*end != '\0')
		end++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end == p)
		return -1;

	for (; p < end; p++)
	{
		long		d;

		if (*p < '0' || *p > '9')
			return -1;
		d = *p - '0';
		if (saturated || seconds > (LONG_MAX - d) / 10)
			saturated = 1;
		else
			seconds = seconds * 10 + d;
	}
	if (saturated || seconds > LONG_MAX / 1000)
		return LONG_MAX;
	return seconds * 1000;
}
