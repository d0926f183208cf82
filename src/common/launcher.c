/*-------------------------------------------------------------------------
 * launcher.c
 *	  The halo_itsm launcher: a background worker connected to no database
 *	  that starts the delivery worker (worker.c) in halo_itsm.database.
 *
 *	  A background worker can connect to one database, once, and one that
 *	  names a missing database dies with FATAL, which the postmaster used to
 *	  repeat every 5 s forever while every database looked fine. So the
 *	  launcher looks the database up in the shared catalog pg_database
 *	  first: when it is missing (or refuses connections) it says so once,
 *	  with what to set, records the problem in shared memory for the status
 *	  view, and looks again every few seconds, logging again only when the
 *	  answer changes. When the database is there it starts the delivery
 *	  worker as a dynamic background worker and starts it again, after a
 *	  delay, whenever it exits.
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
/* the pause before a delivery worker that exited is started again */
#define RESTART_DELAY_MS 5000

static HiServeState CheckDatabase(Oid *dboid);
static bool RoleCanLogIn(void);
static void LogState(HiServeState state);
static BackgroundWorkerHandle *StartDeliveryWorker(Oid dboid);

/* Registers the launcher with the postmaster (from _PG_init, when preloaded). */
void
hi_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "halo_itsm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "halo_itsm_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "halo_itsm launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "halo_itsm launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Looks halo_itsm.database up in pg_database; sets *dboid when it can be
 * served. A sequential scan, as the autovacuum launcher reads the list of
 * databases: with no database selected, only the shared catalog itself can
 * be read.
 */
static HiServeState
CheckDatabase(Oid *dboid)
{
	HiServeState state = HI_SERVE_NO_DATABASE;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	*dboid = InvalidOid;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), hi_database) != 0)
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
	if (state == HI_SERVE_STARTING && !RoleCanLogIn())
	{
		state = HI_SERVE_NO_ROLE;
		*dboid = InvalidOid;
	}
	CommitTransactionCommand();
	return state;
}

/*
 * True when halo_itsm.worker_role is empty (the bootstrap superuser) or
 * names a role in pg_authid that may log in: a worker started as any
 * other would die with FATAL at every restart. Runs inside CheckDatabase's
 * transaction, with the same sequential scan of a shared catalog.
 */
static bool
RoleCanLogIn(void)
{
	bool		ok = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	if (hi_worker_role == NULL || hi_worker_role[0] == '\0')
		return true;
	rel = table_open(AuthIdRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_authid role = (Form_pg_authid) GETSTRUCT(tup);

		if (strcmp(NameStr(role->rolname), hi_worker_role) != 0)
			continue;
		ok = role->rolcanlogin;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return ok;
}

/* Says once what a new state of the database check means, and what to do. */
static void
LogState(HiServeState state)
{
	switch (state)
	{
		case HI_SERVE_NO_DATABASE:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("halo_itsm: database \"%s\" named by halo_itsm.database does not exist: no delivery worker runs",
							hi_database),
					 errhint("Set halo_itsm.database to the database where CREATE EXTENSION halo_itsm ran and restart the server. "
							 "The launcher looks again every %d s and logs again only when this changes.",
							 RECHECK_MS / 1000)));
			break;
		case HI_SERVE_NO_CONNECTIONS:
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("halo_itsm: database \"%s\" named by halo_itsm.database does not allow connections: no delivery worker runs",
							hi_database),
					 errhint("Set halo_itsm.database to the database where CREATE EXTENSION halo_itsm ran and restart the server, "
							 "or ALTER DATABASE ... ALLOW_CONNECTIONS true.")));
			break;
		case HI_SERVE_NO_ROLE:
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("halo_itsm: role \"%s\" named by halo_itsm.worker_role does not exist or cannot log in: no delivery worker runs",
							hi_worker_role),
					 errhint("CREATE ROLE %s LOGIN with the grants the README's Privileges section lists, or reset halo_itsm.worker_role and restart the server. "
							 "The launcher looks again every %d s and logs again only when this changes.",
							 quote_identifier(hi_worker_role), RECHECK_MS / 1000)));
			break;
		case HI_SERVE_STARTING:
			ereport(LOG,
					(errmsg("halo_itsm: database \"%s\" named by halo_itsm.database is there now: starting the delivery worker",
							hi_database)));
			break;
		default:
			break;
	}
}

/* Starts the delivery worker in database dboid; NULL when no slot is free. */
static BackgroundWorkerHandle *
StartDeliveryWorker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "halo_itsm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "halo_itsm_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "halo_itsm delivery worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "halo_itsm delivery worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

/* Entry point of the launcher. */
void
halo_itsm_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handle = NULL;
	HiServeState logged = HI_SERVE_UNKNOWN;
	bool		no_slot_logged = false;
	TimestampTz next_check = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("halo_itsm launcher");

	for (;;)
	{
		TimestampTz now;
		long		timeout_ms = RECHECK_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* the delivery worker exited: start it again after a pause */
		if (handle != NULL)
		{
			pid_t		pid;

			if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			{
				pfree(handle);
				handle = NULL;
				hi_shmem_set_serve_state(HI_SERVE_STARTING);
				next_check = GetCurrentTimestamp() + (TimestampTz) RESTART_DELAY_MS * 1000;
			}
		}

		now = GetCurrentTimestamp();
		/* a delivery worker of an earlier launcher must be gone first */
		if (handle == NULL && now >= next_check && hi_shmem_worker_pid() == 0)
		{
			Oid			dboid;
			HiServeState state = CheckDatabase(&dboid);

			if (state != logged)
			{
				/* "there now" only after a problem was logged */
				if (state != HI_SERVE_STARTING || logged != HI_SERVE_UNKNOWN)
					LogState(state);
				logged = state;
			}
			hi_shmem_set_serve_state(state);
			if (state == HI_SERVE_STARTING)
			{
				handle = StartDeliveryWorker(dboid);
				if (handle == NULL && !no_slot_logged)
					ereport(WARNING,
							(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
							 errmsg("halo_itsm: could not start the delivery worker: no background worker slot is free"),
							 errhint("Raise max_worker_processes and restart the server; the launcher tries again every %d s.",
									 RECHECK_MS / 1000)));
				no_slot_logged = handle == NULL;
			}
			next_check = now + (TimestampTz) RECHECK_MS * 1000;
		}
		if (handle == NULL)
		{
			if (hi_shmem_worker_pid() != 0)
				timeout_ms = 1000;	/* waiting for an earlier worker to go */
			else
				timeout_ms = Max((long) ((next_check - GetCurrentTimestamp()) / 1000), 0);
		}

		/* the postmaster sets the latch when the delivery worker starts or stops */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
