/*-------------------------------------------------------------------------
 * hi_hex.h
 *	  One hex digit's value, shared by the plain-C core (JSON escapes in
 *	  hi_answer.c, numeric character references in hi_html.c). No
 *	  PostgreSQL headers.
 *-------------------------------------------------------------------------
 */
#ifndef HI_HEX_H
#define HI_HEX_H

/* The value of one ASCII hex digit, -1 for any other byte. */
static inline int
hi_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif							/* HI_HEX_H */
