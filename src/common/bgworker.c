/*-------------------------------------------------------------------------
 * bgworker.c
 *	  hi_register_worker(): the one place that fills in a halo_itsm
 *	  background worker (the launcher, the delivery worker it starts, the
 *	  webhook listener) and registers it with the postmaster.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"

#include "halo_itsm.h"

/*
 * Registers a background worker of this library with shared memory and a
 * database connection, running `function` and named `name` (its type too).
 * With handle NULL it is registered at postmaster start (from _PG_init);
 * else it is a dynamic worker started now, which notifies this process,
 * with main_arg and roleoid (in bgw_extra) passed to it: false when no
 * background worker slot is free.
 */
bool
hi_register_worker(const char *function, const char *name,
				   BgWorkerStartTime start_time, int restart_time,
				   Datum main_arg, Oid roleoid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = start_time;
	worker.bgw_restart_time = restart_time;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "halo_itsm");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	worker.bgw_main_arg = main_arg;
	memcpy(worker.bgw_extra, &roleoid, sizeof(Oid));
	if (handle == NULL)
	{
		RegisterBackgroundWorker(&worker);
		return true;
	}
	worker.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&worker, handle);
}
