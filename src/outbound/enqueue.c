/*-------------------------------------------------------------------------
 * enqueue.c
 *	  The one enqueue trigger, halo_itsm._enqueue(attachment id), of every
 *	  attached table: halo_itsm.cases and halo_itsm.detections (attachments
 *	  1 and 2) and the platform's own tables attached with attach(). In C
 *	  because it runs inside every inserting transaction.
 *
 *	  An insert into halo_itsm.cases writes the case's outbox row (one kept
 *	  SPI plan, run as the function's owner, so that roles that may insert
 *	  cases need no right on the outbox) and asks for the worker to be woken
 *	  at commit; an insert or change of a detection queues its ticket when
 *	  it is closed and standalone. A row of an attached table is handed,
 *	  with its mapped columns as text, to _attached_insert (which maps the
 *	  severity and writes the linked case or detection, whose own trigger
 *	  queues the ticket); a change of a title, severity or status, of any
 *	  attached table, to _source_changed (notes the close, queues the
 *	  update). docs/attach.md explains the whole.
 *
 *	  Measured against the PL/pgSQL trigger it replaced (test/bench, figure
 *	  1): no interpreter, no SET search_path (a GUC save and restore per
 *	  row), no SQL helper calls per row on the path of halo_itsm.cases.
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
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/syscache.h"

#include "halo_itsm.h"
#include "hi_spi.h"

PG_FUNCTION_INFO_V1(halo_itsm_enqueue);
PG_FUNCTION_INFO_V1(halo_itsm_case_enqueue);
PG_FUNCTION_INFO_V1(halo_itsm_restoring);

/* The statements of the trigger; every name is qualified. */
#define CASE_SQL \
	"INSERT INTO halo_itsm.outbox (kind, case_id, integration_id) VALUES ('case', $1, $2)"
/* a closed, standalone detection without a ticket, once ever (the ticket check covers a purged item) */
#define DETECTION_SQL \
	"INSERT INTO halo_itsm.outbox (kind, detection_id, integration_id) " \
	"SELECT 'detection', $1, $2 WHERE NOT EXISTS (SELECT 1 FROM halo_itsm.tickets t " \
	"WHERE t.detection_id OPERATOR(pg_catalog.=) $1) AND EXISTS (SELECT 1 FROM halo_itsm.integrations i " \
	"WHERE i.standalone_detection_tickets AND i.enabled AND (i.id OPERATOR(pg_catalog.=) $2 OR $2 IS NULL)) " \
	"ON CONFLICT (detection_id) WHERE kind = 'detection' DO NOTHING"
#define CONFIG_SQL \
	"SELECT a.kind, a.builtin, a.key_column::text, a.sid_column::text, a.title_column::text, " \
	"a.severity_column::text, a.description_column::text, a.status_column::text, a.integration_column::text " \
	"FROM halo_itsm.attachments a WHERE a.id OPERATOR(pg_catalog.=) $1"
#define INSERT_SQL \
	"SELECT halo_itsm._attached_insert($1, $2, $3, $4, $5, $6, $7, $8)"
#define PROBLEM_SQL \
	"UPDATE halo_itsm.attachments SET last_error = $2, last_error_at = pg_catalog.now() " \
	"WHERE id OPERATOR(pg_catalog.=) $1"
#define CHANGED_SQL \
	"SELECT halo_itsm._source_changed($1, $2, $3, $4, $5, $6, $7, $8)"

/* The mapped columns, in the order of CONFIG_SQL's columns 3..9. */
typedef enum MapCol
{
	MAP_KEY,
	MAP_SID,
	MAP_TITLE,
	MAP_SEVERITY,
	MAP_DESCRIPTION,
	MAP_STATUS,
	MAP_INTEGRATION,
	MAP_N
} MapCol;

static SPIPlanPtr case_plan = NULL;
static SPIPlanPtr detection_plan = NULL;
static SPIPlanPtr config_plan = NULL;
static SPIPlanPtr insert_plan = NULL;
static SPIPlanPtr changed_plan = NULL;
static SPIPlanPtr problem_plan = NULL;

/* Per trigger call site (fn_extra): whose rights it runs with, the attachment and its columns. */
typedef struct EnqueueCache
{
	Oid			owner;
	int32		attachment_id;
	bool		builtin_case;	/* halo_itsm.cases itself */
	bool		builtin_detection;	/* halo_itsm.detections itself */
	bool		have_config;	/* the attachment's mapping was read */
	char	   *problem;		/* why its rows cannot be queued (ReadConfig), or NULL */
	bool		problem_reported;
	MemoryContext cxt;			/* fn_mcxt: lives as long as the cache */
	AttrNumber	id_attnum;		/* built-in tables: id, integration_id, status, case_id */
	AttrNumber	integration_attnum;
	AttrNumber	status_attnum;
	AttrNumber	case_attnum;
	AttrNumber	map[MAP_N];		/* attached columns (0: not mapped) */
} EnqueueCache;

static EnqueueCache *GetEnqueueCache(FunctionCallInfo fcinfo, TriggerData *trig);
static void ReadConfig(EnqueueCache *cache, TupleDesc desc);
static void ReportProblem(EnqueueCache *cache);
static void RunPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
					char *nulls);
static void EnqueueBuiltin(EnqueueCache *cache, TriggerData *trig);
static void EnqueueAttached(EnqueueCache *cache, TriggerData *trig);
static void RowChanged(EnqueueCache *cache, TriggerData *trig);
static char *ColumnText(HeapTuple tup, TupleDesc desc, AttrNumber attnum);
static bool ColumnChanged(TriggerData *trig, AttrNumber attnum, char **old_text, char **new_text);

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

/* Looks up (once per statement) the owner, the attachment and the built-in columns. */
static EnqueueCache *
GetEnqueueCache(FunctionCallInfo fcinfo, TriggerData *trig)
{
	EnqueueCache *cache = (EnqueueCache *) fcinfo->flinfo->fn_extra;
	Relation	rel = trig->tg_relation;
	TupleDesc	desc = rel->rd_att;
	HeapTuple	proc;
	Oid			nsp;

	if (cache != NULL)
		return cache;
	if (trig->tg_trigger->tgnargs > 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("halo_itsm: _enqueue() takes one argument, the attachment id"),
				 errhint("Attach tables with halo_itsm.attach(); do not create this trigger by hand.")));
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "halo_itsm: cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(EnqueueCache));
	cache->cxt = fcinfo->flinfo->fn_mcxt;
	cache->owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	nsp = get_namespace_oid("halo_itsm", true);
	if (RelationGetNamespace(rel) == nsp)
	{
		cache->builtin_case = strcmp(RelationGetRelationName(rel), "cases") == 0;
		cache->builtin_detection = strcmp(RelationGetRelationName(rel), "detections") == 0;
	}
	/* no argument: the trigger of release 1.0 (_case_enqueue), still in force until ALTER EXTENSION UPDATE */
	if (trig->tg_trigger->tgnargs == 1)
		cache->attachment_id = pg_strtoint32(trig->tg_trigger->tgargs[0]);
	else if (cache->builtin_case || cache->builtin_detection)
		cache->attachment_id = cache->builtin_case ? 1 : 2;
	else
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("halo_itsm: _enqueue() takes one argument, the attachment id"),
				 errhint("Attach tables with halo_itsm.attach(); do not create this trigger by hand.")));
	if (cache->builtin_case || cache->builtin_detection)
	{
		cache->id_attnum = SPI_fnumber(desc, "id");
		cache->integration_attnum = SPI_fnumber(desc, "integration_id");
		cache->status_attnum = SPI_fnumber(desc, "status");
		cache->case_attnum = cache->builtin_detection ? SPI_fnumber(desc, "case_id") : 0;
		if (cache->id_attnum <= 0 || cache->integration_attnum <= 0 || cache->status_attnum <= 0 ||
			cache->case_attnum < 0)
			elog(ERROR, "halo_itsm: the columns of %s are not those of this version",
				 RelationGetRelationName(rel));
	}
	fcinfo->flinfo->fn_extra = cache;
	return cache;
}

/*
 * Reads the attachment's column mapping (once per statement) as attnums of
 * this relation. An attachment that is gone or names a column that is gone
 * leaves cache->problem set instead: the platform's statement must not fail.
 */
static void
ReadConfig(EnqueueCache *cache, TupleDesc desc)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	int			rc;
	int			i;

	cache->have_config = true;
	values[0] = Int32GetDatum(cache->attachment_id);
	hi_prepare(&config_plan, CONFIG_SQL, 1, types);
	rc = hi_execute(config_plan, values, NULL, true, "reading the attachment",
					"Check halo_itsm.attachments; detach and attach the table again.");
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
	{
		cache->problem = MemoryContextStrdup(cache->cxt,
											 psprintf("halo_itsm: attachment %d of this trigger does not exist; the row was written without a ticket",
													  cache->attachment_id));
		return;
	}
	for (i = 0; i < MAP_N; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 3);

		cache->map[i] = name ? SPI_fnumber(desc, name) : 0;
		if (name && cache->map[i] <= 0 && cache->problem == NULL)
			cache->problem = MemoryContextStrdup(cache->cxt,
												 psprintf("halo_itsm: attached column \"%s\" no longer exists; the row was written without a ticket",
														  name));
	}
}

/* Says (once per statement) why rows of this table are not queued; never fails the statement. */
static void
ReportProblem(EnqueueCache *cache)
{
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];

	if (cache->problem_reported)
		return;
	cache->problem_reported = true;
	ereport(WARNING,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("%s", cache->problem),
			 errhint("Attach the table again (halo_itsm.detach(), then halo_itsm.attach() with its current columns), then halo_itsm.backfill().")));
	values[0] = Int32GetDatum(cache->attachment_id);
	values[1] = CStringGetTextDatum(cache->problem);
	RunPlan(&problem_plan, PROBLEM_SQL, 2, types, values, NULL);
}

/* Runs a kept plan (SPI is connected, the owner's rights in force); wakes the worker after an insert. */
static void
RunPlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, char *nulls)
{
	int			rc;

	hi_prepare(plan, sql, nargs, types);
	rc = SPI_execute_plan(*plan, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "halo_itsm: the enqueue trigger failed: %s", SPI_result_code_string(rc));
	if (rc == SPI_OK_INSERT && SPI_processed > 0)
		hi_wake_worker_at_commit(false);
}

/* An insert into halo_itsm.cases, or an insert or change of halo_itsm.detections. */
static void
EnqueueBuiltin(EnqueueCache *cache, TriggerData *trig)
{
	HeapTuple	tup = TRIGGER_FIRED_BY_UPDATE(trig->tg_event) ? trig->tg_newtuple : trig->tg_trigtuple;
	TupleDesc	desc = trig->tg_relation->rd_att;
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;

	values[0] = heap_getattr(tup, cache->id_attnum, desc, &isnull);
	values[1] = heap_getattr(tup, cache->integration_attnum, desc, &isnull);
	if (isnull)
		nulls[1] = 'n';
	if (cache->builtin_case)
	{
		RunPlan(&case_plan, CASE_SQL, 2, types, values, nulls);
		return;
	}
	/* a detection: only once closed and standalone */
	(void) heap_getattr(tup, cache->case_attnum, desc, &isnull);
	if (!isnull)
		return;
	{
		char	   *status = ColumnText(tup, desc, cache->status_attnum);

		if (status == NULL || strcmp(status, "closed") != 0)
			return;
	}
	RunPlan(&detection_plan, DETECTION_SQL, 2, types, values, nulls);
}

/* The text of a column (its type's output), or NULL. */
static char *
ColumnText(HeapTuple tup, TupleDesc desc, AttrNumber attnum)
{
	return attnum > 0 ? SPI_getvalue(tup, desc, attnum) : NULL;
}

/* An insert into an attached table of the platform's: _attached_insert maps and links it. */
static void
EnqueueAttached(EnqueueCache *cache, TriggerData *trig)
{
	HeapTuple	tup = trig->tg_trigtuple;
	TupleDesc	desc = trig->tg_relation->rd_att;
	Oid			types[8] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];
	MapCol		order[7] = {MAP_KEY, MAP_SID, MAP_TITLE, MAP_DESCRIPTION, MAP_SEVERITY, MAP_STATUS, MAP_INTEGRATION};
	int			i;

	values[0] = Int32GetDatum(cache->attachment_id);
	nulls[0] = ' ';
	for (i = 0; i < 7; i++)
	{
		char	   *text = ColumnText(tup, desc, cache->map[order[i]]);

		nulls[i + 1] = text ? ' ' : 'n';
		values[i + 1] = text ? CStringGetTextDatum(text) : (Datum) 0;
	}
	RunPlan(&insert_plan, INSERT_SQL, 8, types, values, nulls);
}

/* True when the column's text differs between the old and the new row. */
static bool
ColumnChanged(TriggerData *trig, AttrNumber attnum, char **old_text, char **new_text)
{
	TupleDesc	desc = trig->tg_relation->rd_att;

	*old_text = ColumnText(trig->tg_trigtuple, desc, attnum);
	*new_text = ColumnText(trig->tg_newtuple, desc, attnum);
	if (*old_text == NULL || *new_text == NULL)
		return *old_text != *new_text;
	return strcmp(*old_text, *new_text) != 0;
}

/* A change of any attached table: a new title, severity or status goes to _source_changed. */
static void
RowChanged(EnqueueCache *cache, TriggerData *trig)
{
	Oid			types[8] = {INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8];
	char	   *texts[7];
	bool		changed = false;
	int			i;

	changed |= ColumnChanged(trig, cache->map[MAP_TITLE], &texts[1], &texts[2]);
	changed |= ColumnChanged(trig, cache->map[MAP_SEVERITY], &texts[3], &texts[4]);
	changed |= ColumnChanged(trig, cache->map[MAP_STATUS], &texts[5], &texts[6]);
	if (!changed)
		return;
	texts[0] = ColumnText(trig->tg_newtuple, trig->tg_relation->rd_att, cache->map[MAP_KEY]);
	values[0] = Int32GetDatum(cache->attachment_id);
	nulls[0] = ' ';
	for (i = 0; i < 7; i++)
	{
		nulls[i + 1] = texts[i] ? ' ' : 'n';
		values[i + 1] = texts[i] ? CStringGetTextDatum(texts[i]) : (Datum) 0;
	}
	RunPlan(&changed_plan, CHANGED_SQL, 8, types, values, nulls);
}

/* The enqueue trigger of every attached table (AFTER INSERT OR UPDATE ... FOR EACH ROW). */
Datum
halo_itsm_enqueue(PG_FUNCTION_ARGS)
{
	TriggerData *trig = (TriggerData *) fcinfo->context;
	EnqueueCache *cache;
	Oid			save_userid;
	int			save_sec_context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(trig->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trig->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trig->tg_event) || TRIGGER_FIRED_BY_UPDATE(trig->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("halo_itsm: _enqueue() must run as an AFTER INSERT OR UPDATE ... FOR EACH ROW trigger"),
				 errhint("Attach tables with halo_itsm.attach(); do not call it otherwise.")));
	if (hi_restoring())
		return PointerGetDatum(NULL);	/* the restored outbox rows follow in the dump */

	cache = GetEnqueueCache(fcinfo, trig);
	/* as the owner, like SECURITY DEFINER (an error resets the user with the transaction) */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(cache->owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	hi_spi_connect(0);
	if (TRIGGER_FIRED_BY_INSERT(trig->tg_event) && (cache->builtin_case || cache->builtin_detection))
		EnqueueBuiltin(cache, trig);	/* the hot path: no configuration read */
	else
	{
		if (!cache->have_config)
			ReadConfig(cache, trig->tg_relation->rd_att);
		if (cache->problem)
			ReportProblem(cache);
		else if (TRIGGER_FIRED_BY_INSERT(trig->tg_event))
			EnqueueAttached(cache, trig);
		else
		{
			if (cache->builtin_detection)
				EnqueueBuiltin(cache, trig);
			RowChanged(cache, trig);
		}
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}

/*
 * The insert trigger of halo_itsm.cases in release 1.0 (_case_enqueue, no
 * argument): kept so that inserts keep queueing while a 1.0 schema runs on
 * this library, until ALTER EXTENSION halo_itsm UPDATE replaces it.
 */
Datum
halo_itsm_case_enqueue(PG_FUNCTION_ARGS)
{
	return halo_itsm_enqueue(fcinfo);
}
