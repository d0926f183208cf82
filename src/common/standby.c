/*-------------------------------------------------------------------------
 * standby.c
 *	  One check for every SQL entry point that writes (configure*, connect,
 *	  deliver, ingest_webhook, retry, ...): on a hot standby it fails at
 *	  once with SQLSTATE 25006, saying which entry point and to run it on
 *	  the primary, instead of the bare "cannot execute ... in a read-only
 *	  transaction" of the first write. C callers use hi_refuse_on_standby;
 *	  SQL functions call halo_itsm._refuse_on_standby('name()').
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "halo_itsm.h"

PG_FUNCTION_INFO_V1(halo_itsm_refuse_on_standby);

/* Raises 25006 when this server is a hot standby (in recovery). */
void
hi_refuse_on_standby(const char *entry_point)
{
	if (!RecoveryInProgress())
		return;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("halo_itsm: %s writes and cannot run on a hot standby", entry_point),
			 errhint("Run it on the primary server. A standby serves reads only (SELECT * FROM halo_itsm.status); "
					 "its delivery worker starts when it is promoted.")));
}

/* SQL: _refuse_on_standby(entry_point): the same check for functions written in SQL. */
Datum
halo_itsm_refuse_on_standby(PG_FUNCTION_ARGS)
{
	hi_refuse_on_standby(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}
