/*-------------------------------------------------------------------------
 * worker_status.c
 *	  What SQL sees of the launcher and the delivery worker (shared memory,
 *	  shmem.c): _worker_status() and _worker_problem() for the status view,
 *	  and restart_worker(), which asks the launcher to read its settings
 *	  again and restart the worker, and waits for the answer.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"

/* how long restart_worker() waits for the launcher's answer */
#define RESTART_WAIT_MS 30000

static void RequireOwner(void);
static const char *StateName(HiServeState state);
static char *NotRunning(const HiWorkerInfo *info);
static char *OtherVersion(void);

PG_FUNCTION_INFO_V1(halo_itsm_worker_status);
PG_FUNCTION_INFO_V1(halo_itsm_worker_problem);
PG_FUNCTION_INFO_V1(halo_itsm_restart_worker);

/* Raises 42501, with what to do, unless the caller is a superuser or has the owner's rights. */
static void
RequireOwner(void)
{
	Oid			owner = InvalidOid;

	(void) hi_extension_lookup(&owner, NULL);

	if (superuser() || (OidIsValid(owner) && has_privs_of_role(GetUserId(), owner)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("halo_itsm: only the extension's owner or a superuser may restart the delivery worker"),
			 errhint("Ask the owner of the extension halo_itsm (or a superuser) to run SELECT halo_itsm.restart_worker().")));
}

/* The serving state as the status view names it. */
static const char *
StateName(HiServeState state)
{
	switch (state)
	{
		case HI_SERVE_NO_DATABASE:
			return "no database";
		case HI_SERVE_NO_CONNECTIONS:
			return "database refuses connections";
		case HI_SERVE_NO_ROLE:
			return "no role";
		case HI_SERVE_STARTING:
			return "starting";
		case HI_SERVE_NO_EXTENSION:
			return "waiting for CREATE EXTENSION";
		case HI_SERVE_OTHER_VERSION:
			return "waiting for ALTER EXTENSION UPDATE";
		case HI_SERVE_RUNNING:
			return "running";
		default:
			return "unknown";
	}
}

/*
 * SQL: _worker_status(): one row of what the launcher and the worker
 * published: the database and role settings in force, the worker's pid,
 * database and start, its state, and the restart backoff.
 */
Datum
halo_itsm_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	HiWorkerInfo info;
	Datum		values[10];
	bool		nulls[10];
	bool		preloaded = hi_shmem_worker_info(&info);
	char	   *served = OidIsValid(info.worker_db) ? get_database_name(info.worker_db) : NULL;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "halo_itsm: _worker_status() must return a record");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(info.database);
	values[1] = CStringGetTextDatum(info.role);
	values[2] = BoolGetDatum(preloaded);
	values[3] = Int32GetDatum((int32) info.worker_pid);
	nulls[3] = info.worker_pid == 0;
	values[4] = served ? CStringGetTextDatum(served) : (Datum) 0;
	nulls[4] = served == NULL;
	values[5] = TimestampTzGetDatum(info.worker_started_at);
	nulls[5] = info.worker_pid == 0;
	values[6] = CStringGetTextDatum(preloaded ? StateName(info.serve_state) : "not preloaded");
	values[7] = Int32GetDatum(info.quick_exits);
	values[8] = TimestampTzGetDatum(info.next_start_at);
	nulls[8] = info.next_start_at == 0;
	values[9] = BoolGetDatum(info.worker_pid != 0 && info.worker_db == MyDatabaseId);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* Why the worker of this database (halo_itsm.database_name) does not run now. */
static char *
NotRunning(const HiWorkerInfo *info)
{
	if (info->next_start_at != 0 && info->quick_exits > 0)
		return psprintf("the background worker of this database is not running: it exited %d times in a row soon after starting "
						"and the launcher starts it again at %s (halo_itsm.worker_restart_delay, doubling up to halo_itsm.worker_restart_delay_max); "
						"the server log says why it exits",
						info->quick_exits, timestamptz_to_str(info->next_start_at));
	return pstrdup("the background worker of this database is not running: it starts again within seconds; if this stays, see the server log");
}

/* What the status view says while this database's SQL is at another version than the library; NULL otherwise. */
static char *
OtherVersion(void)
{
	char	   *version = NULL;

	if (hi_extension_lookup(NULL, &version) != HI_EXT_OTHER_VERSION)
		return NULL;
	return psprintf("the background worker waits: the extension in this database is at version %s and the loaded library at %s; "
					"run ALTER EXTENSION halo_itsm UPDATE (queued items wait and are delivered after it)",
					version, HI_EXTVERSION);
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
	HiWorkerInfo info;
	bool		preloaded = hi_shmem_worker_info(&info);
	const char *setting = info.database_setting;
	const char *wanted = info.database;
	const char *why = "";

	if (here == NULL)
		PG_RETURN_NULL();
	if (!preloaded)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker serves this database (halo_itsm is not in shared_preload_libraries); "
			"add it there, set halo_itsm.database_name = %s and restart, or deliver with CALL halo_itsm.deliver()",
			quote_literal_cstr(here))));
	if (info.worker_pid != 0 && info.worker_db == MyDatabaseId)
	{
		char	   *waiting = OtherVersion();

		if (waiting == NULL)
			PG_RETURN_NULL();
		PG_RETURN_TEXT_P(cstring_to_text(waiting));
	}
	if (strcmp(wanted, here) != 0)
	{
		if (info.serve_state == HI_SERVE_NO_DATABASE)
			why = ", which does not exist";
		else if (info.serve_state == HI_SERVE_NO_CONNECTIONS)
			why = ", which does not allow connections";
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker serves this database (%s = %s%s); "
			"set halo_itsm.database_name = %s, SELECT pg_reload_conf() and SELECT halo_itsm.restart_worker()",
			setting, quote_literal_cstr(wanted), why, quote_literal_cstr(here))));
	}
	if (info.serve_state == HI_SERVE_NO_ROLE)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf(
			"no background worker runs: halo_itsm.worker_role = %s names a role that does not exist or cannot log in; "
			"create it with LOGIN and the README's grants, or reset halo_itsm.worker_role, then SELECT halo_itsm.restart_worker()",
			quote_literal_cstr(info.role))));
	if (info.launcher_pid == 0)
		PG_RETURN_TEXT_P(cstring_to_text(
			"no background worker runs: the halo_itsm launcher is not running (on a hot standby it starts at promotion)"));
	PG_RETURN_TEXT_P(cstring_to_text(NotRunning(&info)));
}

/*
 * SQL: restart_worker(): the launcher reads the configuration files, stops
 * the delivery worker and starts it again where halo_itsm.database_name
 * and halo_itsm.worker_role now say, at once (no backoff). Returns true
 * when a worker was started; false when the settings name no database or
 * role that can be served (the status view says why).
 */
Datum
halo_itsm_restart_worker(PG_FUNCTION_ARGS)
{
	uint32		ticket;
	bool		started = false;
	long		waited = 0;

	RequireOwner();
	ticket = hi_shmem_request_restart();
	if (ticket == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("halo_itsm: no launcher runs, so there is no delivery worker to restart"),
				 errhint(RecoveryInProgress()
						 ? "This server is a hot standby: the launcher starts the worker at promotion."
						 : "Add halo_itsm to shared_preload_libraries and restart the server, or deliver with CALL halo_itsm.deliver().")));
	while (!hi_shmem_restart_finished(ticket, &started))
	{
		if (waited >= RESTART_WAIT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("halo_itsm: the launcher did not restart the delivery worker within %d s", RESTART_WAIT_MS / 1000),
					 errhint("The old worker may be busy finishing a request; see the server log and SELECT * FROM halo_itsm.status.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited += 50;
	}
	PG_RETURN_BOOL(started);
}
