/*-------------------------------------------------------------------------
 * halo_values.c
 *	  Reading the values of Halo's JSON that the apply code of
 *	  sql/inbound/60_webhooks.sql needs per action: _halo_time(text) (a Halo
 *	  time, RFC 3339, UTC without a zone) and _json_bigint(jsonb) (a JSON
 *	  number or digit string as a bigint). Both return NULL for anything
 *	  else and never raise: they run for every action of every webhook
 *	  delivery, where a regular expression and an exception block (a
 *	  subtransaction per call) cost more than the insert of the note.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "halo_itsm.h"
#include "hi_compat.h"

PG_FUNCTION_INFO_V1(halo_itsm_halo_time);
PG_FUNCTION_INFO_V1(halo_itsm_json_bigint);

static const char *SkipSpace(const char *p, const char *end);
static const char *Digits(const char *p, const char *end, int n);
static const char *Char(const char *p, const char *end, const char *set);
static bool HaloTimeShape(const char *p, const char *end, bool *zoned);
static bool DigitString(const char *s, int len, int64 *result);

/* Skips ASCII white space (what \s matches there). */
static const char *
SkipSpace(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f'))
		p++;
	return p;
}

/* Consumes exactly n ASCII digits; NULL when they are not there (or p is NULL). */
static const char *
Digits(const char *p, const char *end, int n)
{
	if (p == NULL)
		return NULL;
	for (; n > 0; n--, p++)
		if (p >= end || *p < '0' || *p > '9')
			return NULL;
	return p;
}

/* Consumes a literal character; NULL when it is not there. */
static const char *
Char(const char *p, const char *end, const char *set)
{
	return (p != NULL && p < end && strchr(set, *p) != NULL && *p != '\0') ? p + 1 : NULL;
}

/*
 * Checks the shape of a Halo time, as the regular expression
 *   ^\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([Zz]|[+-]\d{2}(:?\d{2})?)?\s*$
 * did; sets *zoned when it names a zone.
 */
static bool
HaloTimeShape(const char *p, const char *end, bool *zoned)
{
	p = SkipSpace(p, end);
	p = Digits(p, end, 4);
	p = p ? Digits(Char(p, end, "-"), end, 2) : NULL;
	p = p ? Digits(Char(p, end, "-"), end, 2) : NULL;
	p = p ? Digits(Char(p, end, "Tt "), end, 2) : NULL;
	p = p ? Digits(Char(p, end, ":"), end, 2) : NULL;
	if (p == NULL)
		return false;
	if (p < end && *p == ':')
	{
		if ((p = Digits(p + 1, end, 2)) == NULL)
			return false;
		if (p < end && *p == '.')
		{
			if ((p = Digits(p + 1, end, 1)) == NULL)
				return false;
			while (p < end && *p >= '0' && *p <= '9')
				p++;
		}
	}
	p = SkipSpace(p, end);
	*zoned = p < end && strchr("Zz+-", *p) != NULL;
	if (p < end && (*p == 'Z' || *p == 'z'))
		p++;
	else if (*zoned)
	{
		if ((p = Digits(p + 1, end, 2)) == NULL)
			return false;
		if (p < end && *p == ':')
			p = Digits(p + 1, end, 2);
		else if (p < end && *p >= '0' && *p <= '9')
			p = Digits(p, end, 2);
		if (p == NULL)
			return false;
	}
	return SkipSpace(p, end) == end;
}

/*
 * Reads str with PostgreSQL's date/time parser (what the casts to timestamptz
 * read); with use_zone false the zone it names, if any, is ignored and the
 * time is UTC. False when unreadable. May raise on a word the parser takes
 * for a zone: callers check the shape first, or catch.
 */
bool
hi_read_timestamp(const char *str, bool use_zone, TimestampTz *result)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf,
				dtype,
				tz = 0;
	struct pg_tm tt;
	fsec_t		fsec;

	if (ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf) != 0 ||
		hi_decode_datetime(field, ftype, nf, &dtype, &tt, &fsec, &tz) != 0 || dtype != DTK_DATE)
		return false;
	if (!use_zone)
		tz = 0;
	return tm2timestamp(&tt, fsec, &tz, result) == 0;
}

/*
 * SQL: _halo_time(text) reads a Halo time with PostgreSQL's date/time parser
 * (hi_read_timestamp), after the shape check; without a zone the time is
 * UTC. NULL when unreadable.
 */
Datum
halo_itsm_halo_time(PG_FUNCTION_ARGS)
{
	text	   *v = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(v);
	bool		zoned;
	TimestampTz result;

	if (!HaloTimeShape(s, s + VARSIZE_ANY_EXHDR(v), &zoned))
		PG_RETURN_NULL();
	/* the shape admits no word the parser could raise on: only digits, T, Z and offsets */
	if (!hi_read_timestamp(text_to_cstring(v), zoned, &result) || !IS_VALID_TIMESTAMP(result))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(result);
}

/* Reads ^\s*[0-9]{1,18}\s*$ from s; false for anything else. */
static bool
DigitString(const char *s, int len, int64 *result)
{
	const char *end = s + len;
	const char *p = SkipSpace(s, end);
	int64		n = 0;
	int			ndigits = 0;

	for (; p < end && *p >= '0' && *p <= '9'; p++, ndigits++)
		n = n * 10 + (*p - '0');
	if (ndigits < 1 || ndigits > 18 || SkipSpace(p, end) != end)
		return false;
	*result = n;
	return true;
}

/*
 * SQL: _json_bigint(jsonb) is a JSON number or string whose text is a digit
 * string of at most 18 digits (white space around it allowed), as a bigint;
 * NULL for anything else (negative, fractional, exponent in the text, ...).
 */
Datum
halo_itsm_json_bigint(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	JsonbValue *v;
	int64		n;
	char	   *num;

	if (!JB_ROOT_IS_SCALAR(jb))
		PG_RETURN_NULL();
	v = getIthJsonbValueFromContainer(&jb->root, 0);
	if (v == NULL)
		PG_RETURN_NULL();
	if (v->type == jbvString && DigitString(v->val.string.val, v->val.string.len, &n))
		PG_RETURN_INT64(n);
	if (v->type == jbvNumeric)
	{
		num = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		if (DigitString(num, (int) strlen(num), &n))
			PG_RETURN_INT64(n);
	}
	PG_RETURN_NULL();
}
