/*
 * hi_template.h
 *		Title templates for halo_itsm tickets: validation and rendering.
 *
 * A template is text with variables written exactly as {{sid}}, {{title}}
 * or {{severity}} (no spaces inside the braces, names are case-sensitive).
 * The leftmost "{{" always opens a variable, which runs to the next "}}".
 * A "}}" that closes nothing, and single braces, are literal text.
 *
 * Plain C99 + libc, no PostgreSQL headers.  Strings returned by
 * hi_template_render() are malloc'd; release them with free().
 */
#ifndef HI_TEMPLATE_H
#define HI_TEMPLATE_H

#include <stddef.h>

/* The accepted variables, for hints in error messages. */
#define HI_TEMPLATE_VARIABLES "{{sid}}, {{title}}, {{severity}}"

/* Results of hi_template_validate(). */
#define HI_TEMPLATE_OK			0
#define HI_TEMPLATE_EMPTY		1	/* NULL or "" */
#define HI_TEMPLATE_UNCLOSED	2	/* "{{" with no "}}" after it */
#define HI_TEMPLATE_UNKNOWN		3	/* "{{name}}" with an unknown name */

/*
 * Check a template.  Returns HI_TEMPLATE_OK (0) when valid; otherwise one
 * of the non-zero codes above, and (when errbuf != NULL and errlen > 0)
 * writes a NUL-terminated message, truncated to errlen, such as
 *   unknown variable "{{foo}}" at position 7
 *   unclosed "{{" at position 3
 *   template is empty
 * Positions are 1-based and count characters (UTF-8 code points; bytes that
 * are not UTF-8 continuation bytes).  Over-long variable names are shortened
 * with "..." in the message, cut at a UTF-8 character boundary.
 */
extern int	hi_template_validate(const char *tpl, char *errbuf, size_t errlen);

/*
 * Render a template.  Each variable is replaced by the corresponding value,
 * copied byte for byte (text inside a value is never expanded again); a
 * NULL value renders as "".  Returns a malloc'd NUL-terminated string to be
 * released with free(), or NULL when the template is invalid (see
 * hi_template_validate) or memory is exhausted.
 */
extern char *hi_template_render(const char *tpl, const char *sid,
								const char *title, const char *severity);

#endif							/* HI_TEMPLATE_H */
