/*
 * hi_signature.c
 *		The webhook signature scheme (shared/webhook-signature.md): trimming,
 *		canonical string, HMAC-SHA256 via OpenSSL, strict base64 via OpenSSL,
 *		constant-time comparison, and the content-length check.
 *
 * Plain C99 + libc + OpenSSL, no PostgreSQL headers.  No crypto or base64
 * is written by hand here: HMAC(), EVP_EncodeBlock(), EVP_DecodeBlock() and
 * CRYPTO_memcmp() do the work.
 */
#include "hi_signature.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* The signed headers, in canonical order, with their "name:" prefixes. */
static const char *const canonical_prefixes[4] = {
	"content-length:", "content-type:", "host:", "x-halo-date:"
};

static int	IsSpaceOrTab(char c);
static int	ComputeRaw(const char *secret, size_t secret_len,
					   const unsigned char *msg, size_t msg_len,
					   unsigned char out[HI_SIG_RAW_LEN]);

/* Is c a space or a horizontal tab? */
static int
IsSpaceOrTab(char c)
{
	return c == ' ' || c == '\t';
}

/* Trim spaces and tabs at both ends; returns a pointer into v. */
const char *
hi_trim_header_value(const char *v, size_t len, size_t *outlen)
{
	size_t		start = 0;

	if (v == NULL)
	{
		*outlen = 0;
		return NULL;
	}
	while (start < len && IsSpaceOrTab(v[start]))
		start++;
	while (len > start && IsSpaceOrTab(v[len - 1]))
		len--;
	*outlen = len - start;
	return v + start;
}

/* Is v non-empty after trimming and free of control characters but tab? */
int
hi_header_value_valid(const char *v)
{
	size_t		len;
	size_t		i;
	const char *t;

	if (v == NULL)
		return 0;
	t = hi_trim_header_value(v, strlen(v), &len);
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) t[i];

		if ((c < 0x20 && c != '\t') || c == 0x7F)
			return 0;
	}
	return 1;
}

/* Build the malloc'd canonical string from trimmed values and the body. */
unsigned char *
hi_canonical_string(const char *content_length, const char *content_type,
					const char *host, const char *date,
					const unsigned char *body, size_t body_len,
					size_t *out_len)
{
	const char *raw[4];
	const char *val[4];
	size_t		vlen[4];
	size_t		total = 0;
	unsigned char *out;
	unsigned char *o;
	int			i;

	*out_len = 0;
	raw[0] = content_length;
	raw[1] = content_type;
	raw[2] = host;
	raw[3] = date;
	if (body == NULL && body_len > 0)
		return NULL;

	for (i = 0; i < 4; i++)
	{
		size_t		plen = strlen(canonical_prefixes[i]);

		if (!hi_header_value_valid(raw[i]))
			return NULL;
		val[i] = hi_trim_header_value(raw[i], strlen(raw[i]), &vlen[i]);
		/* prefix + value + '\n', refusing size_t overflow */
		if (vlen[i] > SIZE_MAX - plen - 1 - total)
			return NULL;
		total += plen + vlen[i] + 1;
	}
	if (body_len > SIZE_MAX - total)
		return NULL;
	total += body_len;

	/* total > 0: the prefixes alone are 45 bytes */
	out = malloc(total);
	if (out == NULL)
		return NULL;

	o = out;
	for (i = 0; i < 4; i++)
	{
		size_t		plen = strlen(canonical_prefixes[i]);

		memcpy(o, canonical_prefixes[i], plen);
		o += plen;
		memcpy(o, val[i], vlen[i]);
		o += vlen[i];
		*o++ = '\n';
	}
	if (body_len > 0)
		memcpy(o, body, body_len);

	*out_len = total;
	return out;
}

/* HMAC-SHA256(secret, msg) into out; returns 0 on success, -1 on failure. */
static int
ComputeRaw(const char *secret, size_t secret_len,
		   const unsigned char *msg, size_t msg_len,
		   unsigned char out[HI_SIG_RAW_LEN])
{
	/* OpenSSL wants non-NULL pointers even for empty key or message */
	static const unsigned char empty[1] = {0};
	unsigned int md_len = 0;

	if (secret_len > (size_t) INT_MAX)
		return -1;
	if ((secret == NULL && secret_len > 0) || (msg == NULL && msg_len > 0))
		return -1;
	if (HMAC(EVP_sha256(),
			 secret_len > 0 ? (const void *) secret : (const void *) empty,
			 (int) secret_len,
			 msg_len > 0 ? msg : empty, msg_len,
			 out, &md_len) == NULL)
		return -1;
	if (md_len != HI_SIG_RAW_LEN)
		return -1;
	return 0;
}

/* base64(HMAC-SHA256(secret, msg)) into out_b64; 0 on success, -1 on error. */
int
hi_signature_compute(const char *secret, size_t secret_len,
					 const unsigned char *msg, size_t msg_len,
					 char out_b64[HI_SIG_B64_LEN + 1])
{
	unsigned char mac[HI_SIG_RAW_LEN];
	int			n;

	out_b64[0] = '\0';
	if (ComputeRaw(secret, secret_len, msg, msg_len, mac) != 0)
		return -1;
	n = EVP_EncodeBlock((unsigned char *) out_b64, mac, HI_SIG_RAW_LEN);
	OPENSSL_cleanse(mac, sizeof(mac));
	if (n != HI_SIG_B64_LEN)
	{
		out_b64[0] = '\0';
		return -1;
	}
	out_b64[HI_SIG_B64_LEN] = '\0';
	return 0;
}

/* Strictly decode the signature, then compare HMACs in constant time. */
hi_sig_result
hi_signature_verify(const char *secret, size_t secret_len,
					const unsigned char *msg, size_t msg_len,
					const char *sig_b64, size_t sig_len)
{
	/* EVP_DecodeBlock writes 3 bytes per 4 characters, padding included */
	unsigned char given[HI_SIG_B64_LEN / 4 * 3];
	unsigned char expected[HI_SIG_RAW_LEN];
	unsigned char reencoded[HI_SIG_B64_LEN + 1];
	hi_sig_result result;

	if (sig_b64 == NULL || sig_len != HI_SIG_B64_LEN)
		return HI_SIG_MALFORMED;

	/*
	 * EVP_DecodeBlock alone is lenient (it skips surrounding whitespace and
	 * does not check padding bits), so accept the text only if it is
	 * exactly the canonical encoding of the 32 decoded bytes: that rules out
	 * whitespace, a missing or misplaced '=', non-zero padding bits, other
	 * alphabets and 33-byte values.  The signature is public, so comparing
	 * it with its own re-encoding leaks nothing.
	 */
	if (EVP_DecodeBlock(given, (const unsigned char *) sig_b64,
						(int) HI_SIG_B64_LEN) != (int) sizeof(given))
		return HI_SIG_MALFORMED;
	if (EVP_EncodeBlock(reencoded, given, HI_SIG_RAW_LEN) != HI_SIG_B64_LEN ||
		CRYPTO_memcmp(reencoded, sig_b64, HI_SIG_B64_LEN) != 0)
		return HI_SIG_MALFORMED;

	if (ComputeRaw(secret, secret_len, msg, msg_len, expected) != 0)
		return HI_SIG_MISMATCH;
	result = CRYPTO_memcmp(expected, given, HI_SIG_RAW_LEN) == 0 ?
		HI_SIG_OK : HI_SIG_MISMATCH;
	OPENSSL_cleanse(expected, sizeof(expected));
	return result;
}

/* Is the trimmed value all digits, without overflow, equal to body_len? */
int
hi_content_length_matches(const char *value, size_t body_len)
{
	const char *t;
	size_t		len;
	size_t		i;
	size_t		n = 0;

	if (value == NULL)
		return 0;
	t = hi_trim_header_value(value, strlen(value), &len);
	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
	{
		size_t		d;

		if (t[i] < '0' || t[i] > '9')
			return 0;
		d = (size_t) (t[i] - '0');
		if (n > (SIZE_MAX - d) / 10)
			return 0;			/* overflow: cannot equal any body length */
		n = n * 10 + d;
	}
	return n == body_len;
}
