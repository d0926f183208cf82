/*-------------------------------------------------------------------------
 * instance.c
 *	  The delivery engine's table of Halo integrations ("instances"): the
 *	  credentials of the latest claimed item, the cached OAuth2 token (dropped
 *	  when the credentials change), the lanes in use, and the request budget
 *	  (a ring of request start times per integration). Everything lives in
 *	  the engine's memory context and goes with it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_instance.h"

static MemoryContext instance_cxt = NULL;
static HTAB *instances = NULL;

static bool SetField(char **field, const char *value);

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
	if (changed)
		SetField(&in->token, NULL);
	return in;
}

/* Stores a new token (or none, with NULL) and when to renew it. */
void
hi_instance_set_token(HiInstance *in, const char *token, TimestampTz expires)
{
	SetField(&in->token, token);
	in->token_expires = token ? expires : 0;
}

/*
 * Integrations that should not be given another item now (their lanes and
 * one lane's worth of waiting items are full, or their budget is spent);
 * palloc'd array.
 */
int
hi_instances_busy(int **ids)
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
		if (in->held < 2 * hi_max_requests_per_instance && hi_budget_wait_ms(in, now) == 0)
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

/* Milliseconds until the integration may send another request (0: now). */
long
hi_budget_wait_ms(HiInstance *in, TimestampTz now)
{
	TimestampTz window = (TimestampTz) hi_request_budget_window_s * USECS_PER_SEC;

	if (hi_request_budget <= 0)
		return 0;
	if (in->sent_cap != hi_request_budget)
	{
		/* the budget changed (SIGHUP): start counting afresh */
		if (in->sent)
			pfree(in->sent);
		in->sent = MemoryContextAlloc(instance_cxt, sizeof(TimestampTz) * hi_request_budget);
		in->sent_cap = hi_request_budget;
		in->sent_head = 0;
		in->sent_n = 0;
	}
	while (in->sent_n > 0 && in->sent[in->sent_head] <= now - window)
	{
		in->sent_head = (in->sent_head + 1) % in->sent_cap;
		in->sent_n--;
	}
	if (in->sent_n < in->sent_cap)
		return 0;
	return (long) ((in->sent[in->sent_head] + window - now) / 1000) + 1;
}

/* Counts a request against the integration's budget. */
void
hi_budget_note(HiInstance *in, TimestampTz now)
{
	if (hi_request_budget <= 0 || in->sent_cap == 0 || in->sent_n >= in->sent_cap)
		return;
	in->sent[(in->sent_head + in->sent_n) % in->sent_cap] = now;
	in->sent_n++;
}

/* Forgets every cached token (credentials may have changed). */
void
hi_instances_forget_tokens(void)
{
	HASH_SEQ_STATUS seq;
	HiInstance *in;

	if (instances == NULL)
		return;
	hash_seq_init(&seq, instances);
	while ((in = hash_seq_search(&seq)) != NULL)
		SetField(&in->token, NULL);
}
