/*-------------------------------------------------------------------------
 * budget.c
 *	  The request budget of each Halo integration (halo_itsm.request_budget
 *	  requests within halo_itsm.request_budget_window), shared by every
 *	  process that sends: the delivery worker, CALL deliver() from pg_cron
 *	  or by hand, any number at once. With the library preloaded the counts
 *	  live in shared memory, in halo_itsm.budget_slots slots keyed by
 *	  (database, integration); without it, in this process only (then each
 *	  CALL deliver() starts afresh, as docs/operations.md says).
 *
 *	  Each slot counts requests in a ring of buckets (src/core/hi_budget.c,
 *	  unit-tested): no window of the budget's length ever holds more
 *	  requests than the budget. A slot with nothing left in any window is
 *	  free again; when every slot is in use, an integration without one
 *	  waits for one (said in the log).
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
#include "hi_budget.h"

#define LOCAL_SLOTS 64
#define FULL_WARNING_REPEAT_US (60 * USECS_PER_SEC)

/* One integration's counts. */
typedef struct BudgetSlot
{
	Oid			dbid;			/* InvalidOid: never used */
	int			integration_id;
	HiBudgetRing ring;
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
static int64 WindowUs(void);
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
	{
		local_table = MemoryContextAllocZero(TopMemoryContext, TableSize(LOCAL_SLOTS));
		local_table->nslots = LOCAL_SLOTS;
	}
	return local_table;
}

/* The budget window in force, in microseconds. */
static int64
WindowUs(void)
{
	return (int64) hi_request_budget_window_s * USECS_PER_SEC;
}

/*
 * The slot of the integration in this database; with claim, a free one
 * (never used, or with nothing left in any window) is taken for it. NULL
 * when there is none: *wait_ms says when a slot frees up (0: one is free).
 */
static BudgetSlot *
FindSlot(BudgetTable *t, int integration_id, TimestampTz now, bool claim, long *wait_ms)
{
	BudgetSlot *free_slot = NULL;
	TimestampTz oldest = 0;
	int			i;

	*wait_ms = 0;
	for (i = 0; i < t->nslots; i++)
	{
		BudgetSlot *slot = &t->slots[i];

		if (slot->dbid == MyDatabaseId && slot->integration_id == integration_id)
			return slot;
		if (free_slot == NULL && (slot->dbid == InvalidOid || hi_budget_ring_idle(&slot->ring, now)))
			free_slot = slot;
		if (oldest == 0 || slot->ring.last_used < oldest)
			oldest = slot->ring.last_used;
	}
	if (free_slot == NULL)
	{
		/* the least recently used slot is idle first: a window and a bucket after its last request */
		*wait_ms = (long) ((oldest + WindowUs() + WindowUs() / HI_BUDGET_BUCKETS - now) / 1000) + 2;
		return NULL;
	}
	if (!claim)
		return NULL;
	free_slot->dbid = MyDatabaseId;
	free_slot->integration_id = integration_id;
	hi_budget_ring_reset(&free_slot->ring, WindowUs(), now);
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
	long		wait_ms;
	int64		wait_us;
	BudgetSlot *slot = FindSlot(t, integration_id, now, take, &wait_ms);

	if (slot == NULL)
	{
		if (wait_ms > 0 && take)
			SayFull(t, integration_id);
		return wait_ms;
	}
	wait_us = hi_budget_ring_take(&slot->ring, hi_request_budget, WindowUs(), now, take);
	return wait_us == 0 ? 0 : (long) (wait_us / 1000) + 1;
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

		if (slot->dbid == MyDatabaseId && slot->integration_id == integration_id)
		{
			if (slot->ring.window_us == WindowUs())
				used = hi_budget_ring_used(&slot->ring, now);
			break;
		}
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
