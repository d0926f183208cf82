/*
 * hi_html.h
 *		Halo note HTML to plain text for halo_itsm's timeline, in linear time.
 *
 * What it does, in this order of meaning (the order of the former PL/pgSQL
 * _html_to_text, which ran one regular expression pass per step):
 *   1. "\r\n" and a lone "\r" become "\n";
 *   2. <br>, <br/>, </p>, </div>, </li>, </tr> and </h1>..</h6> (any case,
 *      ASCII white space allowed around the name and the slash) become "\n";
 *   3. every other tag, "<" up to the next ">" that does not close one of
 *      the line-break tags of step 2, is dropped (a "<" with no such ">"
 *      after it stays, and so does the rest of the text);
 *   4. on the text of step 3, these references are decoded, left to right,
 *      each exactly once: &lt; &gt; &quot; &#39; &apos; &nbsp; (a plain
 *      space) &amp; and numeric references &#N; (1 to 8 decimal digits) and
 *      &#xH; / &#XH; (1 to 8 hex digits).  A numeric reference to a code
 *      point that is not valid (0, a surrogate, above U+10FFFF) is dropped;
 *      one whose digits are not all decimal without the x (&#1a;) stays;
 *   5. spaces, tabs and newlines at both ends are trimmed.
 * Non-ASCII bytes are copied as they are: valid UTF-8 (or any encoding
 * whose multibyte characters have no ASCII bytes) in, valid out.
 *
 * Plain C99 + libc, no PostgreSQL headers.  Nothing here allocates: the
 * text is never longer than the HTML, so the caller's buffer of len bytes
 * is always enough.
 */
#ifndef HI_HTML_H
#define HI_HTML_H

#include <stddef.h>

/*
 * Flag: numeric references to code points above U+007F are kept as written
 * (for databases whose encoding is not UTF-8).
 */
#define HI_HTML_ASCII_REFS 1

/*
 * Convert len bytes of HTML to text in out, which must have room for len
 * bytes (out may not overlap html).  Returns the length of the text, 0 when
 * nothing but white space is left.  Never writes a NUL terminator.
 */
extern size_t hi_html_to_text(const char *html, size_t len, char *out, int flags);

/*
 * Encode code point cp (<= 0x10FFFF) as UTF-8 into out (room for 4 bytes);
 * returns the number of bytes written.
 */
extern size_t hi_html_utf8_encode(unsigned long cp, char *out);

#endif							/* HI_HTML_H */
