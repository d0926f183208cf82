/*-------------------------------------------------------------------------
 * budget.c
 *	  The request budget of each Halo integration (halo_itsm.request_budget
 *	  requests within halo_itsm.request_budget_window), shared by every
 *	  process that sends: the delivery worker, CALL deliver() from pg_cron
 *	  or by hand, any number at once. With the library preloaded the counts
 *	  live in shared memory, in halo_itsm.budget_slots slots keyed by
 *	  (database, integration); without it, in this process only (then each
 *	  CALL deliver() starts afresh, as the README says).
 *
 *	  Each slot counts requests in BUCKETS buckets of window/BUCKETS, plus
 *	  one: the buckets a window ending now can touch. A request is allowed
 *	  when their sum is below the budget. The sum covers at least the last
 *	  window, so no window of that length ever holds more requests than the
 *	  budget; the price is a wait of at most one bucket longer than an exact
 *	  sliding window. A slot with nothing in its window is free again; when
 *	  every slot is in use, an integration without one waits for one (said
 *	  in the log).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"

#define BUCKETS 64
#define RING (BUCKETS + 1)
#define LOCAL_SLOTS 64
#define FULL_WARNING_REPEAT_US (60 * USECS_PER_SEC)

/* One integration's counts. */
typedef struct BudgetSlot
{
	Oid			dbid;			/* InvalidOid: never used */
	int			integration_id;
	int			window_s;		/* the window the buckets were cut for */
	int64		last_bucket;	/* absolute number of the newest bucket counted */
	TimestampTz last_used;		/* the newest request counted */
	int32		counts[RING];	/* indexed by absolute bucket number % RING */
} BudgetSlot;

/* The table of slots, in shared memory or (without preloading) in this process. */
typedef struct BudgetTable
{
	LWLock	   *lock;			/* NULL in a process-local table */
	int			nslots;
	BudgetSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} BudgetTable;

static BudgetTable *shared_table = NULL;
static BudgetTable *local_table = NULL;

static Size TableSize(int nslots);
static BudgetTable *Table(void);
static int64 BucketWidth(void);
static void Advance(BudgetSlot *slot, int64 bucket);
static int	Sum(BudgetSlot *slot);
static long WaitFor(BudgetSlot *slot, int64 bucket, int64 width, TimestampTz now);
static BudgetSlot *FindSlot(BudgetTable *t, int integration_id, TimestampTz now, bool claim,
							long *wait_ms);
static void SayFull(BudgetTable *t, int integration_id);
static long TakeLocked(BudgetTable *t, int integration_id, TimestampTz now, bool take);

PG_FUNCTION_INFO_V1(halo_itsm_request_budget);
PG_FUNCTION_INFO_V1(halo_itsm_budget_used);

/* Bytes of a table of nslots slots. */
static Size
TableSize(int nslots)
{
	return add_size(offsetof(BudgetTable, slots), mul_size(sizeof(BudgetSlot), nslots));
}

/* Asks for the shared table and its lock (from the shmem_request_hook). */
void
hi_budget_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(TableSize(hi_budget_slots)));
	RequestNamedLWLockTranche("halo_itsm budget", 1);
}

/* Creates or attaches to the shared table (AddinShmemInitLock held). */
void
hi_budget_shmem_startup(void)
{
	bool		found;

	shared_table = ShmemInitStruct("halo_itsm budget", TableSize(hi_budget_slots), &found);
	if (!found)
	{
		memset(shared_table, 0, TableSize(hi_budget_slots));
		shared_table->lock = &(GetNamedLWLockTranche("halo_itsm budget"))->lock;
		shared_table->nslots = hi_budget_slots;
	}
}

/* The shared table, or this process's own when the library was not preloaded. */
static BudgetTable *
Table(void)
{
	if (shared_table != NULL)
		return shared_table;
	if (local_table == NULL)
		local_table = MemoryContextAllocZero(TopMemoryContext, TableSize(LOCAL_SLOTS));
	local_table->nslots = LOCAL_SLOTS;
	return local_table;
}

/* Microseconds per bucket: the window in BUCKETS parts, rounded up. */
static int64
BucketWidth(void)
{
	return ((int64) hi_request_budget_window_s * USECS_PER_SEC + BUCKETS - 1) / BUCKETS;
}

/* Moves the slot on to bucket, emptying the buckets that left the window. */
static void
Advance(BudgetSlot *slot, int64 bucket)
{
	int64		b;

	if (bucket <= slot->last_bucket)
		return;
	if (bucket - slot->last_bucket >= RING)
		memset(slot->counts, 0, sizeof(slot->counts));
	else
		for (b = slot->last_bucket + 1; b <= bucket; b++)
			slot->counts[b % RING] = 0;
	slot->last_bucket = bucket;
}

/* Requests counted in the buckets a window ending in the newest bucket touches. */
static int
Sum(BudgetSlot *slot)
{
	int			i,
				sum = 0;

	for (i = 0; i < RING; i++)
		sum += slot->counts[i];
	return sum;
}

/* Milliseconds until the sum falls below the budget, the oldest buckets leaving first. */
static long
WaitFor(BudgetSlot *slot, int64 bucket, int64 width, TimestampTz now)
{
	int			sum = Sum(slot);
	int64		k;

	for (k = bucket - BUCKETS; k <= bucket; k++)
	{
		sum -= slot->counts[k % RING];
		if (sum < hi_request_budget)
			return (long) (((k + RING) * width - now) / 1000) + 1;
	}
	return (long) (RING * width / 1000) + 1;
}

/*
 * The slot of the integration in this database; with claim, a free one
 * (never used, or with nothing in its window) is taken for it. NULL when
 * there is none: *wait_ms says when a slot frees up.
 */
static BudgetSlot *
FindSlot(BudgetTable *t, int integration_id, TimestampTz now, bool claim, long *wait_ms)
{
	TimestampTz window = (TimestampTz) hi_request_budget_window_s * USECS_PER_SEC + BucketWidth();
	BudgetSlot *free_slot = NULL;
	TimestampTz oldest = 0;
	int			i;

	*wait_ms = 0;
	for (i = 0; i < t->nslots; i++)
	{
		BudgetSlot *slot = &t->slots[i];

		if (slot->dbid == MyDatabaseId && slot->integration_id == integration_id)
			return slot;
		if (free_slot == NULL && (slot->dbid == InvalidOid || slot->last_used <= now - window))
			free_slot = slot;
		if (oldest == 0 || slot->last_used < oldest)
			oldest = slot->last_used;
	}
	if (free_slot == NULL)
	{
		*wait_ms = (long) ((oldest + window - now) / 1000) + 1;
		return NULL;
	}
	if (!claim)
		return NULL;
	memset(free_slot, 0, sizeof(BudgetSlot));
	free_slot->dbid = MyDatabaseId;
	free_slot->integration_id = integration_id;
	free_slot->window_s = hi_request_budget_window_s;
	free_slot->last_bucket = now / BucketWidth();
	return free_slot;
}

/* Says in the log, at most once a minute per process, that every slot is in use. */
static void
SayFull(BudgetTable *t, int integration_id)
{
	static TimestampTz said_at = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (said_at != 0 && now < said_at + FULL_WARNING_REPEAT_US)
		return;
	said_at = now;
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("halo_itsm: every request budget slot is in use (halo_itsm.budget_slots = %d): integration %d waits for one",
					t->nslots, integration_id),
			 errhint("Raise halo_itsm.budget_slots above the number of integrations that send within one request budget window, and restart the server.")));
}

/* hi_budget_take with the table's lock held. */
static long
TakeLocked(BudgetTable *t, int integration_id, TimestampTz now, bool take)
{
	int64		width = BucketWidth();
	int64		bucket = now / width;
	long		wait_ms;
	BudgetSlot *slot = FindSlot(t, integration_id, now, take, &wait_ms);

	if (slot == NULL)
	{
		if (wait_ms > 0 && take)
			SayFull(t, integration_id);
		return wait_ms;
	}
	if (slot->window_s != hi_request_budget_window_s)
	{
		/* the window changed (SIGHUP): its buckets mean nothing now, start afresh */
		memset(slot->counts, 0, sizeof(slot->counts));
		slot->window_s = hi_request_budget_window_s;
		slot->last_bucket = bucket;
	}
	Advance(slot, bucket);
	if (Sum(slot) >= hi_request_budget)
		return WaitFor(slot, bucket, width, now);
	if (take)
	{
		slot->counts[bucket % RING]++;
		slot->last_used = now;
	}
	return 0;
}

/*
 * Milliseconds until the integration (of this database) may send a
 * request; 0: now, and with take the request is counted, in the same
 * critical section, so that two processes cannot both take the last one.
 */
long
hi_budget_take(int integration_id, TimestampTz now, bool take)
{
	BudgetTable *t;
	long		wait_ms;

	if (hi_request_budget <= 0)
		return 0;
	t = Table();
	if (t->lock)
		LWLockAcquire(t->lock, LW_EXCLUSIVE);
	wait_ms = TakeLocked(t, integration_id, now, take);
	if (t->lock)
		LWLockRelease(t->lock);
	return wait_ms;
}

/* Requests of the integration (of this database) counted in the current window. */
int
hi_budget_used(int integration_id, TimestampTz now)
{
	BudgetTable *t = Table();
	int			used = 0;
	int			i;

	if (t->lock)
		LWLockAcquire(t->lock, LW_SHARED);
	for (i = 0; i < t->nslots; i++)
	{
		BudgetSlot *slot = &t->slots[i];
		int64		bucket = now / BucketWidth();
		int64		b;

		if (slot->dbid != MyDatabaseId || slot->integration_id != integration_id ||
			slot->window_s != hi_request_budget_window_s)
			continue;
		/* read only: count the buckets still in the window without moving the slot on */
		for (b = Max(bucket - BUCKETS, slot->last_bucket - BUCKETS); b <= slot->last_bucket; b++)
			used += slot->counts[b % RING];
		break;
	}
	if (t->lock)
		LWLockRelease(t->lock);
	return used;
}

/* SQL: _request_budget(): the budget settings in force, for reconcile() and the status view. */
Datum
halo_itsm_request_budget(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "halo_itsm: _request_budget() must return a record");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int32GetDatum(hi_request_budget);
	values[1] = DirectFunctionCall7(make_interval, Int32GetDatum(0), Int32GetDatum(0),
									Int32GetDatum(0), Int32GetDatum(0), Int32GetDatum(0),
									Int32GetDatum(0), Float8GetDatum((double) hi_request_budget_window_s));
	values[2] = BoolGetDatum(shared_table != NULL);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* SQL: _budget_used(integration): requests counted in its current window. */
Datum
halo_itsm_budget_used(PG_FUNCTION_ARGS)
{
	if (hi_request_budget <= 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(hi_budget_used(PG_GETARG_INT32(0), GetCurrentTimestamp()));
}
