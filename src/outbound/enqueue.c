/*-------------------------------------------------------------------------
 * enqueue.c
 *	  The insert trigger of halo_itsm.cases, in C because it runs inside
 *	  every inserting transaction: it writes the case's outbox row (one kept
 *	  SPI plan, run as the function's owner, so that roles that may insert
 *	  cases need no right on the outbox) and asks for the worker to be woken
 *	  at commit. Also the restore check shared with the detection trigger.
 *
 *	  Measured against the PL/pgSQL trigger it replaces (test/bench, figure
 *	  1): no interpreter, no SET search_path (a GUC save and restore per
 *	  row), no SQL helper calls per row.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "halo_itsm.h"
#include "hi_spi.h"

PG_FUNCTION_INFO_V1(halo_itsm_case_enqueue);
PG_FUNCTION_INFO_V1(halo_itsm_restoring);

/* The one statement of the trigger; every name is qualified. */
#define ENQUEUE_SQL \
	"INSERT INTO halo_itsm.outbox (kind, case_id, integration_id) VALUES ('case', $1, $2)"

static SPIPlanPtr enqueue_plan = NULL;

/* Per trigger call site (fn_extra): whose rights the insert runs with, and the columns. */
typedef struct EnqueueCache
{
	Oid			owner;
	AttrNumber	id_attnum;
	AttrNumber	integration_attnum;
} EnqueueCache;

static EnqueueCache *GetEnqueueCache(FunctionCallInfo fcinfo, TupleDesc desc);

/*
 * True in a session that restores a dump: pg_dump writes
 * "SET check_function_bodies = false" and "SET row_security = off" at the top
 * of every dump (pg_restore sends both), and ordinary sessions do not run with
 * both. The dump carries the outbox rows of what it restores, so the insert
 * triggers must not queue them a second time.
 *
 * Any role may turn both settings off, so the session's role (the outer one:
 * SET ROLE counts, SECURITY DEFINER does not) must also be one that could
 * write the outbox itself (superuser, the extension's owner, or granted
 * INSERT on it): a role that may only insert cases gains nothing from it.
 */
bool
hi_restoring(void)
{
	Oid			nsp;
	Oid			outbox;

	if (check_function_bodies || row_security)
		return false;
	nsp = get_namespace_oid("halo_itsm", true);
	outbox = OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;
	return OidIsValid(outbox) &&
		pg_class_aclcheck(outbox, GetOuterUserId(), ACL_INSERT) == ACLCHECK_OK;
}

/* SQL: whether this session is restoring a dump (see hi_restoring). */
Datum
halo_itsm_restoring(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(hi_restoring());
}

/* Looks up (once per statement) the function's owner and the columns it reads. */
static EnqueueCache *
GetEnqueueCache(FunctionCallInfo fcinfo, TupleDesc desc)
{
	EnqueueCache *cache = (EnqueueCache *) fcinfo->flinfo->fn_extra;
	HeapTuple	proc;

	if (cache != NULL)
		return cache;
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "halo_itsm: cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(EnqueueCache));
	cache->owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	cache->id_attnum = SPI_fnumber(desc, "id");
	cache->integration_attnum = SPI_fnumber(desc, "integration_id");
	if (cache->id_attnum <= 0 || cache->integration_attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("halo_itsm: the table of this trigger has no columns \"id\" and \"integration_id\""),
				 errhint("halo_itsm._case_enqueue() is the trigger of halo_itsm.cases only.")));
	fcinfo->flinfo->fn_extra = cache;
	return cache;
}

/* Trigger of halo_itsm.cases: queues a ticket for the new case, wakes the worker at commit. */
Datum
halo_itsm_case_enqueue(PG_FUNCTION_ARGS)
{
	TriggerData *trig = (TriggerData *) fcinfo->context;
	EnqueueCache *cache;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	Oid			save_userid;
	int			save_sec_context;
	int			rc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trig->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trig->tg_event) || !TRIGGER_FIRED_BY_INSERT(trig->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("halo_itsm: _case_enqueue() must run as an AFTER INSERT ... FOR EACH ROW trigger"),
				 errhint("It is the trigger of halo_itsm.cases; do not call it otherwise.")));
	if (hi_restoring())
		return PointerGetDatum(NULL);	/* the restored outbox row follows in the dump */

	cache = GetEnqueueCache(fcinfo, trig->tg_relation->rd_att);
	values[0] = heap_getattr(trig->tg_trigtuple, cache->id_attnum, trig->tg_relation->rd_att, &isnull);
	values[1] = heap_getattr(trig->tg_trigtuple, cache->integration_attnum, trig->tg_relation->rd_att, &isnull);
	if (isnull)
		nulls[1] = 'n';

	/* as the owner, like SECURITY DEFINER (an error resets the user with the transaction) */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(cache->owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	hi_spi_connect(0);
	hi_prepare(&enqueue_plan, ENQUEUE_SQL, 2, types);
	rc = SPI_execute_plan(enqueue_plan, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "halo_itsm: writing the outbox row failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);

	hi_wake_worker_at_commit();
	return PointerGetDatum(NULL);
}
