/*-------------------------------------------------------------------------
 * worker.c
 *	  The halo_itsm delivery worker, started by the launcher (launcher.c)
 *	  in halo_itsm.database. It loops: record the outcomes of finished
 *	  items and claim due items in one short transaction, then drive HTTP
 *	  with no transaction open, sleeping on its latch (set at commit by
 *	  transactions that queued work), curl's sockets and a poll timer for
 *	  due retries. While the extension is not installed it says so once and
 *	  waits. SIGHUP reloads the settings; SIGTERM ends it; the launcher
 *	  starts it again after it exits.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_engine.h"
#include "hi_instance.h"
#include "hi_spi.h"
#include "hi_store.h"

#define RECOVER_INTERVAL_US (10 * USECS_PER_SEC)
#define NOT_INSTALLED_SLEEP_MS 10000
#define CLAIM_FAILURE_BACKOFF_US (10 * USECS_PER_SEC)
#define CLAIM_FAILURE_REPEAT_US (300 * USECS_PER_SEC)

static void hi_worker_exit(int code, Datum arg);
static int	hi_worker_round(bool claim, bool recover, bool *ready, bool *saturated, bool *failed);
static void hi_worker_claim_failed(ErrorData *edata);
static void hi_worker_note_ready(bool ready);

/* Withdraws the worker's latch from shared memory when it exits. */
static void
hi_worker_exit(int code, Datum arg)
{
	hi_shmem_set_worker(false);
	hi_shmem_set_serve_state(HI_SERVE_STARTING);
}

/*
 * Records whether the extension is installed in the worker's database, in
 * shared memory, and says so in the log once per change (not at every
 * look, nor again in a worker started after the last one exited): a
 * warning when it is missing, a line when it appears after that.
 */
static void
hi_worker_note_ready(bool ready)
{
	static int	last = -1;		/* -1: not looked yet */
	int			prev;

	if (last == (int) ready)
		return;
	last = (int) ready;
	hi_shmem_set_serve_state(ready ? HI_SERVE_RUNNING : HI_SERVE_NO_EXTENSION);
	prev = hi_shmem_swap_extension_state((int) ready);
	if (prev == (int) ready)
		return;
	if (!ready)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: the extension is not installed in database \"%s\" (halo_itsm.database): the delivery worker waits for it",
						hi_database),
				 errhint("Run CREATE EXTENSION halo_itsm in database \"%s\", or set halo_itsm.database to the database where it is installed and restart the server.",
						 hi_database)));
	else if (prev == 0)
		ereport(LOG,
				(errmsg("halo_itsm: the extension is installed in database \"%s\" now: the delivery worker delivers",
						hi_database)));
}

/*
 * Says in the log that a claim failed: once per distinct message, and again
 * at most every CLAIM_FAILURE_REPEAT_US while it keeps failing the same way.
 */
static void
hi_worker_claim_failed(ErrorData *edata)
{
	static char last[256] = "";
	static TimestampTz last_at = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (strncmp(last, edata->message, sizeof(last) - 1) == 0 &&
		now < last_at + CLAIM_FAILURE_REPEAT_US)
		return;
	strlcpy(last, edata->message, sizeof(last));
	last_at = now;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("halo_itsm: claiming outbox items failed: %.1000s", edata->message),
			 errhint("The worker tries again in %d s; outcomes already recorded are kept. The server log has the details.",
					 (int) (CLAIM_FAILURE_BACKOFF_US / USECS_PER_SEC))));
}

/*
 * One transaction: record finished items (each in a subtransaction of its
 * own), then recover orphans when asked and claim due items when asked, in
 * a subtransaction: a claim that fails is rolled back alone (and said in the
 * log, *failed set) and the outcomes recorded before it commit. Returns how
 * many items were claimed; sets *saturated when a claim came back empty
 * because every integration is busy.
 */
static int
hi_worker_round(bool claim, bool recover, bool *ready, bool *saturated, bool *failed)
{
	HiItem	   *item;
	HiItem	   *claimed = NULL;
	int			n = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	hi_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "halo_itsm: recording and claiming");

	*failed = false;
	*ready = hi_store_extension_ready();
	if (*ready)
	{
		while ((item = hi_engine_pop_finished()) != NULL)
		{
			hi_store_record(item);
			hi_item_free(item);
		}
		if (recover || claim)
		{
			int			room = claim ? hi_engine_claim_room() : 0;
			ErrorData  *edata = hi_store_claim_subxact(recover, room, &claimed, &n,
													   room > 0 ? saturated : NULL);

			if (edata != NULL)
			{
				hi_worker_claim_failed(edata);
				FreeErrorData(edata);
				*failed = true;
			}
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* only now, with no transaction open, do the requests start */
	hi_engine_submit_all(claimed);
	return n;
}

/* Entry point of the background worker. */
void
halo_itsm_worker_main(Datum arg)
{
	MemoryContext loop_cxt;
	bool		want_claim = true;
	bool		saturated = false;	/* every integration busy: wakes need no claim */
	TimestampTz next_poll = 0;
	TimestampTz next_recover = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(hi_database,
										 hi_worker_role && hi_worker_role[0] ? hi_worker_role : NULL, 0);
	/* over the database's and role's settings: their owners must not redirect this session */
	hi_pin_worker_session();
	pgstat_report_appname("halo_itsm worker");

	hi_shmem_set_worker(true);
	before_shmem_exit(hi_worker_exit, (Datum) 0);
	ereport(LOG, (errmsg("halo_itsm: delivery worker started in database \"%s\"", hi_database)));

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "halo_itsm worker loop", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		timeout_ms;
		bool		have_finished;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			hi_instances_forget_tokens();
			/* poll now: the next poll was timed with the old poll_interval */
			next_poll = 0;
		}

		old = MemoryContextSwitchTo(loop_cxt);
		if (now >= next_poll)
		{
			want_claim = true;
			saturated = false;
			next_poll = now + (TimestampTz) hi_poll_interval_ms * 1000;
		}
		have_finished = hi_engine_pop_finished_peek();
		if (have_finished)
			saturated = false;	/* a lane or a waiting slot is free again */

		/*
		 * Work committed while every integration is busy can wait for the
		 * next finished item: a claim now could not give anything, and a
		 * storm of inserts would otherwise cost a claim each.
		 */
		if (have_finished || (want_claim && !saturated && hi_engine_claim_room() > 0))
		{
			bool		recover = now >= next_recover;
			bool		ready;
			int			room = hi_engine_claim_room();

			/* finished items freed lanes: refill them in the same transaction */
			bool		claim = (want_claim || have_finished) && room > 0;
			bool		sat = false;
			bool		failed;
			int			n = hi_worker_round(claim, recover, &ready, &sat, &failed);

			if (recover)
				next_recover = now + RECOVER_INTERVAL_US;
			/*
			 * Claim again until a claim comes back empty: one claim gives an
			 * integration at most one lane's worth, and an integration that
			 * got its lane's items now takes the next ones to wait ready.
			 */
			want_claim = claim && n > 0;
			if (claim)
				saturated = sat;
			hi_shmem_set_saturated(saturated);
			hi_worker_note_ready(ready);
			if (failed)
			{
				/* back off: the next claim would most likely fail the same way */
				want_claim = false;
				saturated = false;
				next_poll = now + CLAIM_FAILURE_BACKOFF_US;
			}
			if (!ready)
			{
				want_claim = false;
				next_poll = now + (TimestampTz) NOT_INSTALLED_SLEEP_MS * 1000;
			}
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);

		timeout_ms = (long) ((next_poll - GetCurrentTimestamp()) / 1000);
		if (want_claim && !saturated && hi_engine_claim_room() > 0)
			timeout_ms = 0;
		if (timeout_ms < 0)
			timeout_ms = 0;
		if (hi_engine_wait(timeout_ms))
			want_claim = true;
	}
}
