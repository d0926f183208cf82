/*
 * hi_signature.c
 *		The webhook signature schemes (docs/webhooks.md, the layout table): trimming,
 *		the canonical string of the default layout and of the candidate
 *		layouts, HMAC-SHA256 via OpenSSL, strict base64 or hex with an
 *		optional prefix, constant-time comparison, and the content-length
 *		check.
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

/* A growing output buffer for hi_canonical_build (two passes: measure, write). */
typedef struct
{
	unsigned char *p;			/* NULL while measuring */
	size_t		len;
	int			overflow;
} CanonBuf;

static int	IsSpaceOrTab(char c);
static int	IsHex(char c);
static int	DecodeHex(const char *s, size_t len, unsigned char out[HI_SIG_RAW_LEN]);
static int	DecodeB64(const char *s, size_t len, unsigned char out[HI_SIG_RAW_LEN]);
static int	ComputeRaw(const char *secret, size_t secret_len,
					   const unsigned char *msg, size_t msg_len,
					   unsigned char out[HI_SIG_RAW_LEN]);
static void Put(CanonBuf *b, const void *s, size_t n);
static void PutS(CanonBuf *b, const char *s);
static void WriteLayout(CanonBuf *b, int layout, const char *const *names,
						const char *const *vals, const size_t *vlens, size_t n,
						const unsigned char *body, size_t body_len, const char *digest_b64);

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

/* Strictly decode the base64 signature, then compare HMACs in constant time. */
HiSigResult
hi_signature_verify(const char *secret, size_t secret_len,
					const unsigned char *msg, size_t msg_len,
					const char *sig_b64, size_t sig_len)
{
	return hi_signature_verify_enc(secret, secret_len, msg, msg_len,
								   HI_ENC_BASE64, NULL, sig_b64, sig_len);
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

/* ---------------------------------------------------------------------------
 * Configurable schemes: layouts, encodings, prefixes (webhook-signature.md,
 * "Other layouts a real installation may use").
 * ---------------------------------------------------------------------------
 */

/* Layout names, by HiLayout value. */
static const char *const layout_names[HI_LAYOUT_COUNT] = {
	"default", "blank_line", "space", "crlf", "values", "body",
	"cavage", "cavage_digest", "rfc9421"
};

/* The layout's name; NULL when out of range. */
const char *
hi_layout_name(int layout)
{
	if (layout < 0 || layout >= HI_LAYOUT_COUNT)
		return NULL;
	return layout_names[layout];
}

/* The layout with this exact name; -1 for none. */
int
hi_layout_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return -1;
	for (i = 0; i < HI_LAYOUT_COUNT; i++)
		if (strcmp(name, layout_names[i]) == 0)
			return i;
	return -1;
}

/* Appends n bytes (or counts them while measuring). */
static void
Put(CanonBuf *b, const void *s, size_t n)
{
	if (n > SIZE_MAX - b->len)
	{
		b->overflow = 1;
		return;
	}
	if (b->p != NULL && n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Appends a NUL-terminated string. */
static void
PutS(CanonBuf *b, const char *s)
{
	Put(b, s, strlen(s));
}

/* Writes the canonical string of the layout into b (or measures it). */
static void
WriteLayout(CanonBuf *b, int layout, const char *const *names,
			const char *const *vals, const size_t *vlens, size_t n,
			const unsigned char *body, size_t body_len, const char *digest_b64)
{
	size_t		i;

	for (i = 0; i < n && layout != HI_LAYOUT_BODY; i++)
	{
		switch (layout)
		{
			case HI_LAYOUT_VALUES:
				break;
			case HI_LAYOUT_RFC9421:
				PutS(b, "\"");
				PutS(b, names[i]);
				PutS(b, "\": ");
				break;
			case HI_LAYOUT_SPACE:
			case HI_LAYOUT_CAVAGE:
			case HI_LAYOUT_CAVAGE_DIGEST:
				PutS(b, names[i]);
				PutS(b, ": ");
				break;
			default:
				PutS(b, names[i]);
				PutS(b, ":");
				break;
		}
		Put(b, vals[i], vlens[i]);
		if (layout == HI_LAYOUT_CAVAGE || layout == HI_LAYOUT_CAVAGE_DIGEST)
		{
			if (i + 1 < n)
				PutS(b, "\n");	/* joined: no newline after the last line */
		}
		else
			PutS(b, layout == HI_LAYOUT_CRLF ? "\r\n" : "\n");
	}
	if (layout == HI_LAYOUT_BLANK_LINE)
		PutS(b, "\n");
	if (layout == HI_LAYOUT_CAVAGE_DIGEST)
	{
		if (n > 0)
			PutS(b, "\n");
		PutS(b, "digest: SHA-256=");
		PutS(b, digest_b64);
		return;
	}
	Put(b, body, body_len);
}

/* The canonical string of any layout: see hi_signature.h. */
unsigned char *
hi_canonical_build(int layout, const char *const *names,
				   const char *const *values, size_t n,
				   const unsigned char *body, size_t body_len,
				   size_t *out_len)
{
	const char *vals[HI_SIG_MAX_HEADERS];
	size_t		vlens[HI_SIG_MAX_HEADERS];
	char		digest_b64[HI_SIG_B64_LEN + 1] = "";
	CanonBuf	b = {NULL, 0, 0};
	size_t		i;

	*out_len = 0;
	if (layout < 0 || layout >= HI_LAYOUT_COUNT || n > HI_SIG_MAX_HEADERS ||
		(body == NULL && body_len > 0) || (n > 0 && (names == NULL || values == NULL)))
		return NULL;
	for (i = 0; i < n; i++)
	{
		if (names[i] == NULL || !hi_header_value_valid(names[i]) ||
			!hi_header_value_valid(values[i]))
			return NULL;
		vals[i] = hi_trim_header_value(values[i], strlen(values[i]), &vlens[i]);
	}
	if (layout == HI_LAYOUT_CAVAGE_DIGEST)
	{
		unsigned char md[HI_SIG_RAW_LEN];
		unsigned int md_len = 0;

		if (EVP_Digest(body_len > 0 ? body : (const unsigned char *) "", body_len,
					   md, &md_len, EVP_sha256(), NULL) != 1 || md_len != HI_SIG_RAW_LEN ||
			EVP_EncodeBlock((unsigned char *) digest_b64, md, HI_SIG_RAW_LEN) != HI_SIG_B64_LEN)
			return NULL;
	}
	WriteLayout(&b, layout, names, vals, vlens, n, body, body_len, digest_b64);
	if (b.overflow)
		return NULL;
	b.p = malloc(b.len > 0 ? b.len : 1);
	if (b.p == NULL)
		return NULL;
	b.len = 0;
	WriteLayout(&b, layout, names, vals, vlens, n, body, body_len, digest_b64);
	*out_len = b.len;
	return b.p;
}

/* prefix + encoded HMAC into out; 0 on success, -1 on failure. */
int
hi_signature_compute_enc(const char *secret, size_t secret_len,
						 const unsigned char *msg, size_t msg_len,
						 int encoding, const char *prefix,
						 char *out, size_t out_size)
{
	static const char hexdigits[] = "0123456789abcdef";
	unsigned char mac[HI_SIG_RAW_LEN];
	size_t		plen = prefix ? strlen(prefix) : 0;
	size_t		i;

	if (out == NULL || out_size == 0)
		return -1;
	out[0] = '\0';
	if ((encoding != HI_ENC_BASE64 && encoding != HI_ENC_HEX) ||
		plen > HI_SIG_MAX_PREFIX || out_size < plen + 2 * HI_SIG_RAW_LEN + 1)
		return -1;
	if (ComputeRaw(secret, secret_len, msg, msg_len, mac) != 0)
		return -1;
	memcpy(out, prefix ? prefix : "", plen);
	if (encoding == HI_ENC_HEX)
	{
		for (i = 0; i < HI_SIG_RAW_LEN; i++)
		{
			out[plen + 2 * i] = hexdigits[mac[i] >> 4];
			out[plen + 2 * i + 1] = hexdigits[mac[i] & 0x0F];
		}
		out[plen + 2 * HI_SIG_RAW_LEN] = '\0';
	}
	else if (EVP_EncodeBlock((unsigned char *) out + plen, mac, HI_SIG_RAW_LEN) != HI_SIG_B64_LEN)
	{
		OPENSSL_cleanse(mac, sizeof(mac));
		out[0] = '\0';
		return -1;
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

/* Is c an ASCII hex digit? */
static int
IsHex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Strict hex of 32 bytes into out; 0 on success, -1 when malformed. */
static int
DecodeHex(const char *s, size_t len, unsigned char out[HI_SIG_RAW_LEN])
{
	long		n = 0;
	unsigned char *buf;
	size_t		i;

	if (len != 2 * HI_SIG_RAW_LEN)
		return -1;
	for (i = 0; i < len; i++)
		if (!IsHex(s[i]))
			return -1;
	{
		char		tmp[2 * HI_SIG_RAW_LEN + 1];

		memcpy(tmp, s, len);
		tmp[len] = '\0';
		buf = OPENSSL_hexstr2buf(tmp, &n);
	}
	if (buf == NULL || n != HI_SIG_RAW_LEN)
	{
		OPENSSL_free(buf);
		return -1;
	}
	memcpy(out, buf, HI_SIG_RAW_LEN);
	OPENSSL_free(buf);
	return 0;
}

/* Strict base64 of 32 bytes into out; 0 on success, -1 when malformed. */
static int
DecodeB64(const char *s, size_t len, unsigned char out[HI_SIG_RAW_LEN])
{
	unsigned char given[HI_SIG_B64_LEN / 4 * 3];
	unsigned char reencoded[HI_SIG_B64_LEN + 1];

	if (len != HI_SIG_B64_LEN)
		return -1;
	if (EVP_DecodeBlock(given, (const unsigned char *) s, (int) HI_SIG_B64_LEN) != (int) sizeof(given))
		return -1;
	/*
	 * EVP_DecodeBlock alone is lenient (it skips surrounding whitespace and
	 * does not check padding bits), so accept the text only if it is
	 * exactly the canonical encoding of the 32 decoded bytes: that rules out
	 * whitespace, a missing or misplaced '=', non-zero padding bits, other
	 * alphabets and 33-byte values.  The signature is public, so comparing
	 * it with its own re-encoding leaks nothing.
	 */
	if (EVP_EncodeBlock(reencoded, given, HI_SIG_RAW_LEN) != HI_SIG_B64_LEN ||
		CRYPTO_memcmp(reencoded, s, HI_SIG_B64_LEN) != 0)
		return -1;
	memcpy(out, given, HI_SIG_RAW_LEN);
	return 0;
}

/* Prefix, then strict encoding, then a constant-time HMAC comparison. */
HiSigResult
hi_signature_verify_enc(const char *secret, size_t secret_len,
						const unsigned char *msg, size_t msg_len,
						int encoding, const char *prefix,
						const char *sig, size_t sig_len)
{
	unsigned char given[HI_SIG_RAW_LEN];
	unsigned char expected[HI_SIG_RAW_LEN];
	size_t		plen = prefix ? strlen(prefix) : 0;
	HiSigResult result;
	int			rc;

	if (sig == NULL || sig_len < plen || (plen > 0 && memcmp(sig, prefix, plen) != 0))
		return HI_SIG_MALFORMED;
	if (encoding == HI_ENC_HEX)
		rc = DecodeHex(sig + plen, sig_len - plen, given);
	else if (encoding == HI_ENC_BASE64)
		rc = DecodeB64(sig + plen, sig_len - plen, given);
	else
		rc = -1;
	if (rc != 0)
		return HI_SIG_MALFORMED;
	if (ComputeRaw(secret, secret_len, msg, msg_len, expected) != 0)
		return HI_SIG_MISMATCH;
	result = CRYPTO_memcmp(expected, given, HI_SIG_RAW_LEN) == 0 ?
		HI_SIG_OK : HI_SIG_MISMATCH;
	OPENSSL_cleanse(expected, sizeof(expected));
	return result;
}

/* Prefix and encoding of a received signature, for diagnosis. */
int
hi_signature_split(const char *sig, size_t sig_len, size_t *prefix_len)
{
	unsigned char raw[HI_SIG_RAW_LEN];
	int			enc = -1;
	size_t		plen = 0;
	size_t		i;

	*prefix_len = 0;
	if (sig == NULL)
		return -1;
	if (sig_len >= 2 * HI_SIG_RAW_LEN &&
		DecodeHex(sig + sig_len - 2 * HI_SIG_RAW_LEN, 2 * HI_SIG_RAW_LEN, raw) == 0)
	{
		enc = HI_ENC_HEX;
		plen = sig_len - 2 * HI_SIG_RAW_LEN;
	}
	else if (sig_len >= HI_SIG_B64_LEN &&
			 DecodeB64(sig + sig_len - HI_SIG_B64_LEN, HI_SIG_B64_LEN, raw) == 0)
	{
		enc = HI_ENC_BASE64;
		plen = sig_len - HI_SIG_B64_LEN;
	}
	if (enc < 0 || plen > HI_SIG_MAX_PREFIX)
		return -1;
	for (i = 0; i < plen; i++)
		if ((unsigned char) sig[i] <= 0x20 || (unsigned char) sig[i] >= 0x7F)
			return -1;
	*prefix_len = plen;
	return enc;
}
