/*
 * hi_answer.h
 *		Checks on what Halo answers that need no server: making JSON text
 *		storable by PostgreSQL's jsonb (NUL and lone surrogate escapes),
 *		an access token that is safe to put in a header, and the lifetime
 *		and renewal time of a token from its expires_in.
 *
 * Plain C99 + libc, no PostgreSQL headers.  Nothing here allocates.
 */
#ifndef HI_ANSWER_H
#define HI_ANSWER_H

#include <stddef.h>
#include <stdint.h>

/* expires_in is assumed to be this when the answer has none (or an unreadable one). */
#define HI_TOKEN_LIFETIME_DEFAULT_S 3600
/* ... and is clamped to 1 .. this many seconds (a day). */
#define HI_TOKEN_LIFETIME_MAX_S 86400
/* a token is renewed at most this long (60 s) before it expires. */
#define HI_TOKEN_MARGIN_MAX_US INT64_C(60000000)
/* an access token longer than this is refused. */
#define HI_TOKEN_MAX_LEN 16384

/*
 * Rewrites, in place, the escapes inside JSON strings that PostgreSQL's
 * jsonb cannot store: \u0000 and a \uD800-\uDFFF surrogate that is not
 * part of a high-low pair each become \uFFFD (the replacement character;
 * same length, so nothing moves).  Reads at most len bytes and writes only
 * the four hex digits of such escapes; anything that is not JSON is left
 * for the parser to refuse.  Returns how many escapes were replaced.
 */
extern size_t hi_json_scrub_escapes(char *s, size_t len);

/*
 * True when tok (len bytes) can be sent as a bearer token: 1 to
 * HI_TOKEN_MAX_LEN visible ASCII characters (no space, control character
 * or byte above 0x7e, so nothing can end or add a header line).
 */
extern int	hi_token_is_usable(const char *tok, size_t len);

/*
 * The lifetime in seconds to assume for a token whose answer had
 * expires_in (have != 0) or none (have == 0): the value clamped to
 * 1 .. HI_TOKEN_LIFETIME_MAX_S, or HI_TOKEN_LIFETIME_DEFAULT_S.
 */
extern int64_t hi_token_lifetime_s(int have, int64_t expires_in);

/*
 * Microseconds after the fetch at which a token of lifetime_s (clamped as
 * above) is renewed: lifetime - min(60 s, lifetime / 10).  Always positive
 * and at least 90% of the lifetime, so a fresh token is never "expired".
 */
extern int64_t hi_token_renew_after_us(int64_t lifetime_s);

#endif							/* HI_ANSWER_H */
