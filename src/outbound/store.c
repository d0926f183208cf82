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
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "halo_itsm.h"
#include "hi_instance.h"
#include "hi_spi.h"
#include "hi_store.h"

/* The hint of an SPI failure while claiming or recording. */
#define STORE_HINT "The server log has the details; the outbox item stays queued."

/* A step run in a subtransaction of its own (RunInSubxact). */
typedef void (*SubxactStep) (void *arg);

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr record_plan = NULL;
static SPIPlanPtr sync_plan = NULL;
static SPIPlanPtr recover_plan = NULL;
static SPIPlanPtr all_busy_plan = NULL;

static Datum BusyArray(int *n, HiItem *claimed, bool count_budget);
static char *ColText(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt);
static HiItem *ItemFromRow(uint64 i);
static void RecordUnbuildable(HiItem *unbuildable);
static const char *OutcomeName(HiOutcome outcome);
static void RecordOne(HiItem *item);
static const char *ErrorExcerpt(const char *msg);
static ErrorData *RunInSubxact(SubxactStep step, void *arg);
static void RecordStep(void *arg);
static void ClaimStep(void *arg);

/*
 * Whether the extension is installed in this database at this library's
 * version (*version: the installed one); the cached plans are dropped when
 * it is not, so that they are prepared again against the SQL it then has.
 */
HiExtensionState
hi_store_extension_ready(char **version)
{
	HiExtensionState state = hi_extension_lookup(NULL, version);

	if (state != HI_EXT_READY)
		claim_plan = record_plan = sync_plan = recover_plan = all_busy_plan = NULL;
	return state;
}

/*
 * The integrations the engine has no room for, as an int4[] Datum (their
 * number in *n), counting the items claimed (a list, not submitted yet)
 * and, when count_budget, a spent request budget.
 */
static Datum
BusyArray(int *n, HiItem *claimed, bool count_budget)
{
	int		   *busy;
	Datum	   *elems;
	int			i;

	*n = hi_instances_busy(&busy, claimed, count_budget);
	elems = palloc(sizeof(Datum) * (*n + 1));
	for (i = 0; i < *n; i++)
		elems[i] = Int32GetDatum(busy[i]);
	return PointerGetDatum(construct_array(elems, *n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

/* Copies column col of the current SPI row as a string into cxt (NULL stays NULL). */
static char *
ColText(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(tup, desc, col);
	char	   *r;

	if (v == NULL)
		return NULL;
	r = MemoryContextStrdup(cxt, v);
	pfree(v);
	return r;
}

/* A new item from row i of the claim's answer (SPI_tuptable). */
static HiItem *
ItemFromRow(uint64 i)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	HiItem	   *item = hi_item_new();
	bool		isnull;
	Datum		d;
	char	   *kind;

	item->outbox_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	kind = SPI_getvalue(tup, desc, 2);
	item->kind = strcmp(kind, "case") == 0 ? HI_KIND_CASE :
		strcmp(kind, "detection") == 0 ? HI_KIND_DETECTION :
		strcmp(kind, "note") == 0 ? HI_KIND_NOTE :
		strcmp(kind, "close") == 0 ? HI_KIND_CLOSE :
		strcmp(kind, "update") == 0 ? HI_KIND_UPDATE : HI_KIND_SYNC;
	item->integration_id = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
	item->instance_url = ColText(tup, desc, 4, item->cxt);
	item->tenant = ColText(tup, desc, 5, item->cxt);
	item->client_id = ColText(tup, desc, 6, item->cxt);
	item->client_secret = ColText(tup, desc, 7, item->cxt);
	item->sid = ColText(tup, desc, 8, item->cxt);
	item->payload = ColText(tup, desc, 9, item->cxt);
	item->maybe_sent = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	item->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
	item->halo_ticket_id = DatumGetInt64(SPI_getbinval(tup, desc, 12, &isnull));
	if (isnull)
		item->halo_ticket_id = 0;
	d = SPI_getbinval(tup, desc, 13, &isnull);
	if (!isnull)
		memcpy(&item->claim_token, DatumGetUUIDP(d), sizeof(pg_uuid_t));
	item->error = ColText(tup, desc, 14, item->cxt);
	item->auth_url = ColText(tup, desc, 15, item->cxt);
	item->scope = ColText(tup, desc, 16, item->cxt);
	if ((item->kind == HI_KIND_NOTE || item->kind == HI_KIND_CLOSE) && item->error == NULL &&
		!hi_followup_prepare(item))
		item->error = MemoryContextStrdup(item->cxt, "halo_itsm: the action of this note or close cannot be read; nothing was sent");
	return item;
}

/* Records dead, with a warning, the claimed items whose ticket could not be built (a list). */
static void
RecordUnbuildable(HiItem *unbuildable)
{
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
	values[2] = BusyArray(&nbusy, NULL, true);
	plan = hi_prepare(&claim_plan,
					  "SELECT outbox_id, kind, integration_id, instance_url, tenant, client_id, client_secret, "
					  "sid, payload, maybe_sent, attempts, halo_ticket_id, claim_token, payload_error, "
					  "auth_url, scope "
					  "FROM halo_itsm._claim($1, $2, $3)", 3, types);
	hi_execute(plan, values, NULL, false, "claiming outbox items", STORE_HINT);

	for (i = 0; i < SPI_processed; i++)
	{
		HiItem	   *item = ItemFromRow(i);

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
	RecordUnbuildable(unbuildable);
	return (int) nclaimed;
}

/*
 * True when there are enabled, configured integrations and every one has
 * its lanes and waiting slots full, once the items just claimed (a list, or
 * NULL) are submitted: until an item finishes, which the worker sees, no
 * claim can give anything, whatever is queued meanwhile. A spent request
 * budget does not count (its window moves on by itself, unseen), nor does
 * having no integration at all (one may be enabled at any time).
 */
bool
hi_store_all_busy(HiItem *claimed)
{
	Oid			types[1] = {INT4ARRAYOID};
	Datum		values[1];
	int			nbusy;
	SPIPlanPtr	plan;
	bool		isnull;
	Datum		d;

	values[0] = BusyArray(&nbusy, claimed, false);
	if (nbusy == 0)
		return false;
	/* one scan: NULL (not busy) when no integration is enabled and configured */
	plan = hi_prepare(&all_busy_plan,
					  "SELECT pg_catalog.bool_and(i.id OPERATOR(pg_catalog.=) ANY ($1)) "
					  "FROM halo_itsm.integrations i WHERE i.enabled AND i.configured_at IS NOT NULL", 1, types);
	hi_execute(plan, values, NULL, false, "checking for integrations with room", STORE_HINT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/* The SQL name of an outcome. */
static const char *
OutcomeName(HiOutcome outcome)
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
RecordOne(HiItem *item)
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
		hi_execute(plan, svalues, NULL, false, "applying a ticket sync", STORE_HINT);
	}

	values[0] = Int64GetDatum(item->outbox_id);
	values[1] = CStringGetTextDatum(OutcomeName(item->outcome));
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
	hi_execute(plan, values, nulls, false, "recording a delivery outcome", STORE_HINT);
}

/* At most HI_ERROR_MAX bytes of an error message (cut at a character boundary), for last_error and the log. */
#define HI_ERROR_MAX 1000
static const char *
ErrorExcerpt(const char *msg)
{
	int			len = strlen(msg);

	if (len <= HI_ERROR_MAX)
		return msg;
	return psprintf("%.*s...", pg_mbcliplen(msg, len, HI_ERROR_MAX), msg);
}

/*
 * Runs step(arg) in a subtransaction; returns NULL, or the error it raised
 * (the subtransaction rolled back). A cancel or shutdown is raised again.
 */
static ErrorData *
RunInSubxact(SubxactStep step, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(arg);
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

/* RecordOne as a SubxactStep. */
static void
RecordStep(void *arg)
{
	RecordOne((HiItem *) arg);
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
	const char *was = item->outcome == HI_OUT_SYNCED ? NULL : OutcomeName(item->outcome);
	const char *msg;

	edata = RunInSubxact(RecordStep, item);
	if (edata == NULL)
		return;
	msg = ErrorExcerpt(edata->message);

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
	/* retried later when the database refused for the moment, dead otherwise */
	item->outcome = hi_item_retry_or_dead(item,
										  ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_TRANSACTION_ROLLBACK ||
										  edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE, -1);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("halo_itsm: outbox item " INT64_FORMAT " recorded %s: %s", item->outbox_id,
					OutcomeName(item->outcome), item->error)));
	FreeErrorData(edata);
	edata = RunInSubxact(RecordStep, item);
	if (edata == NULL)
		return;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("halo_itsm: outbox item " INT64_FORMAT " could not be recorded: %s", item->outbox_id,
					ErrorExcerpt(edata->message)),
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
	hi_execute(plan, values, NULL, false, "recovering abandoned outbox items", STORE_HINT);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt32(d);
}

/* What hi_store_claim_subxact asks of its subtransaction, and what it got. */
typedef struct ClaimRound
{
	bool		recover;
	int			room;
	bool	   *all_busy;
	HiItem	   *items;
	int			n;
} ClaimRound;

/* The claim round as a SubxactStep: recover, claim, check for room. */
static void
ClaimStep(void *arg)
{
	ClaimRound *r = (ClaimRound *) arg;

	if (r->recover)
		hi_store_recover(false);
	if (r->room > 0)
		r->n = hi_store_claim(r->room, &r->items);
	/*
	 * After a claim that gave items too: when they fill the last
	 * integrations with room, the claim that would follow (a transaction of
	 * its own) could not give anything.
	 */
	if (r->all_busy)
		*r->all_busy = hi_store_all_busy(r->items);
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
	ClaimRound	r = {recover, room, all_busy, NULL, 0};
	ErrorData  *edata = RunInSubxact(ClaimStep, &r);

	*items = NULL;
	*n = 0;
	if (edata == NULL)
	{
		*items = r.items;
		*n = r.n;
		return NULL;
	}
	/* the claim was rolled back: its items were never claimed */
	while (r.items)
	{
		HiItem	   *item = r.items;

		r.items = item->next;
		hi_item_free(item);
	}
	if (all_busy)
		*all_busy = false;
	return edata;
}
