/*-------------------------------------------------------------------------
 * hi_token.h
 *	  The one home of the OAuth2 token request (token.c): where the token
 *	  comes from (a configured authorisation server, one discovered with
 *	  GET {instance}/api/authinfo, or {instance}/auth), the request body and
 *	  scope, and what a failed token request means. Used by the delivery
 *	  engine (engine.c) and check_connection() (check.c).
 *-------------------------------------------------------------------------
 */
#ifndef HI_TOKEN_H
#define HI_TOKEN_H

#include "hi_http.h"

/* the scope asked for when the integration sets none (configure_auth) */
#define HI_DEFAULT_SCOPE "read:tickets edit:tickets read:customers"

/* How the authorisation server was found. */
typedef enum HiAuthSource
{
	HI_AUTH_UNKNOWN,			/* not resolved yet: discovery needed */
	HI_AUTH_CONFIGURED,			/* configure_auth(auth_url => ...) */
	HI_AUTH_DISCOVERED,			/* GET {instance}/api/authinfo named it */
	HI_AUTH_DEFAULT				/* {instance}/auth: the instance offers no authinfo */
} HiAuthSource;

/* What an answer to GET /api/authinfo gave. */
typedef enum HiAuthinfoResult
{
	HI_AUTHINFO_FOUND,			/* a usable authorisation server URL */
	HI_AUTHINFO_NOT_OFFERED,	/* 404, 405, 410: fall back to {instance}/auth */
	HI_AUTHINFO_FAILED			/* anything else: the item fails with the reason */
} HiAuthinfoResult;

extern const char *hi_auth_source_name(HiAuthSource source);
extern char *hi_auth_default_base(const char *instance_url);
extern char *hi_check_auth_url(const char *url);
extern HiRequest *hi_authinfo_request_new(const char *instance_url);
extern HiAuthinfoResult hi_authinfo_answer(HiRequest *req, char **auth_base, char **tenant,
										   char **why);
extern char *hi_authinfo_describe(const HiRequest *req, const char *why);
extern char *hi_token_url(const char *auth_base, const char *tenant);
extern HiRequest *hi_token_request_new(const char *instance_url, const char *auth_base,
									   const char *tenant, const char *client_id,
									   const char *client_secret, const char *scope);
extern bool hi_token_url_suspect(const HiRequest *req);
extern bool hi_token_scope_refused(const HiRequest *req);
extern char *hi_token_failure_describe(const HiRequest *req, const char *scope, bool with_tenant);

#endif							/* HI_TOKEN_H */
