#!/usr/bin/env python3
"""test/lint/conventions.py: the C conventions of src/ (README "Layout", developers' guide).

    python3 test/lint/conventions.py [DIR ...]   (default: src)

In every .c file:
- every file-static function is declared (a prototype) before the first function is
  defined, so that a reader finds the file's whole list at its top;
- names: CamelCase for file-static functions, hi_ for functions shared between files,
  halo_itsm_ for the SQL-callable entry points (and _PG_init).
Uses function_length.py's reader. Prints one line per offence and a summary
`N passed, N failed` (one test per file); exits 1 when anything is off.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from function_length import check_files, functions, strip_code  # noqa: E402

CAMEL = re.compile(r'^[A-Z][A-Za-z0-9]*$')
SHARED = re.compile(r'^(hi_|halo_itsm_)[a-z0-9_]+$|^_PG_init$')


def offences(path):
    """The convention offences of one C file, as messages."""
    with open(path, encoding='utf-8', errors='replace') as f:
        code = strip_code(f.read())
    defs = list(functions(path, with_header=True))
    if not defs:
        return []
    first = min(a for _, a, _, _ in defs)
    before = '\n'.join(code.split('\n')[:first - 1])
    found = []
    for name, line, _, header in defs:
        static = re.search(r'\bstatic\b', header) is not None
        if static:
            if not re.search(r'\b' + re.escape(name) + r'\s*\([^;{}]*\)\s*;', before):
                found.append(f'{path}:{line}: static {name}() has no prototype at the top of the file')
            if not CAMEL.match(name):
                found.append(f'{path}:{line}: static {name}() is not CamelCase')
        elif not SHARED.match(name):
            found.append(f'{path}:{line}: shared {name}() is named neither hi_... nor halo_itsm_...')
    return found


def main(argv):
    return check_files('conventions', argv or ['src'], ('.c',), offences)

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
