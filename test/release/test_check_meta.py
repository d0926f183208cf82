#!/usr/bin/env python3
"""test/release/test_check_meta.py: check_meta.py rejects each broken release file.

A table of mutations of the real files (META.json, halo_itsm.control, debian/changelog,
CHANGELOG.md, LICENSE); each must make check_meta.py exit 1 and name the problem, and
the unchanged files must pass. Prints "ok - ..." / "FAIL - ..." lines.
"""
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..')
FILES = ('META.json', 'halo_itsm.control', 'debian/changelog', 'CHANGELOG.md', 'LICENSE',
         'SECURITY.md', 'README.md')

# The version of this tree (halo_itsm.control), and one above it for the "bumped alone" case.
with open(os.path.join(ROOT, 'halo_itsm.control')) as _f:
    VERSION = re.search(r"^default_version *= *'([^']*)'", _f.read(), re.M).group(1)
_major, _minor = VERSION.split('.')[:2]
NEXT = '%s.%d' % (_major, int(_minor) + 1)


def meta_edit(fn):
    """A mutation that edits META.json as a dict."""
    def mutate(d):
        p = os.path.join(d, 'META.json')
        with open(p) as f:
            m = json.load(f)
        fn(m)
        with open(p, 'w') as f:
            json.dump(m, f)
    return mutate


def text_edit(path, old, new):
    """A mutation that replaces text in one file."""
    def mutate(d):
        p = os.path.join(d, path)
        with open(p) as f:
            s = f.read()
        assert old in s, (path, old)
        with open(p, 'w') as f:
            f.write(s.replace(old, new, 1))
    return mutate


CASES = [
    ('version not semver', meta_edit(lambda m: m.update(version=VERSION)), 'semantic version'),
    ('version differs from control', meta_edit(lambda m: m.update(version='9.9.9')), 'is not'),
    ('required key missing', meta_edit(lambda m: m.pop('abstract')), '"abstract" missing'),
    ('unknown top-level key', meta_edit(lambda m: m.update(homepage='x')), 'unknown key "homepage"'),
    ('unknown license', meta_edit(lambda m: m.update(license='beerware')), 'unknown license'),
    ('meta-spec not 1.0.0', meta_edit(lambda m: m['meta-spec'].update(version='2.0.0')), 'meta-spec'),
    ('provides file wrong', meta_edit(lambda m: m['provides']['halo_itsm'].update(file='x.sql')),
     'provides.halo_itsm.file'),
    ('prereq phase unknown', meta_edit(lambda m: m['prereqs'].update(deploy={})), 'unknown phase'),
    ('prereq version bad', meta_edit(lambda m: m['prereqs']['runtime']['requires'].update(PostgreSQL='15')),
     'is not a version'),
    ('release status bad', meta_edit(lambda m: m.update(release_status='final')), 'release_status'),
    ('not JSON', text_edit('META.json', '{', '{{'), 'cannot be read as JSON'),
    ('debian/changelog behind', text_edit('debian/changelog', 'halo-itsm (', 'halo-itsm (0.'),
     'debian/changelog'),
    ('CHANGELOG without the version', text_edit('CHANGELOG.md', '\n## ' + VERSION + ' ', '\n## 0.9 '), 'CHANGELOG.md'),
    ('another licence', text_edit('LICENSE', 'PostgreSQL License', 'MIT License'), 'LICENSE'),
    ('control version bumped alone', text_edit('halo_itsm.control', "default_version = '%s'" % VERSION,
                                                "default_version = '%s'" % NEXT), 'is not %s.0' % NEXT),
]


def run(d):
    env = dict(os.environ, HI_RELEASE_ROOT=d)
    return subprocess.run([sys.executable, os.path.join(HERE, 'check_meta.py')], env=env,
                          capture_output=True, text=True)


def fresh_copy():
    d = tempfile.mkdtemp(prefix='hi-meta-')
    for f in FILES:
        os.makedirs(os.path.dirname(os.path.join(d, f)), exist_ok=True)
        shutil.copy(os.path.join(ROOT, f), os.path.join(d, f))
    return d


def main():
    passed = failed = 0
    d = fresh_copy()
    r = run(d)
    if r.returncode == 0 and r.stdout == '':
        print('ok - the release files as they are pass')
        passed += 1
    else:
        print(f'FAIL - the release files as they are: {r.stdout}')
        failed += 1
    shutil.rmtree(d)
    for name, mutate, expect in CASES:
        d = fresh_copy()
        mutate(d)
        r = run(d)
        if r.returncode == 1 and expect in r.stdout:
            print(f'ok - rejected: {name}')
            passed += 1
        else:
            print(f'FAIL - {name}: exit {r.returncode}, output {r.stdout!r}, wanted {expect!r}')
            failed += 1
        shutil.rmtree(d)
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
