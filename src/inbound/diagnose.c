/*-------------------------------------------------------------------------
 * diagnose.c
 *	  halo_itsm.diagnose_webhook(rejected_id): takes a kept rejected
 *	  delivery (src/inbound/rejected.c) and the integration's webhook secrets
 *	  (current and previous), tries every candidate signing scheme (docs/webhooks.md,
 *	  "Webhooks": signature header, digest encoding and prefix as found in
 *	  the delivery; signed headers and their order;
 *	  timestamp header or none; canonical layout) and answers which one
 *	  verifies it, with the configure_webhook_signature() call that sets it,
 *	  or that none does and what to check.
 *
 * Candidates (few hundred HMACs at most, each over at most 64 kB): the
 * signature headers are the configured one, x-signature, and any header
 * whose name contains "signature" or whose value is a base64 or hex digest
 * of 32 bytes after an optional prefix; the timestamp headers are the
 * configured one, x-halo-date, any header whose name contains "date" or
 * "timestamp", or none; the signed headers are every ordering of every
 * subset of content-length, content-type, host and the timestamp header
 * (which must be among them), longest first; then every layout, and the
 * body alone. Verification is the same as ingest_webhook's (host from
 * halo_itsm.webhook_base_url when set), so the answered call makes the same
 * delivery verify.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_signature.h"
#include "hi_spi.h"

#define MAX_SEEN	64			/* headers of the delivery considered */
#define MAX_CHOICES	8			/* signature or timestamp header candidates */
#define POOL_MAX	4

/* One header of the kept delivery (names lower case; a repeated one is not usable). */
typedef struct SeenHeader
{
	char	   *name;
	char	   *value;
	int			count;
} SeenHeader;

/* What diagnosis works with. */
typedef struct Diag
{
	SeenHeader	seen[MAX_SEEN];
	int			nseen;
	char	   *secrets[2];		/* current, previous (NULL when none or expired) */
	const unsigned char *body;
	size_t		body_len;
	char	   *base_host;		/* from halo_itsm.webhook_base_url, or NULL */
	long		tried;
	/* the scheme being tried */
	const char *sig_header;
	const char *sig_value;
	int			encoding;
	char		prefix[HI_SIG_MAX_PREFIX + 1];
	const char *ts_header;
	const char *names[HI_SIG_MAX_HEADERS];
	const char *values[HI_SIG_MAX_HEADERS];
	int			n;
	int			layout;
	int			secret_used;
} Diag;

PG_FUNCTION_INFO_V1(halo_itsm_diagnose_webhook);

static void CollectSeen(Diag *d, const char *headers_json);
static SeenHeader *Seen(Diag *d, const char *name);
static void LoadDiagSecrets(Diag *d, int integration_id, char **configured_sig, char **configured_ts);
static bool TrySecrets(Diag *d, int layout, unsigned char *canon, size_t canon_len);
static bool TryLayouts(Diag *d);
static bool TryOrderings(Diag *d, const char **pool, const char **pool_values, int npool, bool *used, int depth);
static bool TryScheme(Diag *d);
static void AddChoice(const char **choices, int *n, const char *name);
static char *BuildCall(Diag *d, int integration_id);
static void AppendJsonString(StringInfo buf, const char *key, const char *value);
static int	SignatureChoices(Diag *d, const char *configured_sig, const char **choices);
static int	TimestampChoices(Diag *d, const char *configured_ts, const char **choices);
static bool TakeSignature(Diag *d, const char *sig_header);
static bool SearchSchemes(Diag *d, const char *configured_sig, const char *configured_ts, bool *any_signature);
static void AppendVerified(StringInfo out, Diag *d, HiRejected *r);
static void AppendUnverified(StringInfo out, HiRejected *r, bool any_signature);

/* Reads the kept headers (JSON text of an object) into d->seen. */
static void
CollectSeen(Diag *d, const char *headers_json)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	SeenHeader *cur = NULL;

	if (headers_json == NULL)
		return;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(headers_json)));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		return;
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(v.val.string.val, v.val.string.len);
			char	   *p;

			for (p = name; *p; p++)
				*p = pg_ascii_tolower((unsigned char) *p);
			cur = Seen(d, name);
			if (cur == NULL && d->nseen < MAX_SEEN)
			{
				cur = &d->seen[d->nseen++];
				cur->name = name;
			}
		}
		else if (tok == WJB_VALUE && cur != NULL)
		{
			if (v.type == jbvString && cur->count == 0)
				cur->value = pnstrdup(v.val.string.val, v.val.string.len);
			cur->count += (v.type == jbvString) ? 1 : 2;	/* an array: not usable */
			cur = NULL;
		}
	}
}

/* The usable header of this name (came once, valid value); NULL otherwise. */
static SeenHeader *
Seen(Diag *d, const char *name)
{
	int			i;

	for (i = 0; i < d->nseen; i++)
		if (strcmp(d->seen[i].name, name) == 0)
			return &d->seen[i];
	return NULL;
}

/* Reads the secrets (current, previous within its grace) and the configured header names. */
static void
LoadDiagSecrets(Diag *d, int integration_id, char **configured_sig, char **configured_ts)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum(integration_id)};
	int			rc;

	rc = SPI_execute_with_args("SELECT s.webhook_secret, "
							   "       CASE WHEN s.previous_secret_valid_until OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() "
							   "            THEN s.previous_webhook_secret END, "
							   "       coalesce(w.signature_header, 'x-signature'), "
							   "       CASE WHEN w.integration_id IS NULL THEN 'x-halo-date' ELSE w.timestamp_header END "
							   "  FROM halo_itsm.integration_secrets s "
							   "  LEFT JOIN halo_itsm.webhook_signatures w "
							   "         ON w.integration_id OPERATOR(pg_catalog.=) s.integration_id "
							   " WHERE s.integration_id OPERATOR(pg_catalog.=) $1",
							   1, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: reading the webhook secrets failed: %s", SPI_result_code_string(rc)),
				 errhint("Check that the halo_itsm extension is installed and up to date.")));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("halo_itsm: integration %d of the rejected delivery no longer exists", integration_id),
				 errhint("SELECT id, name FROM halo_itsm.integrations lists the integrations.")));
	d->secrets[0] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	d->secrets[1] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	*configured_sig = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	*configured_ts = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
}

/*
 * Tries the current and the previous secret on one canonical string (of
 * the given layout, NULL when it cannot be built); true when one verifies,
 * the layout and secret noted in d. Frees canon.
 */
static bool
TrySecrets(Diag *d, int layout, unsigned char *canon, size_t canon_len)
{
	int			k;

	for (k = 0; canon != NULL && k < 2; k++)
	{
		if (d->secrets[k] == NULL || d->secrets[k][0] == '\0')
			continue;
		d->tried++;
		if (hi_signature_verify_enc(d->secrets[k], strlen(d->secrets[k]), canon, canon_len,
									d->encoding, d->prefix, d->sig_value, strlen(d->sig_value)) == HI_SIG_OK)
		{
			free(canon);
			d->layout = layout;
			d->secret_used = k;
			return true;
		}
	}
	free(canon);
	return false;
}

/* Tries every layout over the current names and values; true when one verifies. */
static bool
TryLayouts(Diag *d)
{
	int			layout;

	for (layout = 0; layout < HI_LAYOUT_COUNT; layout++)
	{
		unsigned char *canon;
		size_t		canon_len;

		if (layout == HI_LAYOUT_BODY)
			continue;			/* tried once, without headers (TryScheme) */
		canon = hi_canonical_build(layout, d->names, d->values, d->n, d->body, d->body_len, &canon_len);
		if (TrySecrets(d, layout, canon, canon_len))
			return true;
	}
	return false;
}

/* Every ordering of every non-empty subset of the pool (the timestamp header included), longest first. */
static bool
TryOrderings(Diag *d, const char **pool, const char **pool_values, int npool, bool *used, int depth)
{
	int			i;

	if (depth == d->n)
	{
		if (d->ts_header != NULL)
		{
			bool		has_ts = false;

			for (i = 0; i < d->n; i++)
				has_ts |= strcmp(d->names[i], d->ts_header) == 0;
			if (!has_ts)
				return false;
		}
		return TryLayouts(d);
	}
	for (i = 0; i < npool; i++)
	{
		if (used[i])
			continue;
		used[i] = true;
		d->names[depth] = pool[i];
		d->values[depth] = pool_values[i];
		if (TryOrderings(d, pool, pool_values, npool, used, depth + 1))
			return true;
		used[i] = false;
	}
	return false;
}

/* Tries the signed-header orderings and layouts for the chosen signature and timestamp headers. */
static bool
TryScheme(Diag *d)
{
	static const char *const base[3] = {"content-length", "content-type", "host"};
	const char *pool[POOL_MAX];
	const char *pool_values[POOL_MAX];
	bool		used[POOL_MAX];
	int			npool = 0;
	int			i;

	for (i = 0; i < 3; i++)
	{
		SeenHeader *h = Seen(d, base[i]);

		if (i == 2 && d->base_host != NULL)
		{
			pool[npool] = base[i];
			pool_values[npool++] = d->base_host;
		}
		else if (h != NULL && h->count == 1 && hi_header_value_valid(h->value))
		{
			pool[npool] = base[i];
			pool_values[npool++] = h->value;
		}
	}
	if (d->ts_header != NULL)
	{
		SeenHeader *h = Seen(d, d->ts_header);

		if (h == NULL || h->count != 1 || !hi_header_value_valid(h->value))
			return false;
		pool[npool] = d->ts_header;
		pool_values[npool++] = h->value;
	}
	for (d->n = npool; d->n >= 1; d->n--)
	{
		memset(used, 0, sizeof(used));
		if (TryOrderings(d, pool, pool_values, npool, used, 0))
			return true;
	}
	/* the body alone */
	if (d->ts_header == NULL)
	{
		unsigned char *canon;
		size_t		canon_len;

		d->n = 0;
		canon = hi_canonical_build(HI_LAYOUT_BODY, NULL, NULL, 0, d->body, d->body_len, &canon_len);
		return TrySecrets(d, HI_LAYOUT_BODY, canon, canon_len);
	}
	return false;
}

/* Adds a header name to a candidate list once. */
static void
AddChoice(const char **choices, int *n, const char *name)
{
	int			i;

	if (name == NULL || *n >= MAX_CHOICES)
		return;
	for (i = 0; i < *n; i++)
		if (choices[i] != NULL && strcmp(choices[i], name) == 0)
			return;
	choices[(*n)++] = name;
}

/* The configure_webhook_signature() call that sets the found scheme. */
static char *
BuildCall(Diag *d, int integration_id)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT halo_itsm.configure_webhook_signature(%d, signature_header => %s, signed_headers => ARRAY[",
					 integration_id, quote_literal_cstr(d->sig_header));
	for (i = 0; i < d->n; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_literal_cstr(d->names[i]));
	appendStringInfo(&buf, "]::text[], digest => %s, prefix => %s, timestamp_header => %s, layout => %s)",
					 quote_literal_cstr(d->encoding == HI_ENC_HEX ? "hex" : "base64"),
					 quote_literal_cstr(d->prefix),
					 quote_literal_cstr(d->ts_header ? d->ts_header : "none"),
					 quote_literal_cstr(hi_layout_name(d->layout)));
	return buf.data;
}

/* Appends ,"key":"value" (or null) to a JSON object being built. */
static void
AppendJsonString(StringInfo buf, const char *key, const char *value)
{
	appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/* The candidate signature headers: the configured one, x-signature, and any that looks like one. */
static int
SignatureChoices(Diag *d, const char *configured_sig, const char **choices)
{
	int			n = 0;
	int			i;

	AddChoice(choices, &n, configured_sig);
	AddChoice(choices, &n, "x-signature");
	for (i = 0; i < d->nseen; i++)
	{
		size_t		plen;

		if (strstr(d->seen[i].name, "signature") != NULL ||
			(d->seen[i].value != NULL &&
			 hi_signature_split(d->seen[i].value, strlen(d->seen[i].value), &plen) >= 0))
			AddChoice(choices, &n, d->seen[i].name);
	}
	return n;
}

/* The candidate timestamp headers: the configured one, x-halo-date, any date-like one, and none (NULL). */
static int
TimestampChoices(Diag *d, const char *configured_ts, const char **choices)
{
	int			n = 0;
	int			i;

	AddChoice(choices, &n, configured_ts);
	AddChoice(choices, &n, "x-halo-date");
	for (i = 0; i < d->nseen; i++)
		if (strstr(d->seen[i].name, "date") != NULL || strstr(d->seen[i].name, "timestamp") != NULL)
			AddChoice(choices, &n, d->seen[i].name);
	choices[n++] = NULL;		/* none */
	return n;
}

/*
 * Takes the signature header sig_header as the one being tried, when the
 * delivery carries it once with a digest: its value, encoding and prefix
 * go into d. False when it carries no usable signature.
 */
static bool
TakeSignature(Diag *d, const char *sig_header)
{
	SeenHeader *h = Seen(d, sig_header);
	size_t		tlen,
				plen;
	const char *t;
	int			enc;

	if (h == NULL || h->count != 1 || h->value == NULL)
		return false;
	t = hi_trim_header_value(h->value, strlen(h->value), &tlen);
	enc = hi_signature_split(t, tlen, &plen);
	if (enc < 0)
		return false;
	d->sig_header = sig_header;
	d->sig_value = pnstrdup(t, tlen);
	d->encoding = enc;
	memcpy(d->prefix, t, plen);
	d->prefix[plen] = '\0';
	return true;
}

/*
 * Tries every candidate signature header with every candidate timestamp
 * header; true when a scheme verifies (it is left in d). *any_signature
 * says whether the delivery carried a signature at all.
 */
static bool
SearchSchemes(Diag *d, const char *configured_sig, const char *configured_ts, bool *any_signature)
{
	const char *sig_choices[MAX_CHOICES];
	const char *ts_choices[MAX_CHOICES + 1];
	int			nsig = SignatureChoices(d, configured_sig, sig_choices);
	int			nts = TimestampChoices(d, configured_ts, ts_choices);
	int			i,
				j;

	*any_signature = false;
	for (i = 0; i < nsig; i++)
	{
		if (!TakeSignature(d, sig_choices[i]))
			continue;
		*any_signature = true;
		for (j = 0; j < nts; j++)
		{
			if (ts_choices[j] != NULL && strcmp(ts_choices[j], d->sig_header) == 0)
				continue;
			d->ts_header = ts_choices[j];
			if (TryScheme(d))
				return true;
		}
	}
	return false;
}

/* Appends the verifying scheme, the call that sets it, and a clock hint when the date is off. */
static void
AppendVerified(StringInfo out, Diag *d, HiRejected *r)
{
	TimestampTz date;
	int			i;

	AppendJsonString(out, "layout", hi_layout_name(d->layout));
	AppendJsonString(out, "signature_header", d->sig_header);
	appendStringInfoString(out, ",\"signed_headers\":[");
	for (i = 0; i < d->n; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		escape_json(out, d->names[i]);
	}
	appendStringInfoChar(out, ']');
	AppendJsonString(out, "digest", d->encoding == HI_ENC_HEX ? "hex" : "base64");
	AppendJsonString(out, "prefix", d->prefix);
	AppendJsonString(out, "timestamp_header", d->ts_header ? d->ts_header : "none");
	AppendJsonString(out, "secret", d->secret_used == 0 ? "current" : "previous");
	AppendJsonString(out, "call", BuildCall(d, r->integration_id));
	if (d->ts_header != NULL && hi_webhook_parse_date(Seen(d, d->ts_header)->value, &date))
	{
		int64		offset = (r->received_at - date) / USECS_PER_SEC;

		appendStringInfo(out, ",\"date_offset_seconds\":" INT64_FORMAT, offset);
		if (offset > hi_webhook_tolerance_s || -offset > hi_webhook_tolerance_s)
			AppendJsonString(out, "hint",
							 psprintf("The signature verifies, but the delivery was dated " INT64_FORMAT " seconds %s the database's clock "
									  "when it arrived (at most %d accepted): check the clocks (NTP) of Halo's side and of the database server, "
									  "or raise halo_itsm.webhook_tolerance. A replayed old delivery is refused on purpose.",
									  offset > 0 ? offset : -offset, offset > 0 ? "behind" : "ahead of",
									  hi_webhook_tolerance_s));
	}
}

/* Appends why nothing verifies and what to check. */
static void
AppendUnverified(StringInfo out, HiRejected *r, bool any_signature)
{
	AppendJsonString(out, "layout", NULL);
	AppendJsonString(out, "call", NULL);
	if (r->body_len < 0)
		AppendJsonString(out, "hint",
						 "The body of this delivery was not kept (larger than 64 kB): nothing can be verified. "
						 "Choose the \"event information only\" payload in Halo, resend a delivery and diagnose that one.");
	else if (!any_signature)
		AppendJsonString(out, "hint",
						 "The delivery carries no header with a signature (the base64 or hex of 32 bytes, after an optional prefix): "
						 "in Halo's webhook, enable \"Sign Request Body with a Secret Key\" with algorithm SHA-256, "
						 "and make sure that the receiver passes every request header to halo_itsm.ingest_webhook().");
	else
		AppendJsonString(out, "hint",
						 psprintf("No candidate layout verifies this delivery with the webhook secret of integration %d (current or previous). "
								  "Check the secret: Halo's webhook must have the one from SELECT secret FROM halo_itsm.webhook_settings(%d). "
								  "Check the host: Halo signs the host it posts to; when a proxy rewrites Host, set halo_itsm.webhook_base_url to that public URL. "
								  "Check that the receiver passes the raw body and every header unchanged, and the clocks (NTP) when Halo signs a date.",
								  r->integration_id, r->integration_id));
}

/*
 * SQL: halo_itsm.diagnose_webhook(rejected_id bigint) RETURNS jsonb:
 * {"verified", "layout", "call", ...} (see the top of this file).
 */
Datum
halo_itsm_diagnose_webhook(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	HiRejected	r;
	Diag		d;
	char	   *configured_sig;
	char	   *configured_ts;
	int			i;
	bool		verified = false;
	bool		any_signature = false;
	StringInfoData out;

	if (!hi_rejected_fetch(id, &r))
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("halo_itsm: there is no kept rejected webhook delivery with id " INT64_FORMAT, id),
				 errhint("SELECT id, integration_id, received_at, sqlstate, reason FROM halo_itsm.rejected_webhooks lists them; "
						 "they are kept in memory (at most 32, for 7 days) until the server restarts: send the webhook again from Halo's Deliveries log.")));
	memset(&d, 0, sizeof(d));
	CollectSeen(&d, r.headers);
	d.body = (const unsigned char *) r.body;
	d.body_len = r.body_len > 0 ? (size_t) r.body_len : 0;
	d.base_host = hi_webhook_base_host();

	hi_spi_connect(0);
	LoadDiagSecrets(&d, r.integration_id, &configured_sig, &configured_ts);
	if (r.body_len >= 0)
		verified = SearchSchemes(&d, configured_sig, configured_ts, &any_signature);

	initStringInfo(&out);
	appendStringInfo(&out, "{\"verified\":%s,\"rejected_id\":" INT64_FORMAT ",\"integration_id\":%d,\"tried\":%ld",
					 verified ? "true" : "false", r.id, r.integration_id, d.tried);
	AppendJsonString(&out, "sqlstate", r.sqlstate);
	if (verified)
		AppendVerified(&out, &d, &r);
	else
		AppendUnverified(&out, &r, any_signature);
	appendStringInfoChar(&out, '}');
	for (i = 0; i < 2; i++)
		if (d.secrets[i] != NULL)
			explicit_bzero(d.secrets[i], strlen(d.secrets[i]));
	SPI_finish();
	PG_RETURN_JSONB_P(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data))));
}
