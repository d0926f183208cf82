/*-------------------------------------------------------------------------
 * check.c
 *	  halo_itsm.check_connection(): finds the authorisation server
 *	  (configured, discovered with GET /api/authinfo, or {instance}/auth),
 *	  fetches a token with the integration's credentials and scope, and
 *	  looks up the configured team, category, client and ticket type in
 *	  Halo, answering in words an operator can act on. It runs in the
 *	  calling session (an explicit operator action, never in a trigger), one
 *	  blocking request at a time.
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
#include "hi_token.h"

PG_FUNCTION_INFO_V1(halo_itsm_check_connection);

/* One check in progress: the integration's settings and the answer under construction. */
typedef struct CheckState
{
	char	   *base;			/* the instance URL */
	char	   *tenant;
	char	   *client_id;
	char	   *secret;
	char	   *auth_url;		/* configured authorisation server, or NULL */
	char	   *scope;			/* configured scope, or NULL (the default) */
	char	   *auth_base;		/* the authorisation server used */
	char	   *token;
	StringInfoData out;			/* the JSON object, without its closing brace */
	StringInfoData problems;	/* JSON strings separated by commas */
	bool		ok;
} CheckState;

static void CheckAdd(CheckState *cs, const char *key, const char *value);
static void CheckProblem(CheckState *cs, const char *text);
static HiRequest *CheckGet(CheckState *cs, const char *path);
static int CheckListContains(const char *body, const char *wrapper, const char *const *fields,
							 const char *text, int64 id);
static void CheckItem(CheckState *cs, const char *label, const char *path, const char *wrapper,
					  const char *const *fields, const char *text, int64 id, const char *fix);
static bool CheckResolveAuth(CheckState *cs);
static void CheckFetchToken(CheckState *cs);
static void CheckConfiguration(CheckState *cs, const char *team, const char *category,
							   bool has_client, int64 client, int64 tickettype);

/* Appends "key": "value" (JSON-escaped) to the answer. */
static void
CheckAdd(CheckState *cs, const char *key, const char *value)
{
	if (cs->out.len > 1)
		appendStringInfoChar(&cs->out, ',');
	escape_json(&cs->out, key);
	appendStringInfoChar(&cs->out, ':');
	escape_json(&cs->out, value);
}

/* Adds a problem (a sentence that says what to do) to the answer. */
static void
CheckProblem(CheckState *cs, const char *text)
{
	if (cs->problems.len > 0)
		appendStringInfoChar(&cs->problems, ',');
	escape_json(&cs->problems, text);
}

/* Runs a GET with the token; returns the request (caller frees) after it completed. */
static HiRequest *
CheckGet(CheckState *cs, const char *path)
{
	HiRequest  *req = hi_request_new("GET", cs->base, path, NULL, cs->token, NULL, NULL);

	hi_request_perform(req);
	return req;
}

/*
 * Searches a Halo list answer (a bare array, or an object with the list
 * under wrapper) for an element whose field equals the text or id given.
 * Returns 1 found, 0 not found, -1 not a list.
 */
static int
CheckListContains(const char *body, const char *wrapper, const char *const *fields,
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
			int64		got;
			char	   *s;

			if (text && (s = hi_json_get_text(v->val.binary.data, *f)) != NULL && strcmp(s, text) == 0)
				return 1;
			if (!text && hi_json_get_int64(v->val.binary.data, *f, &got) && got == id)
				return 1;
		}
	}
	return 0;
}

/* Checks one configured value against a Halo list endpoint; adds the verdict and any problem. */
static void
CheckItem(CheckState *cs, const char *label, const char *path, const char *wrapper,
		  const char *const *fields, const char *text, int64 id, const char *fix)
{
	HiRequest  *req = CheckGet(cs, path);
	bool		answered = req->result == CURLE_OK && req->status == 200;
	int			found = answered ? CheckListContains(req->body, wrapper, fields, text, id) : -1;
	char	   *shown = text ? pstrdup(text) : psprintf(INT64_FORMAT, id);

	if (found == 1)
		CheckAdd(cs, label, "found");
	else if (found == 0)
	{
		CheckAdd(cs, label, "not found");
		CheckProblem(cs, psprintf("%s \"%s\" does not exist in Halo: %s", label, shown, fix));
	}
	else
	{
		CheckAdd(cs, label, "could not check");
		CheckProblem(cs, answered ? psprintf("halo_itsm: Halo's answer to GET %s is not a list", path) :
					 hi_request_describe(req));
	}
	cs->ok &= found == 1;
	hi_request_free(req);
}

/*
 * Finds the authorisation server: the configured one, else the one GET
 * /api/authinfo names, else {instance}/auth when the instance does not
 * offer authinfo. Adds token_url and token_url_source; false (with the
 * problem) when discovery failed.
 */
static bool
CheckResolveAuth(CheckState *cs)
{
	HiAuthSource source = HI_AUTH_CONFIGURED;
	char	   *found_tenant = NULL;

	if (cs->auth_url)
		cs->auth_base = cs->auth_url;
	else
	{
		HiRequest  *req = hi_authinfo_request_new(cs->base);
		char	   *why;

		hi_request_perform(req);
		switch (hi_authinfo_answer(req, &cs->auth_base, &found_tenant, &why))
		{
			case HI_AUTHINFO_FOUND:
				source = HI_AUTH_DISCOVERED;
				break;
			case HI_AUTHINFO_NOT_OFFERED:
				source = HI_AUTH_DEFAULT;
				cs->auth_base = hi_auth_default_base(cs->base);
				break;
			case HI_AUTHINFO_FAILED:
				CheckAdd(cs, "token_url_source", "discovery failed");
				CheckProblem(cs, hi_authinfo_describe(req, why));
				hi_request_free(req);
				return false;
		}
		hi_request_free(req);
	}
	/* the integration's own tenant wins over the one authinfo names */
	if (cs->tenant == NULL)
		cs->tenant = found_tenant;
	CheckAdd(cs, "token_url", hi_token_url(cs->auth_base, cs->tenant));
	CheckAdd(cs, "token_url_source", hi_auth_source_name(source));
	return true;
}

/* Fetches a token (cs->token, or NULL with the problem added); wipes the secret. */
static void
CheckFetchToken(CheckState *cs)
{
	HiRequest  *req = hi_token_request_new(cs->base, cs->auth_base, cs->tenant, cs->client_id,
										   cs->secret, cs->scope);
	char	   *token = NULL;

	explicit_bzero(cs->secret, strlen(cs->secret));
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
	{
		CheckAdd(cs, "token", "ok");
		cs->token = token;
	}
	else
	{
		CheckAdd(cs, "token", "failed");
		CheckProblem(cs, hi_token_failure_describe(req, cs->scope, cs->tenant != NULL));
	}
	hi_request_free(req);
}

/* Looks up the configured team, category, client and ticket type with the token. */
static void
CheckConfiguration(CheckState *cs, const char *team, const char *category, bool has_client,
				   int64 client, int64 tickettype)
{
	static const char *const name_fields[] = {"name", NULL};
	static const char *const category_fields[] = {"value", "name", NULL};
	static const char *const id_fields[] = {"id", NULL};

	if (team)
		CheckItem(cs, "team", "/api/Team", "teams", name_fields, team, 0,
				  "use the name shown under Configuration > Teams, then call halo_itsm.configure()");
	else
		CheckAdd(cs, "team", "not configured");
	if (category)
		CheckItem(cs, "category", "/api/Category", "categories", category_fields, category, 0,
				  "use a category shown under Configuration > Tickets > Categories, then call halo_itsm.configure()");
	else
	{
		cs->ok = false;
		CheckAdd(cs, "category", "not configured");
		CheckProblem(cs, "no category configured: call halo_itsm.configure(integration, category => '...')");
	}
	if (has_client)
		CheckItem(cs, "client", "/api/Client", "clients", id_fields, NULL, client,
				  "use a client id shown under Customers, then call halo_itsm.configure()");
	else
		CheckAdd(cs, "client", "not configured");
	CheckItem(cs, "tickettype", "/api/TicketType", "tickettypes", id_fields, NULL, tickettype,
			  "set the id of the Incident ticket type with halo_itsm.configure_ids()");
}

/* The text argument n, or NULL when it is NULL. */
#define CheckTextArg(n) (PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n)))

/*
 * SQL: _check_connection(url, tenant, client_id, secret, team, category,
 * client, tickettype_id, auth_url, scope) → jsonb.
 */
Datum
halo_itsm_check_connection(PG_FUNCTION_ARGS)
{
	CheckState	cs;

	memset(&cs, 0, sizeof(cs));
	cs.base = text_to_cstring(PG_GETARG_TEXT_PP(0));
	cs.tenant = CheckTextArg(1);
	cs.client_id = text_to_cstring(PG_GETARG_TEXT_PP(2));
	cs.secret = PG_ARGISNULL(3) ? pstrdup("") : text_to_cstring(PG_GETARG_TEXT_PP(3));
	cs.auth_url = CheckTextArg(8);
	cs.scope = CheckTextArg(9);
	cs.ok = true;
	initStringInfo(&cs.out);
	initStringInfo(&cs.problems);
	appendStringInfoChar(&cs.out, '{');

	CheckAdd(&cs, "scope", cs.scope ? cs.scope : HI_DEFAULT_SCOPE);
	if (CheckResolveAuth(&cs))
		CheckFetchToken(&cs);
	else
	{
		explicit_bzero(cs.secret, strlen(cs.secret));
		CheckAdd(&cs, "token", "failed");
	}
	if (cs.token)
	{
		CheckConfiguration(&cs, CheckTextArg(4), CheckTextArg(5), !PG_ARGISNULL(6),
						   PG_ARGISNULL(6) ? 0 : PG_GETARG_INT32(6),
						   PG_ARGISNULL(7) ? 1 : PG_GETARG_INT32(7));
		explicit_bzero(cs.token, strlen(cs.token));
	}
	else
		cs.ok = false;
	appendStringInfo(&cs.out, ",\"ok\":%s,\"problems\":[%s]}", cs.ok ? "true" : "false", cs.problems.data);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(cs.out.data)));
}
