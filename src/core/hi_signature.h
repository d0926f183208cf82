/*
 * hi_signature.h
 *		The webhook signature schemes (docs/webhooks.md): header
 *		value trimming, the canonical string, HMAC-SHA256 signing and
 *		constant-time verification, and the content-length check.
 *
 * Plain C99 + libc + OpenSSL, no PostgreSQL headers.  Buffers returned by
 * hi_canonical_string() are malloc'd; release them with free().
 *
 * Secrets are used as given (any length, including 0).  An empty secret
 * makes signatures forgeable, so the configuration layer must refuse it.
 */
#ifndef HI_SIGNATURE_H
#define HI_SIGNATURE_H

#include <stddef.h>

/* HMAC-SHA256 output size, and its base64 length (with '=' padding). */
#define HI_SIG_RAW_LEN	32
#define HI_SIG_B64_LEN	44

/* Result of hi_signature_verify(). */
typedef enum
{
	HI_SIG_OK = 0,				/* the signature matches */
	HI_SIG_MALFORMED,			/* not strict base64 of exactly 32 bytes */
	HI_SIG_MISMATCH				/* well-formed but wrong (or HMAC failed) */
} HiSigResult;

/*
 * Trim leading and trailing spaces and tabs (only those) from v[0..len).
 * Returns a pointer into v (nothing is allocated) and sets *outlen to the
 * trimmed length; returns NULL with *outlen = 0 when v is NULL.
 */
extern const char *hi_trim_header_value(const char *v, size_t len,
										size_t *outlen);

/*
 * Is v acceptable as a signed header value?  Returns 1 when v is not NULL,
 * is non-empty after trimming, and contains no control character other than
 * tab (in particular no CR or LF, which would make the canonical string
 * ambiguous); 0 otherwise.
 */
extern int	hi_header_value_valid(const char *v);

/*
 * Build the canonical string that is signed:
 *   "content-length:" CL "\n" "content-type:" CT "\n" "host:" HOST "\n"
 *   "x-halo-date:" DATE "\n" BODY
 * The header values are the values as received: they are trimmed HERE (by
 * hi_trim_header_value).  body may be NULL when body_len is 0.
 * Returns a malloc'd buffer (not NUL-terminated; release with free()) and
 * sets *out_len, or returns NULL (with *out_len = 0) when a value fails
 * hi_header_value_valid(), body is NULL with body_len > 0, or memory is
 * exhausted.  Callers should check the values first to report which one is
 * wrong.
 */
extern unsigned char *hi_canonical_string(const char *content_length,
										  const char *content_type,
										  const char *host,
										  const char *date,
										  const unsigned char *body,
										  size_t body_len,
										  size_t *out_len);

/*
 * Compute base64(HMAC-SHA256(key = secret, message = msg)) into out_b64,
 * which receives 44 characters and a NUL.  msg may be NULL when msg_len is
 * 0.  Returns 0 on success, -1 on failure (bad arguments, secret longer
 * than INT_MAX, or an OpenSSL error); on failure out_b64 is set to "".
 */
extern int	hi_signature_compute(const char *secret, size_t secret_len,
								 const unsigned char *msg, size_t msg_len,
								 char out_b64[HI_SIG_B64_LEN + 1]);

/*
 * Verify sig_b64[0..sig_len) against msg under secret.  The signature must
 * be strict base64: standard alphabet, '=' padding, no whitespace, the
 * canonical encoding of exactly 32 bytes (so exactly 44 characters);
 * otherwise HI_SIG_MALFORMED.  The HMAC is compared with CRYPTO_memcmp.
 * HI_SIG_MISMATCH also when the HMAC cannot be computed (fails closed).
 */
extern HiSigResult hi_signature_verify(const char *secret, size_t secret_len,
										 const unsigned char *msg,
										 size_t msg_len,
										 const char *sig_b64, size_t sig_len);

/*
 * Does the content-length header value equal body_len?  Returns 1 when the
 * value, after trimming spaces and tabs, is one or more ASCII digits (no
 * sign, no list, leading zeros allowed: "0152" is 152) whose number equals
 * body_len without overflow; 0 otherwise (including NULL).
 */
extern int	hi_content_length_matches(const char *value, size_t body_len);

/*
 * Configurable schemes (webhook-signature.md, "Other layouts"): the canonical
 * layout, the signed headers (names lower case, in order) and the digest
 * encoding with an optional prefix.  HI_LAYOUT_DEFAULT with the four default
 * headers is exactly hi_canonical_string().
 */
typedef enum
{
	HI_LAYOUT_DEFAULT = 0,		/* "name:value\n" per header, then the body */
	HI_LAYOUT_BLANK_LINE,		/* as default, then "\n", then the body */
	HI_LAYOUT_SPACE,			/* "name: value\n" per header, then the body */
	HI_LAYOUT_CRLF,				/* "name:value\r\n" per header, then the body */
	HI_LAYOUT_VALUES,			/* "value\n" per header, then the body */
	HI_LAYOUT_BODY,				/* the body alone */
	HI_LAYOUT_CAVAGE,			/* "name: value" joined by "\n" (no trailing newline), the body appended */
	HI_LAYOUT_CAVAGE_DIGEST,	/* "name: value" lines, "\ndigest: SHA-256=" b64(sha256(body)) */
	HI_LAYOUT_RFC9421,			/* "\"name\": value\n" per header, then the body */
	HI_LAYOUT_COUNT
} HiLayout;

/* Digest encodings of the signature header's value. */
typedef enum
{
	HI_ENC_BASE64 = 0,			/* 44 characters, standard alphabet, '=' padding */
	HI_ENC_HEX					/* 64 hex digits (either case accepted) */
} HiEncoding;

/* Longest prefix (e.g. "sha256=") and most signed headers a scheme may have. */
#define HI_SIG_MAX_PREFIX	32
#define HI_SIG_MAX_HEADERS	16
/* Longest encoded signature: prefix + 64 hex digits. */
#define HI_SIG_MAX_TEXT		(HI_SIG_MAX_PREFIX + 2 * HI_SIG_RAW_LEN)

/* The layout's name ("default", "blank_line", ...); NULL when out of range. */
extern const char *hi_layout_name(int layout);

/* The layout named name (exact, lower case); -1 for an unknown name. */
extern int	hi_layout_from_name(const char *name);

/*
 * Build the canonical string of layout from n signed headers (names as
 * given, expected lower case; values trimmed here and checked with
 * hi_header_value_valid) and the body.  n may be 0 only for HI_LAYOUT_BODY
 * (any layout accepts 0..HI_SIG_MAX_HEADERS).  Returns a malloc'd buffer
 * (release with free()) and sets *out_len, or NULL with *out_len = 0 for an
 * invalid value or name, a bad layout, NULL body with body_len > 0, too many
 * headers, or no memory.
 */
extern unsigned char *hi_canonical_build(int layout, const char *const *names,
										 const char *const *values, size_t n,
										 const unsigned char *body,
										 size_t body_len, size_t *out_len);

/*
 * prefix followed by HMAC-SHA256(secret, msg) in encoding, NUL-terminated,
 * into out (out_size >= strlen(prefix) + 65).  prefix may be NULL (none).
 * Returns 0 on success, -1 on failure (out is then "").
 */
extern int	hi_signature_compute_enc(const char *secret, size_t secret_len,
									 const unsigned char *msg, size_t msg_len,
									 int encoding, const char *prefix,
									 char *out, size_t out_size);

/*
 * Verify sig[0..sig_len) = prefix + encoded HMAC against msg under secret.
 * MALFORMED unless sig starts with prefix (exact bytes; NULL or "" for none)
 * and the rest is the strict encoding of 32 bytes (base64 as for
 * hi_signature_verify; hex: exactly 64 hex digits).  The HMAC is compared
 * with CRYPTO_memcmp; MISMATCH also when it cannot be computed.
 */
extern HiSigResult hi_signature_verify_enc(const char *secret,
											 size_t secret_len,
											 const unsigned char *msg,
											 size_t msg_len, int encoding,
											 const char *prefix,
											 const char *sig, size_t sig_len);

/*
 * Split a received signature into a prefix and an encoded digest, for
 * diagnosis: when sig ends in 64 hex digits (HI_ENC_HEX) or in 44 characters
 * of strict base64 of 32 bytes (HI_ENC_BASE64), and what precedes them is at
 * most HI_SIG_MAX_PREFIX printable ASCII characters, returns the encoding
 * and sets *prefix_len; returns -1 otherwise.  Hex is tried first.
 */
extern int	hi_signature_split(const char *sig, size_t sig_len,
							   size_t *prefix_len);

#endif							/* HI_SIGNATURE_H */
