/*-------------------------------------------------------------------------
 * check.c
 *	  halo_itsm.check_connection(): fetches a token with the integration's
 *	  credentials and looks up the configured team, category, client and
 *	  ticket type in Halo, answering in words an operator can act on. It
 *	  runs in the calling session (an explicit operator action, never in a
 *	  trigger), one blocking request at a time.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "halo_itsm.h"
#include "hi_answer.h"
#include "hi_http.h"
#include "hi_json.h"

PG_FUNCTION_INFO_V1(halo_itsm_check_connection);

/* Appends "key": "value" (JSON-escaped) to a JSON object under construction. */
static void
hi_add(StringInfo out, const char *key, const char *value)
{
	if (out->len > 1)
		appendStringInfoChar(out, ',');
	escape_json(out, key);
	appendStringInfoChar(out, ':');
	escape_json(out, value);
}

/* Runs a GET with the token; returns the request (caller frees) after it completed. */
static HiRequest *
hi_check_get(const char *base, const char *path, const char *query, const char *token)
{
	HiRequest  *req = hi_request_new("GET", base, path, query, token, NULL, NULL);

	hi_request_perform(req);
	return req;
}

/*
 * Searches a Halo list answer (a bare array, or an object with the list
 * under wrapper) for an element whose field equals the text or id given.
 * Returns 1 found, 0 not found, -1 not a list.
 */
static int
hi_list_contains(const char *body, const char *wrapper, const char *const *fields,
				 const char *text, int64 id)
{
	Jsonb	   *jb = hi_json_parse(body);
	JsonbContainer *list;
	int			i,
				n;

	if (jb == NULL)
		return -1;
	list = &jb->root;
	if (JsonContainerIsObject(list))
		list = hi_json_get_container(list, wrapper);
	if (list == NULL || !JsonContainerIsArray(list) || JsonContainerIsScalar(list))
		return -1;
	n = JsonContainerSize(list);
	for (i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(list, i);
		const char *const *f;

		if (v == NULL || v->type != jbvBinary)
			continue;
		for (f = fields; *f; f++)
		{
			if (text)
			{
				char	   *s = hi_json_get_text(v->val.binary.data, *f);

				if (s && strcmp(s, text) == 0)
					return 1;
			}
			else
			{
				int64		got;

				if (hi_json_get_int64(v->val.binary.data, *f, &got) && got == id)
					return 1;
			}
		}
	}
	return 0;
}

/* Checks one configured value against a Halo list endpoint; adds the verdict and any problem. */
static bool
hi_check_item(StringInfo out, StringInfo problems, const char *base, const char *token,
			  const char *label, const char *path, const char *wrapper,
			  const char *const *fields, const char *text, int64 id, const char *fix)
{
	HiRequest  *req = hi_check_get(base, path, NULL, token);
	int			found = -1;
	char		shown[64];
	bool		ok;

	if (req->result == CURLE_OK && req->status == 200)
		found = hi_list_contains(req->body, wrapper, fields, text, id);
	if (text == NULL)
		snprintf(shown, sizeof(shown), INT64_FORMAT, id);
	if (found == 1)
		hi_add(out, label, "found");
	else if (found == 0)
	{
		hi_add(out, label, "not found");
		if (problems->len > 0)
			appendStringInfoChar(problems, ',');
		{
			StringInfoData p;

			initStringInfo(&p);
			appendStringInfo(&p, "%s \"%s\" does not exist in Halo: %s", label, text ? text : shown, fix);
			escape_json(problems, p.data);
		}
	}
	else
	{
		char	   *d = req->result == CURLE_OK && req->status == 200 ?
			psprintf("halo_itsm: Halo's answer to GET %s is not a list", path) : hi_request_describe(req);

		hi_add(out, label, "could not check");
		if (problems->len > 0)
			appendStringInfoChar(problems, ',');
		escape_json(problems, d);
	}
	ok = found == 1;
	hi_request_free(req);
	return ok;
}

/* SQL: _check_connection(url, tenant, client_id, secret, team, category, client, tickettype_id) → jsonb. */
Datum
halo_itsm_check_connection(PG_FUNCTION_ARGS)
{
	char	   *base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *tenant = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *client_id = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *secret = PG_ARGISNULL(3) ? pstrdup("") : text_to_cstring(PG_GETARG_TEXT_PP(3));
	char	   *team = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	char	   *category = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	bool		has_client = !PG_ARGISNULL(6);
	int64		client = has_client ? PG_GETARG_INT32(6) : 0;
	int64		tickettype = PG_ARGISNULL(7) ? 1 : PG_GETARG_INT32(7);
	StringInfoData out,
				problems,
				body,
				query;
	HiRequest  *req;
	char	   *token = NULL;
	bool		ok = true;
	static const char *const name_fields[] = {"name", NULL};
	static const char *const category_fields[] = {"value", "name", NULL};
	static const char *const id_fields[] = {"id", NULL};

	initStringInfo(&out);
	initStringInfo(&problems);
	appendStringInfoChar(&out, '{');

	/* the token */
	initStringInfo(&body);
	initStringInfo(&query);
	appendStringInfo(&body, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
					 hi_url_escape(client_id), hi_url_escape(secret),
					 hi_url_escape("read:tickets edit:tickets read:customers"));
	if (tenant)
		appendStringInfo(&query, "tenant=%s", hi_url_escape(tenant));
	req = hi_request_new("POST", base, "/auth/token", query.data, NULL,
						 "application/x-www-form-urlencoded", body.data);
	explicit_bzero(body.data, body.len);
	explicit_bzero(secret, strlen(secret));
	hi_request_perform(req);
	if (req->result == CURLE_OK && req->status == 200)
	{
		Jsonb	   *jb = hi_json_parse(req->body);

		token = jb ? hi_json_get_text(&jb->root, "access_token") : NULL;
		/* the same rule as the engine's: a token must be able to travel in a header */
		if (token && !hi_token_is_usable(token, strlen(token)))
			token = NULL;
	}
	if (token && token[0])
		hi_add(&out, "token", "ok");
	else
	{
		char	   *d;

		ok = false;
		if (req->result == CURLE_OK && (req->status == 400 || req->status == 401))
			d = psprintf("halo_itsm: Halo refused the client ID and secret (HTTP %ld)%s: check the API application in Halo (Configuration > Integrations > Halo API) and call halo_itsm.set_credentials()",
						 req->status, tenant ? " for this tenant" : "");
		else
			d = hi_request_describe(req);
		hi_add(&out, "token", "failed");
		escape_json(&problems, d);
	}
	hi_request_free(req);

	if (token && token[0])
	{
		if (team)
			ok &= hi_check_item(&out, &problems, base, token, "team", "/api/Team", "teams", name_fields,
								team, 0, "use the name shown under Configuration > Teams, then call halo_itsm.configure()");
		else
			hi_add(&out, "team", "not configured");
		if (category)
			ok &= hi_check_item(&out, &problems, base, token, "category", "/api/Category", "categories",
								category_fields, category, 0,
								"use a category shown under Configuration > Tickets > Categories, then call halo_itsm.configure()");
		else
		{
			ok = false;
			hi_add(&out, "category", "not configured");
			if (problems.len > 0)
				appendStringInfoChar(&problems, ',');
			escape_json(&problems, "no category configured: call halo_itsm.configure(integration, category => '...')");
		}
		if (has_client)
			ok &= hi_check_item(&out, &problems, base, token, "client", "/api/Client", "clients", id_fields,
								NULL, client, "use a client id shown under Customers, then call halo_itsm.configure()");
		else
			hi_add(&out, "client", "not configured");
		ok &= hi_check_item(&out, &problems, base, token, "tickettype", "/api/TicketType", "tickettypes",
							id_fields, NULL, tickettype,
							"set the id of the Incident ticket type with halo_itsm.configure_ids()");
		explicit_bzero(token, strlen(token));
	}
	appendStringInfo(&out, ",\"ok\":%s,\"problems\":[%s]}", ok ? "true" : "false", problems.data);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
