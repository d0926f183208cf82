/*-------------------------------------------------------------------------
 * hi_compat.h
 *	  The PostgreSQL APIs halo_itsm uses that changed after PostgreSQL 15,
 *	  behind one name each, chosen by PG_VERSION_NUM. halo_itsm is tested
 *	  on PostgreSQL 15 only; these guards make it ready to build on 16, 17
 *	  and 18 (signatures as in those releases' headers):
 *
 *	  - DecodeDateTime() takes a DateTimeErrorExtra * since 16
 *	    (utils/datetime.h);
 *	  - the JSON parser's semantic actions return JsonParseErrorType since 16
 *	    (common/jsonapi.h: json_struct_action, json_ofield_action, ...);
 *	  - makeJsonLexContextCstringLen() takes the JsonLexContext to fill
 *	    first since 17 (NULL: allocate one);
 *	  - CreateWaitEventSet() takes a ResourceOwner instead of a memory
 *	    context since 17 (NULL: a set that lives until freed or the process
 *	    exits, as the worker's and the listener's do).
 *
 *	  Include it after postgres.h and the headers of the APIs used.
 *-------------------------------------------------------------------------
 */
#ifndef HI_COMPAT_H
#define HI_COMPAT_H

/*
 * DecodeDateTime without the error details (halo_itsm only needs to know
 * whether the text is a date).
 */
#if PG_VERSION_NUM >= 160000
#define hi_decode_datetime(field, ftype, nf, dtype, tm, fsec, tzp) \
	DecodeDateTime((field), (ftype), (nf), (dtype), (tm), (fsec), (tzp), \
				   &(DateTimeErrorExtra) {0})
#else
#define hi_decode_datetime(field, ftype, nf, dtype, tm, fsec, tzp) \
	DecodeDateTime((field), (ftype), (nf), (dtype), (tm), (fsec), (tzp))
#endif

/*
 * A JSON semantic action is declared "static HI_JSON_ACTION Name(...)" and
 * ends with "HI_JSON_ACTION_DONE;".
 */
#if PG_VERSION_NUM >= 160000
#define HI_JSON_ACTION JsonParseErrorType
#define HI_JSON_ACTION_DONE return JSON_SUCCESS
#else
#define HI_JSON_ACTION void
#define HI_JSON_ACTION_DONE return
#endif

/* A JSON lexer over len bytes of json, allocated in the current memory context. */
#if PG_VERSION_NUM >= 170000
#define hi_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), (need_escapes))
#else
#define hi_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#endif

/* A wait event set for the life of the process (cxt: where it lives up to 16). */
#if PG_VERSION_NUM >= 170000
#define hi_create_wait_event_set(cxt, nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define hi_create_wait_event_set(cxt, nevents) CreateWaitEventSet((cxt), (nevents))
#endif

#endif							/* HI_COMPAT_H */
