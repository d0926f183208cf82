/*-------------------------------------------------------------------------
 * sqlfuncs.c
 *	  Small SQL-callable helpers: title template checking and rendering
 *	  (wrapping the plain-C src/core/hi_template.c), note HTML to text
 *	  (wrapping src/core/hi_html.c), instance and authorisation server URL
 *	  checking, and random secrets.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "halo_itsm.h"
#include "hi_html.h"
#include "hi_http.h"
#include "hi_template.h"
#include "hi_token.h"

PG_FUNCTION_INFO_V1(halo_itsm_check_template);
PG_FUNCTION_INFO_V1(halo_itsm_render_template);
PG_FUNCTION_INFO_V1(halo_itsm_html_to_text);
PG_FUNCTION_INFO_V1(halo_itsm_check_instance_url);
PG_FUNCTION_INFO_V1(halo_itsm_check_auth_url);
PG_FUNCTION_INFO_V1(halo_itsm_random_secret);

/* SQL: raises a clear error when a title template is not valid. */
Datum
halo_itsm_check_template(PG_FUNCTION_ARGS)
{
	char	   *tpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *field = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char		err[256];

	if (hi_template_validate(tpl, err, sizeof(err)) != HI_TEMPLATE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: invalid %s: %s", field, err),
				 errhint("Templates may use %s; write other text as it is.", HI_TEMPLATE_VARIABLES)));
	PG_RETURN_VOID();
}

/* SQL: renders a title template; NULL values render as empty text. */
Datum
halo_itsm_render_template(PG_FUNCTION_ARGS)
{
	char	   *tpl;
	char	   *out;
	text	   *result;
	char		err[256];

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	tpl = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (hi_template_validate(tpl, err, sizeof(err)) != HI_TEMPLATE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: invalid title template: %s", err),
				 errhint("Templates may use %s; write other text as it is.", HI_TEMPLATE_VARIABLES)));
	out = hi_template_render(tpl,
							 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
							 PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
							 PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)));
	if (out == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("halo_itsm: out of memory")));
	result = cstring_to_text(out);
	free(out);
	PG_RETURN_TEXT_P(result);
}

/*
 * SQL: _html_to_text(html) turns a Halo note's HTML into plain text in one
 * linear pass (src/core/hi_html.c); NULL when nothing but white space is
 * left. The text is never longer than the HTML. Bytes outside tags and
 * references are copied as they are, so the result is valid in the database
 * encoding; references to non-ASCII code points are decoded to UTF-8 only
 * in a UTF-8 database and kept as written in any other.
 */
Datum
halo_itsm_html_to_text(PG_FUNCTION_ARGS)
{
	text	   *html = PG_GETARG_TEXT_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(html);
	text	   *result = (text *) palloc(VARHDRSZ + len);
	int			flags = GetDatabaseEncoding() == PG_UTF8 ? 0 : HI_HTML_ASCII_REFS;
	size_t		n = hi_html_to_text(VARDATA_ANY(html), len, VARDATA(result), flags);

	if (n == 0)
		PG_RETURN_NULL();
	SET_VARSIZE(result, VARHDRSZ + n);
	PG_RETURN_TEXT_P(result);
}

/* SQL: validates and normalises a Halo instance URL under the outbound policy. */
Datum
halo_itsm_check_instance_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(hi_check_instance_url(url)));
}

/* SQL: validates and normalises an authorisation server URL (configure_auth) under the same policy. */
Datum
halo_itsm_check_auth_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_TEXT_P(cstring_to_text(hi_check_auth_url(url)));
}

/* SQL: nbytes of strong randomness, hex-encoded (2 * nbytes characters). */
Datum
halo_itsm_random_secret(PG_FUNCTION_ARGS)
{
	int			nbytes = PG_GETARG_INT32(0);
	char		buf[64];
	char		out[129];
	uint64		len;

	if (nbytes < 32 || nbytes > 64)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("halo_itsm: a secret has between 32 and 64 random bytes, not %d", nbytes),
				 errhint("Pass 32.")));
	if (!pg_strong_random(buf, nbytes))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("halo_itsm: could not generate random bytes"),
				 errhint("Check the server's source of randomness (OpenSSL).")));
	len = hex_encode(buf, nbytes, out);
	out[len] = '\0';
	explicit_bzero(buf, sizeof(buf));
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
