/*-------------------------------------------------------------------------
 * launcher.c
 *	  The halo_itsm launcher: a background worker connected to no database
 *	  that starts the delivery worker (worker.c) in the database named by
 *	  halo_itsm.database_name (or its old name halo_itsm.database), as
 *	  halo_itsm.worker_role; every halo_itsm worker is registered through
 *	  hi_register_worker() (bgworker.c).
 *
 *	  A background worker can connect to one database, once, and one that
 *	  names a missing database dies with FATAL, which the postmaster used to
 *	  repeat every 5 s forever while every database looked fine. So the
 *	  launcher looks the database up in the shared catalog pg_database
 *	  first: when it is missing (or refuses connections) it says so once,
 *	  with what to set, records the problem in shared memory for the status
 *	  view, and looks again every few seconds, logging again only when the
 *	  answer changes. When the database is there it starts the delivery
 *	  worker as a dynamic background worker and starts it again whenever it
 *	  exits, after a pause that doubles at each exit soon after a start
 *	  (halo_itsm.worker_restart_delay up to ..._max; back to the first
 *	  after a healthy minute), published in shared memory for the status
 *	  view.
 *
 *	  At a reload (SIGHUP) the launcher reads the settings again: a changed
 *	  database or role stops the worker and starts it where they now say.
 *	  restart_worker() asks for the same in shared memory, after reading
 *	  the configuration files, and waits for the answer.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"

/* how often a missing database is looked up again */
#define RECHECK_MS 5000
/* a worker that ran this long was healthy: the next restart pause is the first again */
#define HEALTHY_US (60 * USECS_PER_SEC)

/* What the launcher knows between two turns of its loop. */
typedef struct LauncherState
{
	BackgroundWorkerHandle *handle; /* the running delivery worker, or NULL */
	TimestampTz started_at;		/* when the running worker was started */
	bool		stopping;		/* we asked it to stop: start again at once */
	int			quick_exits;	/* exits in a row, each soon after its start */
	TimestampTz next_check;		/* when to look (and start) next */
	HiServeState logged;		/* the last state said in the log */
	bool		no_slot_logged;
	char	   *conflict_logged;	/* the last alias conflict said, or NULL */
	uint32		restart_ticket; /* a restart_worker() request being acted on */
} LauncherState;

static HiServeState CheckDatabase(Oid *dboid, Oid *roleoid);
static Oid	RoleCanLogIn(void);
static void LogState(HiServeState state);
static BackgroundWorkerHandle *StartDeliveryWorker(Oid dboid, Oid roleoid);
static void ReloadSettings(LauncherState *st);
static void StopWorker(LauncherState *st);
static void TakeRestartRequest(LauncherState *st);
static void NoteWorkerExit(LauncherState *st);
static void TryStart(LauncherState *st);
static void NoteHealthy(LauncherState *st);
static long NextTimeout(LauncherState *st);
static void LauncherExit(int code, Datum arg);

/* Registers the launcher with the postmaster (from _PG_init, when preloaded). */
void
hi_launcher_register(void)
{
	hi_register_worker("halo_itsm_launcher_main", "halo_itsm launcher",
					   BgWorkerStart_RecoveryFinished, 5, (Datum) 0, InvalidOid, NULL);
}

/*
 * Looks the worker's database up in pg_database; sets *dboid (and the
 * role's *roleoid) when it can be served. A sequential scan, as the
 * autovacuum launcher reads the list of databases: with no database
 * selected, only the shared catalogs can be read.
 */
static HiServeState
CheckDatabase(Oid *dboid, Oid *roleoid)
{
	HiServeState state = HI_SERVE_NO_DATABASE;
	const char *dbname = hi_worker_database(NULL);
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	*dboid = InvalidOid;
	*roleoid = InvalidOid;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), dbname) != 0)
			continue;
		if (db->datallowconn)
		{
			state = HI_SERVE_STARTING;
			*dboid = db->oid;
		}
		else
			state = HI_SERVE_NO_CONNECTIONS;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	if (state == HI_SERVE_STARTING)
	{
		*roleoid = RoleCanLogIn();
		if (hi_worker_role != NULL && hi_worker_role[0] != '\0' && !OidIsValid(*roleoid))
		{
			state = HI_SERVE_NO_ROLE;
			*dboid = InvalidOid;
		}
	}
	CommitTransactionCommand();
	return state;
}

/*
 * The oid of halo_itsm.worker_role when it names a role in pg_authid that
 * may log in (InvalidOid when empty: the bootstrap superuser; or when it
 * cannot: a worker started as such would die with FATAL at every restart).
 * Runs inside CheckDatabase's transaction, with the same sequential scan.
 */
static Oid
RoleCanLogIn(void)
{
	Oid			oid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	if (hi_worker_role == NULL || hi_worker_role[0] == '\0')
		return InvalidOid;
	rel = table_open(AuthIdRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tup);

		if (strcmp(NameStr(role->rolname), hi_worker_role) != 0)
			continue;
		if (role->rolcanlogin)
			oid = role->oid;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return oid;
}

/* Says once what a new state of the database check means, and what to do. */
static void
LogState(HiServeState state)
{
	const char *setting;
	const char *dbname = hi_worker_database(&setting);

	switch (state)
	{
		case HI_SERVE_NO_DATABASE:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("halo_itsm: database \"%s\" named by %s does not exist: no delivery worker runs",
							dbname, setting),
					 errhint("Set halo_itsm.database_name to the database where CREATE EXTENSION halo_itsm ran, then SELECT pg_reload_conf(). "
							 "The launcher looks again every %d s and logs again only when this changes.",
							 RECHECK_MS / 1000)));
			break;
		case HI_SERVE_NO_CONNECTIONS:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("halo_itsm: database \"%s\" named by %s does not allow connections: no delivery worker runs",
							dbname, setting),
					 errhint("Set halo_itsm.database_name to the database where CREATE EXTENSION halo_itsm ran, then SELECT pg_reload_conf(); "
							 "or ALTER DATABASE ... ALLOW_CONNECTIONS true.")));
			break;
		case HI_SERVE_NO_ROLE:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("halo_itsm: role \"%s\" named by halo_itsm.worker_role does not exist or cannot log in: no delivery worker runs",
							hi_worker_role),
					 errhint("CREATE ROLE %s LOGIN with the grants docs/operations.md lists (Privileges), or reset halo_itsm.worker_role and SELECT pg_reload_conf(). "
							 "The launcher looks again every %d s and logs again only when this changes.",
							 quote_identifier(hi_worker_role), RECHECK_MS / 1000)));
			break;
		case HI_SERVE_STARTING:
			ereport(LOG,
					(errmsg("halo_itsm: database \"%s\" named by %s is there now: starting the delivery worker",
							dbname, setting)));
			break;
		default:
			break;
	}
}

/* Starts the delivery worker in database dboid as roleoid; NULL when no slot is free. */
static BackgroundWorkerHandle *
StartDeliveryWorker(Oid dboid, Oid roleoid)
{
	BackgroundWorkerHandle *handle;

	/*
	 * Never restarted by the postmaster: the launcher restarts it. The role
	 * is the one the launcher checked; the worker does not read the settings
	 * again for it.
	 */
	if (!hi_register_worker("halo_itsm_worker_main", "halo_itsm delivery worker",
							BgWorkerStart_RecoveryFinished, BGW_NEVER_RESTART,
							ObjectIdGetDatum(dboid), roleoid, &handle))
		return NULL;
	return handle;
}

/*
 * Reads the configuration files again; says once when both names of the
 * database setting are set to different values. When the database or the
 * role changed, stops a running worker and starts (or looks) again at
 * once, with no backoff.
 */
static void
ReloadSettings(LauncherState *st)
{
	char		dbname[NAMEDATALEN];
	char		rolename[NAMEDATALEN];
	char	   *conflict;

	strlcpy(dbname, hi_worker_database(NULL), NAMEDATALEN);
	strlcpy(rolename, hi_worker_role ? hi_worker_role : "", NAMEDATALEN);
	ProcessConfigFile(PGC_SIGHUP);
	conflict = hi_database_conflict();
	if (conflict != NULL &&
		(st->conflict_logged == NULL || strcmp(conflict, st->conflict_logged) != 0))
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: %s", conflict),
				 errhint("Remove halo_itsm.database (the old name) from the configuration.")));
	if (st->conflict_logged)
		pfree(st->conflict_logged);
	st->conflict_logged = conflict;
	hi_shmem_set_settings();

	if (strcmp(dbname, hi_worker_database(NULL)) == 0 &&
		strcmp(rolename, hi_worker_role ? hi_worker_role : "") == 0)
		return;
	if (st->handle != NULL)
		ereport(LOG,
				(errmsg("halo_itsm: the delivery worker's database or role changed (now database \"%s\"%s%s%s): restarting it",
						hi_worker_database(NULL),
						hi_worker_role && hi_worker_role[0] ? ", role \"" : "",
						hi_worker_role ? hi_worker_role : "",
						hi_worker_role && hi_worker_role[0] ? "\"" : "")));
	StopWorker(st);
	st->quick_exits = 0;
	st->next_check = 0;
	hi_shmem_set_backoff(0, 0);
}

/* Asks the running worker to stop; it is started again at once when it has. */
static void
StopWorker(LauncherState *st)
{
	pid_t		pid = hi_shmem_worker_pid();

	if (st->handle == NULL)
	{
		/* a worker started by an earlier launcher (that one exited): ours to stop too */
		if (pid != 0)
			kill(pid, SIGTERM);
		return;
	}
	TerminateBackgroundWorker(st->handle);
	st->stopping = true;
}

/*
 * restart_worker() asked: read the settings afresh, stop the worker and
 * start it again at once, with no backoff. The answer is given when a
 * start was tried (TryStart).
 */
static void
TakeRestartRequest(LauncherState *st)
{
	uint32		ticket = hi_shmem_restart_pending();

	if (ticket == 0 || ticket == st->restart_ticket)
		return;
	st->restart_ticket = ticket;
	ReloadSettings(st);
	StopWorker(st);
	st->quick_exits = 0;
	st->logged = HI_SERVE_UNKNOWN;	/* say the state again, whatever it is */
	st->next_check = 0;
	hi_shmem_set_backoff(0, 0);
}

/*
 * The delivery worker exited: the next start is at once when we stopped
 * it, else after the restart pause, which doubles at each exit that came
 * soon after a start.
 */
static void
NoteWorkerExit(LauncherState *st)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		delay_ms = hi_worker_restart_delay_ms;
	int			i;

	pfree(st->handle);
	st->handle = NULL;
	hi_shmem_set_serve_state(HI_SERVE_STARTING);
	if (st->stopping)
	{
		st->stopping = false;
		st->next_check = 0;
		hi_shmem_set_backoff(st->quick_exits, 0);
		return;
	}
	for (i = 0; i < st->quick_exits && delay_ms < hi_worker_restart_delay_max_ms; i++)
		delay_ms *= 2;
	delay_ms = Min(delay_ms, (int64) hi_worker_restart_delay_max_ms);
	st->quick_exits++;
	st->next_check = now + delay_ms * 1000;
	hi_shmem_set_backoff(st->quick_exits, st->next_check);
	if (st->quick_exits > 1)
		ereport(LOG,
				(errmsg("halo_itsm: the delivery worker exited %d times in a row soon after starting: starting it again in " INT64_FORMAT " ms",
						st->quick_exits, delay_ms),
				 errhint("The server log above says why it exited.")));
}

/* Looks the database up and starts the worker there when it can be served. */
static void
TryStart(LauncherState *st)
{
	Oid			dboid;
	Oid			roleoid;
	HiServeState state = CheckDatabase(&dboid, &roleoid);

	if (state != st->logged)
	{
		/* "there now" only after a problem was logged */
		if (state != HI_SERVE_STARTING || st->logged != HI_SERVE_UNKNOWN)
			LogState(state);
		st->logged = state;
	}
	hi_shmem_set_serve_state(state);
	hi_shmem_set_backoff(st->quick_exits, 0);
	if (state == HI_SERVE_STARTING)
	{
		st->handle = StartDeliveryWorker(dboid, roleoid);
		if (st->handle == NULL && !st->no_slot_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("halo_itsm: could not start the delivery worker: no background worker slot is free"),
					 errhint("Raise max_worker_processes and restart the server; the launcher tries again every %d s.",
							 RECHECK_MS / 1000)));
		st->no_slot_logged = st->handle == NULL;
		if (st->handle != NULL)
			st->started_at = GetCurrentTimestamp();
	}
	if (st->restart_ticket != 0)
		hi_shmem_restart_done(st->restart_ticket, st->handle != NULL);
	st->restart_ticket = 0;
	st->next_check = GetCurrentTimestamp() + (TimestampTz) RECHECK_MS * 1000;
}

/* A worker that has run for a healthy while ends the backoff (shown as no quick exits). */
static void
NoteHealthy(LauncherState *st)
{
	if (st->handle == NULL || st->quick_exits == 0 ||
		GetCurrentTimestamp() - st->started_at < HEALTHY_US)
		return;
	st->quick_exits = 0;
	hi_shmem_set_backoff(0, 0);
}

/* How long to sleep before the next turn of the launcher's loop. */
static long
NextTimeout(LauncherState *st)
{
	if (st->handle != NULL)
		return RECHECK_MS;
	if (hi_shmem_worker_pid() != 0)
		return 100;				/* waiting for an earlier worker to go */
	return Max((long) ((st->next_check - GetCurrentTimestamp()) / 1000), 0);
}

/* Withdraws the launcher from shared memory when it exits. */
static void
LauncherExit(int code, Datum arg)
{
	hi_shmem_set_launcher(false);
}

/* Entry point of the launcher. */
void
halo_itsm_launcher_main(Datum arg)
{
	LauncherState st;

	memset(&st, 0, sizeof(st));
	st.logged = HI_SERVE_UNKNOWN;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("halo_itsm launcher");
	hi_shmem_set_launcher(true);
	hi_shmem_set_settings();
	before_shmem_exit(LauncherExit, (Datum) 0);
	/* a request made while no launcher ran is acted on now, as one made just now */

	for (;;)
	{
		pid_t		pid;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ReloadSettings(&st);
		}
		TakeRestartRequest(&st);

		if (st.handle != NULL && GetBackgroundWorkerPid(st.handle, &pid) == BGWH_STOPPED)
			NoteWorkerExit(&st);
		NoteHealthy(&st);

		/* a delivery worker of an earlier launcher must be gone first */
		if (st.handle == NULL && GetCurrentTimestamp() >= st.next_check &&
			hi_shmem_worker_pid() == 0)
			TryStart(&st);

		/* the postmaster sets the latch when the delivery worker starts or stops */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 NextTimeout(&st), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
