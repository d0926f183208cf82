/*-------------------------------------------------------------------------
 * worker.c
 *	  The halo_itsm delivery worker, started by the launcher (launcher.c)
 *	  in the database and as the role the launcher checked (halo_itsm.
 *	  database_name, halo_itsm.worker_role). It loops: record the outcomes of finished
 *	  items and claim due items in one short transaction, then drive HTTP
 *	  with no transaction open, sleeping on its latch (set at commit by
 *	  transactions that queued work), curl's sockets and a poll timer for
 *	  due retries. While the extension is not installed, or its SQL is at
 *	  another version than this library (a new package installed, ALTER
 *	  EXTENSION halo_itsm UPDATE not run yet), it says so once and waits. SIGHUP reloads the settings; SIGTERM ends it; the launcher
 *	  starts it again after it exits. The loop's steps are named functions
 *	  sharing one WorkerLoop: reload, poll timer, round, wait.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
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

#define HI_VERSION_LEN 64		/* room for the installed extversion, for the log */
#define RECOVER_INTERVAL_US (10 * USECS_PER_SEC)
#define NOT_INSTALLED_SLEEP_MS 10000
#define CLAIM_FAILURE_BACKOFF_US (10 * USECS_PER_SEC)
#define CLAIM_FAILURE_REPEAT_US (300 * USECS_PER_SEC)

/* What one turn of the worker's loop leaves for the next. */
typedef struct WorkerLoop
{
	bool		want_claim;		/* something may be due: claim at the next turn */
	bool		saturated;		/* every enabled integration's lanes full: wakes need no claim */
	bool		ready;			/* the extension was ready at the last round */
	TimestampTz next_poll;		/* when to look for due retries anyway */
	TimestampTz next_recover;	/* when to look for orphaned in-flight items */
	char	   *dbname;			/* the database served, for the log */
} WorkerLoop;

static void WorkerExit(int code, Datum arg);
static void NoteReady(WorkerLoop *loop, HiExtensionState ready, const char *version);
static void SayReady(WorkerLoop *loop, HiExtensionState ready, int prev, const char *version);
static void ClaimFailed(ErrorData *edata);
static int	WorkerRound(bool claim, bool recover, HiExtensionState *ready, char *version,
						bool *saturated, bool *failed);
static void ConnectWorker(WorkerLoop *loop, Datum arg);
static void ReloadIfAsked(WorkerLoop *loop);
static bool PollDue(WorkerLoop *loop, TimestampTz now);
static void RunRound(WorkerLoop *loop, TimestampTz now, bool have_finished);
static void WaitForWork(WorkerLoop *loop);

/* Withdraws the worker's latch from shared memory when it exits. */
static void
WorkerExit(int code, Datum arg)
{
	hi_shmem_set_worker(false);
	hi_shmem_set_serve_state(HI_SERVE_STARTING);
}

/*
 * Records whether the extension is installed in the worker's database at
 * this library's version, in shared memory, and says so in the log once per
 * change (not at every look, nor again in a worker started after the last
 * one exited).
 */
static void
NoteReady(WorkerLoop *loop, HiExtensionState ready, const char *version)
{
	static int	last = -1;		/* -1: not looked yet */
	int			prev;

	if (last == (int) ready)
		return;
	last = (int) ready;
	hi_shmem_set_serve_state(ready == HI_EXT_READY ? HI_SERVE_RUNNING :
							 ready == HI_EXT_MISSING ? HI_SERVE_NO_EXTENSION : HI_SERVE_OTHER_VERSION);
	prev = hi_shmem_swap_extension_state((int) ready);
	if (prev != (int) ready)
		SayReady(loop, ready, prev, version);
}

/* The log line of a change of the extension's state (prev: the last one recorded). */
static void
SayReady(WorkerLoop *loop, HiExtensionState ready, int prev, const char *version)
{
	const char *setting;

	(void) hi_worker_database(&setting);
	if (ready == HI_EXT_MISSING)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: the extension is not installed in database \"%s\" (%s): the delivery worker waits for it",
						loop->dbname, setting),
				 errhint("Run CREATE EXTENSION halo_itsm in database \"%s\", or set halo_itsm.database_name to the database where it is installed and SELECT pg_reload_conf().",
						 loop->dbname)));
	else if (ready == HI_EXT_OTHER_VERSION)
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: the extension in database \"%s\" is at version %s and the loaded library at %s: the delivery worker waits for the update",
						loop->dbname, version ? version : "?", HI_EXTVERSION),
				 errhint("Run ALTER EXTENSION halo_itsm UPDATE in database \"%s\"; queued items wait and are delivered after it.",
						 loop->dbname)));
	else if (prev == HI_EXT_MISSING)
		ereport(LOG,
				(errmsg("halo_itsm: the extension is installed in database \"%s\" now: the delivery worker delivers",
						loop->dbname)));
	else if (prev == HI_EXT_OTHER_VERSION)
		ereport(LOG,
				(errmsg("halo_itsm: the extension in database \"%s\" is at version %s now: the delivery worker delivers",
						loop->dbname, HI_EXTVERSION)));
}

/*
 * Says in the log that a claim failed: once per distinct message, and again
 * at most every CLAIM_FAILURE_REPEAT_US while it keeps failing the same way.
 */
static void
ClaimFailed(ErrorData *edata)
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
 * many items were claimed; sets *saturated when every enabled integration
 * has its lanes and waiting slots full (the items claimed counted), so that
 * no claim follows until one finishes or an integration is enabled.
 */
static int
WorkerRound(bool claim, bool recover, HiExtensionState *ready, char *version,
			bool *saturated, bool *failed)
{
	HiItem	   *item;
	HiItem	   *claimed = NULL;
	int			n = 0;
	char	   *installed = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	hi_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "halo_itsm: recording and claiming");

	*failed = false;
	*ready = hi_store_extension_ready(&installed);
	strlcpy(version, installed ? installed : "", HI_VERSION_LEN);
	if (*ready == HI_EXT_READY)
	{
		while ((item = hi_engine_pop_finished()) != NULL)
		{
			hi_store_record(item);
			hi_item_free(item);
		}
		/* answers that came in meanwhile: their lanes go on with waiting items now */
		hi_engine_pump();
		if (recover || claim)
		{
			int			room = claim ? hi_engine_claim_room() : 0;
			ErrorData  *edata = hi_store_claim_subxact(recover, room, &claimed, &n,
													   room > 0 ? saturated : NULL);

			if (edata != NULL)
			{
				ClaimFailed(edata);
				FreeErrorData(edata);
				*failed = true;
			}
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	/* and before the commit waits for its flush */
	hi_engine_pump();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* only now, with no transaction open, and the claim on the standbys, do the requests start */
	if (claimed != NULL)
		hi_replwait(InvalidXLogRecPtr);
	hi_engine_submit_all(claimed);
	return n;
}

/*
 * Connects to the database, as the role, that the launcher checked and
 * passed (bgw_main_arg, bgw_extra), pins the session's settings and
 * announces the worker in shared memory.
 */
static void
ConnectWorker(WorkerLoop *loop, Datum arg)
{
	Oid			roleoid;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&roleoid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), roleoid, 0);
	/* over the database's and role's settings: their owners must not redirect this session */
	hi_pin_worker_session();
	pgstat_report_appname("halo_itsm worker");

	StartTransactionCommand();
	loop->dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	CommitTransactionCommand();
	hi_shmem_set_worker(true);
	before_shmem_exit(WorkerExit, (Datum) 0);
	ereport(LOG, (errmsg("halo_itsm: delivery worker started in database \"%s\"", loop->dbname)));
}

/* SIGHUP: reloads the settings, forgets tokens, and polls at once. */
static void
ReloadIfAsked(WorkerLoop *loop)
{
	if (!ConfigReloadPending)
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	hi_instances_forget_tokens();
	/* poll now: the next poll was timed with the old poll_interval */
	loop->next_poll = 0;
}

/*
 * Whether this turn runs a round: at the poll timer, when items finished,
 * or when work may be due and an integration has room. Work committed
 * while every integration is busy can wait for the next finished item: a
 * claim now could not give anything, and a storm of inserts would
 * otherwise cost a claim each.
 */
static bool
PollDue(WorkerLoop *loop, TimestampTz now)
{
	bool		have_finished;

	if (now >= loop->next_poll)
	{
		loop->want_claim = true;
		loop->saturated = false;
		loop->next_poll = now + (TimestampTz) hi_poll_interval_ms * 1000;
	}
	have_finished = hi_engine_pop_finished_peek();
	if (have_finished)
		loop->saturated = false;	/* a lane or a waiting slot is free again */
	/* committers wake the worker again from now on, also when no round runs this turn */
	if (!loop->saturated)
		hi_shmem_set_saturated(false);
	return have_finished;
}

/* Records, recovers and claims in one round, and sets the flags for the next turn. */
static void
RunRound(WorkerLoop *loop, TimestampTz now, bool have_finished)
{
	bool		recover = now >= loop->next_recover;
	HiExtensionState ready;
	char		version[HI_VERSION_LEN];
	int			room = hi_engine_claim_room();

	/* finished items freed lanes: refill them in the same transaction */
	bool		claim = (loop->want_claim || have_finished) && room > 0;
	bool		sat = false;
	bool		failed;
	int			n = WorkerRound(claim, recover, &ready, version, &sat, &failed);

	if (recover)
		loop->next_recover = now + RECOVER_INTERVAL_US;

	/*
	 * Claim again until a claim comes back empty or leaves every integration
	 * busy: one claim gives an integration at most one lane's worth, and an
	 * integration that got its lane's items now takes the next ones to wait
	 * ready.
	 */
	loop->want_claim = claim && n > 0 && !sat;
	if (claim)
		loop->saturated = sat;
	hi_shmem_set_saturated(loop->saturated);
	NoteReady(loop, ready, version);
	loop->ready = ready == HI_EXT_READY;
	if (failed)
	{
		/* back off: the next claim would most likely fail the same way */
		loop->want_claim = false;
		loop->saturated = false;
		loop->next_poll = now + CLAIM_FAILURE_BACKOFF_US;
	}
	if (ready != HI_EXT_READY)
	{
		loop->want_claim = false;
		loop->next_poll = now + (TimestampTz) NOT_INSTALLED_SLEEP_MS * 1000;
	}
}

/* Drives HTTP and sleeps until the poll timer, a finished item or a wake-up. */
static void
WaitForWork(WorkerLoop *loop)
{
	long		timeout_ms = (long) ((loop->next_poll - GetCurrentTimestamp()) / 1000);

	if (loop->want_claim && !loop->saturated && hi_engine_claim_room() > 0)
		timeout_ms = 0;
	/*
	 * Items the round's pumps finished: record them (and refill their lanes)
	 * first; not while the extension is not ready, whose rounds record nothing.
	 */
	if (loop->ready && hi_engine_pop_finished_peek())
		timeout_ms = 0;
	if (timeout_ms < 0)
		timeout_ms = 0;
	/* woken: work was committed, or an integration enabled while the others were busy */
	if (hi_engine_wait(timeout_ms))
	{
		loop->want_claim = true;
		loop->saturated = false;
	}
}

/* Entry point of the background worker. */
void
halo_itsm_worker_main(Datum arg)
{
	MemoryContext loop_cxt;
	WorkerLoop	loop;

	memset(&loop, 0, sizeof(loop));
	loop.want_claim = true;
	ConnectWorker(&loop, arg);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "halo_itsm worker loop", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		MemoryContext old;
		bool		have_finished;

		CHECK_FOR_INTERRUPTS();
		ReloadIfAsked(&loop);
		old = MemoryContextSwitchTo(loop_cxt);
		have_finished = PollDue(&loop, now);
		if (have_finished || (loop.want_claim && !loop.saturated && hi_engine_claim_room() > 0))
			RunRound(&loop, now, have_finished);
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
		WaitForWork(&loop);
	}
}
