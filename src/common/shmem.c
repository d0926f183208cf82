/*-------------------------------------------------------------------------
 * shmem.c
 *	  Shared memory of halo_itsm (where the worker's latch is, which
 *	  database it serves and in what state, the launcher's restart pause,
 *	  the settings the worker runs with, restart_worker()'s requests) and
 *	  the wake-up at commit: a transaction that queued outbox items sets the
 *	  worker's latch when, and only when, it commits. The status view reads
 *	  the serving state (worker_status.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"

/*
 * What the worker publishes (its latch, so that committers can wake it, and
 * since when it runs), what the launcher publishes (its latch, for
 * restart_worker(), and its restart backoff), and the restart requests.
 */
typedef struct HaloShared
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* points into the PGPROC array, itself shared */
	pid_t		worker_pid;
	Oid			worker_db;		/* the database the worker delivers for */
	TimestampTz worker_started_at;
	bool		worker_saturated;	/* every integration busy: no wake needed */
	HiServeState serve_state;	/* set by the launcher and the worker */
	int			extension_state;	/* -1 not looked, 0 missing, 1 installed */
	Latch	   *launcher_latch;
	pid_t		launcher_pid;
	int			quick_exits;	/* worker exits in a row, each soon after its start */
	TimestampTz next_start_at;	/* when the launcher starts it again (0: not waiting) */
	uint32		restart_requested;	/* restart_worker() calls so far */
	uint32		restart_done;	/* the last request the launcher acted on */
	bool		restart_result; /* whether that started a worker */
	char		database[NAMEDATALEN];	/* the launcher's settings in force */
	char		database_setting[32];
	char		role[NAMEDATALEN];
} HaloShared;

static HaloShared *hi_shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_pending = false;
static bool wake_forced = false;	/* wake even a saturated worker */
static bool xact_callback_registered = false;

static void ShmemStartup(void);
static void WakeAtCommitCallback(XactEvent event, void *arg);

PG_FUNCTION_INFO_V1(halo_itsm_wake_worker_at_commit);
PG_FUNCTION_INFO_V1(halo_itsm_wake_worker_for_integrations);
PG_FUNCTION_INFO_V1(halo_itsm_worker_running);

/* Asks the postmaster for our shared memory (from the shmem_request_hook). */
void
hi_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(HaloShared)));
	hi_rejected_shmem_request();
	hi_budget_shmem_request();
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
		hi_shared->worker_started_at = 0;
		hi_shared->worker_saturated = false;
		hi_shared->serve_state = HI_SERVE_UNKNOWN;
		hi_shared->extension_state = -1;
		hi_shared->launcher_latch = NULL;
		hi_shared->launcher_pid = 0;
		hi_shared->quick_exits = 0;
		hi_shared->next_start_at = 0;
		hi_shared->restart_requested = 0;
		hi_shared->restart_done = 0;
		hi_shared->restart_result = false;
		hi_shared->database[0] = '\0';
		hi_shared->database_setting[0] = '\0';
		hi_shared->role[0] = '\0';
	}
	hi_rejected_shmem_startup();
	hi_budget_shmem_startup();
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
	hi_shared->worker_started_at = running ? GetCurrentTimestamp() : 0;
	hi_shared->worker_saturated = false;
	SpinLockRelease(&hi_shared->mutex);
}

/* The launcher announces itself (running) or withdraws, for restart_worker(). */
void
hi_shmem_set_launcher(bool running)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->launcher_latch = running ? &MyProc->procLatch : NULL;
	hi_shared->launcher_pid = running ? MyProcPid : 0;
	SpinLockRelease(&hi_shared->mutex);
}

/* The launcher publishes its restart backoff: quick exits in a row and the next start. */
void
hi_shmem_set_backoff(int quick_exits, TimestampTz next_start_at)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->quick_exits = quick_exits;
	hi_shared->next_start_at = next_start_at;
	SpinLockRelease(&hi_shared->mutex);
}

/*
 * The launcher publishes the database and role settings it reads (a
 * session may not have reloaded yet, and restart_worker() makes the
 * launcher read the files without a reload), for the status view.
 */
void
hi_shmem_set_settings(void)
{
	const char *setting;
	const char *db = hi_worker_database(&setting);

	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	strlcpy(hi_shared->database, db, NAMEDATALEN);
	strlcpy(hi_shared->database_setting, setting, sizeof(hi_shared->database_setting));
	strlcpy(hi_shared->role, hi_worker_role ? hi_worker_role : "", NAMEDATALEN);
	SpinLockRelease(&hi_shared->mutex);
}

/* A copy of what the launcher and the worker published; false without preloading. */
bool
hi_shmem_worker_info(HiWorkerInfo *info)
{
	memset(info, 0, sizeof(HiWorkerInfo));
	if (hi_shared == NULL)
		return false;
	SpinLockAcquire(&hi_shared->mutex);
	info->worker_pid = hi_shared->worker_pid;
	info->worker_db = hi_shared->worker_db;
	info->worker_started_at = hi_shared->worker_started_at;
	info->serve_state = hi_shared->serve_state;
	info->launcher_pid = hi_shared->launcher_pid;
	info->quick_exits = hi_shared->quick_exits;
	info->next_start_at = hi_shared->next_start_at;
	memcpy(info->database, hi_shared->database, NAMEDATALEN);
	memcpy(info->database_setting, hi_shared->database_setting, sizeof(info->database_setting));
	memcpy(info->role, hi_shared->role, NAMEDATALEN);
	SpinLockRelease(&hi_shared->mutex);
	if (info->launcher_pid == 0 || info->database[0] == '\0')
	{
		/* no launcher: what this session's settings say */
		const char *setting;

		strlcpy(info->database, hi_worker_database(&setting), NAMEDATALEN);
		strlcpy(info->database_setting, setting, sizeof(info->database_setting));
		strlcpy(info->role, hi_worker_role ? hi_worker_role : "", NAMEDATALEN);
	}
	return true;
}

/*
 * restart_worker(): asks the launcher to restart the delivery worker and
 * wakes it; returns the request's number (0: no launcher runs).
 */
uint32
hi_shmem_request_restart(void)
{
	uint32		ticket = 0;
	Latch	   *latch = NULL;

	if (hi_shared == NULL)
		return 0;
	SpinLockAcquire(&hi_shared->mutex);
	if (hi_shared->launcher_pid != 0)
	{
		ticket = ++hi_shared->restart_requested;
		if (ticket == 0)		/* 0 means "none": skip it when the counter wraps */
			ticket = ++hi_shared->restart_requested;
		latch = hi_shared->launcher_latch;
	}
	SpinLockRelease(&hi_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
	return ticket;
}

/* The launcher: the newest restart request not acted on yet (0: none). */
uint32
hi_shmem_restart_pending(void)
{
	uint32		ticket = 0;

	if (hi_shared == NULL)
		return 0;
	SpinLockAcquire(&hi_shared->mutex);
	if (hi_shared->restart_requested != hi_shared->restart_done)
		ticket = hi_shared->restart_requested;
	SpinLockRelease(&hi_shared->mutex);
	return ticket;
}

/* The launcher acted on the requests up to ticket: started a worker or not. */
void
hi_shmem_restart_done(uint32 ticket, bool started)
{
	if (hi_shared == NULL)
		return;
	SpinLockAcquire(&hi_shared->mutex);
	hi_shared->restart_done = ticket;
	hi_shared->restart_result = started;
	SpinLockRelease(&hi_shared->mutex);
}

/* Whether the launcher acted on request ticket (and then, in *started, its result). */
bool
hi_shmem_restart_finished(uint32 ticket, bool *started)
{
	bool		done;

	if (hi_shared == NULL)
		return true;
	SpinLockAcquire(&hi_shared->mutex);
	/* acted on this one or a later one (counters wrap: compare the distance) */
	done = (int32) (hi_shared->restart_done - ticket) >= 0;
	*started = hi_shared->restart_result;
	SpinLockRelease(&hi_shared->mutex);
	return done;
}

/*
 * The worker says whether every enabled integration has its lanes full.
 * While it does, commits that queue work do not wake it: it could not
 * claim anything before an item finishes, and it claims then anyway (a
 * storm of inserts would otherwise cost a signal and a wake-up each). A
 * commit that enables or configures an integration wakes it all the same
 * (hi_wake_worker_at_commit(true)): that one has room.
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
				/* only the worker of this database, and only when it has room (or is forced) */
				SpinLockAcquire(&hi_shared->mutex);
				if (hi_shared->worker_db == MyDatabaseId &&
					(wake_forced || !hi_shared->worker_saturated))
				{
					latch = hi_shared->worker_latch;
					hi_shared->worker_saturated = false;
				}
				SpinLockRelease(&hi_shared->mutex);
				if (latch != NULL)
					SetLatch(latch);
			}
			wake_pending = wake_forced = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = wake_forced = false;
			break;
		default:
			break;
	}
}

/*
 * Asks for the worker to be woken when the current transaction commits;
 * forced: even while it says every integration is busy.
 */
void
hi_wake_worker_at_commit(bool forced)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(WakeAtCommitCallback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
	wake_forced = wake_forced || forced;
}

/* SQL: asks for the worker to be woken when the current transaction commits. */
Datum
halo_itsm_wake_worker_at_commit(PG_FUNCTION_ARGS)
{
	hi_wake_worker_at_commit(false);
	PG_RETURN_VOID();
}

/*
 * Trigger on halo_itsm.integrations (statement level, after INSERT or an
 * UPDATE of enabled or configured_at): wakes the worker at commit even
 * while every other integration is busy, since this one may have room.
 */
Datum
halo_itsm_wake_worker_for_integrations(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("halo_itsm: _wake_worker_for_integrations() was not called as a trigger"),
				 errhint("It is the trigger function of halo_itsm.integrations; do not call it directly.")));
	hi_wake_worker_at_commit(true);
	PG_RETURN_POINTER(NULL);
}

/* SQL: whether the delivery worker is running for this database. */
Datum
halo_itsm_worker_running(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(hi_shmem_worker_running());
}
