/*
 * hi_backoff.h
 *		Retry delays for outbound halo_itsm requests: capped exponential
 *		backoff with "equal jitter", and Retry-After in delta-seconds form.
 *
 * Plain C99 + libc, no PostgreSQL headers.  Nothing here allocates.
 */
#ifndef HI_BACKOFF_H
#define HI_BACKOFF_H

/* A server's Retry-After is honoured up to this many milliseconds (1 h). */
#define HI_RETRY_AFTER_MAX_MS 3600000L

/*
 * Delay in milliseconds before the next attempt.
 *   attempt         1-based number of attempts made so far (< 1 counts as 1)
 *   base_ms, cap_ms base delay and ceiling (negative values count as 0)
 *   rnd             caller's random number in [0,1) (clamped; NaN counts as 0)
 *   retry_after_ms  server's Retry-After in ms, < 0 when absent
 * raw = min(cap_ms, base_ms * 2^(attempt-1)), computed without overflow;
 * jittered = raw/2 + rnd * (raw - raw/2), so raw/2 <= jittered <= raw and
 * it never decreases as attempt grows (for a fixed rnd).  With a
 * Retry-After, ra = min(retry_after_ms, HI_RETRY_AFTER_MAX_MS) and the
 * result is max(ra, jittered), which never exceeds max(cap_ms, ra).
 * The result is always >= 0.
 */
extern long hi_backoff_delay_ms(int attempt, long base_ms, long cap_ms,
								double rnd, long retry_after_ms);

/*
 * Parse a Retry-After value in delta-seconds form: after trimming spaces
 * and tabs, one or more ASCII digits (leading zeros allowed, no sign).
 * Returns the delay in milliseconds (saturating at LONG_MAX), or -1 when
 * value is NULL, empty or not delta-seconds (for example an HTTP-date,
 * which the caller parses with PostgreSQL's timestamp input).
 */
extern long hi_parse_retry_after_seconds(const char *value);

#endif							/* HI_BACKOFF_H */
