/*
 * hi_html.c
 *		Halo note HTML to plain text in linear time (see hi_html.h for the
 *		exact rules).  Two passes over the bytes: tags and line breaks into
 *		the caller's buffer, then character references decoded in place, then
 *		the trim.  Every step writes no more than it reads.
 *
 * Plain C99 + libc, no PostgreSQL headers.
 */
#include "hi_hex.h"
#include "hi_html.h"

#include <string.h>

/* A named reference and the byte it stands for. */
typedef struct NamedRef
{
	const char *name;			/* from '&' to ';' */
	size_t		len;
	char		ch;
} NamedRef;

static const NamedRef named_refs[] = {
	{"&lt;", 4, '<'},
	{"&gt;", 4, '>'},
	{"&quot;", 6, '"'},
	{"&#39;", 5, '\''},
	{"&apos;", 6, '\''},
	{"&nbsp;", 6, ' '},
	{"&amp;", 5, '&'},
};

static int	IsSpace(char c);
static char Lower(char c);
static size_t SkipSpace(const char *s, size_t n, size_t k);
static size_t BreakTagLen(const char *s, size_t n, size_t i);
static size_t TagEnd(const char *s, size_t n, size_t i);
static size_t StripTags(const char *s, size_t n, char *out);
static size_t NumericRefLen(const char *s, size_t n, size_t i, unsigned long *cp, int *valid);
static size_t DecodeRefs(char *buf, size_t n, int flags);
static int	IsTrim(char c);

/* ASCII white space, as a regular expression's \s in the C locale. */
static int
IsSpace(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ASCII lower case of c. */
static char
Lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
}

/* The first index at or after k that is not white space (n at the end). */
static size_t
SkipSpace(const char *s, size_t n, size_t k)
{
	while (k < n && IsSpace(s[k]))
		k++;
	return k;
}

/*
 * Length of the line-break tag starting at s[i] == '<' (<br>, <br/>, </p>,
 * </div>, </li>, </tr>, </h1>..</h6>, any case, white space around the name
 * and the slash), or 0 when there is none.  Reads only up to the first byte
 * that cannot belong to such a tag.
 */
static size_t
BreakTagLen(const char *s, size_t n, size_t i)
{
	size_t		k = SkipSpace(s, n, i + 1);

	if (k < n && s[k] == '/')
	{
		char		c;

		k = SkipSpace(s, n, k + 1);
		if (k >= n)
			return 0;
		c = Lower(s[k]);
		if (c == 'p')
			k += 1;
		else if (c == 'd' && k + 2 < n && Lower(s[k + 1]) == 'i' && Lower(s[k + 2]) == 'v')
			k += 3;
		else if (c == 'l' && k + 1 < n && Lower(s[k + 1]) == 'i')
			k += 2;
		else if (c == 't' && k + 1 < n && Lower(s[k + 1]) == 'r')
			k += 2;
		else if (c == 'h' && k + 1 < n && s[k + 1] >= '1' && s[k + 1] <= '6')
			k += 2;
		else
			return 0;
	}
	else
	{
		if (!(k + 1 < n && Lower(s[k]) == 'b' && Lower(s[k + 1]) == 'r'))
			return 0;
		k = SkipSpace(s, n, k + 2);
		if (k < n && s[k] == '/')
			k++;
	}
	k = SkipSpace(s, n, k);
	if (k < n && s[k] == '>')
		return k + 1 - i;
	return 0;
}

/*
 * Index of the '>' that ends the tag opened at s[i] == '<': the first '>'
 * that does not close a line-break tag inside it; n when there is none.
 */
static size_t
TagEnd(const char *s, size_t n, size_t i)
{
	size_t		k = i + 1;

	while (k < n)
	{
		size_t		bl;

		if (s[k] == '>')
			return k;
		if (s[k] == '<' && (bl = BreakTagLen(s, n, k)) > 0)
			k += bl;
		else
			k++;
	}
	return n;
}

/*
 * Steps 1 to 3: line endings normalised, line-break tags to "\n", other
 * tags dropped.  Writes at most n bytes to out; returns how many.
 */
static size_t
StripTags(const char *s, size_t n, char *out)
{
	size_t		i = 0;
	size_t		o = 0;
	int			no_close = 0;	/* no tag-closing '>' is left: '<' is text */

	while (i < n)
	{
		char		c = s[i];
		size_t		bl;

		if (c == '\r')
		{
			out[o++] = '\n';
			i += (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
		}
		else if (c != '<')
			out[o++] = s[i++];
		else if ((bl = BreakTagLen(s, n, i)) > 0)
		{
			out[o++] = '\n';
			i += bl;
		}
		else
		{
			if (!no_close)
			{
				size_t		j = TagEnd(s, n, i);

				if (j < n)
				{
					i = j + 1;
					continue;
				}
				no_close = 1;
			}
			out[o++] = s[i++];
		}
	}
	return o;
}

/*
 * Length of the numeric reference at s[i] == '&' (&#N; or &#xH; with 1 to 8
 * digits), 0 when there is none.  Sets *cp and *valid (a code point that
 * may appear in text: not 0, not a surrogate, at most U+10FFFF).
 */
static size_t
NumericRefLen(const char *s, size_t n, size_t i, unsigned long *cp, int *valid)
{
	size_t		k = i + 2;
	size_t		start;
	int			hex = 0;
	int			decimal = 1;
	unsigned long v = 0;
	size_t		d;

	if (!(i + 1 < n && s[i + 1] == '#'))
		return 0;
	if (k < n && (s[k] == 'x' || s[k] == 'X'))
	{
		hex = 1;
		k++;
	}
	start = k;
	while (k < n && k - start <= 8 && hi_hex_value(s[k]) >= 0)
	{
		if (s[k] > '9')
			decimal = 0;
		k++;
	}
	if (k == start || k - start > 8 || k >= n || s[k] != ';')
		return 0;
	/* &#1a;: hex digits without the x are no reference (they stay as text) */
	if (!hex && !decimal)
		return 0;
	for (d = start; d < k; d++)
		v = v * (hex ? 16 : 10) + (unsigned long) hi_hex_value(s[d]);
	*cp = v;
	*valid = v >= 1 && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF);
	return k + 1 - i;
}

/* Encodes a code point as UTF-8 into out (room for 4 bytes); returns the byte count. */
size_t
hi_html_utf8_encode(unsigned long cp, char *out)
{
	unsigned char *u = (unsigned char *) out;

	if (cp < 0x80)
	{
		u[0] = (unsigned char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		u[0] = (unsigned char) (0xC0 | (cp >> 6));
		u[1] = (unsigned char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		u[0] = (unsigned char) (0xE0 | (cp >> 12));
		u[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
		u[2] = (unsigned char) (0x80 | (cp & 0x3F));
		return 3;
	}
	u[0] = (unsigned char) (0xF0 | (cp >> 18));
	u[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
	u[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
	u[3] = (unsigned char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * Step 4: decodes the references of buf[0..n) in place, left to right, each
 * once (a decoded '&' never starts another reference); returns the new
 * length.  Every reference is longer than what it decodes to, so the write
 * position never passes the read position.
 */
static size_t
DecodeRefs(char *buf, size_t n, int flags)
{
	size_t		r = 0;
	size_t		w = 0;

	while (r < n)
	{
		size_t		len = 0;
		size_t		j;
		unsigned long cp = 0;
		int			valid = 0;

		if (buf[r] != '&')
		{
			buf[w++] = buf[r++];
			continue;
		}
		for (j = 0; j < sizeof(named_refs) / sizeof(named_refs[0]); j++)
		{
			const NamedRef *ref = &named_refs[j];

			if (n - r >= ref->len && memcmp(buf + r, ref->name, ref->len) == 0)
			{
				buf[w++] = ref->ch;
				len = ref->len;
				break;
			}
		}
		if (len == 0 && (len = NumericRefLen(buf, n, r, &cp, &valid)) > 0)
		{
			if (valid && cp > 0x7F && (flags & HI_HTML_ASCII_REFS))
			{
				memmove(buf + w, buf + r, len);	/* kept as written */
				w += len;
			}
			else if (valid)
				w += hi_html_utf8_encode(cp, buf + w);
			/* an invalid code point is dropped */
		}
		if (len == 0)
		{
			buf[w++] = buf[r++];
			continue;
		}
		r += len;
	}
	return w;
}

/* The bytes trimmed from both ends of the text. */
static int
IsTrim(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Converts len bytes of HTML to text in out (room for len bytes); returns its length. */
size_t
hi_html_to_text(const char *html, size_t len, char *out, int flags)
{
	size_t		n;
	size_t		start = 0;

	if (html == NULL || out == NULL || len == 0)
		return 0;
	n = StripTags(html, len, out);
	n = DecodeRefs(out, n, flags);
	while (n > 0 && IsTrim(out[n - 1]))
		n--;
	while (start < n && IsTrim(out[start]))
		start++;
	if (start > 0)
		memmove(out, out + start, n - start);
	return n - start;
}
