#!/usr/bin/env python3
"""test/lint/function_length.py: lists the C functions in src/ (.c and .h) longer than a limit.

    python3 test/lint/function_length.py [--max N] [DIR ...]   (default: 80, src)

A small brace-matching reader, enough for this project's C (not a C parser): comments,
string and character literals and preprocessor lines are skipped; a '{' at depth 0 whose
text since the previous ';', '}' or preprocessor line ends in ')' (a parameter list) opens
a function. A function's length runs from the line of its name to its closing brace.
Prints one line per function over the limit and a summary `N passed, N failed` (one test
per file); exits 1 when a function is over the limit.
"""
import os
import re
import sys

NAME_BEFORE_PAREN = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*\($')


def strip_code(text):
    """The text with comments, literals and preprocessor lines blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c == '#':
            # preprocessor line, with its continuations
            while i < n and text[i] != '\n':
                if text[i] == '\\' and i + 1 < n and text[i + 1] == '\n':
                    out.append(' \n')
                    i += 2
                    continue
                out.append(' ')
                i += 1
            out.append(';')  # a preprocessor line ends any header before it
            continue
        if text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
            continue
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
            continue
        if c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            out.append(c + ' ' * (j - i - 1) + c)
            i = j + 1
            line_start = False
            continue
        out.append(c)
        if c == '\n':
            line_start = True
        elif not c.isspace():
            line_start = False
        i += 1
    return ''.join(out)


def parameter_list_start(header):
    """Where the '(' matching the header's final ')' stands; -1 without one."""
    if not header.endswith(')'):
        return -1
    depth = 0
    for k in range(len(header) - 1, -1, -1):
        if header[k] == ')':
            depth += 1
        elif header[k] == '(':
            depth -= 1
            if depth == 0:
                return k
    return -1


def functions(path, with_header=False):
    """Yields (name, first line, last line) of every function defined in a C file; with
    with_header, also the text before the name (return type, storage class)."""
    with open(path, encoding='utf-8', errors='replace') as f:
        code = strip_code(f.read())
    depth = 0
    header_start = 0
    start = None
    for i, c in enumerate(code):
        if c == '{':
            if depth == 0:
                header = code[header_start:i].rstrip()
                open_at = parameter_list_start(header)
                m = NAME_BEFORE_PAREN.search(header[:open_at + 1]) if open_at >= 0 else None
                if m and '=' not in header:
                    start = (m.group(1), code.count('\n', 0, header_start + m.start(1)) + 1,
                             header[:m.start(1)])
                else:
                    start = None
            depth += 1
        elif c == '}':
            depth -= 1
            if depth == 0:
                if start:
                    end = code.count('\n', 0, i) + 1
                    yield (start[0], start[1], end, start[2]) if with_header else (start[0], start[1], end)
                start = None
                header_start = i + 1
        elif c == ';' and depth == 0:
            header_start = i + 1


def check_files(label, roots, endings, offences):
    """Runs offences(path) (a list of messages) on every file below roots whose name ends
    in one of endings; prints the messages and `label: N passed, N failed` (one test per
    file); returns the exit status (1 when any file has an offence)."""
    passed = failed = 0
    for root in roots:
        for dirpath, _, names in sorted(os.walk(root)):
            for name in sorted(names):
                if name.endswith(endings):
                    found = offences(os.path.join(dirpath, name))
                    for line in found:
                        print(line)
                    passed, failed = (passed, failed + 1) if found else (passed + 1, failed)
    print(f'{label}: {passed} passed, {failed} failed')
    return 1 if failed else 0


def main(argv):
    limit = 80
    if len(argv) >= 2 and argv[0] == '--max':
        limit = int(argv[1])
        argv = argv[2:]
    roots = argv or ['src']
    return check_files('length', roots, ('.c', '.h'), lambda path: [
        f'{path}:{a}: {fn}() is {b - a + 1} lines (limit {limit})'
        for fn, a, b in functions(path) if b - a + 1 > limit])

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
