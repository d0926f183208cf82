/*-------------------------------------------------------------------------
 * rejected.c
 *	  The kept rejected webhook deliveries: a ring of HI_REJECTED_SLOTS
 *	  slots in shared memory, so that recording a rejection survives the
 *	  rollback of the transaction whose ingest_webhook() raised it. Read by
 *	  the view halo_itsm.rejected_webhooks and by diagnose_webhook().
 *
 * Bounds (constants, docs/webhooks.md "Diagnosing a rejected webhook"): at most
 * HI_REJECTED_SLOTS deliveries over all databases (the oldest is replaced),
 * each at most HI_REJECTED_SLOT_BYTES of headers and body (the body is not
 * kept when it does not fit, the headers neither when they alone do not),
 * shown for HI_REJECTED_MAX_AGE_S seconds; lost when the server restarts.
 * Only deliveries that named a real webhook key are recorded (the caller
 * looks the key up first), so an attacker without a key stores nothing.
 * Without shared_preload_libraries nothing is kept.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"

#define HI_REJECTED_SLOTS		32
#define HI_REJECTED_SLOT_BYTES	(64 * 1024)
#define HI_REJECTED_MAX_AGE_S	(7 * 24 * 3600)
#define HI_REJECTED_REASON_LEN	512

/* One kept delivery. */
typedef struct HiRejectedSlot
{
	int64		id;				/* 0: empty */
	Oid			db;
	int32		integration_id;
	TimestampTz received_at;
	char		sqlstate[6];
	char		reason[HI_REJECTED_REASON_LEN];
	int32		headers_len;	/* -1: not kept */
	int32		body_len;		/* -1: not kept */
	char		data[HI_REJECTED_SLOT_BYTES];	/* headers (JSON text), then body */
} HiRejectedSlot;

/* The ring. */
typedef struct HiRejectedRing
{
	LWLock	   *lock;
	int64		next_id;
	HiRejectedSlot slots[HI_REJECTED_SLOTS];
} HiRejectedRing;

static HiRejectedRing *ring = NULL;

PG_FUNCTION_INFO_V1(halo_itsm_rejected_webhooks);

static bool CopyIfShown(int i, HiRejectedSlot *out, TimestampTz now);

/* Asks for the ring's shared memory and its lock (from the shmem_request_hook). */
void
hi_rejected_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(HiRejectedRing)));
	RequestNamedLWLockTranche("halo_itsm_rejected", 1);
}

/* Creates or attaches to the ring (called with AddinShmemInitLock held). */
void
hi_rejected_shmem_startup(void)
{
	bool		found;

	ring = ShmemInitStruct("halo_itsm rejected webhooks", sizeof(HiRejectedRing), &found);
	if (!found)
	{
		memset(ring, 0, sizeof(*ring));
		ring->lock = &(GetNamedLWLockTranche("halo_itsm_rejected"))->lock;
		ring->next_id = 1;
	}
}

/* Keeps one rejected delivery (replacing the oldest); a no-op without shared memory. */
void
hi_rejected_record(int integration_id, int sqlerrcode, const char *reason,
				   const char *headers, const char *body, int64 body_len)
{
	HiRejectedSlot *slot;
	int			i;
	int			victim = 0;
	int32		hlen = headers ? (int32) strlen(headers) : -1;

	if (ring == NULL)
		return;
	if (hlen > HI_REJECTED_SLOT_BYTES)
		hlen = -1;
	if (body == NULL || body_len < 0 || body_len > HI_REJECTED_SLOT_BYTES - Max(hlen, 0))
		body_len = -1;

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	for (i = 0; i < HI_REJECTED_SLOTS; i++)
		if (ring->slots[i].id < ring->slots[victim].id)
			victim = i;
	slot = &ring->slots[victim];
	slot->id = ring->next_id++;
	slot->db = MyDatabaseId;
	slot->integration_id = integration_id;
	slot->received_at = GetCurrentTimestamp();
	strlcpy(slot->sqlstate, unpack_sql_state(sqlerrcode), sizeof(slot->sqlstate));
	strlcpy(slot->reason, reason ? reason : "", sizeof(slot->reason));
	slot->headers_len = hlen;
	if (hlen > 0)
		memcpy(slot->data, headers, hlen);
	slot->body_len = (int32) body_len;
	if (body_len > 0)
		memcpy(slot->data + Max(hlen, 0), body, body_len);
	LWLockRelease(ring->lock);
}

/* Copies a slot out under the lock when it is shown (this database, young enough). */
static bool
CopyIfShown(int i, HiRejectedSlot *out, TimestampTz now)
{
	HiRejectedSlot *s = &ring->slots[i];
	bool		shown;

	LWLockAcquire(ring->lock, LW_SHARED);
	shown = s->id != 0 && s->db == MyDatabaseId &&
		!TimestampDifferenceExceeds(s->received_at, now, HI_REJECTED_MAX_AGE_S * 1000);
	if (shown)
		memcpy(out, s, offsetof(HiRejectedSlot, data) + Max(s->headers_len, 0) + Max(s->body_len, 0));
	LWLockRelease(ring->lock);
	return shown;
}

/* The kept delivery with this id (headers and body palloc'd; NULL when not kept); false when none. */
bool
hi_rejected_fetch(int64 id, HiRejected *r)
{
	HiRejectedSlot *tmp;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	memset(r, 0, sizeof(*r));
	if (ring == NULL)
		return false;
	tmp = palloc(sizeof(HiRejectedSlot));
	for (i = 0; i < HI_REJECTED_SLOTS; i++)
	{
		if (!CopyIfShown(i, tmp, now) || tmp->id != id)
			continue;
		r->id = tmp->id;
		r->integration_id = tmp->integration_id;
		r->received_at = tmp->received_at;
		strlcpy(r->sqlstate, tmp->sqlstate, sizeof(r->sqlstate));
		r->reason = pstrdup(tmp->reason);
		r->headers = tmp->headers_len >= 0 ? pnstrdup(tmp->data, tmp->headers_len) : NULL;
		r->body_len = tmp->body_len;
		if (tmp->body_len >= 0)
		{
			r->body = palloc(tmp->body_len + 1);
			memcpy(r->body, tmp->data + Max(tmp->headers_len, 0), tmp->body_len);
		}
		pfree(tmp);
		return true;
	}
	pfree(tmp);
	return false;
}

/*
 * SQL: halo_itsm._rejected_webhooks() RETURNS TABLE (id, integration_id,
 * received_at, sqlstate, reason, headers, body): this database's kept
 * deliveries, newest first. Readable through the view rejected_webhooks.
 */
Datum
halo_itsm_rejected_webhooks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HiRejectedSlot *tmp;
	TimestampTz now = GetCurrentTimestamp();
	int64		last = PG_INT64_MAX;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (ring == NULL)
		return (Datum) 0;
	tmp = palloc(sizeof(HiRejectedSlot));
	/* newest first: pick the largest id below the last one shown, each round */
	for (n = 0; n < HI_REJECTED_SLOTS; n++)
	{
		int64		best = 0;
		int			best_i = -1;
		int			i;
		Datum		values[7];
		bool		nulls[7] = {false};

		LWLockAcquire(ring->lock, LW_SHARED);
		for (i = 0; i < HI_REJECTED_SLOTS; i++)
			if (ring->slots[i].id > best && ring->slots[i].id < last)
			{
				best = ring->slots[i].id;
				best_i = i;
			}
		LWLockRelease(ring->lock);
		if (best_i < 0)
			break;
		last = best;
		if (!CopyIfShown(best_i, tmp, now) || tmp->id != best)
			continue;
		values[0] = Int64GetDatum(tmp->id);
		values[1] = Int32GetDatum(tmp->integration_id);
		values[2] = TimestampTzGetDatum(tmp->received_at);
		values[3] = CStringGetTextDatum(tmp->sqlstate);
		values[4] = CStringGetTextDatum(tmp->reason);
		if (tmp->headers_len >= 0)
			values[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(tmp->data, tmp->headers_len)));
		else
			nulls[5] = true;
		if (tmp->body_len >= 0)
		{
			bytea	   *b = palloc(VARHDRSZ + tmp->body_len);

			SET_VARSIZE(b, VARHDRSZ + tmp->body_len);
			memcpy(VARDATA(b), tmp->data + Max(tmp->headers_len, 0), tmp->body_len);
			values[6] = PointerGetDatum(b);
		}
		else
			nulls[6] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(tmp);
	return (Datum) 0;
}
