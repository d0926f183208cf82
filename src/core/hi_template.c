/*
 * hi_template.c
 *		Title templates for halo_itsm tickets: validation and rendering of
 *		{{sid}}, {{title}} and {{severity}}.
 *
 * Grammar (deliberately small, so that every error can be named exactly):
 * the leftmost "{{" opens a variable, which ends at the next "}}"; the text
 * between them must be exactly one of the variable names.  Everything else,
 * including single braces and a "}}" that closes nothing, is literal.  So
 * "{{{sid}}}" is an error (unknown variable "{{{sid}}"), not "{" + sid + "}".
 *
 * Plain C99 + libc, no PostgreSQL headers.
 */
#include "hi_template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest variable name quoted verbatim in an error message, in bytes. */
#define HI_TEMPLATE_MAX_QUOTED 40

/* The variables, in the order of hi_template_render()'s value arguments. */
static const char *const variable_names[] = {"sid", "title", "severity"};

#define HI_TEMPLATE_NVARS ((int) (sizeof(variable_names) / sizeof(variable_names[0])))

static int	LookupVariable(const char *name, size_t len);
static size_t CharPosition(const char *start, const char *at);
static void SetError(char *errbuf, size_t errlen, const char *msg);
static int	NextVariable(const char *p, const char **open, const char **close,
						 int *var);

/* Return the index of the variable called name[0..len), or -1 if unknown. */
static int
LookupVariable(const char *name, size_t len)
{
	int			i;

	for (i = 0; i < HI_TEMPLATE_NVARS; i++)
	{
		if (strlen(variable_names[i]) == len &&
			memcmp(variable_names[i], name, len) == 0)
			return i;
	}
	return -1;
}

/* Return the 1-based character (UTF-8 code point) position of at in start. */
static size_t
CharPosition(const char *start, const char *at)
{
	size_t		pos = 1;
	const unsigned char *p;

	for (p = (const unsigned char *) start; p < (const unsigned char *) at; p++)
	{
		if ((*p & 0xC0) != 0x80)
			pos++;
	}
	return pos;
}

/* Copy msg into errbuf (if there is one), truncating and NUL-terminating. */
static void
SetError(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, "%s", msg);
}

/*
 * Find the next variable at or after p.  Returns 0 when there is none,
 * 1 when one was found (*open and *close point at its "{{" and "}}", *var is
 * its index or -1 if the name is unknown), and -1 when a "{{" is unclosed
 * (*open points at it).
 */
static int
NextVariable(const char *p, const char **open, const char **close, int *var)
{
	*open = strstr(p, "{{");
	if (*open == NULL)
		return 0;
	*close = strstr(*open + 2, "}}");
	if (*close == NULL)
		return -1;
	*var = LookupVariable(*open + 2, (size_t) (*close - (*open + 2)));
	return 1;
}

/* Check a template; see hi_template.h for the result codes and messages. */
int
hi_template_validate(const char *tpl, char *errbuf, size_t errlen)
{
	const char *p;
	const char *open;
	const char *close;
	int			var;
	int			r;
	char		msg[128];

	if (tpl == NULL || tpl[0] == '\0')
	{
		SetError(errbuf, errlen, "template is empty");
		return HI_TEMPLATE_EMPTY;
	}

	p = tpl;
	while ((r = NextVariable(p, &open, &close, &var)) != 0)
	{
		if (r < 0)
		{
			snprintf(msg, sizeof(msg), "unclosed \"{{\" at position %zu",
					 CharPosition(tpl, open));
			SetError(errbuf, errlen, msg);
			return HI_TEMPLATE_UNCLOSED;
		}
		if (var < 0)
		{
			size_t		len = (size_t) (close - (open + 2));
			const char *ellipsis = "";

			if (len > HI_TEMPLATE_MAX_QUOTED)
			{
				/* cut at a UTF-8 character boundary */
				len = HI_TEMPLATE_MAX_QUOTED;
				while (len > 0 && (((unsigned char) open[2 + len]) & 0xC0) == 0x80)
					len--;
				ellipsis = "...";
			}
			snprintf(msg, sizeof(msg),
					 "unknown variable \"{{%.*s%s}}\" at position %zu",
					 (int) len, open + 2, ellipsis, CharPosition(tpl, open));
			SetError(errbuf, errlen, msg);
			return HI_TEMPLATE_UNKNOWN;
		}
		p = close + 2;
	}

	SetError(errbuf, errlen, "");
	return HI_TEMPLATE_OK;
}

/* Render a template into a malloc'd string; see hi_template.h. */
char *
hi_template_render(const char *tpl, const char *sid, const char *title,
				   const char *severity)
{
	const char *values[3];
	size_t		lens[3];
	const char *p;
	const char *open;
	const char *close;
	int			var;
	int			i;
	size_t		total = 0;
	size_t		rest;
	char	   *out;
	char	   *o;

	if (hi_template_validate(tpl, NULL, 0) != HI_TEMPLATE_OK)
		return NULL;

	values[0] = sid;
	values[1] = title;
	values[2] = severity;
	for (i = 0; i < HI_TEMPLATE_NVARS; i++)
	{
		if (values[i] == NULL)
			values[i] = "";
		lens[i] = strlen(values[i]);
	}

	/* First pass: the output length, refusing size_t overflow. */
	p = tpl;
	while (NextVariable(p, &open, &close, &var) > 0)
	{
		size_t		lit = (size_t) (open - p);

		if (var < 0)
			return NULL;		/* cannot happen: validated above */
		if (lit > SIZE_MAX - 1 - total)
			return NULL;
		total += lit;
		if (lens[var] > SIZE_MAX - 1 - total)
			return NULL;
		total += lens[var];
		p = close + 2;
	}
	rest = strlen(p);
	if (rest > SIZE_MAX - 1 - total)
		return NULL;
	total += rest;

	out = malloc(total + 1);
	if (out == NULL)
		return NULL;

	/* Second pass: copy literals and values. */
	o = out;
	p = tpl;
	while (NextVariable(p, &open, &close, &var) > 0)
	{
		if (var < 0)
		{
			free(out);			/* cannot happen: validated above */
			return NULL;
		}
		memcpy(o, p, (size_t) (open - p));
		o += open - p;
		memcpy(o, values[var], lens[var]);
		o += lens[var];
		p = close + 2;
	}
	memcpy(o, p, rest);
	o[rest] = '\0';
	return out;
}
