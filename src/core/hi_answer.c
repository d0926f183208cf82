/*
 * hi_answer.c
 *		Checks on what Halo answers that need no server: JSON escapes that
 *		jsonb cannot store, usable access tokens, token lifetimes.
 *
 * Plain C99 + libc, no PostgreSQL headers.
 */
#include "hi_answer.h"
#include "hi_hex.h"

static long ReadHex4(const char *s, size_t len, size_t at);

/* The code unit of "\uXXXX" starting at s[at] (the backslash), or -1 when there is none. */
static long
ReadHex4(const char *s, size_t len, size_t at)
{
	long		v = 0;
	int			i;

	if (at + 6 > len || s[at] != '\\' || s[at + 1] != 'u')
		return -1;
	for (i = 2; i < 6; i++)
	{
		int			h = hi_hex_value(s[at + i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Replaces \u0000 and lone surrogate escapes inside JSON strings with \uFFFD; returns how many. */
size_t
hi_json_scrub_escapes(char *s, size_t len)
{
	size_t		i = 0;
	size_t		replaced = 0;
	int			in_string = 0;

	while (i < len)
	{
		char		c = s[i];

		if (!in_string)
		{
			if (c == '"')
				in_string = 1;
			i++;
			continue;
		}
		if (c == '"')
		{
			in_string = 0;
			i++;
			continue;
		}
		if (c != '\\')
		{
			i++;
			continue;
		}
		{
			long		u = ReadHex4(s, len, i);

			if (u < 0)
			{
				/* another escape (\", \\, \n ...) or a broken one: skip both characters */
				i += 2;
				continue;
			}
			if (u >= 0xD800 && u <= 0xDBFF)
			{
				long		low = ReadHex4(s, len, i + 6);

				if (low >= 0xDC00 && low <= 0xDFFF)
				{
					i += 12;	/* a pair: one character beyond the BMP */
					continue;
				}
			}
			if (u == 0 || (u >= 0xD800 && u <= 0xDFFF))
			{
				s[i + 2] = 'f';
				s[i + 3] = 'f';
				s[i + 4] = 'f';
				s[i + 5] = 'd';
				replaced++;
			}
			i += 6;
		}
	}
	return replaced;
}

/* True when tok is 1..HI_TOKEN_MAX_LEN visible ASCII characters. */
int
hi_token_is_usable(const char *tok, size_t len)
{
	size_t		i;

	if (tok == NULL || len == 0 || len > HI_TOKEN_MAX_LEN)
		return 0;
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) tok[i];

		if (c < 0x21 || c > 0x7e)
			return 0;
	}
	return 1;
}

/* expires_in clamped to 1..HI_TOKEN_LIFETIME_MAX_S, or the default when absent. */
int64_t
hi_token_lifetime_s(int have, int64_t expires_in)
{
	if (!have)
		return HI_TOKEN_LIFETIME_DEFAULT_S;
	if (expires_in < 1)
		return 1;
	if (expires_in > HI_TOKEN_LIFETIME_MAX_S)
		return HI_TOKEN_LIFETIME_MAX_S;
	return expires_in;
}

/* lifetime - min(60 s, lifetime / 10), in microseconds. */
int64_t
hi_token_renew_after_us(int64_t lifetime_s)
{
	int64_t		life_us = hi_token_lifetime_s(1, lifetime_s) * INT64_C(1000000);
	int64_t		margin = life_us / 10;

	if (margin > HI_TOKEN_MARGIN_MAX_US)
		margin = HI_TOKEN_MARGIN_MAX_US;
	return life_us - margin;
}
