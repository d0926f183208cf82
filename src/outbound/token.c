/*-------------------------------------------------------------------------
 * token.c
 *	  The one home of the OAuth2 token request, for the delivery engine and
 *	  check_connection(). The token comes from {auth_url}/token (?tenant=
 *	  when there is a tenant), where auth_url is the integration's
 *	  authorisation server: configured with configure_auth(), or named by
 *	  GET {instance}/api/authinfo, or {instance}/auth when the instance does
 *	  not offer authinfo (404, 405, 410). A discovered URL receives the
 *	  client secret, so it must pass the same check as a configured one
 *	  (hi_url_problem: https, no credentials, ...); any other unusable
 *	  authinfo answer is an error with its reason, never a guess.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "halo_itsm.h"
#include "hi_json.h"
#include "hi_token.h"

static const char *AuthUrlProblem(const char *url, char **normalised, bool *invalid);

/* The word check_connection() shows for how the authorisation server was found. */
const char *
hi_auth_source_name(HiAuthSource source)
{
	switch (source)
	{
		case HI_AUTH_CONFIGURED:
			return "configured";
		case HI_AUTH_DISCOVERED:
			return "discovered";
		case HI_AUTH_DEFAULT:
			return "default";
		case HI_AUTH_UNKNOWN:
			break;
	}
	return "unknown";
}

/* {instance}/auth: the authorisation server when the instance names none (palloc'd). */
char *
hi_auth_default_base(const char *instance_url)
{
	return psprintf("%s/auth", instance_url);
}

/*
 * What is wrong with url as an authorisation server URL (NULL: nothing;
 * *normalised set): the instance URL rules, and no trailing /token (the
 * token path is appended).
 */
static const char *
AuthUrlProblem(const char *url, char **normalised, bool *invalid)
{
	const char *problem = hi_url_problem(url, normalised, invalid);
	size_t		len;

	if (problem)
		return problem;
	len = strlen(*normalised);
	if (len >= 6 && pg_strcasecmp(*normalised + len - 6, "/token") == 0)
		return "it ends in /token, which halo_itsm appends itself";
	return NULL;
}

/* Validates and normalises an authorisation server URL; raises a clear error when it is unusable. */
char *
hi_check_auth_url(const char *url)
{
	bool		invalid;
	char	   *norm;
	const char *problem = AuthUrlProblem(url, &norm, &invalid);

	if (problem)
		hi_url_error("authorisation server URL", problem, invalid,
					 "Pass the Authorisation Server shown under the API application's API Details in Halo, e.g. https://yourcompany.halopsa.com/auth (no /token, no credentials), or '' to discover it.");
	return norm;
}

/*
 * GET {instance}/api/authinfo (no token: Halo answers it to anyone). On a
 * connection of its own, never one kept alive from an earlier request: the
 * open-socket callback then checks the address under the settings in force
 * (halo_itsm.allow_private_addresses may have changed on reload).
 */
HiRequest *
hi_authinfo_request_new(const char *instance_url)
{
	HiRequest  *req = hi_request_new("GET", instance_url, "/api/authinfo", NULL, NULL, NULL, NULL);

	curl_easy_setopt(req->easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(req->easy, CURLOPT_FORBID_REUSE, 1L);
	return req;
}

/*
 * Reads the answer to GET /api/authinfo. FOUND: *auth_base is the checked,
 * normalised authorisation server URL and *tenant the tenant it names (or
 * NULL). NOT_OFFERED: the instance has no such endpoint (404, 405, 410).
 * FAILED: a 2xx that cannot be used sets *why (palloc'd: what is wrong);
 * any other failure leaves it NULL (hi_request_describe() tells).
 */
HiAuthinfoResult
hi_authinfo_answer(HiRequest *req, char **auth_base, char **tenant, char **why)
{
	char	   *url;
	bool		invalid;
	const char *problem;

	*auth_base = NULL;
	*tenant = NULL;
	*why = NULL;
	if (req->result == CURLE_OK && (req->status == 404 || req->status == 405 || req->status == 410))
		return HI_AUTHINFO_NOT_OFFERED;
	if (req->result != CURLE_OK || req->status < 200 || req->status >= 300)
		return HI_AUTHINFO_FAILED;
	url = hi_json_authinfo(req->body, req->body_len, tenant, why);
	if (url == NULL)
		return HI_AUTHINFO_FAILED;
	problem = AuthUrlProblem(url, auth_base, &invalid);
	if (problem == NULL)
		return HI_AUTHINFO_FOUND;
	*auth_base = NULL;
	*tenant = NULL;
	*why = psprintf("its auth_url is unusable: %s (halo_itsm.configure_auth(integration, auth_url => '...') sets the authorisation server)",
					problem);
	return HI_AUTHINFO_FAILED;
}

/* Why discovery failed, for an operator (palloc'd), from hi_authinfo_answer()'s why. */
char *
hi_authinfo_describe(const HiRequest *req, const char *why)
{
	if (why == NULL)
		return hi_request_describe(req);
	return psprintf("halo_itsm: Halo's answer %ld to %s cannot be used: %s; it reads: %s",
					req->status, req->path, why, hi_answer_excerpt(req, 200));
}

/* {auth_base}/token[?tenant=T], as requested and as check_connection() shows it (palloc'd). */
char *
hi_token_url(const char *auth_base, const char *tenant)
{
	if (tenant)
		return psprintf("%s/token?tenant=%s", auth_base, hi_url_escape(tenant));
	return psprintf("%s/token", auth_base);
}

/*
 * The token request: POST {auth_base}/token[?tenant=] with the client
 * credentials and the scope (HI_DEFAULT_SCOPE when scope is NULL) as a form.
 * Messages name it relative to the instance when the authorisation server is
 * under the instance URL ("POST /auth/token"), else by its whole URL.
 */
HiRequest *
hi_token_request_new(const char *instance_url, const char *auth_base, const char *tenant,
					 const char *client_id, const char *client_secret, const char *scope)
{
	StringInfoData body;
	char	   *e_secret = hi_url_escape(client_secret);
	char	   *query = tenant ? psprintf("tenant=%s", hi_url_escape(tenant)) : NULL;
	char	   *path = psprintf("%s/token", auth_base);
	size_t		ilen = strlen(instance_url);
	HiRequest  *req;

	initStringInfo(&body);
	appendStringInfo(&body, "grant_type=client_credentials&client_id=%s&client_secret=%s&scope=%s",
					 hi_url_escape(client_id), e_secret, hi_url_escape(scope ? scope : HI_DEFAULT_SCOPE));
	if (strncmp(path, instance_url, ilen) == 0 && path[ilen] == '/')
		req = hi_request_new("POST", instance_url, path + ilen, query, NULL,
							 "application/x-www-form-urlencoded", body.data);
	else
		req = hi_request_new("POST", "", path, query, NULL,
							 "application/x-www-form-urlencoded", body.data);
	explicit_bzero(body.data, body.len);
	explicit_bzero(e_secret, strlen(e_secret));
	pfree(body.data);
	pfree(e_secret);
	return req;
}

/*
 * True when a failed token request suggests that its URL is wrong (no such
 * host or port, TLS trouble, no such path): a discovered URL is then
 * forgotten and discovered again at the next attempt.
 */
bool
hi_token_url_suspect(const HiRequest *req)
{
	switch (req->result)
	{
		case CURLE_OK:
			return req->status == 404 || req->status == 405 || req->status == 410;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
			return true;
		default:
			return false;
	}
}

/* True when the authorisation server refused the scope asked for (OAuth2 invalid_scope). */
bool
hi_token_scope_refused(const HiRequest *req)
{
	return req->result == CURLE_OK && req->status == 400 && req->body &&
		strstr(req->body, "invalid_scope") != NULL;
}

/*
 * What a failed token request means, for an operator (palloc'd; never
 * quotes a token): a refused scope, refused credentials, or the request's
 * own description.
 */
char *
hi_token_failure_describe(const HiRequest *req, const char *scope, bool with_tenant)
{
	if (hi_token_scope_refused(req))
		return psprintf("halo_itsm: the authorisation server refused the scope \"%s\" (HTTP 400 invalid_scope): give the API application these permissions in Halo (Configuration > Integrations > Halo API), or call halo_itsm.configure_auth(integration, scope => '...') with the scopes it grants, e.g. 'all'",
						scope ? scope : HI_DEFAULT_SCOPE);
	if (req->result == CURLE_OK && (req->status == 400 || req->status == 401))
		return psprintf("halo_itsm: Halo refused the client ID and secret (HTTP %ld)%s: check the API application in Halo (Configuration > Integrations > Halo API) and call halo_itsm.set_credentials()",
						req->status, with_tenant ? " for this tenant" : "");
	return hi_request_describe(req);
}
