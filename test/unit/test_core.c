/*
 * test_core.c
 *		Unit tests for halo_itsm's plain-C core: title templates
 *		(hi_template), the webhook signature scheme (hi_signature), retry
 *		backoff (hi_backoff), note HTML to text (hi_html) and the checks on
 *		Halo's answers (hi_answer).  Prints one TAP-like line per check and ends
 *		with "N passed, N failed"; exits non-zero on any failure.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "hi_answer.h"
#include "hi_budget.h"
#include "hi_webhook_status.h"
#include "hi_rate.h"
#include "hi_backoff.h"
#include "hi_html.h"
#include "hi_signature.h"
#include "hi_template.h"
#include "hi_test.h"

/* The golden vector of shared/webhook-signature.md. */
#define GOLDEN_SECRET "hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2"
#define GOLDEN_BODY "{\"id\":\"5b0c2f4e-8d1a-4c1e-9a57-2f1f0d3e6b11\"," \
	"\"event\":\"Ticket Updated by Agent\",\"object_id\":4242," \
	"\"ticket\":{\"id\":4242,\"status_id\":9,\"hasbeenclosed\":true}}"
#define GOLDEN_DATE "Sat, 28 Nov 2026 15:56:01 GMT"
#define GOLDEN_SIG "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc="
#define GOLDEN_CANONICAL "content-length:152\ncontent-type:application/json\n" \
	"host:soc.example.com\nx-halo-date:" GOLDEN_DATE "\n" GOLDEN_BODY

/* A string literal and its length in bytes (NULs included). */
#define LIT(s) s, (sizeof(s) - 1)

static void CheckValidate(const char *name, const char *tpl, int want_code,
						  const char *want_msg);
static void CheckRender(const char *name, const char *tpl, const char *sid,
						const char *title, const char *severity,
						const char *want);
static void TestTemplateValidate(void);
static void TestTemplateRender(void);
static void TestTrim(void);
static void TestCanonical(void);
static void TestSignatureGolden(void);
static void TestSignatureMalformed(void);
static void TestSignatureMisc(void);
static void TestContentLength(void);
static void TestBackoff(void);
static void TestRetryAfter(void);
static void CheckHtml(const char *name, const char *html, size_t len, int flags,
					  const char *want, size_t want_len);
static void TestHtml(void);
static void TestLayouts(void);
static void TestEncodings(void);
static void TestHtmlLinear(void);
static unsigned char *GoldenCanonical(size_t *len);
static HiSigResult VerifyGolden(const char *sig);
static void CheckScrub(const char *name, const char *in, const char *want, size_t want_n);
static void TestJsonScrub(void);
static void TestToken(void);
static void CheckLayout(int layout, const char *want, size_t want_len);
static void TestBudgetRing(void);
static void TestWebhookStatus(void);
static void TestRate(void);

/* Check hi_template_validate's code and message for one template. */
static void
CheckValidate(const char *name, const char *tpl, int want_code,
			  const char *want_msg)
{
	char		err[256];
	int			code;
	char		label[200];

	memset(err, 'X', sizeof(err));
	code = hi_template_validate(tpl, err, sizeof(err));
	snprintf(label, sizeof(label), "template validate: %s (code)", name);
	hi_check(code == want_code, label, "got %d, want %d (message: %s)",
			 code, want_code, err);
	snprintf(label, sizeof(label), "template validate: %s (message)", name);
	hi_check_str(label, err, want_msg);
}

/* Check hi_template_render's output (want NULL means: must fail). */
static void
CheckRender(const char *name, const char *tpl, const char *sid,
			const char *title, const char *severity, const char *want)
{
	char	   *got = hi_template_render(tpl, sid, title, severity);
	char		label[200];

	snprintf(label, sizeof(label), "template render: %s", name);
	if (want == NULL)
		hi_check(got == NULL, label, "got \"%s\", want NULL", got ? got : "");
	else
		hi_check_str(label, got, want);
	free(got);
}

/* Template validation: valid forms, every error kind, messages, buffers. */
static void
TestTemplateValidate(void)
{
	char		err[64];
	char		tiny[5];
	char		longname[200];
	char		want[200];
	int			i;

	hi_check_str("HI_TEMPLATE_VARIABLES lists the variables",
				 HI_TEMPLATE_VARIABLES, "{{sid}}, {{title}}, {{severity}}");

	CheckValidate("all variables", "[{{severity}}] {{title}} ({{sid}})",
				  HI_TEMPLATE_OK, "");
	CheckValidate("plain text", "Security incident", HI_TEMPLATE_OK, "");
	CheckValidate("single braces are literal", "{a} { b } {", HI_TEMPLATE_OK, "");
	CheckValidate("lone }} is literal", "a }} b {{sid}} }}", HI_TEMPLATE_OK, "");
	CheckValidate("trailing brace after variable", "{{sid}}}", HI_TEMPLATE_OK, "");
	CheckValidate("adjacent variables", "{{sid}}{{title}}{{severity}}",
				  HI_TEMPLATE_OK, "");
	CheckValidate("lone { before variable", "{ {{sid}}", HI_TEMPLATE_OK, "");

	CheckValidate("empty", "", HI_TEMPLATE_EMPTY, "template is empty");
	CheckValidate("NULL", NULL, HI_TEMPLATE_EMPTY, "template is empty");
	CheckValidate("unknown variable", "Alert: {{foo}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{foo}}\" at position 8");
	CheckValidate("unclosed", "ab{{sid", HI_TEMPLATE_UNCLOSED,
				  "unclosed \"{{\" at position 3");
	CheckValidate("unclosed after valid variable", "{{sid}} {{",
				  HI_TEMPLATE_UNCLOSED, "unclosed \"{{\" at position 9");
	CheckValidate("empty name {{}}", "{{}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{}}\" at position 1");
	CheckValidate("triple braces {{{sid}}}", "{{{sid}}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{{sid}}\" at position 1");
	CheckValidate("spaces inside braces", "x {{ sid }}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{ sid }}\" at position 3");
	CheckValidate("names are case-sensitive", "{{SID}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{SID}}\" at position 1");
	CheckValidate("single closing brace swallows next variable",
				  "{{sid}{{title}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{sid}{{title}}\" at position 1");
	CheckValidate("first error wins", "{{foo}} {{bar", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{foo}}\" at position 1");
	CheckValidate("position counts UTF-8 characters",
				  "\xc3\xa9t\xc3\xa9 {{foo}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{foo}}\" at position 5");
	CheckValidate("control characters in a name are quoted as is",
				  "{{a\nb}}", HI_TEMPLATE_UNKNOWN,
				  "unknown variable \"{{a\nb}}\" at position 1");

	/* 39 'a' then U+00E9 straddling the 40-byte cut: cut before it */
	for (i = 0; i < 39; i++)
		longname[2 + i] = 'a';
	longname[0] = longname[1] = '{';
	memcpy(longname + 41, "\xc3\xa9zzzz}}", 9);
	snprintf(want, sizeof(want),
			 "unknown variable \"{{%.39s...}}\" at position 1", longname + 2);
	CheckValidate("long name shortened at a UTF-8 boundary", longname,
				  HI_TEMPLATE_UNKNOWN, want);

	hi_check(hi_template_validate("{{foo}}", tiny, sizeof(tiny)) ==
			 HI_TEMPLATE_UNKNOWN && strcmp(tiny, "unkn") == 0,
			 "template validate: message truncated to errlen", "got \"%s\"", tiny);
	hi_check(hi_template_validate("{{foo}}", NULL, 0) == HI_TEMPLATE_UNKNOWN,
			 "template validate: NULL errbuf", "%s", "wrong code");
	err[0] = 'Q';
	hi_check(hi_template_validate("{{foo}}", err, 0) == HI_TEMPLATE_UNKNOWN &&
			 err[0] == 'Q',
			 "template validate: errlen 0 leaves errbuf alone", "%s", "touched");
}

/* Template rendering: substitution, no re-expansion, NULLs, odd bytes. */
static void
TestTemplateRender(void)
{
	char	   *big;
	char	   *got;
	size_t		n = 100000;

	CheckRender("all variables", "[{{severity}}] {{title}} ({{sid}})",
				"S-1", "Disk full", "high", "[high] Disk full (S-1)");
	CheckRender("no variables", "plain", "a", "b", "c", "plain");
	CheckRender("repeated variable", "{{sid}}-{{sid}}-{{sid}}", "7", NULL,
				NULL, "7-7-7");
	CheckRender("NULL values render empty", "<{{sid}}|{{title}}|{{severity}}>",
				NULL, NULL, NULL, "<||>");
	CheckRender("values are not re-expanded", "{{title}}", "SID",
				"{{title}} {{sid}} {{", "x", "{{title}} {{sid}} {{");
	CheckRender("quotes and backslashes", "{{title}}", "", "a \"b\" 'c' \\d",
				"", "a \"b\" 'c' \\d");
	CheckRender("control characters byte for byte", "{{title}}!", "",
				"\t\x01\r\n\x7f", "", "\t\x01\r\n\x7f!");
	CheckRender("non-ASCII byte for byte", "{{severity}}: {{title}}", "",
				"\xc3\x9c" "berlast \xe2\x80\x93 \xe6\x9d\xb1\xe4\xba\xac",
				"h\xc3\xb6" "ch",
				"h\xc3\xb6" "ch: \xc3\x9c" "berlast \xe2\x80\x93 \xe6\x9d\xb1\xe4\xba\xac");
	CheckRender("literal braces kept", "{a} }} {{sid}}} {", "X", "", "",
				"{a} }} X} {");
	CheckRender("adjacent variables", "{{sid}}{{title}}{{severity}}", "1",
				"2", "3", "123");
	CheckRender("invalid: unknown", "{{foo}}", "a", "b", "c", NULL);
	CheckRender("invalid: unclosed", "{{sid", "a", "b", "c", NULL);
	CheckRender("invalid: empty", "", "a", "b", "c", NULL);
	CheckRender("invalid: NULL", NULL, "a", "b", "c", NULL);
	CheckRender("invalid: {{}}", "x{{}}", "a", "b", "c", NULL);
	CheckRender("invalid: {{{sid}}}", "{{{sid}}}", "a", "b", "c", NULL);

	big = malloc(n + 1);
	if (big == NULL)
	{
		hi_check(0, "template render: large value", "%s", "malloc failed");
		return;
	}
	memset(big, 'v', n);
	big[n] = '\0';
	got = hi_template_render("<{{title}}>", NULL, big, NULL);
	hi_check(got != NULL && strlen(got) == n + 2 && got[0] == '<' &&
			 got[n + 1] == '>' && memcmp(got + 1, big, n) == 0,
			 "template render: large value", "%s", "wrong output");
	free(got);
	free(big);
}

/* Header value trimming and validity. */
static void
TestTrim(void)
{
	size_t		len;
	const char *t;
	const char *s = " \t a b\t \t";

	t = hi_trim_header_value(s, strlen(s), &len);
	hi_check_mem("trim: spaces and tabs both ends", t, len, "a b", 3);
	t = hi_trim_header_value("   ", 3, &len);
	hi_check(t != NULL && len == 0, "trim: all blanks is empty", "len %zu", len);
	t = hi_trim_header_value("", 0, &len);
	hi_check(t != NULL && len == 0, "trim: empty", "len %zu", len);
	t = hi_trim_header_value("x\r\n", 3, &len);
	hi_check_mem("trim: CR and LF are not trimmed", t, len, "x\r\n", 3);
	t = hi_trim_header_value("\vx\f", 3, &len);
	hi_check_mem("trim: other whitespace is not trimmed", t, len, "\vx\f", 3);
	t = hi_trim_header_value("  ab  cd", 5, &len);
	hi_check_mem("trim: respects len", t, len, "ab", 2);
	len = 99;
	t = hi_trim_header_value(NULL, 5, &len);
	hi_check(t == NULL && len == 0, "trim: NULL", "len %zu", len);

	hi_check(hi_header_value_valid("x"), "header valid: plain", "%s", "rejected");
	hi_check(hi_header_value_valid(" a\tb "), "header valid: inner tab", "%s", "rejected");
	hi_check(hi_header_value_valid("\xc3\xbc"), "header valid: non-ASCII", "%s", "rejected");
	hi_check(!hi_header_value_valid(NULL), "header invalid: NULL", "%s", "accepted");
	hi_check(!hi_header_value_valid(""), "header invalid: empty", "%s", "accepted");
	hi_check(!hi_header_value_valid(" \t "), "header invalid: blanks only", "%s", "accepted");
	hi_check(!hi_header_value_valid("a\nb"), "header invalid: LF", "%s", "accepted");
	hi_check(!hi_header_value_valid("a\r"), "header invalid: trailing CR", "%s", "accepted");
	hi_check(!hi_header_value_valid("a\x7f"), "header invalid: DEL", "%s", "accepted");
	hi_check(!hi_header_value_valid("\x01"), "header invalid: control", "%s", "accepted");
}

/* Build the golden vector's canonical string (from untrimmed values). */
static unsigned char *
GoldenCanonical(size_t *len)
{
	return hi_canonical_string(" 152\t", "application/json ", "\tsoc.example.com",
							   "  " GOLDEN_DATE "  ",
							   (const unsigned char *) GOLDEN_BODY,
							   strlen(GOLDEN_BODY), len);
}

/* Canonical string: exact bytes, trimming, refusals. */
static void
TestCanonical(void)
{
	unsigned char *c;
	size_t		len;

	hi_check(strlen(GOLDEN_BODY) == 152, "golden body is 152 bytes", "got %zu",
			 strlen(GOLDEN_BODY));

	c = hi_canonical_string("152", "application/json", "soc.example.com",
							GOLDEN_DATE, (const unsigned char *) GOLDEN_BODY,
							152, &len);
	hi_check_mem("canonical: golden bytes", c, len, GOLDEN_CANONICAL,
				 strlen(GOLDEN_CANONICAL));
	free(c);

	c = GoldenCanonical(&len);
	hi_check_mem("canonical: values trimmed here", c, len, GOLDEN_CANONICAL,
				 strlen(GOLDEN_CANONICAL));
	free(c);

	c = hi_canonical_string("0", "a/b", "h:8443", "d", NULL, 0, &len);
	hi_check_mem("canonical: empty body (NULL, 0)", c, len,
				 LIT("content-length:0\ncontent-type:a/b\nhost:h:8443\nx-halo-date:d\n"));
	free(c);

	c = hi_canonical_string("3", "t", "h", "d", (const unsigned char *) "a\0b", 3, &len);
	hi_check_mem("canonical: body with NUL byte for byte", c, len,
				 LIT("content-length:3\ncontent-type:t\nhost:h\nx-halo-date:d\na\0b"));
	free(c);

	len = 7;
	c = hi_canonical_string("1", "t", "h", "d", NULL, 1, &len);
	hi_check(c == NULL && len == 0, "canonical: NULL body with length refused",
			 "%s", "accepted");
	free(c);
	c = hi_canonical_string("1", NULL, "h", "d", (const unsigned char *) "x", 1, &len);
	hi_check(c == NULL, "canonical: NULL header refused", "%s", "accepted");
	free(c);
	c = hi_canonical_string("1", "t", "  ", "d", (const unsigned char *) "x", 1, &len);
	hi_check(c == NULL, "canonical: blank header refused", "%s", "accepted");
	free(c);
	c = hi_canonical_string("1", "t", "h", "d\nhost:evil", (const unsigned char *) "x", 1, &len);
	hi_check(c == NULL, "canonical: LF in header refused", "%s", "accepted");
	free(c);
	c = hi_canonical_string("1", "t\r", "h", "d", (const unsigned char *) "x", 1, &len);
	hi_check(c == NULL, "canonical: CR in header refused", "%s", "accepted");
	free(c);
}

/* Verify a signature string against the golden canonical string. */
static HiSigResult
VerifyGolden(const char *sig)
{
	return hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
							   (const unsigned char *) GOLDEN_CANONICAL,
							   strlen(GOLDEN_CANONICAL), sig, strlen(sig));
}

/* The golden vector, and single-bit flips of message and signature. */
static void
TestSignatureGolden(void)
{
	char		sig[HI_SIG_B64_LEN + 1];
	unsigned char *msg;
	size_t		len;
	size_t		i;
	int			bit;
	int			bad = 0;
	int			rc;
	unsigned char raw[HI_SIG_B64_LEN];
	char		flipped[HI_SIG_B64_LEN + 1];

	msg = GoldenCanonical(&len);
	if (msg == NULL)
	{
		hi_check(0, "golden: canonical string", "%s", "NULL");
		return;
	}
	rc = hi_signature_compute(GOLDEN_SECRET, strlen(GOLDEN_SECRET), msg, len, sig);
	hi_check(rc == 0, "golden: compute succeeds", "rc %d", rc);
	hi_check_str("golden: compute matches x-signature", sig, GOLDEN_SIG);
	hi_check(VerifyGolden(GOLDEN_SIG) == HI_SIG_OK, "golden: verify OK",
			 "got %d", (int) VerifyGolden(GOLDEN_SIG));

	/* every single-bit flip of the message must be a mismatch */
	for (i = 0; i < len; i++)
	{
		for (bit = 0; bit < 8; bit++)
		{
			msg[i] ^= (unsigned char) (1u << bit);
			if (hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET), msg, len,
									GOLDEN_SIG, HI_SIG_B64_LEN) != HI_SIG_MISMATCH)
				bad++;
			msg[i] ^= (unsigned char) (1u << bit);
		}
	}
	hi_check(bad == 0, "golden: every 1-bit flip of the message is MISMATCH",
			 "%d flips not rejected", bad);

	hi_check(hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET), msg, len - 1,
								 GOLDEN_SIG, HI_SIG_B64_LEN) == HI_SIG_MISMATCH,
			 "golden: truncated message is MISMATCH", "%s", "not rejected");
	hi_check(hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET) - 1, msg, len,
								 GOLDEN_SIG, HI_SIG_B64_LEN) == HI_SIG_MISMATCH,
			 "golden: shorter secret is MISMATCH", "%s", "not rejected");
	hi_check(hi_signature_verify("hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj3", 32, msg, len,
								 GOLDEN_SIG, HI_SIG_B64_LEN) == HI_SIG_MISMATCH,
			 "golden: other secret is MISMATCH", "%s", "not rejected");

	/* every single-bit flip of the decoded signature must be a mismatch */
	bad = 0;
	if (EVP_DecodeBlock(raw, (const unsigned char *) GOLDEN_SIG, HI_SIG_B64_LEN) != 33)
		bad = 1000;
	for (i = 0; i < HI_SIG_RAW_LEN && bad < 1000; i++)
	{
		for (bit = 0; bit < 8; bit++)
		{
			raw[i] ^= (unsigned char) (1u << bit);
			EVP_EncodeBlock((unsigned char *) flipped, raw, HI_SIG_RAW_LEN);
			if (VerifyGolden(flipped) != HI_SIG_MISMATCH)
				bad++;
			raw[i] ^= (unsigned char) (1u << bit);
		}
	}
	hi_check(bad == 0, "golden: every 1-bit flip of the signature is MISMATCH",
			 "%d flips not rejected", bad);
	hi_check(VerifyGolden("VMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=") ==
			 HI_SIG_MISMATCH, "golden: changed first character is MISMATCH",
			 "%s", "not rejected");
	hi_check(VerifyGolden("umhdx/bdovfqcevuc11l1bqgtbpzx5lbr+hf7ludupc=") ==
			 HI_SIG_MISMATCH, "golden: lower-cased signature is MISMATCH",
			 "%s", "not rejected");
	free(msg);
}

/* Signatures that are not strict base64 of exactly 32 bytes. */
static void
TestSignatureMalformed(void)
{
	static const struct
	{
		const char *name;
		const char *sig;
	}			cases[] = {
		{"empty", ""},
		{"truncated to 43 (padding dropped)", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc"},
		{"truncated to 40", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUd"},
		{"trailing newline", GOLDEN_SIG "\n"},
		{"trailing space", GOLDEN_SIG " "},
		{"leading space", " " GOLDEN_SIG},
		{"space instead of padding", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc "},
		{"inner space", "UMHDx/bdoVfqCevuc11L1 qGTBpzX5lbR+hF7lUdUpc="},
		{"non-base64 character", "UMHDx/bdoVfqCevuc11L1BqGTBp*X5lbR+hF7lUdUpc="},
		{"URL-safe alphabet", "UMHDx_bdoVfqCevuc11L1BqGTBpzX5lbR-hF7lUdUpc="},
		{"non-canonical padding bits", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpd="},
		{"double padding (31 bytes)", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUp=="},
		{"padding in the middle", "UMHDx/bdoVfqCevuc11L1BqG=BpzX5lbR+hF7lUdUpc="},
		{"33 bytes (44 chars, no padding)", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpcA"},
		{"33 bytes padded (48 chars)", "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpcAAA=="},
		{"hex digest", "50c1c3c7f6dda157ea09ebee735d0bd41a864c1a735f995b47e845ee551d5297"},
		{"non-ASCII", "\xc3\x9cMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUp="},
	};
	size_t		i;
	char		label[200];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		HiSigResult r = VerifyGolden(cases[i].sig);

		snprintf(label, sizeof(label), "malformed signature: %s", cases[i].name);
		hi_check(r == HI_SIG_MALFORMED, label, "got %d", (int) r);
	}
	hi_check(hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
								 (const unsigned char *) GOLDEN_CANONICAL,
								 strlen(GOLDEN_CANONICAL), GOLDEN_SIG, 43) ==
			 HI_SIG_MALFORMED, "malformed signature: sig_len shorter than string",
			 "%s", "accepted");
	hi_check(hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
								 (const unsigned char *) GOLDEN_CANONICAL,
								 strlen(GOLDEN_CANONICAL), NULL, 44) ==
			 HI_SIG_MALFORMED, "malformed signature: NULL", "%s", "accepted");
}

/* RFC 4231 vector, empty key and message, keys with NUL bytes. */
static void
TestSignatureMisc(void)
{
	char		sig[HI_SIG_B64_LEN + 1];
	char		sig2[HI_SIG_B64_LEN + 1];
	int			rc;

	rc = hi_signature_compute("Jefe", 4, (const unsigned char *) "what do ya want for nothing?",
							  28, sig);
	hi_check(rc == 0, "compute: RFC 4231 case 2 succeeds", "rc %d", rc);
	hi_check_str("compute: RFC 4231 case 2", sig,
				 "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");

	rc = hi_signature_compute("", 0, NULL, 0, sig);
	hi_check(rc == 0, "compute: empty secret and message succeed", "rc %d", rc);
	hi_check_str("compute: empty secret and message", sig,
				 "thNnmggU2ex3L5XXeMNfxf8Wl8STcVZTxscSFEKSxa0=");
	hi_check(hi_signature_verify(NULL, 0, NULL, 0, sig, strlen(sig)) == HI_SIG_OK,
			 "verify: empty secret and message", "%s", "rejected");

	rc = hi_signature_compute("a\0b", 3, (const unsigned char *) "m", 1, sig);
	hi_signature_compute("a", 1, (const unsigned char *) "m", 1, sig2);
	hi_check(rc == 0 && strcmp(sig, sig2) != 0,
			 "compute: secret bytes after NUL count", "%s", "same signature");
	hi_check(hi_signature_verify("a\0b", 3, (const unsigned char *) "m", 1, sig,
								 strlen(sig)) == HI_SIG_OK,
			 "verify: secret with NUL byte", "%s", "rejected");

	rc = hi_signature_compute(NULL, 1, (const unsigned char *) "m", 1, sig);
	hi_check(rc == -1 && sig[0] == '\0', "compute: NULL secret with length fails",
			 "rc %d", rc);
	rc = hi_signature_compute("k", 1, NULL, 1, sig);
	hi_check(rc == -1 && sig[0] == '\0', "compute: NULL message with length fails",
			 "rc %d", rc);
	hi_check(hi_signature_verify("k", 1, NULL, 5, GOLDEN_SIG, HI_SIG_B64_LEN) ==
			 HI_SIG_MISMATCH, "verify: HMAC failure fails closed", "%s", "accepted");
}

/* Content-length: digits only, trimmed, no overflow, equal to body length. */
static void
TestContentLength(void)
{
	static const struct
	{
		const char *value;
		size_t		body_len;
		int			want;
	}			cases[] = {
		{"152", 152, 1},
		{" 152\t", 152, 1},
		{"0152", 152, 1},		/* leading zeros: same number, accepted */
		{"000", 0, 1},
		{"0", 0, 1},
		{"151", 152, 0},
		{"153", 152, 0},
		{"", 0, 0},
		{"   ", 0, 0},
		{"+152", 152, 0},
		{"-152", 152, 0},
		{"-0", 0, 0},
		{"15 2", 152, 0},
		{"152,152", 152, 0},
		{"152, 152", 152, 0},
		{"152\n", 152, 0},
		{"152\r", 152, 0},
		{"1.52e2", 152, 0},
		{"0x98", 152, 0},
		{"\xef\xbc\x91\xef\xbc\x95\xef\xbc\x92", 152, 0},	/* fullwidth digits */
		{"99999999999999999999999999", 0, 0},
		{"18446744073709551616", 0, 0},	/* 2^64: overflows, not 0 */
	};
	size_t		i;
	char		label[200];
	char		esc[120];
	char		zeros[1100];
	char		maxbuf[32];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		int			got = hi_content_length_matches(cases[i].value, cases[i].body_len);

		snprintf(label, sizeof(label), "content-length: %s vs %zu",
				 hi_escape(cases[i].value, esc, sizeof(esc)), cases[i].body_len);
		hi_check(got == cases[i].want, label, "got %d, want %d", got, cases[i].want);
	}
	hi_check(!hi_content_length_matches(NULL, 0), "content-length: NULL",
			 "%s", "accepted");

	memset(zeros, '0', 1000);
	strcpy(zeros + 1000, "152");
	hi_check(hi_content_length_matches(zeros, 152),
			 "content-length: 1000 leading zeros", "%s", "rejected");

	snprintf(maxbuf, sizeof(maxbuf), "%zu", (size_t) SIZE_MAX);
	hi_check(hi_content_length_matches(maxbuf, SIZE_MAX),
			 "content-length: SIZE_MAX exactly", "%s", "rejected");
	maxbuf[strlen(maxbuf) - 1]++;	/* SIZE_MAX ends in 5: now SIZE_MAX + 1 */
	hi_check(!hi_content_length_matches(maxbuf, SIZE_MAX) &&
			 !hi_content_length_matches(maxbuf, 0),
			 "content-length: SIZE_MAX + 1 overflows", "%s", "accepted");
}

/* Backoff: values, jitter range, caps, monotonicity, overflow, Retry-After. */
static void
TestBackoff(void)
{
	static const double rnds[] = {0.0, 0.25, 0.5, 0.999999, 0.9999999999999999};
	size_t		r;
	int			attempt;
	int			bad;
	long		prev;
	long		d;

	hi_check_long("backoff: attempt 1, rnd 0", hi_backoff_delay_ms(1, 1000, 60000, 0.0, -1), 500);
	hi_check_long("backoff: attempt 1, rnd 0.5", hi_backoff_delay_ms(1, 1000, 60000, 0.5, -1), 750);
	hi_check_long("backoff: attempt 1, rnd ~1", hi_backoff_delay_ms(1, 1000, 60000, 0.999999, -1), 999);
	hi_check_long("backoff: attempt 2, rnd 0", hi_backoff_delay_ms(2, 1000, 60000, 0.0, -1), 1000);
	hi_check_long("backoff: attempt 3, rnd 0", hi_backoff_delay_ms(3, 1000, 60000, 0.0, -1), 2000);
	hi_check_long("backoff: attempt 6, rnd 0 (32 s)", hi_backoff_delay_ms(6, 1000, 60000, 0.0, -1), 16000);
	hi_check_long("backoff: attempt 7 capped", hi_backoff_delay_ms(7, 1000, 60000, 0.0, -1), 30000);
	hi_check_long("backoff: attempt 1000 capped", hi_backoff_delay_ms(1000, 1000, 60000, 0.5, -1), 45000);
	hi_check_long("backoff: attempt INT_MAX capped",
				  hi_backoff_delay_ms(INT_MAX, 1000, 60000, 0.0, -1), 30000);
	hi_check_long("backoff: odd raw 5, rnd ~1: 2 + floor(rnd * 3)",
				  hi_backoff_delay_ms(1, 5, 100, 0.9999999999999999, -1), 4);
	hi_check_long("backoff: base above cap", hi_backoff_delay_ms(1, 90000, 60000, 0.0, -1), 30000);
	hi_check_long("backoff: attempt 0 counts as 1", hi_backoff_delay_ms(0, 1000, 60000, 0.0, -1), 500);
	hi_check_long("backoff: negative attempt counts as 1",
				  hi_backoff_delay_ms(-5, 1000, 60000, 0.0, -1), 500);
	hi_check_long("backoff: base 0", hi_backoff_delay_ms(50, 0, 60000, 0.9, -1), 0);
	hi_check_long("backoff: negative base", hi_backoff_delay_ms(3, -1000, 60000, 0.9, -1), 0);
	hi_check_long("backoff: cap 0", hi_backoff_delay_ms(3, 1000, 0, 0.9, -1), 0);
	hi_check_long("backoff: negative cap", hi_backoff_delay_ms(3, 1000, -1, 0.9, -1), 0);
	hi_check_long("backoff: NaN rnd counts as 0", hi_backoff_delay_ms(1, 1000, 60000, NAN, -1), 500);
	hi_check_long("backoff: rnd 1.0 counts as 0", hi_backoff_delay_ms(1, 1000, 60000, 1.0, -1), 500);
	hi_check_long("backoff: negative rnd counts as 0", hi_backoff_delay_ms(1, 1000, 60000, -0.5, -1), 500);
	hi_check_long("backoff: infinite rnd counts as 0",
				  hi_backoff_delay_ms(1, 1000, 60000, INFINITY, -1), 500);
	hi_check_long("backoff: LONG_MAX base and cap, attempt 1000, rnd 0",
				  hi_backoff_delay_ms(1000, LONG_MAX, LONG_MAX, 0.0, -1), LONG_MAX / 2);
	d = hi_backoff_delay_ms(1000, 1, LONG_MAX, 0.9999999999999999, -1);
	hi_check(d >= LONG_MAX / 2 && d <= LONG_MAX,
			 "backoff: base 1, cap LONG_MAX, attempt 1000 does not overflow", "got %ld", d);
	hi_check_long("backoff: 2 * 2^61 = 2^62 is below the LONG_MAX cap",
				  hi_backoff_delay_ms(62, 2, LONG_MAX, 0.0, -1), 2305843009213693952L);
	hi_check_long("backoff: 2 * 2^62 would overflow: LONG_MAX cap",
				  hi_backoff_delay_ms(63, 2, LONG_MAX, 0.0, -1), LONG_MAX / 2);

	/* Retry-After */
	hi_check_long("retry-after: above jitter wins",
				  hi_backoff_delay_ms(1, 1000, 60000, 0.0, 120000), 120000);
	hi_check_long("retry-after: below jitter loses",
				  hi_backoff_delay_ms(3, 1000, 60000, 0.0, 10), 2000);
	hi_check_long("retry-after: 0 means jitter",
				  hi_backoff_delay_ms(1, 1000, 60000, 0.5, 0), 750);
	hi_check_long("retry-after: capped at 1 hour",
				  hi_backoff_delay_ms(1, 1000, 60000, 0.0, 5000000), HI_RETRY_AFTER_MAX_MS);
	hi_check_long("retry-after: LONG_MAX capped at 1 hour",
				  hi_backoff_delay_ms(1, 1000, 60000, 0.0, LONG_MAX), HI_RETRY_AFTER_MAX_MS);
	hi_check_long("retry-after: capped at 1 hour even when cap_ms is larger",
				  hi_backoff_delay_ms(100, 1000, 7200000, 0.0, 5000000), 3600000);
	hi_check_long("retry-after: jitter above 1 hour with big cap",
				  hi_backoff_delay_ms(100, 1000, 7200000, 0.5, 60000), 5400000);

	/* invariants over many attempts */
	bad = 0;
	for (r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++)
	{
		prev = 0;
		for (attempt = 1; attempt <= 1000; attempt++)
		{
			long		raw = attempt > 6 ? 60000 : 1000L << (attempt - 1);

			d = hi_backoff_delay_ms(attempt, 1000, 60000, rnds[r], -1);
			if (d < prev || d < raw / 2 || d > raw || d > 60000)
			{
				if (bad++ < 5)
					printf("# attempt %d rnd %.17g: delay %ld, prev %ld, raw %ld\n",
						   attempt, rnds[r], d, prev, raw);
			}
			prev = d;
		}
	}
	hi_check(bad == 0, "backoff: non-decreasing and within [raw/2, raw] for 1000 attempts",
			 "%d violations", bad);

	bad = 0;
	for (attempt = 1; attempt <= 1000; attempt += 7)
	{
		for (r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++)
		{
			long		ra;

			for (ra = -1; ra <= 8000000; ra += 999983)
			{
				long		cra = ra > HI_RETRY_AFTER_MAX_MS ? HI_RETRY_AFTER_MAX_MS : ra;
				long		ceiling = cra > 60000 ? cra : 60000;

				d = hi_backoff_delay_ms(attempt, 1000, 60000, rnds[r], ra);
				if (d < 0 || d > ceiling || (ra >= 0 && d < cra))
					bad++;
			}
		}
	}
	hi_check(bad == 0, "backoff: with Retry-After, max(ra, jitter) <= max(cap, ra)",
			 "%d violations", bad);
}

/* Retry-After in delta-seconds form. */
static void
TestRetryAfter(void)
{
	static const struct
	{
		const char *value;
		long		want;
	}			cases[] = {
		{"120", 120000},
		{" 7\t", 7000},
		{"0", 0},
		{"007", 7000},
		{"", -1},
		{"  ", -1},
		{"-1", -1},
		{"+5", -1},
		{"1.5", -1},
		{"5s", -1},
		{"5 5", -1},
		{"5\n", -1},
		{"Wed, 21 Oct 2015 07:28:00 GMT", -1},
		{"9223372036854775", 9223372036854775000L},
		{"9223372036854776", LONG_MAX},
		{"99999999999999999999999999999", LONG_MAX},
	};
	size_t		i;
	char		label[200];
	char		esc[120];

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		snprintf(label, sizeof(label), "retry-after parse: %s",
				 hi_escape(cases[i].value, esc, sizeof(esc)));
		hi_check_long(label, hi_parse_retry_after_seconds(cases[i].value), cases[i].want);
	}
	hi_check_long("retry-after parse: NULL", hi_parse_retry_after_seconds(NULL), -1);
}

/* Check hi_html_to_text's output for one input (into a buffer of exactly len bytes). */
static void
CheckHtml(const char *name, const char *html, size_t len, int flags,
		  const char *want, size_t want_len)
{
	char	   *out = malloc(len > 0 ? len : 1);
	size_t		n;
	char		label[200];

	if (out == NULL)
		abort();
	n = hi_html_to_text(html, len, out, flags);
	snprintf(label, sizeof(label), "html: %s", name);
	hi_check_mem(label, out, n, want, want_len);
	free(out);
}

#define HTML(name, in, want) CheckHtml(name, LIT(in), 0, LIT(want))

/* Note HTML to text: line breaks, tags, references, trimming, edge cases. */
static void
TestHtml(void)
{
	/* line breaks and tags */
	HTML("plain text", "hello", "hello");
	HTML("empty", "", "");
	HTML("only white space", " \t\n \r\n ", "");
	HTML("crlf and lone cr", "a\r\nb\rc\n", "a\nb\nc");
	HTML("br forms", "a<br>b<BR/>c< br / >d<Br\t>e", "a\nb\nc\nd\ne");
	HTML("closing block tags", "a</p>b</DIV>c</li>d</tr>e</h1>f</H6>g< / p >h", "a\nb\nc\nd\ne\nf\ng\nh");
	HTML("not break tags", "a</h7>b</pre>c</br>d<p>e<brx>f</ul>g", "abcdefg");
	HTML("br with attributes is dropped like any tag", "a<br class=\"x\">b", "ab");
	HTML("tag dropped", "<b>bold</b> and <i>it</i>", "bold and it");
	HTML("attributes with quotes", "<a href=\"x?a=1&amp;b=2\">link</a>", "link");
	HTML("lone <", "a < b", "a < b");
	HTML("lone < then a tag closes it", "a < b <i>c", "a c");
	HTML("lone >", "a > b", "a > b");
	HTML("< with no > after: rest kept", "x<b>y<z and <w", "xy<z and <w");
	HTML("break tag inside a tag is swallowed", "<a title=\"<br>\">x</a>", "x");
	HTML("break tag after an unclosed <", "a <b<br>c", "a <b\nc");
	HTML("nested <", "<a <b> c>d", "c>d");
	HTML("cr inside a tag", "<p\r\nclass=x>t", "t");
	HTML("break tag with newline inside", "a<br\r\n/>b", "a\nb");
	HTML("tag joins an entity (as before)", "&l<b>t;", "<");
	HTML("break tag splits an entity", "&l<br>t;", "&l\nt;");

	/* references */
	HTML("named", "&lt;&gt;&quot;&#39;&apos;&nbsp;&amp;", "<>\"'' &");
	HTML("named are case-sensitive", "&LT;&Amp;", "&LT;&Amp;");
	HTML("unknown named", "&copy; &hellip;", "&copy; &hellip;");
	HTML("amp decodes once", "&amp;lt; &amp;amp; &amp;#65;", "&lt; &amp; &#65;");
	HTML("numeric decimal", "&#65;&#0066;&#x43;&#X44;&#x00000045;", "ABCDE");
	HTML("numeric decodes once", "&#38;#65; &#38;amp; &#x26;lt;", "&#65; &amp; &lt;");
	HTML("numeric utf-8", "&#233;&#x20AC;&#128512;&#x10FFFF;",
		 "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
	HTML("numeric invalid dropped", "a&#0;b&#xD800;c&#57343;d&#x110000;e&#99999999;f&#xFFFFFFFF;g",
		 "abcdefg");
	HTML("numeric 9 digits stays", "&#000000065;&#x000000041;", "&#000000065;&#x000000041;");
	HTML("numeric without ; stays", "&#65 &#x41 &#; &#x; &#xg;", "&#65 &#x41 &#; &#x; &#xg;");
	HTML("decimal with hex letters stays", "&#1a;", "&#1a;");
	HTML("&& before a reference", "&&lt;", "&<");
	HTML("nbsp is a plain space and trimmed", "&nbsp;a&nbsp;", "a");
	HTML("decoded cr is kept, not trimmed", "&#13;a", "\ra");
	HTML("decoded newline trimmed", "&#10;a&#10;", "a");
	HTML("decoded < is no tag", "&lt;b&gt;x&lt;/b&gt;", "<b>x</b>");
	HTML("non-ASCII copied", "<p>caf\xc3\xa9</p>", "caf\xc3\xa9");
	HTML("NUL bytes copied", "a\0b", "a\0b");
	CheckHtml("ascii refs: non-ASCII kept as written", LIT("&#233;&#65;&#x20ac;&#0;"), HI_HTML_ASCII_REFS,
			  LIT("&#233;A&#x20ac;"));
	HTML("trim", " \t\n<p> a b </p>\n ", "a b");
	HTML("inside a tag only", "<div><br/></div>", "");
	CheckHtml("NULL input", NULL, 0, 0, LIT(""));
}

/*
 * Linear time: inputs that made the former regular-expression loop slow
 * (thousands of distinct numeric references; thousands of unclosed "<")
 * decode quickly and completely. The runtime is not asserted, the output is.
 */
static void
TestHtmlLinear(void)
{
	size_t		cap = 4 * 1024 * 1024;
	char	   *in = malloc(cap);
	char	   *out = malloc(cap);
	char	   *want = malloc(cap);
	size_t		n = 0,
				w = 0,
				got;
	int			i;

	if (in == NULL || out == NULL || want == NULL)
		abort();
	/* 100,000 distinct references (the old loop stopped after 1,000) */
	for (i = 0; i < 100000; i++)
	{
		n += (size_t) sprintf(in + n, "x&#%d;", 0x4E00 + i % 20000);
		want[w++] = 'x';
		w += hi_html_utf8_encode((unsigned long) (0x4E00 + i % 20000), want + w);
	}
	got = hi_html_to_text(in, n, out, 0);
	hi_check_mem("html linear: 100,000 numeric references", out, got, want, w);

	/* 1 MB of "<" with no ">": each one stays */
	memset(in, '<', 1000000);
	got = hi_html_to_text(in, 1000000, out, 0);
	hi_check(got == 1000000 && memcmp(in, out, got) == 0, "html linear: 1 MB of unclosed <",
			 "got %zu bytes", got);

	/* 1 MB of "< " followed by spaces: no break tag, no quadratic rescans */
	for (i = 0; i < 500000; i++)
	{
		in[2 * i] = '<';
		in[2 * i + 1] = ' ';
	}
	in[999999] = '>';
	got = hi_html_to_text(in, 1000000, out, 0);
	hi_check_long("html linear: one tag of 1 MB", (long) got, 0);
	free(in);
	free(out);
	free(want);
}

/* One scrub case: input JSON text, the text after scrubbing and the count. */
static void
CheckScrub(const char *name, const char *in, const char *want, size_t want_n)
{
	char		buf[256];
	size_t		len = strlen(in);
	size_t		n;

	memcpy(buf, in, len + 1);
	n = hi_json_scrub_escapes(buf, len);
	hi_check(n == want_n && strcmp(buf, want) == 0, name, "got %zu \"%s\", want %zu \"%s\"",
			 n, buf, want_n, want);
}

/* hi_json_scrub_escapes: NUL and lone surrogate escapes inside strings, nothing else. */
static void
TestJsonScrub(void)
{
	char		cut[] = "\"\\u0000\"";

	CheckScrub("scrub: NUL escape", "{\"note\":\"a\\u0000b\"}", "{\"note\":\"a\\ufffdb\"}", 1);
	CheckScrub("scrub: two NULs", "[\"\\u0000\\u0000\"]", "[\"\\ufffd\\ufffd\"]", 2);
	CheckScrub("scrub: escaped backslash then u0000 text", "[\"\\\\u0000\"]", "[\"\\\\u0000\"]", 0);
	CheckScrub("scrub: escaped quote keeps the string open", "[\"\\\"\\u0000\"]", "[\"\\\"\\ufffd\"]", 1);
	CheckScrub("scrub: surrogate pair kept", "[\"\\ud83d\\ude00\"]", "[\"\\ud83d\\ude00\"]", 0);
	CheckScrub("scrub: lone high surrogate", "[\"\\uD800x\"]", "[\"\\ufffdx\"]", 1);
	CheckScrub("scrub: lone low surrogate", "[\"\\udc00\"]", "[\"\\ufffd\"]", 1);
	CheckScrub("scrub: high then NUL", "[\"\\ud800\\u0000\"]", "[\"\\ufffd\\ufffd\"]", 2);
	CheckScrub("scrub: high then high then low", "[\"\\ud800\\ud800\\udc00\"]", "[\"\\ufffd\\ud800\\udc00\"]", 1);
	CheckScrub("scrub: other escapes untouched", "[\"\\n\\t\\u00e9\\/\"]", "[\"\\n\\t\\u00e9\\/\"]", 0);
	CheckScrub("scrub: keys too", "{\"\\u0000\":1}", "{\"\\ufffd\":1}", 1);
	CheckScrub("scrub: outside strings untouched", "[1,\\u0000]", "[1,\\u0000]", 0);
	CheckScrub("scrub: short escape at the end", "[\"\\u00", "[\"\\u00", 0);
	CheckScrub("scrub: backslash at the end", "[\"\\", "[\"\\", 0);
	CheckScrub("scrub: not hex", "[\"\\u00g0\"]", "[\"\\u00g0\"]", 0);
	/* the length bounds what is read: an escape cut by len is left alone */
	hi_check(hi_json_scrub_escapes(cut, 5) == 0 && strcmp(cut, "\"\\u0000\"") == 0,
			 "scrub: reads no further than len", "got \"%s\"", cut);
}

/* hi_token_is_usable and the token lifetime arithmetic. */
static void
TestToken(void)
{
	static char big[HI_TOKEN_MAX_LEN + 2];

	hi_check(hi_token_is_usable(LIT("eyJhbGci.OiJ-IUz_I1~Ni+/=")), "token: JWT-like", "refused");
	hi_check(!hi_token_is_usable(LIT("")), "token: empty", "accepted");
	hi_check(!hi_token_is_usable(LIT("abc\r\nX-Evil: 1")), "token: CRLF", "accepted");
	hi_check(!hi_token_is_usable(LIT("a b")), "token: space", "accepted");
	hi_check(!hi_token_is_usable(LIT("caf\xc3\xa9")), "token: non-ASCII", "accepted");
	hi_check(!hi_token_is_usable(LIT("a\0b")), "token: NUL", "accepted");
	hi_check(!hi_token_is_usable(NULL, 3), "token: NULL", "accepted");
	memset(big, 'a', sizeof(big) - 1);
	hi_check(hi_token_is_usable(big, HI_TOKEN_MAX_LEN), "token: longest", "refused");
	hi_check(!hi_token_is_usable(big, HI_TOKEN_MAX_LEN + 1), "token: too long", "accepted");

	hi_check_long("lifetime: absent", (long) hi_token_lifetime_s(0, 5), 3600);
	hi_check_long("lifetime: 0", (long) hi_token_lifetime_s(1, 0), 1);
	hi_check_long("lifetime: negative", (long) hi_token_lifetime_s(1, INT64_MIN), 1);
	hi_check_long("lifetime: 1e13", (long) hi_token_lifetime_s(1, INT64_C(10000000000000)), 86400);
	hi_check_long("lifetime: max int64", (long) hi_token_lifetime_s(1, INT64_MAX), 86400);
	hi_check_long("lifetime: 3600", (long) hi_token_lifetime_s(1, 3600), 3600);

	hi_check_long("renew: 1 s", (long) hi_token_renew_after_us(1), 900000);
	hi_check_long("renew: 30 s", (long) hi_token_renew_after_us(30), 27000000);
	hi_check_long("renew: 59 s", (long) hi_token_renew_after_us(59), 53100000);
	hi_check_long("renew: 60 s", (long) hi_token_renew_after_us(60), 54000000);
	hi_check_long("renew: 61 s", (long) hi_token_renew_after_us(61), 54900000);
	hi_check_long("renew: 600 s", (long) hi_token_renew_after_us(600), 540000000);
	hi_check_long("renew: 3600 s", (long) hi_token_renew_after_us(3600), 3540000000L);
	hi_check_long("renew: 1e13 (clamped to a day)", (long) hi_token_renew_after_us(INT64_C(10000000000000)),
				  86340000000L);
	hi_check_long("renew: 0 (clamped to 1 s)", (long) hi_token_renew_after_us(0), 900000);
}

/* Run every test and print the summary. */
/* The golden headers, in the default order, for hi_canonical_build. */
static const char *const golden_names[4] = {"content-length", "content-type", "host", "x-halo-date"};
static const char *const golden_values[4] = {" 152", "application/json", "soc.example.com", GOLDEN_DATE};
#define GOLDEN_DIGEST "2HQpqm6YQc0k9ZTyMbPP2S81R0kZ9xLUAXg9qcqdHlc="

/* Check the canonical string of one layout over the golden headers and body. */
static void
CheckLayout(int layout, const char *want, size_t want_len)
{
	size_t		len;
	unsigned char *c = hi_canonical_build(layout, golden_names, golden_values, 4,
										  (const unsigned char *) GOLDEN_BODY,
										  strlen(GOLDEN_BODY), &len);
	char		name[64];

	snprintf(name, sizeof(name), "layout %s: exact bytes", hi_layout_name(layout));
	hi_check_mem(name, c, len, want, want_len);
	free(c);
}

/* Every candidate layout's exact bytes; names round-trip; bad input refused. */
static void
TestLayouts(void)
{
	int			i;
	size_t		len;
	unsigned char *c;
	const char *one_name[1] = {"host"};
	const char *one_value[1] = {"h"};

	for (i = 0; i < HI_LAYOUT_COUNT; i++)
		hi_check(hi_layout_from_name(hi_layout_name(i)) == i, "layout: name round-trips",
				 "%d", i);
	hi_check(hi_layout_from_name("Default") == -1 && hi_layout_from_name(NULL) == -1 &&
			 hi_layout_name(HI_LAYOUT_COUNT) == NULL && hi_layout_name(-1) == NULL,
			 "layout: unknown names and numbers refused", "%s", "accepted");

	CheckLayout(HI_LAYOUT_DEFAULT, LIT(GOLDEN_CANONICAL));
	CheckLayout(HI_LAYOUT_BLANK_LINE, LIT("content-length:152\ncontent-type:application/json\n"
										  "host:soc.example.com\nx-halo-date:" GOLDEN_DATE "\n\n" GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_SPACE, LIT("content-length: 152\ncontent-type: application/json\n"
									 "host: soc.example.com\nx-halo-date: " GOLDEN_DATE "\n" GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_CRLF, LIT("content-length:152\r\ncontent-type:application/json\r\n"
									"host:soc.example.com\r\nx-halo-date:" GOLDEN_DATE "\r\n" GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_VALUES, LIT("152\napplication/json\nsoc.example.com\n" GOLDEN_DATE "\n" GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_BODY, LIT(GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_CAVAGE, LIT("content-length: 152\ncontent-type: application/json\n"
									  "host: soc.example.com\nx-halo-date: " GOLDEN_DATE GOLDEN_BODY));
	CheckLayout(HI_LAYOUT_CAVAGE_DIGEST, LIT("content-length: 152\ncontent-type: application/json\n"
											 "host: soc.example.com\nx-halo-date: " GOLDEN_DATE
											 "\ndigest: SHA-256=" GOLDEN_DIGEST));
	CheckLayout(HI_LAYOUT_RFC9421, LIT("\"content-length\": 152\n\"content-type\": application/json\n"
									   "\"host\": soc.example.com\n\"x-halo-date\": " GOLDEN_DATE "\n" GOLDEN_BODY));

	/* the default layout with the default headers is hi_canonical_string's */
	c = hi_canonical_build(HI_LAYOUT_DEFAULT, golden_names, golden_values, 4,
						   (const unsigned char *) GOLDEN_BODY, strlen(GOLDEN_BODY), &len);
	hi_check(c != NULL && hi_signature_verify(GOLDEN_SECRET, strlen(GOLDEN_SECRET), c, len,
											  LIT(GOLDEN_SIG)) == HI_SIG_OK,
			 "layout default: the golden vector verifies", "%s", "not OK");
	free(c);

	c = hi_canonical_build(HI_LAYOUT_CAVAGE, one_name, one_value, 1, NULL, 0, &len);
	hi_check_mem("layout cavage: one header, empty body", c, len, LIT("host: h"));
	free(c);
	c = hi_canonical_build(HI_LAYOUT_BODY, NULL, NULL, 0, (const unsigned char *) "x", 1, &len);
	hi_check_mem("layout body: no headers", c, len, LIT("x"));
	free(c);
	c = hi_canonical_build(HI_LAYOUT_COUNT, golden_names, golden_values, 4, NULL, 0, &len);
	hi_check(c == NULL && len == 0, "layout: out of range refused", "%s", "accepted");
	one_value[0] = "a\nb";
	c = hi_canonical_build(HI_LAYOUT_SPACE, one_name, one_value, 1, NULL, 0, &len);
	hi_check(c == NULL, "layout: LF in a value refused", "%s", "accepted");
	c = hi_canonical_build(HI_LAYOUT_SPACE, golden_names, golden_values, HI_SIG_MAX_HEADERS + 1, NULL, 0, &len);
	hi_check(c == NULL, "layout: too many headers refused", "%s", "accepted");
}

/* Hex and base64 digests, prefixes, and splitting a received signature. */
static void
TestEncodings(void)
{
	char		out[HI_SIG_MAX_TEXT + 1];
	size_t		plen;

	hi_check(hi_signature_compute_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									  (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									  HI_ENC_HEX, "sha256=", out, sizeof(out)) == 0,
			 "encoding: hex compute succeeds", "%s", "failed");
	hi_check_str("encoding: hex with prefix (openssl dgst -hex)", out,
				 "sha256=50c1c3c7f6dda157ea09ebee735d4bd41a864c1a735f995b47e845ee551d5297");
	hi_check(hi_signature_verify_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									 (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									 HI_ENC_HEX, "sha256=", out, strlen(out)) == HI_SIG_OK,
			 "encoding: hex with prefix verifies", "%s", "not OK");
	hi_check(hi_signature_verify_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									 (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									 HI_ENC_HEX, "sha256=",
									 LIT("SHA256=50c1c3c7f6dda157ea09ebee735d4bd41a864c1a735f995b47e845ee551d5297")) == HI_SIG_MALFORMED,
			 "encoding: wrong prefix is MALFORMED", "%s", "accepted");
	hi_check(hi_signature_verify_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									 (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									 HI_ENC_HEX, NULL,
									 LIT("50C1C3C7F6DDA157EA09EBEE735D4BD41A864C1A735F995B47E845EE551D5297")) == HI_SIG_OK,
			 "encoding: upper-case hex verifies", "%s", "not OK");
	hi_check(hi_signature_verify_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									 (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									 HI_ENC_HEX, NULL,
									 LIT("50c1c3c7f6dda157ea09ebee735d4bd41a864c1a735f995b47e845ee551d529")) == HI_SIG_MALFORMED,
			 "encoding: 63 hex digits MALFORMED", "%s", "accepted");
	hi_check(hi_signature_verify_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									 (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									 HI_ENC_HEX, NULL,
									 LIT("50c1c3c7f6dda157ea09ebee735d4bd41a864c1a735f995b47e845ee551d5298")) == HI_SIG_MISMATCH,
			 "encoding: hex with one digit changed MISMATCH", "%s", "not mismatch");
	hi_check(hi_signature_compute_enc(GOLDEN_SECRET, strlen(GOLDEN_SECRET),
									  (const unsigned char *) GOLDEN_CANONICAL, strlen(GOLDEN_CANONICAL),
									  HI_ENC_BASE64, NULL, out, sizeof(out)) == 0,
			 "encoding: base64 compute succeeds", "%s", "failed");
	hi_check_str("encoding: base64 without prefix is the golden x-signature", out, GOLDEN_SIG);
	hi_check(hi_signature_compute_enc(GOLDEN_SECRET, 1, NULL, 0, HI_ENC_HEX, NULL, out, 64) == -1 &&
			 out[0] == '\0', "encoding: too small a buffer refused", "%s", out);

	hi_check(hi_signature_split(LIT(GOLDEN_SIG), &plen) == HI_ENC_BASE64 && plen == 0,
			 "split: golden is base64 without prefix", "plen %zu", plen);
	hi_check(hi_signature_split(LIT("sha256=" GOLDEN_SIG), &plen) == HI_ENC_BASE64 && plen == 7,
			 "split: base64 with sha256= prefix", "plen %zu", plen);
	hi_check(hi_signature_split(LIT("sha256=50c1c3c7f6dda157ea09ebee735d4bd41a864c1a735f995b47e845ee551d5297"),
								&plen) == HI_ENC_HEX && plen == 7,
			 "split: hex with sha256= prefix", "plen %zu", plen);
	hi_check(hi_signature_split(LIT("sha 256=" GOLDEN_SIG), &plen) == -1,
			 "split: prefix with a space refused", "%s", "accepted");
	hi_check(hi_signature_split(LIT("nothing"), &plen) == -1,
			 "split: no digest refused", "%s", "accepted");
}

/*
 * The request budget's ring (hi_budget.c): no window of the budget's length
 * ever holds more than the budget, whatever the request times; a wait it
 * gives is enough (a take after it succeeds) and at most a bucket longer
 * than an exact sliding window needs; idle and used; a changed window.
 */
static void
TestBudgetRing(void)
{
	HiBudgetRing r;
	int64_t		window = 300 * 1000000LL;	/* 300 s, as Halo's */
	int64_t		width = (window + HI_BUDGET_BUCKETS - 1) / HI_BUDGET_BUCKETS;
	int64_t		now = 1000 * 1000000LL;
	int64_t		sent[4000];
	int			n = 0,
				i,
				j,
				worst = 0,
				bad_wait = 0,
				late = 0;
	unsigned	seed = 12345;

	hi_budget_ring_reset(&r, window, now);
	hi_check(hi_budget_ring_idle(&r, now), "budget: a new ring is idle", "not idle");
	for (i = 0; i < 250 && hi_budget_ring_take(&r, 250, window, now, 1) == 0; i++)
		;
	hi_check(i == 250, "budget: 250 requests at once are allowed", "refused at %d", i);
	hi_check(hi_budget_ring_used(&r, now) == 250, "budget: used counts 250", "used %d",
			 hi_budget_ring_used(&r, now));
	{
		int64_t		wait = hi_budget_ring_take(&r, 250, window, now, 1);

		hi_check(wait >= window - (now % width) && wait <= window + width,
				 "budget: the 251st waits for the window to move on",
				 "wait %lld us", (long long) wait);
		hi_check(hi_budget_ring_take(&r, 250, window, now + wait, 1) == 0,
				 "budget: after the wait it is allowed", "still refused");
	}
	hi_check(!hi_budget_ring_idle(&r, now + window) && hi_budget_ring_idle(&r, now + 3 * window),
			 "budget: idle a window and a bucket after the last request", "idle wrong");

	/* random arrivals, each sent as soon as the ring allows: never more than B in any window */
	hi_budget_ring_reset(&r, 4 * 1000000LL, 0);
	window = 4 * 1000000LL;
	width = (window + HI_BUDGET_BUCKETS - 1) / HI_BUDGET_BUCKETS;
	now = 1;
	while (n < 4000)
	{
		int64_t		wait;

		seed = seed * 1103515245u + 12345u;
		now += (seed >> 16) % 40000;	/* 0 .. 40 ms apart */
		wait = hi_budget_ring_take(&r, 7, window, now, 1);
		if (wait > 0)
		{
			if (hi_budget_ring_take(&r, 7, window, now + wait, 0) != 0)
				bad_wait++;
			/* an exact sliding window would allow at sent[n-7] + window */
			if (n >= 7 && now + wait > sent[n - 7] + window + width)
				late++;
			now += wait;
			if (hi_budget_ring_take(&r, 7, window, now, 1) != 0)
				bad_wait++;
		}
		sent[n++] = now;
	}
	for (i = 0; i < n; i++)
	{
		int			in = 0;

		for (j = i; j < n && sent[j] < sent[i] + window; j++)
			in++;
		if (in > worst)
			worst = in;
	}
	hi_check(worst == 7, "budget: 4000 random requests, never more than 7 in any 4 s",
			 "worst window held %d", worst);
	hi_check(bad_wait == 0, "budget: every wait given is enough", "%d waits too short", bad_wait);
	hi_check(late == 0, "budget: no wait longer than a bucket past an exact sliding window",
			 "%d late", late);

	/* a changed window empties the ring; a budget of 0 refuses */
	(void) hi_budget_ring_take(&r, 7, 2 * window, now, 1);
	hi_check(hi_budget_ring_used(&r, now) == 1 && r.window_us == 2 * window,
			 "budget: a changed window starts afresh", "used %d", hi_budget_ring_used(&r, now));
	hi_check(hi_budget_ring_take(&r, 0, 2 * window, now, 1) > 0, "budget: 0 refuses", "allowed");
}

/* The one SQLSTATE-to-HTTP map of webhook answers (hi_webhook_status). */
static void
TestWebhookStatus(void)
{
	static const struct
	{
		const char *sqlstate;
		int			http;
	}			rows[] = {
		{NULL, 200}, {"", 200}, {"WH001", 404}, {"WH002", 413}, {"WH003", 400}, {"WH004", 400},
		{"WH005", 401}, {"WH006", 401}, {"WH007", 401}, {"WH008", 400}, {"WH009", 400},
		{"WH010", 400}, {"WH011", 400}, {"25006", 503}, {"57P01", 503}, {"42501", 500},
		{"XX000", 500}, {"WH0", 500}, {"wh001", 500}, {"WH0011", 500},
	};
	size_t		i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
	{
		int			got = hi_webhook_http_status(rows[i].sqlstate);

		hi_check(got == rows[i].http, "webhook status", "%s: %d, expected %d",
				 rows[i].sqlstate ? rows[i].sqlstate : "NULL", got, rows[i].http);
	}
}

/* The listener's per-source rate limit: a window per address, a bounded table. */
static void
TestRate(void)
{
	static HiRateTable t;
	unsigned char a[4] = {10, 0, 0, 1};
	unsigned char b[4] = {10, 0, 0, 2};
	unsigned char other[4];
	int			i,
				w;

	memset(&t, 0, sizeof(t));
	for (i = 0; i < 3; i++)
		hi_check(hi_rate_check(&t, a, 4, 100, 3, 60) == 0, "rate: within the limit", "request %d", i);
	w = hi_rate_check(&t, a, 4, 110, 3, 60);
	hi_check(w == 50, "rate: over the limit says when the window ends", "wait %d", w);
	hi_check(hi_rate_check(&t, b, 4, 110, 3, 60) == 0, "rate: another source has its own window", "%s", "refused");
	hi_check(hi_rate_check(&t, a, 4, 160, 3, 60) == 0, "rate: a new window", "%s", "refused");
	hi_check(hi_rate_check(&t, a, 4, 160, 0, 60) == 0, "rate: limit 0 is no limit", "%s", "refused");
	/* many sources: the table stays its size, the oldest window goes */
	for (i = 0; i < 5 * HI_RATE_SLOTS; i++)
	{
		other[0] = 192;
		other[1] = (unsigned char) (i >> 16);
		other[2] = (unsigned char) (i >> 8);
		other[3] = (unsigned char) i;
		(void) hi_rate_check(&t, other, 4, 200 + i, 1, 60);
	}
	hi_check(hi_rate_check(&t, other, 4, 200 + i - 1, 1, 60) > 0, "rate: the newest source is still tracked",
			 "%s", "allowed");
	hi_check(hi_rate_check(&t, a, 20, 160, 1, 60) >= 0, "rate: an over-long address is cut", "%s", "crash");
}

int
main(void)
{
	TestTemplateValidate();
	TestTemplateRender();
	TestTrim();
	TestCanonical();
	TestSignatureGolden();
	TestSignatureMalformed();
	TestSignatureMisc();
	TestContentLength();
	TestLayouts();
	TestEncodings();
	TestBackoff();
	TestRetryAfter();
	TestHtml();
	TestHtmlLinear();
	TestJsonScrub();
	TestToken();
	TestBudgetRing();
	TestWebhookStatus();
	TestRate();
	return hi_test_summary();
}
