/*-------------------------------------------------------------------------
 * deliver.c
 *	  CALL halo_itsm.deliver(max_items): the worker's job done in the
 *	  calling session, for installations without shared_preload_libraries
 *	  (scheduled with pg_cron) and for operators. It uses the same engine
 *	  and the same claim and record functions as the worker, and commits
 *	  after claiming and after every recorded item, so no transaction is
 *	  held open while a request is on the wire.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"

#include "halo_itsm.h"
#include "hi_engine.h"
#include "hi_spi.h"
#include "hi_store.h"

PG_FUNCTION_INFO_V1(halo_itsm_deliver);

static int	DeliverClaim(int room, ErrorData **failed);
static int	DeliverLoop(int max_items, bool only_without_worker);

/*
 * Claims as many items as there is room for, commits, and starts them;
 * returns how many. A claim that fails is rolled back alone (the outcomes
 * recorded so far stay) and its error kept in *failed, for the caller to
 * raise once the items already in flight are recorded.
 */
static int
DeliverClaim(int room, ErrorData **failed)
{
	HiItem	   *claimed = NULL;
	int			n;

	*failed = hi_store_claim_subxact(false, room, &claimed, &n, NULL);
	SPI_commit();
	hi_engine_submit_all(claimed);
	return n;
}

/* The body of deliver(): returns the number of items finished. */
static int
DeliverLoop(int max_items, bool only_without_worker)
{
	int			done = 0;
	bool		more = true;
	HiItem	   *item;
	ErrorData  *failed = NULL;

	if (only_without_worker && hi_shmem_worker_running())
		return 0;
	if (hi_store_extension_ready(NULL) != HI_EXT_READY)
		hi_extension_require_current("deliver()");
	hi_store_recover(true);
	SPI_commit();

	for (;;)
	{
		int			active;

		CHECK_FOR_INTERRUPTS();
		/* record finished items first, so that they count against max_items */
		while ((item = hi_engine_pop_finished()) != NULL)
		{
			hi_store_record(item);
			SPI_commit();
			if (item->outcome != HI_OUT_REQUEUE)
				done++;
			hi_item_free(item);
			more = true;
		}
		active = hi_engine_active();
		if (more && failed == NULL && done + active < max_items)
		{
			int			room = Min(hi_max_concurrent_requests - active, max_items - done - active);

			if (room > 0)
			{
				more = DeliverClaim(room, &failed) == room;
				if (failed)
					more = false;	/* finish what is in flight, then say why */
			}
		}
		if (hi_engine_active() == 0 && !hi_engine_pop_finished_peek() &&
			(!more || done >= max_items))
			break;
		if (hi_engine_active() > 0)
			hi_engine_wait(1000);
	}
	if (failed)
		ereport(ERROR,
				(errcode(failed->sqlerrcode),
				 errmsg("halo_itsm: claiming outbox items failed: %.1000s", failed->message),
				 errdetail("deliver() recorded %d outbox items before it stopped.", done),
				 errhint("Fix the cause and CALL halo_itsm.deliver() again.")));
	return done;
}

/* SQL procedure: CALL halo_itsm.deliver(max_items integer DEFAULT 100, only_without_worker boolean DEFAULT false). */
Datum
halo_itsm_deliver(PG_FUNCTION_ARGS)
{
	int			max_items = PG_ARGISNULL(0) ? 100 : PG_GETARG_INT32(0);
	bool		only_without_worker = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	bool		nonatomic = fcinfo->context != NULL && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;
	int			done;

	hi_refuse_on_standby("deliver()");
	if (!nonatomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("halo_itsm: deliver() commits after every ticket and cannot run inside a transaction block"),
				 errhint("Run CALL halo_itsm.deliver(); on its own, not inside BEGIN ... COMMIT or a function.")));
	if (max_items <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: max_items must be positive, not %d", max_items),
				 errhint("Pass the largest number of outbox items to deliver in this call, e.g. 100.")));

	hi_spi_connect(SPI_OPT_NONATOMIC);
	/* an earlier call that failed half-way may have left items in the engine */
	hi_engine_abort_all();
	PG_TRY();
	{
		done = DeliverLoop(max_items, only_without_worker);
	}
	PG_CATCH();
	{
		hi_engine_abort_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	SPI_finish();
	ereport(DEBUG1, (errmsg("halo_itsm: deliver() finished %d outbox items", done)));
	PG_RETURN_VOID();
}
