/*-------------------------------------------------------------------------
 * listener_apply.c
 *	  The webhook listener's database side: each delivery is applied by
 *	  SELECT halo_itsm.ingest_webhook(key, headers, body), the same
 *	  verification and apply code as any external receiver's, in a
 *	  transaction of its own; an error is caught, the transaction aborted,
 *	  and the answer is the error's HTTP status (hi_webhook_http_status(),
 *	  the one SQLSTATE-to-HTTP map), so that no delivery can end the worker.
 *	  A rejection of a known key is kept for diagnosis by ingest_webhook()
 *	  itself (rejected.c); the listener's own rejections of a known key (a
 *	  body over webhook_max_body, refused before it is read) go to the same
 *	  place through hi_listener_record_rejection().
 *
 *	  The role: the worker connects as the bootstrap superuser (a
 *	  background worker must connect as a role that can log in, and the
 *	  listener must run before any role is set up), and every delivery runs
 *	  as halo_itsm.listen_role with SetUserIdAndSecContext(), as autovacuum
 *	  and CREATE INDEX run user code: default halo_itsm_listener, a NOLOGIN
 *	  role the extension creates with EXECUTE on ingest_webhook() and
 *	  nothing else. A missing role, or one that is a superuser, is refused
 *	  (answer 500, so that Halo retries once it is fixed).
 *
 *	  On a hot standby every request is answered 503 (Halo retries), said
 *	  once in the log, and nothing touches the database.
 *
 *	  Nothing here raises: every function catches its errors.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "halo_itsm.h"
#include "hi_listener.h"
#include "hi_spi.h"
#include "hi_webhook_status.h"

PG_FUNCTION_INFO_V1(halo_itsm_webhook_http_status);

static SPIPlanPtr ingest_plan = NULL;
static SPIPlanPtr key_plan = NULL;
static bool standby_logged = false;

static char *MallocCopy(const char *s);
static char *HeadersJson(int n, const char *const *names, const char *const *values);
static char *ErrorJson(ErrorData *edata);
static Oid ListenRole(void);
static void BeginWork(const char *activity);
static void EndWork(void);
static ErrorData *AbortWork(MemoryContext cxt);

/* A malloc'd copy of s (the answer outlives the transaction's memory); NULL when out of memory. */
static char *
MallocCopy(const char *s)
{
	return strdup(s);
}

/* True on a hot standby (answer set, said once in the log); says so again after promotion. */
bool
hi_listener_standby(char **answer)
{
	if (!RecoveryInProgress())
	{
		if (standby_logged)
			ereport(LOG, (errmsg("halo_itsm: the server was promoted: the webhook listener applies deliveries again")));
		standby_logged = false;
		return false;
	}
	if (!standby_logged)
		ereport(LOG,
				(errmsg("halo_itsm: the server is a hot standby: the webhook listener answers 503 to every request until it is promoted"),
				 errhint("Halo retries a delivery answered 503; point Halo's webhook at the primary's listener.")));
	standby_logged = true;
	*answer = MallocCopy("{\"error\": \"halo_itsm: the server is a hot standby; retry later\", \"sqlstate\": \"25006\"}");
	return true;
}

/* The headers as a JSON object: a name received more than once maps to an array of its values. */
static char *
HeadersJson(int n, const char *const *names, const char *const *values)
{
	StringInfoData buf;
	bool	   *done = palloc0(sizeof(bool) * Max(n, 1));
	int			enc = GetDatabaseEncoding();
	int			i,
				j;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < n; i++)
	{
		int			count = 0;

		if (done[i] || !pg_verify_mbstr(enc, names[i], strlen(names[i]), true))
			continue;
		for (j = i; j < n; j++)
			if (strcmp(names[i], names[j]) == 0)
				count++;
		if (buf.len > 1)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, names[i]);
		appendStringInfoString(&buf, count > 1 ? ": [" : ": ");
		for (j = i, count = 0; j < n; j++)
		{
			if (strcmp(names[i], names[j]) != 0)
				continue;
			done[j] = true;
			if (count++ > 0)
				appendStringInfoString(&buf, ", ");
			/* a value that is not text in the database's encoding is no string (WH003 when it matters) */
			if (pg_verify_mbstr(enc, values[j], strlen(values[j]), true))
				escape_json(&buf, values[j]);
			else
				appendStringInfoString(&buf, "null");
		}
		if (count > 1)
			appendStringInfoChar(&buf, ']');
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* The error's JSON answer: {"error": message, "sqlstate": code}. */
static char *
ErrorJson(ErrorData *edata)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\": ");
	escape_json(&buf, edata->message ? edata->message : "");
	appendStringInfo(&buf, ", \"sqlstate\": \"%s\"}", unpack_sql_state(edata->sqlerrcode));
	return buf.data;
}

/* The role deliveries run as; raises when it is missing or a superuser. */
static Oid
ListenRole(void)
{
	Oid			role = get_role_oid(hi_listen_role, true);

	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("halo_itsm: role \"%s\" named by halo_itsm.listen_role does not exist", hi_listen_role),
				 errhint("The extension creates halo_itsm_listener; for another role: CREATE ROLE %s NOLOGIN; "
						 "GRANT USAGE ON SCHEMA halo_itsm TO %s; GRANT EXECUTE ON FUNCTION halo_itsm.ingest_webhook(text, jsonb, bytea) TO %s.",
						 quote_identifier(hi_listen_role), quote_identifier(hi_listen_role), quote_identifier(hi_listen_role))));
	if (superuser_arg(role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("halo_itsm: role \"%s\" named by halo_itsm.listen_role is a superuser", hi_listen_role),
				 errhint("Deliveries come from the internet: name a role with EXECUTE on halo_itsm.ingest_webhook() and nothing else, e.g. halo_itsm_listener.")));
	return role;
}

/* Starts a transaction with SPI and a snapshot. */
static void
BeginWork(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commits what BeginWork started. */
static void
EndWork(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* In a PG_CATCH block: the error, copied; the transaction aborted. */
static ErrorData *
AbortWork(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	return edata;
}

/*
 * Applies one delivery with ingest_webhook() as listen_role, in a
 * transaction of its own; returns the HTTP status and sets *answer
 * (malloc'd JSON, or NULL when out of memory). Never raises.
 */
int
hi_listener_apply(const char *key, int n, const char *const *names, const char *const *values,
				  const char *body, size_t len, char **answer)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int status = 500;

	*answer = NULL;
	if (hi_listener_standby(answer))
		return 503;
	BeginWork("halo_itsm: applying a webhook delivery");
	PG_TRY();
	{
		Oid			types[3] = {TEXTOID, JSONBOID, BYTEAOID};
		Datum		args[3];
		bytea	   *b = palloc(VARHDRSZ + len);
		Oid			save_uid;
		int			save_sec;
		int			pin;
		int			rc;
		bool		isnull;
		Datum		d;

		SET_VARSIZE(b, VARHDRSZ + len);
		if (len > 0)
			memcpy(VARDATA(b), body, len);
		args[0] = CStringGetTextDatum(key);
		args[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(HeadersJson(n, names, values)));
		args[2] = PointerGetDatum(b);

		hi_prepare(&ingest_plan, "SELECT halo_itsm.ingest_webhook($1, $2, $3)::pg_catalog.text", 3, types);
		GetUserIdAndSecContext(&save_uid, &save_sec);
		SetUserIdAndSecContext(ListenRole(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
		pin = hi_pin_begin();
		rc = SPI_execute_plan(ingest_plan, args, NULL, false, 1);
		hi_pin_end(pin);
		SetUserIdAndSecContext(save_uid, save_sec);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("halo_itsm: ingest_webhook() failed in the webhook listener: %s", SPI_result_code_string(rc))));
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		*answer = MallocCopy(isnull ? "null" : TextDatumGetCString(d));
		EndWork();
		/* applied on the standbys too before Halo hears 200 (halo_itsm.wait_for_replication) */
		hi_replwait(InvalidXLogRecPtr);
		status = 200;
	}
	PG_CATCH();
	{
		ErrorData  *edata = AbortWork(cxt);
		const char *sqlstate = unpack_sql_state(edata->sqlerrcode);

		status = hi_webhook_http_status(sqlstate);
		/* a rejection is the sender's problem (LOG); anything else the operator's (WARNING) */
		ereport(status >= 500 ? WARNING : LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("halo_itsm: the webhook listener answered %d (SQLSTATE %s): %s", status, sqlstate, edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0));
		*answer = MallocCopy(ErrorJson(edata));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return status;
}

/*
 * Keeps a rejection that the listener made itself for diagnosis, as
 * ingest_webhook() keeps its own: only when key names a real integration.
 * Never raises.
 */
void
hi_listener_record_rejection(const char *key, int n, const char *const *names, const char *const *values,
							 int sqlerrcode, const char *reason)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (RecoveryInProgress())
		return;
	BeginWork("halo_itsm: keeping a rejected webhook delivery");
	PG_TRY();
	{
		Oid			types[1] = {TEXTOID};
		Datum		args[1];
		int			pin;
		int			rc;

		args[0] = CStringGetTextDatum(key);
		hi_prepare(&key_plan, "SELECT i.id FROM halo_itsm.integrations i WHERE i.webhook_key OPERATOR(pg_catalog.=) $1",
				   1, types);
		pin = hi_pin_begin();
		rc = SPI_execute_plan(key_plan, args, NULL, true, 1);
		hi_pin_end(pin);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
				hi_rejected_record(DatumGetInt32(id), sqlerrcode, reason, HeadersJson(n, names, values), NULL, -1);
		}
		EndWork();
	}
	PG_CATCH();
	{
		ErrorData  *edata = AbortWork(cxt);

		ereport(LOG, (errmsg("halo_itsm: the webhook listener could not keep a rejected delivery: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/*
 * GET /healthz: 200 when a transaction can run, the extension is installed
 * and listen_role is usable; else 503 with the reason. Never raises.
 */
int
hi_listener_health(char **answer)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int status = 503;

	*answer = NULL;
	if (hi_listener_standby(answer))
		return 503;
	BeginWork("halo_itsm: webhook listener health check");
	PG_TRY();
	{
		int			rc;

		(void) ListenRole();
		rc = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'halo_itsm'",
						 true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("halo_itsm: the extension is not installed in database \"%s\"", hi_worker_database(NULL))));
		EndWork();
		*answer = MallocCopy("{\"status\": \"ok\"}");
		status = 200;
	}
	PG_CATCH();
	{
		ErrorData  *edata = AbortWork(cxt);
		StringInfoData buf;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"status\": \"unavailable\", \"error\": ");
		escape_json(&buf, edata->message ? edata->message : "");
		appendStringInfoChar(&buf, '}');
		*answer = MallocCopy(buf.data);
		FreeErrorData(edata);
		status = 503;
	}
	PG_END_TRY();
	return status;
}

/*
 * SQL: halo_itsm.webhook_http_status(sqlstate text) RETURNS integer: the
 * HTTP status for an ingest_webhook() outcome (NULL: accepted), for external
 * receivers; the same map the listener answers by.
 */
Datum
halo_itsm_webhook_http_status(PG_FUNCTION_ARGS)
{
	char	   *sqlstate = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_INT32(hi_webhook_http_status(sqlstate));
}
