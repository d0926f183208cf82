/*-------------------------------------------------------------------------
 * webhook.c
 *	  Halo's signed webhooks: halo_itsm.ingest_webhook() verifies a delivery
 *	  before anything is parsed or stored, parses it with PostgreSQL's JSON
 *	  parser (refusing duplicate keys) and hands it to the SQL function
 *	  halo_itsm._apply_webhook(); halo_itsm.webhook_signature() computes the
 *	  signature Halo must send. The canonical string, HMAC, base64 and the
 *	  constant-time comparison are src/core/hi_signature.c's.
 *
 * Checks, in this order (the first failure raises; nothing is changed):
 *
 *	 check                                         SQLSTATE
 *	 unknown webhook key                           WH001
 *	 body larger than halo_itsm.webhook_max_body   WH002
 *	 signed header (content-length, content-type,  WH003
 *	   host, x-halo-date) missing, present twice
 *	   (in any case), empty, with control
 *	   characters, or x-halo-date unreadable
 *	 content-length not the body's length          WH004
 *	 x-halo-date further than
 *	   halo_itsm.webhook_tolerance from the clock  WH005
 *	 x-signature missing, twice, empty, or not     WH006
 *	   base64 of 32 bytes
 *	 x-signature matches neither the current       WH007
 *	   secret nor the previous one in its grace
 *	 body not UTF-8 JSON, or not an object (or     WH008
 *	   JSON that jsonb cannot hold: a number beyond
 *	   numeric's range, nesting beyond the stack)
 *	 body has a key twice in one object            WH009
 *	 payload names no ticket (_apply_webhook)      WH010
 *	 payload has no delivery id (_apply_webhook)   WH011
 *
 * Class WH is an implementation-defined SQLSTATE class (the SQL standard
 * leaves classes starting with I-Z to implementations), so a receiver can map
 * exactly these codes to 4xx answers and answer 500 (Halo retries) to any
 * other error. The HTTP answer for each is src/core/hi_webhook_status.c's
 * (SQL: halo_itsm.webhook_http_status()), the one map.
 *
 * Header names are matched without regard to case; a header given as a JSON
 * array counts once per element. When halo_itsm.webhook_base_url is set, its
 * host[:port] (port only when not the scheme's default) is signed in place of
 * the received Host header, which is then not required (but still refused
 * when it comes twice). x-halo-date is read
 * by PostgreSQL's date/time parser, in IMF-fixdate ("Sat, 28 Nov 2026
 * 15:56:01 GMT") or RFC 3339 form with a zone ("2026-11-28T15:56:01Z"), and
 * compared with the real clock (GetCurrentTimestamp). Secrets are read from
 * halo_itsm.integration_secrets (ingest_webhook is SECURITY DEFINER) and
 * never appear in a message; errors are logged without the statement (which
 * holds the headers and body): see RethrowHidingStatement().
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_answer.h"
#include "hi_compat.h"
#include "hi_signature.h"
#include "hi_spi.h"

#define ERRCODE_HI_UNKNOWN_KEY			MAKE_SQLSTATE('W','H','0','0','1')
#define ERRCODE_HI_BODY_TOO_LARGE		MAKE_SQLSTATE('W','H','0','0','2')
#define ERRCODE_HI_BAD_HEADER			MAKE_SQLSTATE('W','H','0','0','3')
#define ERRCODE_HI_LENGTH_MISMATCH		MAKE_SQLSTATE('W','H','0','0','4')
#define ERRCODE_HI_STALE_DATE			MAKE_SQLSTATE('W','H','0','0','5')
#define ERRCODE_HI_BAD_SIGNATURE		MAKE_SQLSTATE('W','H','0','0','6')
#define ERRCODE_HI_SIGNATURE_MISMATCH	MAKE_SQLSTATE('W','H','0','0','7')
#define ERRCODE_HI_BAD_JSON				MAKE_SQLSTATE('W','H','0','0','8')
#define ERRCODE_HI_DUPLICATE_KEY		MAKE_SQLSTATE('W','H','0','0','9')

#define HINT_SIGNING "In Halo's webhook, enable \"Sign Request Body with a Secret Key\" with algorithm SHA-256, " \
	"header x-signature and the signed headers content-length, content-type, host and x-halo-date; " \
	"the receiver must pass every request header to halo_itsm.ingest_webhook() unchanged."

/* The hint of an SPI failure: the install script is missing or old. */
#define HINT_UP_TO_DATE "Check that the halo_itsm extension is installed and up to date."

/* The default scheme's header names (also webhook_signature()'s). */
#define HI_DEFAULT_SIGNED "content-length,content-type,host,x-halo-date"

/* Most header names a delivery is checked for: the signed ones, the signature, the date, host. */
#define HI_MAX_NAMES	(HI_SIG_MAX_HEADERS + 3)

/* The received values of the headers that matter: how often each came, and the last value. */
typedef struct HiHeaders
{
	int			n;
	const char *name[HI_MAX_NAMES];		/* lower case */
	int			count[HI_MAX_NAMES];
	bool		not_string[HI_MAX_NAMES];
	char	   *value[HI_MAX_NAMES];
} HiHeaders;

/* How the integration's deliveries are signed (halo_itsm.webhook_signatures, or the defaults). */
typedef struct HiScheme
{
	char	   *signature_header;
	int			nsigned;
	char	   *signed_names[HI_SIG_MAX_HEADERS];
	int			encoding;		/* HiEncoding */
	char	   *prefix;
	char	   *timestamp_header;	/* NULL: none */
	int			layout;			/* HiLayout */
} HiScheme;

/* What the duplicate-key check keeps while PostgreSQL's JSON parser walks the body. */
typedef struct DupKeyState
{
	List	   *stack;			/* one List of key names per open object */
	char	   *duplicate;		/* the first key seen twice in one object */
} DupKeyState;

/* The webhook secrets of an integration. */
typedef struct HiSecrets
{
	int			integration_id;
	char	   *current;
	char	   *previous;		/* NULL unless within its grace period */
	char	   *previous_until; /* text of previous_secret_valid_until, or NULL */
	HiScheme	scheme;
} HiSecrets;

PG_FUNCTION_INFO_V1(halo_itsm_ingest_webhook);
PG_FUNCTION_INFO_V1(halo_itsm_webhook_signature);
PG_FUNCTION_INFO_V1(halo_itsm_webhook_layouts);

/* The two statements of ingest_webhook, prepared once per session. */
static SPIPlanPtr secrets_plan = NULL;
static SPIPlanPtr apply_plan = NULL;
static SPIPlanPtr event_plan = NULL;

static int	AddHeaderName(HiHeaders *h, const char *name);
static void CollectHeaders(Jsonb *headers, HiHeaders *h);
static void CountHeaderValue(HiHeaders *h, int idx, JsonbValue *v);
static int	HeaderIndex(HiHeaders *h, const char *name, int len);
static const char *RequireHeader(HiHeaders *h, int idx, bool is_signature);
static void ParseScheme(HiScheme *sc, HeapTuple tup, TupleDesc desc, int first);
static TimestampTz ParseHaloDate(const char *name, const char *value);
static void CheckDate(const char *name, const char *value);
static void LoadSecrets(const char *key, HiSecrets *s);
static void ForgetSecrets(HiSecrets *s);
static void VerifySignature(HiSecrets *s, const unsigned char *canon, size_t canon_len, const char *sig);
static void RecordRejection(ErrorData *edata, int integration_id, Jsonb *headers, const char *body,
							Size body_len, bool body_kept);
static void CheckDelivery(HiSecrets *secrets, Jsonb *headers, const char *body_data, Size body_len);
static void RethrowUnholdableJson(MemoryContext cxt);
static Jsonb *ParsePayload(const char *body, int len);
static Datum ApplyWebhook(int integration_id, Jsonb *payload);
static HI_JSON_ACTION DupObjectStart(void *state);
static HI_JSON_ACTION DupObjectEnd(void *state);
static HI_JSON_ACTION DupFieldStart(void *state, char *fname, bool isnull);
static int	DupKeyCompare(const ListCell *a, const ListCell *b);
static void CheckBodySize(HiSecrets *secrets, Size body_len);
static Datum VerifyAndApply(HiSecrets *secrets, Jsonb *headers, const char *body_data, Size body_len);
static Datum IngestWebhook(FunctionCallInfo fcinfo);
static Datum WebhookSignature(FunctionCallInfo fcinfo);
static void RethrowHidingStatement(MemoryContext cxt);
static Datum CallHidingStatement(Datum (*fn) (FunctionCallInfo), FunctionCallInfo fcinfo);

/* Which of the headers that matter has this name (any case); -1 for none. */
static int
HeaderIndex(HiHeaders *h, const char *name, int len)
{
	int			i;

	for (i = 0; i < h->n; i++)
		if ((int) strlen(h->name[i]) == len && pg_strncasecmp(name, h->name[i], len) == 0)
			return i;
	return -1;
}

/* Adds a header name to look for (once); returns its index. */
static int
AddHeaderName(HiHeaders *h, const char *name)
{
	int			i = HeaderIndex(h, name, strlen(name));

	if (i >= 0)
		return i;
	Assert(h->n < HI_MAX_NAMES);
	h->name[h->n] = name;
	return h->n++;
}

/* Counts one received value of header idx (a string, or anything else: invalid). */
static void
CountHeaderValue(HiHeaders *h, int idx, JsonbValue *v)
{
	h->count[idx]++;
	if (v->type == jbvString)
		h->value[idx] = pnstrdup(v->val.string.val, v->val.string.len);
	else
		h->not_string[idx] = true;
}

/* Reads the request headers named in h (a JSON object of name: value or name: [values]). */
static void
CollectHeaders(Jsonb *headers, HiHeaders *h)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			current = -1;

	if (headers == NULL)
		return;
	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_HEADER),
				 errmsg("halo_itsm: the webhook headers must be a JSON object of header names and values"),
				 errhint("Pass the request headers as {\"Content-Type\": \"application/json\", \"Host\": \"...\", ...}.")));

	it = JsonbIteratorInit(&headers->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			current = HeaderIndex(h, v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && current >= 0)
		{
			if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
			{
				/* a header repeated under one name: each element is one occurrence */
				JsonbIterator *ait = JsonbIteratorInit(v.val.binary.data);
				JsonbValue	e;
				JsonbIteratorToken atok;

				while ((atok = JsonbIteratorNext(&ait, &e, true)) != WJB_DONE)
					if (atok == WJB_ELEM)
						CountHeaderValue(h, current, &e);
			}
			else
				CountHeaderValue(h, current, &v);
		}
	}
}

/* The value of header idx; raises WH003 (WH006 for the signature) unless it came once, non-empty. */
static const char *
RequireHeader(HiHeaders *h, int idx, bool is_signature)
{
	int			code = is_signature ? ERRCODE_HI_BAD_SIGNATURE : ERRCODE_HI_BAD_HEADER;
	const char *hint = is_signature ?
		"Enable \"Sign Request Body with a Secret Key\" (SHA-256, header x-signature) in Halo's webhook, with the secret from halo_itsm.webhook_settings()." :
		HINT_SIGNING;

	if (h->count[idx] == 0)
		ereport(ERROR,
				(errcode(code),
				 errmsg("halo_itsm: the webhook request has no %s header", h->name[idx]),
				 errhint("%s", hint)));
	if (h->count[idx] > 1)
		ereport(ERROR,
				(errcode(code),
				 errmsg("halo_itsm: the webhook request has the %s header %d times", h->name[idx], h->count[idx]),
				 errdetail("Header names are compared without regard to case: \"Host\" and \"host\" are the same header."),
				 errhint("Make sure that nothing between Halo and the receiver adds the header a second time.")));
	if (h->not_string[idx] || !hi_header_value_valid(h->value[idx]))
		ereport(ERROR,
				(errcode(code),
				 errmsg("halo_itsm: the %s header of the webhook request is empty, not a string, or contains control characters",
						h->name[idx]),
				 errhint("%s", hint)));
	return h->value[idx];
}

/* host[:port] of halo_itsm.webhook_base_url, lower case (port only when not the default); NULL when unset. */
char *
hi_webhook_base_host(void)
{
	CURLU	   *u;
	CURLUcode	rc;
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *result;
	char	   *p;

	if (hi_webhook_base_url == NULL || hi_webhook_base_url[0] == '\0')
		return NULL;
	u = curl_url();
	if (u == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	rc = curl_url_set(u, CURLUPART_URL, hi_webhook_base_url, 0);
	if (rc == CURLUE_OK)
		rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
	if (rc != CURLUE_OK || host == NULL || host[0] == '\0')
	{
		const char *why = rc != CURLUE_OK ? curl_url_strerror(rc) : "no host";

		curl_free(host);
		curl_url_cleanup(u);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: halo_itsm.webhook_base_url is not a usable URL: %s", why),
				 errhint("Set it to the public URL prefix of the webhook receiver, e.g. 'https://soc.example.com/halo/', or to '' to sign the received Host header.")));
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT) == CURLUE_OK && port != NULL)
		result = psprintf("%s:%s", host, port);
	else
		result = pstrdup(host);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	for (p = result; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	return result;
}

/*
 * Reads a webhook date with PostgreSQL's date/time parser. Only the two forms
 * Halo uses pass the shape check (IMF-fixdate, RFC 3339 with a zone), so that
 * words such as "now" and dates without a zone are refused. Returns false
 * when the value is unreadable; never raises.
 */
bool
hi_webhook_parse_date(const char *value, TimestampTz *result)
{
	size_t		len;
	const char *t = hi_trim_header_value(value, strlen(value), &len);
	char		buf[MAXDATELEN + 1];
	bool		imf,
				rfc3339;

	imf = len == 29 && t[3] == ',' && strncmp(t + 25, " GMT", 4) == 0;
	rfc3339 = len >= 20 && len <= 35 && t[4] == '-' && t[7] == '-' &&
		(t[10] == 'T' || t[10] == 't' || t[10] == ' ') && t[13] == ':' &&
		(t[len - 1] == 'Z' || t[len - 1] == 'z' ||
		 ((t[len - 6] == '+' || t[len - 6] == '-') && t[len - 3] == ':'));
	if ((imf || rfc3339) && len <= MAXDATELEN)
	{
		MemoryContext cxt = CurrentMemoryContext;
		volatile bool ok = false;

		memcpy(buf, t, len);
		buf[len] = '\0';
		/* the parser raises on some words it takes for a zone ("time zone not recognized") */
		PG_TRY();
		{
			ok = hi_read_timestamp(buf, true, result);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			FlushErrorState();
			ok = false;
		}
		PG_END_TRY();
		return ok;
	}
	return false;
}

/* Reads the timestamp header (hi_webhook_parse_date); raises WH003 when the value is unreadable. */
static TimestampTz
ParseHaloDate(const char *name, const char *value)
{
	TimestampTz result;

	if (!hi_webhook_parse_date(value, &result))
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_HEADER),
				 errmsg("halo_itsm: the %s header \"%.64s\" is not a date in IMF-fixdate or RFC 3339 form", name, value),
				 errdetail("Accepted forms: \"Sat, 28 Nov 2026 15:56:01 GMT\" and \"2026-11-28T15:56:01Z\"."),
				 errhint("%s", HINT_SIGNING)));
	return result;
}

/* Raises WH005 when the timestamp header is further than halo_itsm.webhook_tolerance from the clock. */
static void
CheckDate(const char *name, const char *value)
{
	TimestampTz date = ParseHaloDate(name, value);
	TimestampTz now = GetCurrentTimestamp();
	int64		diff_s = (now - date) / USECS_PER_SEC;

	if (diff_s > hi_webhook_tolerance_s || -diff_s > hi_webhook_tolerance_s)
		ereport(ERROR,
				(errcode(ERRCODE_HI_STALE_DATE),
				 errmsg("halo_itsm: the webhook is dated %s, " INT64_FORMAT " seconds %s the database's clock; at most %d seconds are accepted",
						timestamptz_to_str(date), diff_s > 0 ? diff_s : -diff_s,
						diff_s > 0 ? "behind" : "ahead of", hi_webhook_tolerance_s),
				 errhint("A replayed old delivery is refused on purpose. Otherwise check the clocks (NTP) of the database server; halo_itsm.webhook_tolerance sets the tolerance.")));
}

/*
 * The six columns of the signing scheme, with the defaults when the
 * integration has no row in halo_itsm.webhook_signatures (w); read by ParseScheme().
 */
#define SCHEME_COLUMNS \
	"       coalesce(w.signature_header, 'x-signature'), " \
	"       pg_catalog.array_to_string(coalesce(w.signed_headers, '{" HI_DEFAULT_SIGNED "}'), ','), " \
	"       coalesce(w.digest, 'base64'), coalesce(w.prefix, ''), " \
	"       CASE WHEN w.integration_id IS NULL THEN 'x-halo-date' ELSE w.timestamp_header END, " \
	"       coalesce(w.layout, 'default') "

/* Reads the scheme from columns first..first+5 of an SPI row (SCHEME_COLUMNS). */
static void
ParseScheme(HiScheme *sc, HeapTuple tup, TupleDesc desc, int first)
{
	char	   *list = SPI_getvalue(tup, desc, first + 1);
	char	   *digest = SPI_getvalue(tup, desc, first + 2);
	char	   *layout = SPI_getvalue(tup, desc, first + 5);
	char	   *tok;
	char	   *save = NULL;

	memset(sc, 0, sizeof(*sc));
	sc->signature_header = SPI_getvalue(tup, desc, first);
	for (tok = list ? strtok_r(list, ",", &save) : NULL; tok != NULL && sc->nsigned < HI_SIG_MAX_HEADERS;
		 tok = strtok_r(NULL, ",", &save))
		sc->signed_names[sc->nsigned++] = tok;
	sc->encoding = digest != NULL && strcmp(digest, "hex") == 0 ? HI_ENC_HEX : HI_ENC_BASE64;
	sc->prefix = SPI_getvalue(tup, desc, first + 3);
	if (sc->prefix == NULL)
		sc->prefix = "";
	sc->timestamp_header = SPI_getvalue(tup, desc, first + 4);
	sc->layout = hi_layout_from_name(layout);
	if (sc->layout < 0 || sc->signature_header == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: the webhook signature settings are unreadable"),
				 errhint("Run SELECT halo_itsm.configure_webhook_signature(<integration id>, layout => 'default') to reset them.")));
}

/* Looks the webhook key up and reads the integration's secrets; raises WH001 for an unknown key. */
static void
LoadSecrets(const char *key, HiSecrets *s)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	char	   *in_grace;

	memset(s, 0, sizeof(*s));
	if (key != NULL)
	{
		values[0] = CStringGetTextDatum(key);
		hi_prepare(&secrets_plan,
				   "SELECT i.id, s.webhook_secret, s.previous_webhook_secret, "
				   "       s.previous_secret_valid_until OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp(), "
				   "       s.previous_secret_valid_until, "
				   SCHEME_COLUMNS
				   "  FROM halo_itsm.integrations i "
				   "  LEFT JOIN halo_itsm.integration_secrets s ON s.integration_id OPERATOR(pg_catalog.=) i.id "
				   "  LEFT JOIN halo_itsm.webhook_signatures w ON w.integration_id OPERATOR(pg_catalog.=) i.id "
				   " WHERE i.webhook_key OPERATOR(pg_catalog.=) $1",
				   1, types);
		hi_execute(secrets_plan, values, NULL, true, "reading the webhook settings", HINT_UP_TO_DATE);
	}
	if (key == NULL || SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_HI_UNKNOWN_KEY),
				 errmsg("halo_itsm: no integration has the webhook key of this URL"),
				 errhint("Copy the URL from SELECT url FROM halo_itsm.webhook_settings(<integration id>) into the webhook in Halo.")));

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	s->integration_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	s->current = SPI_getvalue(tup, desc, 2);
	in_grace = SPI_getvalue(tup, desc, 4);
	if (in_grace != NULL && strcmp(in_grace, "t") == 0)
		s->previous = SPI_getvalue(tup, desc, 3);
	s->previous_until = SPI_getvalue(tup, desc, 5);
	ParseScheme(&s->scheme, tup, desc, 6);
	if (s->current == NULL || s->current[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: integration %d has no webhook secret", s->integration_id),
				 errhint("Run SELECT halo_itsm.rotate_webhook_secret(%d, '0') and paste the new secret into Halo.",
						 s->integration_id)));
}

/* Wipes the secrets from memory. */
static void
ForgetSecrets(HiSecrets *s)
{
	if (s->current)
		explicit_bzero(s->current, strlen(s->current));
	if (s->previous)
		explicit_bzero(s->previous, strlen(s->previous));
}

/* Raises WH006 for a malformed signature, WH007 when no valid secret produced it. */
static void
VerifySignature(HiSecrets *s, const unsigned char *canon, size_t canon_len, const char *sig)
{
	HiScheme   *sc = &s->scheme;
	size_t		sig_len;
	const char *t = hi_trim_header_value(sig, strlen(sig), &sig_len);
	HiSigResult r;

	r = hi_signature_verify_enc(s->current, strlen(s->current), canon, canon_len,
								sc->encoding, sc->prefix, t, sig_len);
	if (r == HI_SIG_MISMATCH && s->previous != NULL && s->previous[0] != '\0')
		r = hi_signature_verify_enc(s->previous, strlen(s->previous), canon, canon_len,
									sc->encoding, sc->prefix, t, sig_len);
	if (r == HI_SIG_OK)
		return;
	ForgetSecrets(s);
	if (r == HI_SIG_MALFORMED)
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_SIGNATURE),
				 sc->prefix[0] == '\0' ?
				 errmsg("halo_itsm: the %s header is not the %s of a 32-byte HMAC-SHA256", sc->signature_header,
						sc->encoding == HI_ENC_HEX ? "hex" : "base64") :
				 errmsg("halo_itsm: the %s header is not \"%s\" followed by the %s of a 32-byte HMAC-SHA256",
						sc->signature_header, sc->prefix, sc->encoding == HI_ENC_HEX ? "hex" : "base64"),
				 errhint("Choose SHA-256 as the signing algorithm of the webhook in Halo; SELECT halo_itsm.diagnose_webhook(id) FROM halo_itsm.rejected_webhooks says which settings verify the delivery.")));
	ereport(ERROR,
			(errcode(ERRCODE_HI_SIGNATURE_MISMATCH),
			 errmsg("halo_itsm: the %s of the webhook does not match the webhook secret of integration %d",
					sc->signature_header, s->integration_id),
			 s->previous != NULL ?
			 errdetail("Checked against the current secret and the previous one, valid until %s.", s->previous_until) :
			 s->previous_until != NULL ?
			 errdetail("Checked against the current secret only: the previous one's grace period ended at %s.", s->previous_until) :
			 errdetail("Checked against the current secret."),
			 errhint("Paste the secret from SELECT secret FROM halo_itsm.webhook_settings(%d) into Halo's webhook; "
					 "SELECT halo_itsm.diagnose_webhook(id) FROM halo_itsm.rejected_webhooks says which signing settings verify the delivery. "
					 "If a proxy rewrites the Host header, set halo_itsm.webhook_base_url to the public URL.",
					 s->integration_id)));
}

/*
 * Keeps a rejected delivery for diagnosis (src/inbound/rejected.c): the headers as
 * JSON text, and the body when it was read (not for WH002).
 */
static void
RecordRejection(ErrorData *edata, int integration_id, Jsonb *headers, const char *body, Size body_len,
				bool body_kept)
{
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_TO_CATEGORY(ERRCODE_HI_UNKNOWN_KEY))
		return;
	hi_rejected_record(integration_id, edata->sqlerrcode, edata->message,
					   headers ? JsonbToCString(NULL, &headers->root, VARSIZE(headers)) : NULL,
					   body_kept ? body : NULL, body_kept ? (int64) body_len : -1);
}

/* JSON parser callback: a new object level. */
static HI_JSON_ACTION
DupObjectStart(void *state)
{
	DupKeyState *s = (DupKeyState *) state;

	s->stack = lcons(NIL, s->stack);
	HI_JSON_ACTION_DONE;
}

/* JSON parser callback: a key of the innermost object. */
static HI_JSON_ACTION
DupFieldStart(void *state, char *fname, bool isnull)
{
	DupKeyState *s = (DupKeyState *) state;

	linitial(s->stack) = lappend((List *) linitial(s->stack), fname);
	HI_JSON_ACTION_DONE;
}

/* Orders key names for the duplicate search. */
static int
DupKeyCompare(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/* JSON parser callback: the innermost object ends; look for a key seen twice in it. */
static HI_JSON_ACTION
DupObjectEnd(void *state)
{
	DupKeyState *s = (DupKeyState *) state;
	List	   *keys = (List *) linitial(s->stack);
	int			i;

	s->stack = list_delete_first(s->stack);
	if (s->duplicate == NULL && list_length(keys) > 1)
	{
		list_sort(keys, DupKeyCompare);
		for (i = 1; i < list_length(keys); i++)
			if (strcmp(list_nth(keys, i - 1), list_nth(keys, i)) == 0)
			{
				s->duplicate = list_nth(keys, i);
				break;
			}
	}
	list_free(keys);
	HI_JSON_ACTION_DONE;
}

/*
 * Raises WH008 in place of the errors by which PostgreSQL's JSON parsers refuse
 * JSON that they cannot hold (a number beyond numeric's range, nesting deeper
 * than the stack allows): such a body can never be applied, so it must not be
 * answered with a 500 that Halo retries. Re-raises any other error. Called in a
 * PG_CATCH block.
 */
static void
RethrowUnholdableJson(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE &&
		edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX &&
		edata->sqlerrcode != ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		PG_RE_THROW();
	FlushErrorState();
	ereport(ERROR,
			(errcode(ERRCODE_HI_BAD_JSON),
			 errmsg("halo_itsm: the webhook body is JSON that PostgreSQL cannot hold: %s", edata->message),
			 errhint("Halo sends neither numbers beyond PostgreSQL's numeric range nor JSON nested this deep; check what sits between Halo and the receiver.")));
}

/* Parses the verified body: UTF-8, JSON (PostgreSQL's parser), no duplicate keys, an object or an array (a batch). */
static Jsonb *
ParsePayload(const char *body, int len)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *text;
	JsonLexContext *lex;
	volatile JsonParseErrorType rc = JSON_SUCCESS;
	JsonSemAction sem;
	DupKeyState state;
	Jsonb	   *volatile jb = NULL;

	if (!pg_verify_mbstr(PG_UTF8, body, len, true))
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_JSON),
				 errmsg("halo_itsm: the webhook body is not valid UTF-8 text"),
				 errhint("The receiver must pass the raw request body, byte for byte.")));
	text = pnstrdup(body, len);
	/* as for Halo's answers to the worker: \u0000 and lone surrogates become U+FFFD */
	hi_json_scrub_escapes(text, strlen(text));
	text = pg_any_to_server(text, len, PG_UTF8);

	memset(&sem, 0, sizeof(sem));
	memset(&state, 0, sizeof(state));
	sem.semstate = &state;
	sem.object_start = DupObjectStart;
	sem.object_end = DupObjectEnd;
	sem.object_field_start = DupFieldStart;
	lex = hi_make_json_lex(text, strlen(text), GetDatabaseEncoding(), true);
	PG_TRY();
	{
		rc = pg_parse_json(lex, &sem);
		if (rc == JSON_SUCCESS && state.duplicate == NULL)
			jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	}
	PG_CATCH();
	{
		RethrowUnholdableJson(cxt);
	}
	PG_END_TRY();
	if (rc != JSON_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_JSON),
				 errmsg("halo_itsm: the webhook body is not valid JSON: %s", json_errdetail(rc, lex)),
				 errhint("Choose a JSON payload for the webhook in Halo; the receiver must pass the raw body unchanged.")));
	if (state.duplicate != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_HI_DUPLICATE_KEY),
				 errmsg("halo_itsm: the webhook body has the key \"%.100s\" twice in one object", state.duplicate),
				 errhint("Halo does not send duplicate keys; check what sits between Halo and the receiver.")));
	if (JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_JSON),
				 errmsg("halo_itsm: the webhook body is JSON but neither an object nor an array of objects"),
				 errhint("Choose the \"full object\" or \"event information only\" payload for the webhook in Halo.")));
	return jb;
}

/*
 * Calls halo_itsm._apply_webhook(integration, payload), or for one event (an
 * object, the usual delivery) _apply_event directly; the result is copied out of SPI.
 */
static Datum
ApplyWebhook(int integration_id, Jsonb *payload)
{
	Oid			types[2] = {INT4OID, JSONBOID};
	Datum		values[2];
	bool		isnull;
	Datum		d;
	SPIPlanPtr	plan;

	values[0] = Int32GetDatum(integration_id);
	values[1] = JsonbPGetDatum(payload);
	if (JB_ROOT_IS_OBJECT(payload))
		plan = hi_prepare(&event_plan, "SELECT halo_itsm._apply_event($1, $2)", 2, types);
	else
		plan = hi_prepare(&apply_plan, "SELECT halo_itsm._apply_webhook($1, $2)", 2, types);
	hi_execute(plan, values, NULL, false, "applying the webhook", HINT_UP_TO_DATE);
	if (SPI_processed != 1)
		elog(ERROR, "halo_itsm: _apply_webhook returned " UINT64_FORMAT " rows", SPI_processed);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "halo_itsm: _apply_webhook returned NULL");
	return SPI_datumTransfer(d, false, -1);
}

/* Checks the headers and the signature of a delivery under the integration's scheme; raises WH003..WH007. */
static void
CheckDelivery(HiSecrets *secrets, Jsonb *headers, const char *body_data, Size body_len)
{
	HiScheme   *sc = &secrets->scheme;
	HiHeaders	h;
	const char *values[HI_SIG_MAX_HEADERS];
	const char *base_host = NULL;
	int			idx[HI_SIG_MAX_HEADERS];
	int			sig_idx,
				host_idx,
				i;
	const char *signature;
	const char *content_length = NULL;
	const char *date = NULL;
	unsigned char *canon;
	size_t		canon_len;

	memset(&h, 0, sizeof(h));
	for (i = 0; i < sc->nsigned; i++)
		idx[i] = AddHeaderName(&h, sc->signed_names[i]);
	sig_idx = AddHeaderName(&h, sc->signature_header);
	host_idx = AddHeaderName(&h, "host");
	CollectHeaders(headers, &h);

	for (i = 0; i < sc->nsigned; i++)
	{
		if (idx[i] == host_idx && (base_host = hi_webhook_base_host()) != NULL)
		{
			/* the configured public host is signed in place of the received one */
			if (h.count[host_idx] > 1)
				(void) RequireHeader(&h, host_idx, false);	/* refuses a doubled Host */
			values[i] = base_host;
		}
		else
			values[i] = RequireHeader(&h, idx[i], false);
		if (strcmp(sc->signed_names[i], "content-length") == 0)
			content_length = values[i];
		if (sc->timestamp_header != NULL && strcmp(sc->signed_names[i], sc->timestamp_header) == 0)
			date = values[i];
	}
	signature = RequireHeader(&h, sig_idx, true);

	if (content_length != NULL && !hi_content_length_matches(content_length, body_len))
		ereport(ERROR,
				(errcode(ERRCODE_HI_LENGTH_MISMATCH),
				 errmsg("halo_itsm: the content-length header says \"%.40s\" but the body has %zu bytes",
						content_length, (size_t) body_len),
				 errhint("The receiver must pass the raw request body, byte for byte, as Halo sent it (no re-encoding, no decompression).")));
	if (date != NULL)
		CheckDate(sc->timestamp_header, date);

	canon = hi_canonical_build(sc->layout, (const char *const *) sc->signed_names, values, sc->nsigned,
							   (const unsigned char *) body_data, body_len, &canon_len);
	if (canon == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_HI_BAD_HEADER),
				 errmsg("halo_itsm: the signed headers of the webhook cannot be put together"),
				 errhint("%s", HINT_SIGNING)));
	PG_TRY();
	{
		VerifySignature(secrets, canon, canon_len, signature);
	}
	PG_FINALLY();
	{
		free(canon);
	}
	PG_END_TRY();
}

/* Refuses a body larger than halo_itsm.webhook_max_body (WH002), wiping the secrets first. */
static void
CheckBodySize(HiSecrets *secrets, Size body_len)
{
	if (body_len <= (Size) hi_webhook_max_body)
		return;
	ForgetSecrets(secrets);
	ereport(ERROR,
			(errcode(ERRCODE_HI_BODY_TOO_LARGE),
			 errmsg("halo_itsm: the webhook body has %zu bytes, more than halo_itsm.webhook_max_body (%d bytes)",
					(size_t) body_len, hi_webhook_max_body),
			 errhint("Choose the \"event information only\" payload in Halo, or raise halo_itsm.webhook_max_body.")));
}

/* Checks a delivery's headers and signature (the secrets wiped afterwards), then reads and applies its body. */
static Datum
VerifyAndApply(HiSecrets *secrets, Jsonb *headers, const char *body_data, Size body_len)
{
	PG_TRY();
	{
		CheckDelivery(secrets, headers, body_data, body_len);
	}
	PG_FINALLY();
	{
		ForgetSecrets(secrets);
	}
	PG_END_TRY();

	/* Verified: now the body may be read. */
	return ApplyWebhook(secrets->integration_id, ParsePayload(body_data, (int) body_len));
}

/*
 * Verifies a delivery (see the table at the top), then applies it; returns
 * the result. A rejection (class WH) of a delivery that named a real
 * webhook key is kept for diagnosis before it is raised (RecordRejection).
 */
static Datum
IngestWebhook(FunctionCallInfo fcinfo)
{
	char	   *key = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	Jsonb	   *headers = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Size		body_len = PG_ARGISNULL(2) ? 0 : toast_raw_datum_size(PG_GETARG_DATUM(2)) - VARHDRSZ;
	MemoryContext cxt = CurrentMemoryContext;
	bytea	   *volatile body = NULL;
	HiSecrets	secrets;
	volatile Datum result = (Datum) 0;

	hi_refuse_on_standby("ingest_webhook()");
	hi_spi_connect(0);
	LoadSecrets(key, &secrets);

	PG_TRY();
	{
		CheckBodySize(&secrets, body_len);
		body = PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2);
		result = VerifyAndApply(&secrets, headers, body ? VARDATA_ANY(body) : "", body_len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RecordRejection(edata, secrets.integration_id, headers, body ? VARDATA_ANY(body) : "",
						body_len, body != NULL || PG_ARGISNULL(2));
		ReThrowError(edata);
	}
	PG_END_TRY();
	SPI_finish();
	return result;
}

/* The default scheme's headers, in order, as WebhookSignature reads them. */
static const char *const default_names[4] = {"content-length", "content-type", "host", "x-halo-date"};

/* The x-signature for these headers (as given, including host) and body. */
static Datum
WebhookSignature(FunctionCallInfo fcinfo)
{
	text	   *secret_t = PG_GETARG_TEXT_PP(0);
	Jsonb	   *headers = PG_GETARG_JSONB_P(1);
	bytea	   *body = PG_GETARG_BYTEA_PP(2);
	size_t		body_len = VARSIZE_ANY_EXHDR(body);
	HiHeaders	h;
	const char *content_length;
	unsigned char *canon;
	size_t		canon_len;
	char		out[HI_SIG_B64_LEN + 1];
	int			rc;
	int			i;

	if (VARSIZE_ANY_EXHDR(secret_t) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: the webhook secret must not be empty"),
				 errhint("Pass the secret from halo_itsm.webhook_settings().")));
	memset(&h, 0, sizeof(h));
	for (i = 0; i < 4; i++)
		(void) AddHeaderName(&h, default_names[i]);
	CollectHeaders(headers, &h);
	if (h.count[0] == 0)
		content_length = psprintf("%zu", body_len);
	else
	{
		content_length = RequireHeader(&h, 0, false);
		if (!hi_content_length_matches(content_length, body_len))
			ereport(ERROR,
					(errcode(ERRCODE_HI_LENGTH_MISMATCH),
					 errmsg("halo_itsm: the content-length header says \"%.40s\" but the body has %zu bytes",
							content_length, body_len),
					 errhint("Leave content-length out: it defaults to the body's length.")));
	}
	canon = hi_canonical_string(content_length, RequireHeader(&h, 1, false), RequireHeader(&h, 2, false),
								RequireHeader(&h, 3, false), (const unsigned char *) VARDATA_ANY(body),
								body_len, &canon_len);
	if (canon == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	rc = hi_signature_compute(VARDATA_ANY(secret_t), VARSIZE_ANY_EXHDR(secret_t), canon, canon_len, out);
	free(canon);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: computing the HMAC-SHA256 failed"),
				 errhint("Check the server's OpenSSL installation.")));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/*
 * Re-raises the current error without the statement in the server log: the
 * statement holds the request's headers and body (or a secret), which the
 * log must not keep. Called in a PG_CATCH block.
 */
static void
RethrowHidingStatement(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	edata->hide_stmt = true;
	ReThrowError(edata);
}

/*
 * Runs fn(fcinfo); an error it raises is re-raised without the statement in
 * the server log (RethrowHidingStatement).
 */
static Datum
CallHidingStatement(Datum (*fn) (FunctionCallInfo), FunctionCallInfo fcinfo)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		result = fn(fcinfo);
	}
	PG_CATCH();
	{
		RethrowHidingStatement(cxt);
	}
	PG_END_TRY();
	return result;
}

/*
 * SQL: halo_itsm.ingest_webhook(webhook_key text, headers jsonb, body bytea)
 * RETURNS jsonb: what the delivery did ({"outcome": ...}), or a WH error.
 */
Datum
halo_itsm_ingest_webhook(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(CallHidingStatement(IngestWebhook, fcinfo));
}

/*
 * SQL: halo_itsm.webhook_layouts() RETURNS text[]: the names of the
 * canonical layouts (src/core/hi_signature.c), for configure_webhook_signature().
 */
Datum
halo_itsm_webhook_layouts(PG_FUNCTION_ARGS)
{
	Datum		names[HI_LAYOUT_COUNT];
	int			i;

	for (i = 0; i < HI_LAYOUT_COUNT; i++)
		names[i] = CStringGetTextDatum(hi_layout_name(i));
	PG_RETURN_ARRAYTYPE_P(construct_array(names, HI_LAYOUT_COUNT, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * SQL: halo_itsm.webhook_signature(secret text, headers jsonb, body bytea)
 * RETURNS text: the x-signature for these headers (as given, including host)
 * and body. content-length defaults to the body's length.
 */
Datum
halo_itsm_webhook_signature(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(CallHidingStatement(WebhookSignature, fcinfo));
}
