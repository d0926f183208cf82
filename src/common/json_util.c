/*-------------------------------------------------------------------------
 * json_util.c
 *	  Reading Halo's JSON answers with PostgreSQL's jsonb parser: fields of
 *	  the token answer and of tickets, the candidate ids of a ticket list and
 *	  whether a whole ticket carries our third_party_id_string. Text that
 *	  is not JSON comes back as NULL, not ERROR.
 *	  Answers from Halo go through hi_json_parse_answer(), which also says
 *	  why an answer cannot be used and makes text jsonb cannot store (NUL,
 *	  lone surrogates) storable.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"

#include "hi_answer.h"
#include "hi_json.h"

static bool IsUnreadableJson(int sqlerrcode);
static Jsonb *ParseJsonb(const char *text, char **why);
static bool JsonLookup(JsonbContainer *obj, const char *key, JsonbValue *out);
static bool ParseInt64(const char *s, size_t len, int64 *out);

/*
 * True for the errors that say a text cannot be read as jsonb: data
 * exceptions (syntax, a number out of range, bad escapes) and program
 * limits (nesting too deep for the stack, a value too large). Any other
 * error (a cancel, a shutdown, out of memory) is not the text's fault.
 */
static bool
IsUnreadableJson(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
}

/*
 * Runs jsonb_in on text in the current memory context; NULL with *why
 * (when why is given) when the text cannot be read as jsonb. Inside a
 * transaction the parse runs in a subtransaction, so that whatever the
 * error left behind is released with it; outside one (the worker parses
 * between its transactions) there is nothing to release: jsonb_in takes no
 * locks, buffers or other resources. Errors that are not about the text
 * (IsUnreadableJson) are raised again.
 */
static Jsonb *
ParseJsonb(const char *text, char **why)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		subxact = IsTransactionState();
	Jsonb	   *volatile result = NULL;
	ErrorData  *volatile edata = NULL;

	if (subxact)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
	}
	PG_TRY();
	{
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
		if (subxact)
			ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (subxact)
			RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (edata == NULL)
		return result;
	if (!IsUnreadableJson(edata->sqlerrcode))
		ReThrowError(edata);
	if (why)
		*why = psprintf("%s%s%s", edata->message, edata->detail ? ": " : "",
						edata->detail ? edata->detail : "");
	FreeErrorData(edata);
	return NULL;
}

/* Parses text as jsonb in the current memory context; NULL when it is not JSON. */
Jsonb *
hi_json_parse(const char *text)
{
	return ParseJsonb(text, NULL);
}

/*
 * Parses an answer body of len bytes from Halo as jsonb (in the current
 * memory context). The body must be UTF-8 without NUL bytes; \u0000 and
 * lone surrogate escapes become U+FFFD (hi_json_scrub_escapes, in place).
 * Returns NULL with *why (palloc'd) saying what is wrong; only an error
 * that is not about the answer (a cancel, out of memory) is raised.
 */
Jsonb *
hi_json_parse_answer(char *body, size_t len, char **why)
{
	*why = NULL;
	if (body == NULL || len == 0)
	{
		*why = pstrdup("the answer is empty");
		return NULL;
	}
	if (strlen(body) != len)
	{
		*why = pstrdup("the answer holds a NUL byte");
		return NULL;
	}
	if (!pg_verify_mbstr(PG_UTF8, body, (int) Min(len, (size_t) INT_MAX), true))
	{
		*why = pstrdup("the answer is not valid UTF-8");
		return NULL;
	}
	hi_json_scrub_escapes(body, len);

	/*
	 * No conversion: the extension installs only in UTF-8 databases
	 * (00_header.sql), and the worker parses outside any transaction, where
	 * PostgreSQL could not convert anyway.
	 */
	return ParseJsonb(body, why);
}

/* Looks up key in an object container; false when absent or obj is not an object. */
static bool
JsonLookup(JsonbContainer *obj, const char *key, JsonbValue *out)
{
	if (obj == NULL || !JsonContainerIsObject(obj))
		return false;
	return getKeyJsonValueFromContainer(obj, key, strlen(key), out) != NULL;
}

/* Parses len bytes of s as a whole decimal integer (no fraction, no overflow). */
static bool
ParseInt64(const char *s, size_t len, int64 *out)
{
	char		buf[24];
	char	   *end;
	long long	n;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	errno = 0;
	n = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64) n;
	return true;
}

/* Reads an integer field given as a JSON number or a numeric string. */
bool
hi_json_get_int64(JsonbContainer *obj, const char *key, int64 *out)
{
	JsonbValue	v;

	if (!JsonLookup(obj, key, &v))
		return false;
	if (v.type == jbvNumeric)
	{
		char	   *digits = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));

		return ParseInt64(digits, strlen(digits), out);
	}
	if (v.type == jbvString)
		return ParseInt64(v.val.string.val, v.val.string.len, out);
	return false;
}

/* Reads a string field (palloc'd copy); NULL when absent or not a string. */
char *
hi_json_get_text(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (!JsonLookup(obj, key, &v) || v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/* Returns the object or array container under key, or NULL. */
JsonbContainer *
hi_json_get_container(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (!JsonLookup(obj, key, &v) || v.type != jbvBinary)
		return NULL;
	return v.val.binary.data;
}

/* The top-level object, or the first element when the top level is an array of objects. */
JsonbContainer *
hi_json_first_object(Jsonb *jb)
{
	JsonbValue *v;

	if (jb == NULL)
		return NULL;
	if (JsonContainerIsObject(&jb->root))
		return &jb->root;
	if (!JsonContainerIsArray(&jb->root) || JsonContainerIsScalar(&jb->root))
		return NULL;
	v = getIthJsonbValueFromContainer(&jb->root, 0);
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return NULL;
	return v->val.binary.data;
}

/*
 * Reads the ticket ids of a ticket list answer ({"record_count": N,
 * "tickets": [...]}) into ids (at most max_ids of them, in list order).
 * The items are candidates only: real list items carry Halo's list columns,
 * not third_party_id_string, so whether one is ours is confirmed from the
 * whole ticket (hi_json_ticket_is). Returns the number of items, or -1 when
 * the answer is not a ticket list or an item is not an object with a
 * positive integer id. *record_count is -1 when absent or unreadable.
 */
int
hi_json_ticket_ids(Jsonb *jb, int64 *ids, int max_ids, int64 *record_count)
{
	JsonbContainer *tickets;
	int			n,
				i;

	if (jb == NULL || !JsonContainerIsObject(&jb->root))
		return -1;
	tickets = hi_json_get_container(&jb->root, "tickets");
	if (tickets == NULL || !JsonContainerIsArray(tickets))
		return -1;
	if (!hi_json_get_int64(&jb->root, "record_count", record_count))
		*record_count = -1;
	n = JsonContainerSize(tickets);
	for (i = 0; i < n; i++)
	{
		JsonbValue *t = getIthJsonbValueFromContainer(tickets, i);
		int64		id;

		if (t == NULL || t->type != jbvBinary || !JsonContainerIsObject(t->val.binary.data))
			return -1;
		if (!hi_json_get_int64(t->val.binary.data, "id", &id) || id <= 0)
			return -1;
		if (i < max_ids)
			ids[i] = id;
	}
	return n;
}

/*
 * Whether a whole ticket (the answer to GET /api/Tickets/{id}) is ours: 1
 * when its third_party_id_string equals third_party_id exactly, 0 when it
 * is a ticket object with another (or no) third_party_id_string, -1 when
 * the answer is not an object.
 */
int
hi_json_ticket_is(Jsonb *jb, const char *third_party_id)
{
	JsonbValue	tp;
	size_t		idlen = strlen(third_party_id);

	if (jb == NULL || !JsonContainerIsObject(&jb->root))
		return -1;
	if (!JsonLookup(&jb->root, "third_party_id_string", &tp) || tp.type != jbvString)
		return 0;
	return (size_t) tp.val.string.len == idlen &&
		memcmp(tp.val.string.val, third_party_id, idlen) == 0 ? 1 : 0;
}
