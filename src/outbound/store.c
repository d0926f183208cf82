/*-------------------------------------------------------------------------
 * store.c
 *	  Claiming outbox items and recording delivery outcomes, for both the
 *	  background worker and CALL halo_itsm.deliver(). The SQL lives in the
 *	  install script (_claim, _record, _apply_sync, _recover_orphans); this
 *	  file prepares those calls once per process and moves values between
 *	  SPI and the engine's items. The caller owns the transaction; each
 *	  item's outcome is recorded in a subtransaction of its own, so that
 *	  one that cannot be applied is recorded dead (with the error) instead
 *	  of failing the outcomes of the others.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "halo_itsm.h"
#include "hi_backoff.h"
#include "hi_store.h"

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr sync_plan = NULL;
static SPIPlanPtr recover_plan = NULL;
static SPIPlanPtr all_busy_plan = NULL;

/* Prepares a statement once per process, with search_path pinned, and keeps it (in *plan). */
SPIPlanPtr
hi_prepare(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		int			pin = hi_pin_begin();
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		hi_pin_end(pin);

		if (p == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("halo_itsm: could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result)),
					 errhint("Check that the halo_itsm extension is installed and up to date (ALTER EXTENSION halo_itsm UPDATE).")));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/* Runs a kept plan with search_path pinned; raises a clear error when SPI fails. */
static void
hi_execute(SPIPlanPtr plan, Datum *values, const char *nulls, const char *what)
{
	int			pin = hi_pin_begin();
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	hi_pin_end(pin);

	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: %s failed: %s", what, SPI_result_code_string(rc)),
				 errhint("The server log has the details; the outbox item stays queued.")));
}

/* True when the extension is installed in this database (plans are dropped when it is not). */
bool
hi_store_extension_ready(void)
{
	if (OidIsValid(get_extension_oid("halo_itsm", true)))
		return true;
	claim_plan = record_plan = sync_plan = recover_plan = all_busy_plan = NULL;
	return false;
}

/* The integrations the engine has no room for, as an int4[] Datum (their number in *n). */
static Datum
hi_busy_array(int *n)
{
	int		   *busy;
	Datum	   *elems;
	int			i;

	*n = hi_engine_busy_integrations(&busy);
	elems = palloc(sizeof(Datum) * (*n + 1));
	for (i = 0; i < *n; i++)
		elems[i] = Int32GetDatum(busy[i]);
	return PointerGetDatum(construct_array(elems, *n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* Copies column col of the current SPI row as a string into cxt (NULL stays NULL). */
static char *
hi_col_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(tup, desc, col);
	char	   *r;

	if (v == NULL)
		return NULL;
	r = MemoryContextStrdup(cxt, v);
	pfree(v);
	return r;
}

/* Reads an int8/int4/bool column of the current SPI row. */
static Datum
hi_col_datum(HeapTuple tup, TupleDesc desc, int col, bool *isnull)
{
	return SPI_getbinval(tup, desc, col, isnull);
}

/*
 * Claims up to max_items due items, skipping integrations the engine has
 * no room for; returns them as a linked list of new items.
 */
int
hi_store_claim(int max_items, HiItem **items)
{
	Oid			types[3] = {INT4OID, INT4OID, INT4ARRAYOID};
	Datum		values[3];
	int			nbusy;
	SPIPlanPtr	plan;
	uint64		i;
	HiItem	   *head = NULL,
			   *tail = NULL,
			   *unbuildable = NULL;
	uint64		nclaimed;

	values[0] = Int32GetDatum(max_items);
	values[1] = Int32GetDatum(hi_max_requests_per_instance);
	values[2] = hi_busy_array(&nbusy);
	plan = hi_prepare(&claim_plan,
					  "SELECT outbox_id, kind, integration_id, instance_url, tenant, client_id, client_secret, "
					  "sid, payload, maybe_sent, attempts, halo_ticket_id, claim_token, payload_error, "
					  "auth_url, scope "
					  "FROM halo_itsm._claim($1, $2, $3)", 3, types);
	hi_execute(plan, values, NULL, "claiming outbox items");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		HiItem	   *item = hi_item_new();
		bool		isnull;
		Datum		d;
		char	   *kind;

		item->outbox_id = DatumGetInt64(hi_col_datum(tup, desc, 1, &isnull));
		kind = SPI_getvalue(tup, desc, 2);
		item->kind = strcmp(kind, "case") == 0 ? HI_KIND_CASE :
			strcmp(kind, "detection") == 0 ? HI_KIND_DETECTION : HI_KIND_SYNC;
		item->integration_id = DatumGetInt32(hi_col_datum(tup, desc, 3, &isnull));
		item->instance_url = hi_col_text(tup, desc, 4, item->cxt);
		item->tenant = hi_col_text(tup, desc, 5, item->cxt);
		item->client_id = hi_col_text(tup, desc, 6, item->cxt);
		item->client_secret = hi_col_text(tup, desc, 7, item->cxt);
		item->sid = hi_col_text(tup, desc, 8, item->cxt);
		item->payload = hi_col_text(tup, desc, 9, item->cxt);
		item->maybe_sent = DatumGetBool(hi_col_datum(tup, desc, 10, &isnull));
		item->attempts = DatumGetInt32(hi_col_datum(tup, desc, 11, &isnull));
		item->halo_ticket_id = DatumGetInt64(hi_col_datum(tup, desc, 12, &isnull));
		if (isnull)
			item->halo_ticket_id = 0;
		d = hi_col_datum(tup, desc, 13, &isnull);
		if (!isnull)
			memcpy(&item->claim_token, DatumGetUUIDP(d), sizeof(pg_uuid_t));
		item->error = hi_col_text(tup, desc, 14, item->cxt);
		item->auth_url = hi_col_text(tup, desc, 15, item->cxt);
		item->scope = hi_col_text(tup, desc, 16, item->cxt);
		if (item->error != NULL)
		{
			/* its ticket could not be built: recorded dead below, never sent */
			item->outcome = HI_OUT_DEAD;
			item->next = unbuildable;
			unbuildable = item;
			continue;
		}
		if (tail)
			tail->next = item;
		else
			head = item;
		tail = item;
	}
	*items = head;
	nclaimed = SPI_processed;
	/* after the loop: recording runs SPI, which replaces SPI_tuptable */
	while (unbuildable)
	{
		HiItem	   *item = unbuildable;

		unbuildable = item->next;
		item->next = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("halo_itsm: outbox item " INT64_FORMAT " recorded dead: %s", item->outbox_id, item->error),
				 errhint("Fix the cause, then SELECT halo_itsm.retry() queues it again.")));
		hi_store_record(item);
		hi_item_free(item);
	}
	return (int) nclaimed;
}

/*
 * True when every enabled, configured integration is one the engine has no
 * room for: until an item finishes, no claim can give anything, whatever
 * is queued meanwhile.
 */
bool
hi_store_all_busy(void)
{
	Oid			types[1] = {INT4ARRAYOID};
	Datum		values[1];
	int			nbusy;
	SPIPlanPtr	plan;
	bool		isnull;
	Datum		d;

	values[0] = hi_busy_array(&nbusy);
	if (nbusy == 0)
		return false;
	plan = hi_prepare(&all_busy_plan,
					  "SELECT NOT EXISTS (SELECT 1 FROM halo_itsm.integrations i "
					  "WHERE i.enabled AND i.configured_at IS NOT NULL AND i.id OPERATOR(pg_catalog.<>) ALL ($1))", 1, types);
	hi_execute(plan, values, NULL, "checking for integrations with room");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/* The SQL name of an outcome. */
static const char *
hi_outcome_name(HiOutcome outcome)
{
	switch (outcome)
	{
		case HI_OUT_CREATED:
			return "created";
		case HI_OUT_FOUND:
			return "found";
		case HI_OUT_SYNCED:
			return "synced";
		case HI_OUT_RETRY:
			return "retry";
		case HI_OUT_DEAD:
			return "dead";
		case HI_OUT_REQUEUE:
			return "requeue";
		case HI_OUT_NONE:
			break;
	}
	elog(ERROR, "halo_itsm: item finished without an outcome");
	return NULL;
}

/* Records a finished item's outcome (and applies a sync's ticket and actions); may raise. */
static void
hi_store_record_one(HiItem *item)
{
	Oid			types[8] = {INT8OID, TEXTOID, INT8OID, INT4OID, TEXTOID, INT8OID, BOOLOID, UUIDOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	SPIPlanPtr	plan;

	if (item->outcome == HI_OUT_SYNCED)
	{
		Oid			stypes[4] = {INT8OID, JSONBOID, JSONBOID, UUIDOID};
		Datum		svalues[4];

		/* parsed by the engine (hi_json_parse_answer): nothing left to fail in a cast */
		svalues[0] = Int64GetDatum(item->outbox_id);
		svalues[1] = JsonbPGetDatum(item->ticket_jb);
		svalues[2] = JsonbPGetDatum(item->actions_jb);
		svalues[3] = UUIDPGetDatum(&item->claim_token);
		plan = hi_prepare(&sync_plan, "SELECT halo_itsm._apply_sync($1, $2, $3, $4)", 4, stypes);
		hi_execute(plan, svalues, NULL, "applying a ticket sync");
	}

	values[0] = Int64GetDatum(item->outbox_id);
	values[1] = CStringGetTextDatum(hi_outcome_name(item->outcome));
	values[2] = Int64GetDatum(item->result_ticket_id);
	if (item->result_ticket_id == 0)
		nulls[2] = 'n';
	values[3] = Int32GetDatum(item->http_status);
	if (item->http_status == 0)
		nulls[3] = 'n';
	if (item->error)
		values[4] = CStringGetTextDatum(item->error);
	else
		nulls[4] = 'n';
	values[5] = Int64GetDatum((int64) item->retry_in_ms);
	values[6] = BoolGetDatum(item->outcome_maybe_sent);
	values[7] = UUIDPGetDatum(&item->claim_token);
	plan = hi_prepare(&record_plan, "SELECT halo_itsm._record($1, $2, $3, $4, $5, $6, $7, $8)", 8, types);
	hi_execute(plan, values, nulls, "recording a delivery outcome");
}

/* At most HI_ERROR_MAX bytes of an error message (cut at a character boundary), for last_error and the log. */
#define HI_ERROR_MAX 1000
static const char *
hi_error_excerpt(const char *msg)
{
	int			len = strlen(msg);

	if (len <= HI_ERROR_MAX)
		return msg;
	return psprintf("%.*s...", pg_mbcliplen(msg, len, HI_ERROR_MAX), msg);
}

/*
 * Runs hi_store_record_one in a subtransaction; returns NULL, or the error
 * it raised (the subtransaction rolled back). A cancel or shutdown is
 * raised again.
 */
static ErrorData *
hi_store_record_subxact(HiItem *item)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		hi_store_record_one(item);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata != NULL && ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
		ReThrowError(edata);
	return edata;
}

/*
 * Records a finished item's outcome in a subtransaction of its own. When
 * applying or recording it fails, the subtransaction is rolled back and the
 * item is recorded with the error instead: retried later when the database
 * refused for the moment (serialization failure, deadlock, lock not
 * available), dead otherwise. When even that fails, the item is left in
 * flight (recovered later, looked up before any resend) and nothing is
 * raised: the outcomes recorded beside it in the transaction stay.
 */
void
hi_store_record(HiItem *item)
{
	ErrorData  *edata;
	const char *was = item->outcome == HI_OUT_SYNCED ? NULL : hi_outcome_name(item->outcome);
	const char *msg;

	edata = hi_store_record_subxact(item);
	if (edata == NULL)
		return;
	msg = hi_error_excerpt(edata->message);

	if (was == NULL)
		item->error = psprintf("halo_itsm: Halo's answers for ticket " INT64_FORMAT " could not be applied: %s",
							   item->halo_ticket_id, msg);
	else if (item->result_ticket_id != 0)
		item->error = psprintf("halo_itsm: Halo ticket " INT64_FORMAT " was %s, but recording it failed: %s",
							   item->result_ticket_id, was, msg);
	else
		item->error = psprintf("halo_itsm: recording the outcome \"%s\" failed: %s", was, msg);
	/* a ticket created (or found) but not recorded is looked up before any resend */
	if (item->outcome == HI_OUT_CREATED || item->outcome == HI_OUT_FOUND)
		item->outcome_maybe_sent = true;
	item->result_ticket_id = 0;
	if ((ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_TRANSACTION_ROLLBACK ||
		 edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE) && item->attempts < hi_max_attempts)
	{
		item->retry_in_ms = hi_backoff_delay_ms(item->attempts, hi_backoff_base_ms, hi_backoff_max_ms,
												pg_prng_double(&pg_global_prng_state), -1);
		item->outcome = HI_OUT_RETRY;
	}
	else
		item->outcome = HI_OUT_DEAD;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("halo_itsm: outbox item " INT64_FORMAT " recorded %s: %s", item->outbox_id,
					hi_outcome_name(item->outcome), item->error)));
	FreeErrorData(edata);
	edata = hi_store_record_subxact(item);
	if (edata == NULL)
		return;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("halo_itsm: outbox item " INT64_FORMAT " could not be recorded: %s", item->outbox_id,
					hi_error_excerpt(edata->message)),
			 errhint("It stays in flight until recovered; it is looked up in Halo before it is sent again.")));
	FreeErrorData(edata);
}

/* Puts items claimed by sessions that are gone (or by this one, if asked) back in the queue. */
int
hi_store_recover(bool include_self)
{
	Oid			types[2] = {BOOLOID, INT4OID};
	Datum		values[2];
	SPIPlanPtr	plan;
	bool		isnull;
	Datum		d;

	values[0] = BoolGetDatum(include_self);
	values[1] = Int32GetDatum(hi_request_timeout_ms);
	plan = hi_prepare(&recover_plan, "SELECT halo_itsm._recover_orphans($1, $2)", 2, types);
	hi_execute(plan, values, NULL, "recovering abandoned outbox items");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * Recovers orphans (when recover), claims up to room items (when room > 0)
 * and checks whether every integration is busy (when all_busy is given),
 * in a subtransaction: an error there (a claim the database refuses) is
 * rolled back and returned, with nothing claimed, and leaves the outcomes
 * recorded before it in the transaction alone. A cancel or shutdown is
 * raised again.
 */
ErrorData *
hi_store_claim_subxact(bool recover, int room, HiItem **items, int *n, bool *all_busy)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;
	HiItem	   *volatile claimed = NULL;

	*items = NULL;
	*n = 0;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		HiItem	   *got = NULL;

		if (recover)
			hi_store_recover(false);
		if (room > 0)
			*n = hi_store_claim(room, &got);
		claimed = got;
		if (all_busy)
			*all_busy = *n == 0 && hi_store_all_busy();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata == NULL)
	{
		*items = claimed;
		return NULL;
	}
	if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION)
		ReThrowError(edata);
	/* the claim was rolled back: its items were never claimed */
	while (claimed)
	{
		HiItem	   *item = claimed;

		claimed = item->next;
		hi_item_free(item);
	}
	*n = 0;
	if (all_busy)
		*all_busy = false;
	return edata;
}
