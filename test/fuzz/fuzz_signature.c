/*
 * fuzz_signature.c
 *		libFuzzer harness for hi_signature: canonical string, HMAC signing,
 *		strict base64 verification and the content-length check.
 *
 * Input layout: six '\n'-terminated fields, then the body (all remaining
 * bytes):  secret \n content-length \n content-type \n host \n date \n
 * signature \n body.  Missing fields are empty.  Header fields are copied
 * into C strings (an embedded NUL ends them, as it would in PostgreSQL).
 *
 * Invariants (abort() on violation):
 *  - hi_canonical_string equals an independent reference construction;
 *  - verify(secret, msg, compute(secret, msg)) is OK;
 *  - any 1-byte change, truncation or extension of msg is MISMATCH;
 *  - the given signature verifies OK exactly when it equals compute()'s
 *    output, and is MALFORMED exactly when a reference strict-base64 check
 *    of "44 characters encoding 32 bytes" rejects it;
 *  - hi_content_length_matches agrees with a reference decimal comparison;
 *  - the configurable schemes (CheckSchemes): every layout, both encodings,
 *    a prefix, and splitting a received signature.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_signature.h"

#define NFIELDS 6

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void Fail(const char *what);
static char *CopyField(const uint8_t *p, size_t len);
static int	RefValid(const char *v, const char **t, size_t *tlen);
static unsigned char *RefCanonical(char *const hdr[4], const uint8_t *body,
								   size_t body_len, size_t *out_len);
static int	RefStrictB64(const char *s, size_t len);
static int	RefContentLength(const char *v, size_t body_len);
static void CheckSchemes(char *const hdr[4], const uint8_t *body, size_t body_len,
						 const char *secret, size_t secret_len, size_t pick);
static void CheckMessage(const char *secret, size_t secret_len,
						 unsigned char *msg, size_t msg_len, uint8_t delta,
						 size_t pick);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_signature: invariant violated: %s\n", what);
	abort();
}

/* Copy len bytes into a malloc'd C string (stops at an embedded NUL). */
static char *
CopyField(const uint8_t *p, size_t len)
{
	char	   *s = malloc(len + 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

/* Reference: trimmed, non-empty, no control characters but tab? */
static int
RefValid(const char *v, const char **t, size_t *tlen)
{
	size_t		a = 0;
	size_t		b = strlen(v);
	size_t		i;

	while (a < b && (v[a] == ' ' || v[a] == '\t'))
		a++;
	while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
		b--;
	*t = v + a;
	*tlen = b - a;
	if (b == a)
		return 0;
	for (i = a; i < b; i++)
	{
		unsigned char c = (unsigned char) v[i];

		if (c == 0x7F || (c < 0x20 && c != '\t'))
			return 0;
	}
	return 1;
}

/* Reference canonical string, built independently of the library. */
static unsigned char *
RefCanonical(char *const hdr[4], const uint8_t *body, size_t body_len,
			 size_t *out_len)
{
	static const char *const names[4] = {"content-length", "content-type",
	"host", "x-halo-date"};
	const char *t[4];
	size_t		tl[4];
	size_t		total = body_len;
	unsigned char *out;
	size_t		o = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		if (!RefValid(hdr[i], &t[i], &tl[i]))
			return NULL;
		total += strlen(names[i]) + 1 + tl[i] + 1;
	}
	out = malloc(total);
	if (out == NULL)
		abort();
	for (i = 0; i < 4; i++)
	{
		memcpy(out + o, names[i], strlen(names[i]));
		o += strlen(names[i]);
		out[o++] = ':';
		memcpy(out + o, t[i], tl[i]);
		o += tl[i];
		out[o++] = '\n';
	}
	if (body_len > 0)
		memcpy(out + o, body, body_len);
	*out_len = total;
	return out;
}

/* Reference: is s the canonical padded base64 of exactly 32 bytes? */
static int
RefStrictB64(const char *s, size_t len)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t		i;
	const char *pos;

	if (len != 44 || s[43] != '=')
		return 0;
	for (i = 0; i < 43; i++)
	{
		if (s[i] == '\0' || strchr(alphabet, s[i]) == NULL)
			return 0;
	}
	/* 43 characters carry 258 bits: the last 2 must be zero */
	pos = strchr(alphabet, s[42]);
	return ((pos - alphabet) & 3) == 0;
}

/* Reference: trimmed all-digit value equal to body_len as decimal. */
static int
RefContentLength(const char *v, size_t body_len)
{
	const char *t;
	size_t		tl;
	size_t		i;
	char		want[32];

	if (!RefValid(v, &t, &tl))
		return 0;
	for (i = 0; i < tl; i++)
	{
		if (t[i] < '0' || t[i] > '9')
			return 0;
	}
	/* drop leading zeros, keeping at least one digit */
	while (tl > 1 && t[0] == '0')
	{
		t++;
		tl--;
	}
	snprintf(want, sizeof(want), "%zu", body_len);
	return tl == strlen(want) && memcmp(t, want, tl) == 0;
}

/* Sign msg, verify it, and verify changed copies of it and of the MAC. */
static void
CheckMessage(const char *secret, size_t secret_len, unsigned char *msg,
			 size_t msg_len, uint8_t delta, size_t pick)
{
	char		sig[HI_SIG_B64_LEN + 1];
	size_t		positions[4];
	unsigned char *longer;
	int			i;

	if (hi_signature_compute(secret, secret_len, msg, msg_len, sig) != 0)
		Fail("compute failed");
	if (strlen(sig) != HI_SIG_B64_LEN || !RefStrictB64(sig, HI_SIG_B64_LEN))
		Fail("compute output is not strict base64 of 32 bytes");
	if (hi_signature_verify(secret, secret_len, msg, msg_len, sig,
							HI_SIG_B64_LEN) != HI_SIG_OK)
		Fail("verify(compute(x)) is not OK");

	if (msg_len > 0)
	{
		positions[0] = 0;
		positions[1] = msg_len - 1;
		positions[2] = msg_len / 2;
		positions[3] = pick % msg_len;
		for (i = 0; i < 4; i++)
		{
			msg[positions[i]] ^= delta;
			if (hi_signature_verify(secret, secret_len, msg, msg_len, sig,
									HI_SIG_B64_LEN) != HI_SIG_MISMATCH)
				Fail("1-byte change of the message is not MISMATCH");
			msg[positions[i]] ^= delta;
		}
		if (hi_signature_verify(secret, secret_len, msg, msg_len - 1, sig,
								HI_SIG_B64_LEN) != HI_SIG_MISMATCH)
			Fail("truncated message is not MISMATCH");
	}

	longer = malloc(msg_len + 1);
	if (longer == NULL)
		abort();
	if (msg_len > 0)
		memcpy(longer, msg, msg_len);
	longer[msg_len] = delta;
	if (hi_signature_verify(secret, secret_len, longer, msg_len + 1, sig,
							HI_SIG_B64_LEN) != HI_SIG_MISMATCH)
		Fail("extended message is not MISMATCH");
	free(longer);

	/* any change of one signature character must not verify */
	sig[pick % HI_SIG_B64_LEN] ^= delta;
	if (hi_signature_verify(secret, secret_len, msg, msg_len, sig,
							HI_SIG_B64_LEN) == HI_SIG_OK)
		Fail("changed signature verifies");
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *field[NFIELDS];
	size_t		flen[NFIELDS];
	const uint8_t *p = data;
	const uint8_t *end = data + size;
	const uint8_t *body;
	size_t		body_len;
	char	   *hdr[4];
	unsigned char *canon;
	unsigned char *ref;
	size_t		canon_len = 0;
	size_t		ref_len = 0;
	char		computed[HI_SIG_B64_LEN + 1];
	HiSigResult r;
	uint8_t		delta;
	size_t		pick = 0;
	size_t		i;
	int			f;

	for (f = 0; f < NFIELDS; f++)
	{
		const uint8_t *nl = p < end ? memchr(p, '\n', (size_t) (end - p)) : NULL;

		field[f] = p;
		flen[f] = nl ? (size_t) (nl - p) : (size_t) (end - p);
		p = nl ? nl + 1 : end;
	}
	body = p;
	body_len = (size_t) (end - p);

	for (i = 0; i < size; i++)
		pick = pick * 31 + data[i];
	delta = (uint8_t) (1 + pick % 255);

	for (f = 0; f < 4; f++)
		hdr[f] = CopyField(field[1 + f], flen[1 + f]);

	/* canonical string against the reference */
	canon = hi_canonical_string(hdr[0], hdr[1], hdr[2], hdr[3], body,
								body_len, &canon_len);
	ref = RefCanonical(hdr, body, body_len, &ref_len);
	if ((canon == NULL) != (ref == NULL))
		Fail("canonical string acceptance differs from reference");
	if (canon != NULL && (canon_len != ref_len || memcmp(canon, ref, ref_len) != 0))
		Fail("canonical string differs from reference");
	if (canon == NULL && canon_len != 0)
		Fail("out_len not 0 on failure");
	for (f = 0; f < 4; f++)
	{
		const char *t;
		size_t		tl;

		if (hi_header_value_valid(hdr[f]) != RefValid(hdr[f], &t, &tl))
			Fail("hi_header_value_valid differs from reference");
	}

	/* content-length against the reference */
	if (hi_content_length_matches(hdr[0], body_len) != RefContentLength(hdr[0], body_len))
		Fail("content-length check differs from reference");

	/* the given signature against the canonical string (or raw input) */
	{
		const unsigned char *msg = canon ? canon : data;
		size_t		msg_len = canon ? canon_len : size;
		size_t		sig_len = flen[5];

		r = hi_signature_verify((const char *) field[0], flen[0], msg, msg_len,
								(const char *) field[5], sig_len);
		if (hi_signature_compute((const char *) field[0], flen[0], msg, msg_len,
								 computed) != 0)
			Fail("compute failed");
		if ((r == HI_SIG_MALFORMED) != !RefStrictB64((const char *) field[5], sig_len))
			Fail("MALFORMED differs from reference strict base64");
		if ((r == HI_SIG_OK) !=
			(sig_len == HI_SIG_B64_LEN && memcmp(field[5], computed, HI_SIG_B64_LEN) == 0))
			Fail("OK differs from signature == compute()");
	}

	/* round trips and 1-byte changes, on a writable copy */
	{
		unsigned char *copy;
		size_t		copy_len = canon ? canon_len : size;

		copy = malloc(copy_len + 1);
		if (copy == NULL)
			abort();
		if (copy_len > 0)
			memcpy(copy, canon ? canon : data, copy_len);
		CheckMessage((const char *) field[0], flen[0], copy, copy_len, delta, pick);
		free(copy);
	}

	CheckSchemes(hdr, body, body_len, (const char *) field[0], flen[0], pick);

	free(canon);
	free(ref);
	for (f = 0; f < 4; f++)
		free(hdr[f]);
	return 0;
}

/*
 * The configurable schemes: the default layout over the default names is
 * hi_canonical_string's; every layout is accepted exactly when every value
 * is valid, and its bytes contain the body (or, for cavage_digest, end in a
 * digest line); compute_enc then verify_enc is OK for both encodings with a
 * prefix, split recovers the encoding and prefix, and the signature of a
 * neighbouring layout does not verify (different bytes).
 */
static void
CheckSchemes(char *const hdr[4], const uint8_t *body, size_t body_len,
			 const char *secret, size_t secret_len, size_t pick)
{
	static const char *const names[4] = {"content-length", "content-type", "host", "x-halo-date"};
	const char *prefix = (pick & 1) ? "sha256=" : "";
	int			all_valid = 1;
	int			layout;
	int			f;
	unsigned char *prev = NULL;
	size_t		prev_len = 0;

	for (f = 0; f < 4; f++)
		all_valid &= hi_header_value_valid(hdr[f]);
	for (layout = 0; layout < HI_LAYOUT_COUNT; layout++)
	{
		size_t		len = 0;
		unsigned char *c = hi_canonical_build(layout, names, (const char *const *) hdr, 4,
											  body, body_len, &len);
		int			enc;

		if ((c != NULL) != all_valid)
			Fail("hi_canonical_build acceptance differs from the values' validity");
		if (c == NULL)
			continue;
		if (layout == HI_LAYOUT_DEFAULT)
		{
			size_t		l2 = 0;
			unsigned char *c2 = hi_canonical_string(hdr[0], hdr[1], hdr[2], hdr[3], body, body_len, &l2);

			if (c2 == NULL || l2 != len || memcmp(c, c2, len) != 0)
				Fail("default layout differs from hi_canonical_string");
			free(c2);
		}
		if (layout != HI_LAYOUT_CAVAGE_DIGEST &&
			(len < body_len || (body_len > 0 && memcmp(c + len - body_len, body, body_len) != 0)))
			Fail("a layout's bytes do not end with the body");
		for (enc = HI_ENC_BASE64; enc <= HI_ENC_HEX; enc++)
		{
			char		sig[HI_SIG_MAX_TEXT + 1];
			size_t		plen = 0;

			if (hi_signature_compute_enc(secret, secret_len, c, len, enc, prefix, sig, sizeof(sig)) != 0)
				Fail("compute_enc failed");
			if (hi_signature_verify_enc(secret, secret_len, c, len, enc, prefix, sig, strlen(sig)) != HI_SIG_OK)
				Fail("verify_enc(compute_enc) not OK");
			if (hi_signature_split(sig, strlen(sig), &plen) != enc || plen != strlen(prefix))
				Fail("split does not recover encoding and prefix");
			if (prev != NULL && (prev_len != len || memcmp(prev, c, len) != 0) &&
				hi_signature_verify_enc(secret, secret_len, prev, prev_len, enc, prefix, sig, strlen(sig)) == HI_SIG_OK)
				Fail("a signature verifies other bytes");
		}
		free(prev);
		prev = c;
		prev_len = len;
	}
	free(prev);
}
