/*-------------------------------------------------------------------------
 * shmem.c
 *	  Shared memory of halo_itsm (where the worker's latch is, which
 *	  database it serves and in what state) and the wake-up at commit: a
 *	  transaction that queued outbox items sets the worker's latch when, and
 *	  only when, it commits. The status view reads the serving state.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"

#include "halo_itsm.h"

/* What the worker publishes: its latch, so that committers can wake it. */
typedef struct HaloShared
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* points into the PGPROC array, itself shared */
	pid_t		worker_pid;
	Oid			worker_db;		/* the database the worker delivers for */
	bool		worker_saturated;	/* every integration busy: no wake needed */
	HiServeState serve_state;	/* set by the launcher and the worker */
	int			extension_state;	/* -1 not looked, 0 missing, 1 installed */
} HaloShared;

static HaloShared *hi_shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool xact_callback_registered = false;

static void ShmemStartup(void);
static void WakeAtCommitCallback(XactEvent event, void *arg);

PG_FUNCTION_INFO_V1(halo_itsm_wake_worker_at_commit);
PG_FUNCTION_INFO_V1(halo_itsm_worker_running);
PG_FUNCTION_INFO_V1(halo_itsm_worker_problem);

/* Asks the postmaster for our shared memory (from the shmem_request_hook). */
void
hi_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(HaloShared)));
	hi_rejected_shmem_request();
}

/* Installs the startup hook that creates the shared state. */
void
hi_shmem_init(void)
{
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ShmemStartup;
}

/* Creates or attaches to the shared state. */
static void
ShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hi_shared = ShmemInitStruct("halo_itsm", sizeof(HaloShared), &found);
	if (!found)
	{
		SpinLockInit(&hi_shared->mutex);
		hi_shared->worker_latch = NULL;
		hi_shared->worker_pid = 0;
		hi_shared->worker_db = InvalidOid;
		hi_shared->worker_saturated = false;
		hi_shared->serve_state = HI_SERVE_UNKNOWN;
		hi_shared->extension_state = -1;
	}
	hi_rejected_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/* The worker announces itself (running) or withdraws (not running). */
void
hi_shmem_set_worker(bool running)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->worker_latch = running ? &MyProc->procLatch : NULL;
	hi_shared->worker_pid = running ? MyProcPid : 0;
	hi_shared->worker_db = running ? MyDatabaseId : InvalidOid;
	hi_shared->worker_saturated = false;
	SpinLockRelease(&hi_shared->mutex);
}

/*
 * The worker says whether every integration is busy. While it is, commits
 * that queue work do not wake it: it could not claim anything before an
 * item finishes, and it claims then anyway (a storm of inserts would
 * otherwise cost a signal and a wake-up each).
 */
void
hi_shmem_set_saturated(bool saturated)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->worker_saturated = saturated;
	SpinLockRelease(&hi_shared->mutex);
}

/*
 * True when a delivery worker is running for the current database (always
 * false without preloading): the worker serves halo_itsm.database only.
 */
bool
hi_shmem_worker_running(void)
{
	pid_t		pid;
	Oid			dbid;

	if (hi_shared == NULL)
		return false;
	SpinLockAcquire(&hi_shared->mutex);
	pid = hi_shared->worker_pid;
	dbid = hi_shared->worker_db;
	SpinLockRelease(&hi_shared->mutex);
	return pid != 0 && dbid == MyDatabaseId;
}

/* The pid of the running delivery worker, 0 when there is none. */
pid_t
hi_shmem_worker_pid(void)
{
	pid_t		pid;

	if (hi_shared == NULL)
		return 0;
	SpinLockAcquire(&hi_shared->mutex);
	pid = hi_shared->worker_pid;
	SpinLockRelease(&hi_shared->mutex);
	return pid;
}

/* The launcher or the worker records whether and how halo_itsm.database is served. */
void
hi_shmem_set_serve_state(HiServeState state)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->serve_state = state;
	SpinLockRelease(&hi_shared->mutex);
}

/*
 * The worker records whether the extension is installed (1) or not (0);
 * returns what the last worker recorded (-1: nothing), so that a worker
 * started again does not repeat what its predecessor said.
 */
int
hi_shmem_swap_extension_state(int state)
{
	int			prev;

	if (hi_shared == NULL)
		return -1;
	SpinLockAcquire(&hi_shared->mutex);
	prev = hi_shared->extension_state;
	hi_shared->extension_state = state;
	SpinLockRelease(&hi_shared->mutex);
	return prev;
}

/* Sets the worker's latch at commit; forgets the request at abort. */
static void
WakeAtCommitCallback(XactEvent event, void *arg)
{
	Latch	   *latch = NULL;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending && hi_shared != NULL)
			{
				/* only the worker of this database, and only when it has room */
				SpinLockAcquire(&hi_shared->mutex);
				if (hi_shared->worker_db == MyDatabaseId && !hi_shared->worker_saturated)
					latch = hi_shared->worker_latch;
				SpinLockRelease(&hi_shared->mutex);
				if (latch != NULL)
					SetLatch(latch);
			}
			wake_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

/* Asks for the worker to be woken when the current transaction commits. */
void
hi_wake_worker_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(WakeAtCommitCallback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

/* SQL: asks for the worker to be woken when the current transaction commits. */
Datum
halo_itsm_wake_worker_at_commit(PG_FUNCTION_ARGS)
{
	hi_wake_worker_at_commit();
	PG_RETURN_VOID();
}

/* SQL: whether the delivery worker is running for this database. */
Datum
halo_itsm_worker_running(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(hi_shmem_worker_running());
}

/*
 * SQL: _worker_problem() says why no background worker delivers for the
 * current database and what to set, for the status view; NULL when the
 * worker runs here.
 */
Datum
halo_itsm_worker_problem(PG_FUNCTION_ARGS)
{
	char	   *here = get_database_name(MyDatabaseId);
	pid_t		pid;
	Oid			dbid;
	HiServeState state;
	const char *why = "";

	if (here == NULL)
		PG_RETURN_NULL();
	if (hi_shared == NULL)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker serves this database (halo_itsm is not in shared_preload_libraries); "
			"add it there, set halo_itsm.database = %s and restart, or deliver with CALL halo_itsm.deliver()",
			quote_literal_cstr(here))));
	SpinLockAcquire(&hi_shared->mutex);
	pid = hi_shared->worker_pid;
	dbid = hi_shared->worker_db;
	state = hi_shared->serve_state;
	SpinLockRelease(&hi_shared->mutex);
	if (pid != 0 && dbid == MyDatabaseId)
		PG_RETURN_NULL();
	if (strcmp(hi_database, here) != 0)
	{
		if (state == HI_SERVE_NO_DATABASE)
			why = ", which does not exist";
		else if (state == HI_SERVE_NO_CONNECTIONS)
			why = ", which does not allow connections";
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker serves this database (halo_itsm.database = %s%s); set halo_itsm.database = %s and restart",
			quote_literal_cstr(hi_database), why, quote_literal_cstr(here))));
	}
	if (state == HI_SERVE_NO_ROLE)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker runs: halo_itsm.worker_role = %s names a role that does not exist or cannot log in; "
			"create it with LOGIN and the README's grants, or reset halo_itsm.worker_role, and restart",
			quote_literal_cstr(hi_worker_role))));
	PG_RETURN_TEXT_P(cstring_to_text(
		"the background worker of this database is not running: it starts again within seconds; if this stays, see the server log"));
}
