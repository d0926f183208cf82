/*
 * fuzz_html.c
 *		libFuzzer harness for hi_html: note HTML to text, one linear pass,
 *		against an independent reference that runs the steps of the former
 *		PL/pgSQL _html_to_text one after the other (line endings, line-break
 *		tags, other tags, references, trim), each over the whole text.
 *
 * Input layout: the first byte selects the flags (bit 0: HI_HTML_ASCII_REFS);
 * the rest is the HTML.  The output buffer is malloc'd at exactly the
 * input's length so that ASan catches any write past it.
 *
 * Invariants (abort() on violation):
 *  - the output equals the reference's, byte for byte;
 *  - it is no longer than the input and has no space, tab or newline at
 *    either end;
 *  - when the input is valid UTF-8, so is the output, and it holds no NUL
 *    unless the input did.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hi_html.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void Fail(const char *what);
static int	RefSpace(char c);
static size_t RefBreakLen(const char *s, size_t n, size_t i);
static size_t RefDecode(const char *s, size_t n, char *out, int flags);
static size_t Reference(const char *s, size_t n, char *out, int flags);
static int	ValidUtf8(const unsigned char *s, size_t n);

/* Report a broken invariant and crash so that libFuzzer records it. */
static void
Fail(const char *what)
{
	fprintf(stderr, "fuzz_html: invariant violated: %s\n", what);
	abort();
}

/* \s of a regular expression in the C locale. */
static int
RefSpace(char c)
{
	return strchr(" \t\n\r\v\f", c) != NULL && c != '\0';
}

/*
 * Length of <\s*br\s*\/?\s*> or <\s*\/\s*(p|div|li|tr|h[1-6])\s*> at s[i]
 * (case-insensitive), 0 when neither matches: tried name by name.
 */
static size_t
RefBreakLen(const char *s, size_t n, size_t i)
{
	static const char *const names[] = {"/p", "/div", "/li", "/tr", "/h1", "/h2", "/h3",
	"/h4", "/h5", "/h6", "br"};
	size_t		a;

	for (a = 0; a < sizeof(names) / sizeof(names[0]); a++)
	{
		const char *name = names[a];
		size_t		k = i + 1;
		size_t		c;

		while (k < n && RefSpace(s[k]))
			k++;
		for (c = 0; name[c] != '\0'; c++)
		{
			char		lc;

			if (k >= n)
				break;
			lc = (s[k] >= 'A' && s[k] <= 'Z') ? (char) (s[k] + 32) : s[k];
			if (lc != name[c])
				break;
			k++;
			if (c == 0 && name[0] == '/')
				while (k < n && RefSpace(s[k]))
					k++;
		}
		if (name[c] != '\0')
			continue;
		while (k < n && RefSpace(s[k]))
			k++;
		if (name[0] == 'b' && k < n && s[k] == '/')
		{
			k++;
			while (k < n && RefSpace(s[k]))
				k++;
		}
		if (k < n && s[k] == '>')
			return k + 1 - i;
	}
	return 0;
}

/* Step 4 of the reference: references decoded once, left to right. */
static size_t
RefDecode(const char *s, size_t n, char *out, int flags)
{
	static const char *const names[] = {"&lt;", "&gt;", "&quot;", "&#39;", "&apos;", "&nbsp;", "&amp;"};
	static const char chars[] = "<>\"'' &";
	size_t		i = 0,
				o = 0;

	while (i < n)
	{
		size_t		a,
					k,
					digits = 0;
		int			hex = 0,
					alldec = 1,
					done = 0;
		unsigned long cp = 0;

		for (a = 0; a < 7 && !done; a++)
		{
			size_t		l = strlen(names[a]);

			if (n - i >= l && memcmp(s + i, names[a], l) == 0)
			{
				out[o++] = chars[a];
				i += l;
				done = 1;
			}
		}
		if (done)
			continue;
		if (s[i] != '&' || i + 1 >= n || s[i + 1] != '#')
		{
			out[o++] = s[i++];
			continue;
		}
		k = i + 2;
		if (k < n && (s[k] == 'x' || s[k] == 'X'))
		{
			hex = 1;
			k++;
		}
		while (k + digits < n && strchr("0123456789abcdefABCDEF", s[k + digits]) && s[k + digits])
		{
			char		d = s[k + digits];

			if (d > '9')
				alldec = 0;
			if (digits < 8)
				cp = cp * (hex ? 16 : 10) + (unsigned long) (d <= '9' ? d - '0' : (d | 0x20) - 'a' + 10);
			digits++;
		}
		if (digits < 1 || digits > 8 || k + digits >= n || s[k + digits] != ';' || (!hex && !alldec))
		{
			out[o++] = s[i++];
			continue;
		}
		if (cp >= 1 && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF))
		{
			if (cp > 0x7F && (flags & HI_HTML_ASCII_REFS))
			{
				memcpy(out + o, s + i, k + digits + 1 - i);
				o += k + digits + 1 - i;
			}
			else
				o += hi_html_utf8_encode(cp, out + o);
		}
		i = k + digits + 1;
	}
	return o;
}

/* The former function's steps, one pass over the whole text each. */
static size_t
Reference(const char *s, size_t n, char *out, int flags)
{
	char	   *a = malloc(n + 1);
	char	   *b = malloc(n + 1);
	size_t		i,
				na = 0,
				nb = 0,
				no,
				start = 0;

	if (a == NULL || b == NULL)
		abort();
	/* \r\n? -> \n */
	for (i = 0; i < n; i++)
	{
		if (s[i] == '\r')
		{
			a[na++] = '\n';
			if (i + 1 < n && s[i + 1] == '\n')
				i++;
		}
		else
			a[na++] = s[i];
	}
	/* line-break tags -> \n */
	for (i = 0; i < na;)
	{
		size_t		l = a[i] == '<' ? RefBreakLen(a, na, i) : 0;

		if (l > 0)
		{
			b[nb++] = '\n';
			i += l;
		}
		else
			b[nb++] = a[i++];
	}
	/* <[^>]*> -> '' */
	na = 0;
	for (i = 0; i < nb;)
	{
		char	   *gt = b[i] == '<' ? memchr(b + i, '>', nb - i) : NULL;

		if (gt != NULL)
			i = (size_t) (gt - b) + 1;
		else
			a[na++] = b[i++];
	}
	no = RefDecode(a, na, out, flags);
	while (no > 0 && strchr(" \t\n", out[no - 1]) && out[no - 1])
		no--;
	while (start < no && strchr(" \t\n", out[start]) && out[start])
		start++;
	memmove(out, out + start, no - start);
	free(a);
	free(b);
	return no - start;
}

/* True when s[0..n) is well-formed UTF-8 (no surrogates, no overlongs). */
static int
ValidUtf8(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = s[i];
		size_t		l,
					k;
		unsigned long cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			l = 2, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			l = 3, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			l = 4, cp = c & 0x07;
		else
			return 0;
		if (i + l > n)
			return 0;
		for (k = 1; k < l; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
			(cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += l;
	}
	return 1;
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			flags;
	const char *html;
	size_t		len,
				n,
				rn;
	char	   *out;
	char	   *ref;

	if (size == 0)
		return 0;
	flags = (data[0] & 1) ? HI_HTML_ASCII_REFS : 0;
	html = (const char *) data + 1;
	len = size - 1;
	out = malloc(len > 0 ? len : 1);
	ref = malloc(len + 1);
	if (out == NULL || ref == NULL)
		abort();

	n = hi_html_to_text(len > 0 ? html : NULL, len, out, flags);
	rn = Reference(html, len, ref, flags);
	if (n > len)
		Fail("output longer than input");
	if (n != rn || memcmp(out, ref, n) != 0)
		Fail("output differs from the reference");
	if (n > 0 && (strchr(" \t\n", out[0]) || strchr(" \t\n", out[n - 1])) &&
		out[0] != '\0' && out[n - 1] != '\0')
		Fail("output not trimmed");
	if (ValidUtf8(data + 1, len))
	{
		if (!ValidUtf8((const unsigned char *) out, n))
			Fail("valid UTF-8 in, invalid out");
		if (memchr(html, '\0', len) == NULL && memchr(out, '\0', n) != NULL)
			Fail("NUL in the output");
	}
	free(out);
	free(ref);
	return 0;
}
