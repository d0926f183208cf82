/*-------------------------------------------------------------------------
 * instance.c
 *	  The delivery engine's table of Halo integrations ("instances"): the
 *	  credentials of the latest claimed item, the authorisation server in use
 *	  and the cached OAuth2 token (both dropped when the credentials or
 *	  settings change) and the lanes in use. The request budget is asked of
 *	  budget.c, shared by every process that sends. Everything lives in the
 *	  engine's memory context and goes with it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_instance.h"
#include "hi_token.h"

static MemoryContext instance_cxt = NULL;
static HTAB *instances = NULL;

static bool SetField(char **field, const char *value);
static int	ClaimedFor(HiItem *claimed, int id);

/* Creates the (empty) table of instances in the engine's memory context. */
void
hi_instances_init(MemoryContext cxt)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int);
	ctl.entrysize = sizeof(HiInstance);
	ctl.hcxt = cxt;
	instance_cxt = cxt;
	instances = hash_create("halo_itsm instances", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Forgets the table (the engine has deleted its memory context). */
void
hi_instances_reset(void)
{
	instances = NULL;
	instance_cxt = NULL;
}

/* Replaces *field with a copy of value when it differs (wiping the old one); true if it changed. */
static bool
SetField(char **field, const char *value)
{
	if (*field == NULL && value == NULL)
		return false;
	if (*field != NULL && value != NULL && strcmp(*field, value) == 0)
		return false;
	if (*field)
	{
		explicit_bzero(*field, strlen(*field));
		pfree(*field);
	}
	*field = value ? MemoryContextStrdup(instance_cxt, value) : NULL;
	return true;
}

/* The instance of an item's integration, refreshed with the item's credentials. */
HiInstance *
hi_instance_for(HiItem *item)
{
	bool		found;
	HiInstance *in = hash_search(instances, &item->integration_id, HASH_ENTER, &found);
	bool		changed = false;

	if (!found)
	{
		int			id = in->id;

		memset(in, 0, sizeof(HiInstance));
		in->id = id;
	}
	changed |= SetField(&in->base_url, item->instance_url);
	changed |= SetField(&in->tenant, item->tenant);
	changed |= SetField(&in->client_id, item->client_id);
	changed |= SetField(&in->client_secret, item->client_secret);
	changed |= SetField(&in->auth_url, item->auth_url);
	changed |= SetField(&in->scope, item->scope);
	if (changed)
	{
		/* new credentials or settings: a new token, and discovery anew */
		SetField(&in->token, NULL);
		hi_instance_set_auth(in, NULL, NULL, HI_AUTH_UNKNOWN);
	}
	return in;
}

/*
 * Records the authorisation server in use (a configured one, the one
 * discovered, or the default) and the tenant discovery named; NULL forgets
 * it, so that the next token is preceded by discovery.
 */
void
hi_instance_set_auth(HiInstance *in, const char *auth_base, const char *tenant, int source)
{
	SetField(&in->auth_base, auth_base);
	SetField(&in->auth_tenant, tenant);
	in->auth_source = auth_base ? source : HI_AUTH_UNKNOWN;
}

/* Stores a new token (or none, with NULL) and when to renew it. */
void
hi_instance_set_token(HiInstance *in, const char *token, TimestampTz expires)
{
	SetField(&in->token, token);
	in->token_expires = token ? expires : 0;
}

/* How many of the items in the list claimed belong to integration id. */
static int
ClaimedFor(HiItem *claimed, int id)
{
	int			n = 0;

	for (; claimed != NULL; claimed = claimed->next)
		if (claimed->integration_id == id)
			n++;
	return n;
}

/*
 * Integrations that should not be given another item now (their lanes and
 * one lane's worth of waiting items are full, or, when count_budget, their
 * budget is spent); palloc'd array. claimed: items claimed and not
 * submitted yet (a list, or NULL), counted as held by their integrations.
 */
int
hi_instances_busy(int **ids, HiItem *claimed, bool count_budget)
{
	HASH_SEQ_STATUS seq;
	HiInstance *in;
	int			n = 0,
				cap = 16;
	TimestampTz now = GetCurrentTimestamp();

	*ids = palloc(sizeof(int) * cap);
	if (instances == NULL)
		return 0;
	hash_seq_init(&seq, instances);
	while ((in = hash_seq_search(&seq)) != NULL)
	{
		if (in->held + ClaimedFor(claimed, in->id) < 2 * hi_max_requests_per_instance &&
			(!count_budget || hi_budget_wait_ms(in, now) == 0))
			continue;
		if (n == cap)
		{
			cap *= 2;
			*ids = repalloc(*ids, sizeof(int) * cap);
		}
		(*ids)[n++] = in->id;
	}
	return n;
}

/* Milliseconds until the integration may send another request (0: now); counts nothing. */
long
hi_budget_wait_ms(HiInstance *in, TimestampTz now)
{
	return hi_budget_take(in->id, now, false);
}

/*
 * Milliseconds until the integration may send another request; 0: now,
 * and the request is counted against the budget every process shares
 * (budget.c).
 */
long
hi_budget_spend(HiInstance *in, TimestampTz now)
{
	return hi_budget_take(in->id, now, true);
}

/* Forgets every cached token and authorisation server (credentials or settings may have changed). */
void
hi_instances_forget_tokens(void)
{
	HASH_SEQ_STATUS seq;
	HiInstance *in;

	if (instances == NULL)
		return;
	hash_seq_init(&seq, instances);
	while ((in = hash_seq_search(&seq)) != NULL)
	{
		SetField(&in->token, NULL);
		hi_instance_set_auth(in, NULL, NULL, HI_AUTH_UNKNOWN);
	}
}
