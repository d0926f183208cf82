/*-------------------------------------------------------------------------
 * hi_instance.h
 *	  The delivery engine's view of each Halo integration: credentials,
 *	  authorisation server (configured or discovered), cached token, lanes
 *	  in use (instance.c), and its request budget as the engine asks for it
 *	  (instance.c, counted by budget.c, shared by every process).
 *	  Used by the engine (engine.c); the claim asks it which integrations
 *	  are busy (store.c), the worker makes it forget tokens (worker.c).
 *-------------------------------------------------------------------------
 */
#ifndef HI_INSTANCE_H
#define HI_INSTANCE_H

#include "datatype/timestamp.h"

#include "hi_engine.h"

/* One Halo integration as the engine sees it: credentials, token, lanes, budget. */
typedef struct HiInstance
{
	int			id;				/* hash key */
	char	   *base_url;
	char	   *tenant;
	char	   *client_id;
	char	   *client_secret;
	char	   *auth_url;		/* configured authorisation server, or NULL */
	char	   *scope;			/* configured scope, or NULL */
	char	   *auth_base;		/* the authorisation server in use, once resolved */
	char	   *auth_tenant;	/* the tenant GET /api/authinfo named, if any */
	int			auth_source;	/* HiAuthSource: how auth_base was found */
	char	   *token;
	TimestampTz token_expires;	/* when to renew it (a little before it expires) */
	bool		token_fetching;
	HiItem	   *token_waiters;
	int			active;			/* items started (in lanes) */
	int			held;			/* items started or waiting to start */
} HiInstance;

extern void hi_instances_init(MemoryContext cxt);
extern void hi_instances_reset(void);
extern HiInstance *hi_instance_for(HiItem *item);
extern void hi_instance_set_token(HiInstance *in, const char *token, TimestampTz expires);
extern void hi_instance_set_auth(HiInstance *in, const char *auth_base, const char *tenant, int source);
extern long hi_budget_wait_ms(HiInstance *in, TimestampTz now);
extern long hi_budget_spend(HiInstance *in, TimestampTz now);
extern int	hi_instances_busy(int **ids, HiItem *claimed, bool count_budget);
extern void hi_instances_forget_tokens(void);

#endif							/* HI_INSTANCE_H */
