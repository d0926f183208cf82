#!/usr/bin/env python3
"""test/release/check_meta.py: checks the release metadata (run by test/release/run.sh).

META.json against the PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/: required keys,
types, semantic versions, known licenses, prereq phases and relations, resources), and one
version everywhere: halo_itsm.control's default_version ("A.B") is META.json's version and
provides version ("A.B.0", PGXN wants semver), debian/changelog's upstream version, a
"## A.B" heading in CHANGELOG.md, and the install script META.json names. Prints one
line per problem; exit 1 when there is any.
"""
import json
import os
import re
import sys

ROOT = os.environ.get('HI_RELEASE_ROOT') or os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
SEMVER = re.compile(r'^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[A-Za-z][0-9A-Za-z-]*)?$')
LICENSES = {'agpl_3', 'apache_1_1', 'apache_2_0', 'artistic_1', 'artistic_2', 'bsd',
            'freebsd', 'gfdl_1_2', 'gfdl_1_3', 'gpl_1', 'gpl_2', 'gpl_3', 'lgpl_2_1',
            'lgpl_3_0', 'mit', 'mozilla_1_0', 'mozilla_1_1', 'openssl', 'perl_5',
            'postgresql', 'qpl_1_0', 'ssleay', 'sun', 'zlib', 'open_source',
            'restricted', 'unrestricted', 'unknown'}
TOP = {'name', 'abstract', 'description', 'version', 'maintainer', 'license', 'provides',
       'prereqs', 'resources', 'generated_by', 'meta-spec', 'release_status', 'tags',
       'no_index'}
REQUIRED = ('name', 'abstract', 'version', 'maintainer', 'license', 'provides', 'meta-spec')
PHASES = {'configure', 'build', 'test', 'runtime', 'develop'}
RELATIONS = {'requires', 'recommends', 'suggests', 'conflicts'}
RESOURCES = {'homepage': None, 'bugtracker': {'web', 'mailto'},
             'repository': {'url', 'web', 'type'}}

problems = []


def problem(msg):
    problems.append(msg)


def read(path):
    try:
        with open(os.path.join(ROOT, path), encoding='utf-8') as f:
            return f.read()
    except OSError as e:
        problem(f'{path}: cannot be read: {e.strerror}')
        return ''


def is_text(v):
    return isinstance(v, str) and v.strip() != ''


def check_spec(meta):
    """The PGXN Meta Spec 1.0.0 rules for every key META.json uses."""
    for k in REQUIRED:
        if k not in meta:
            problem(f'META.json: required key "{k}" missing')
    for k in meta:
        if k not in TOP and not k.lower().startswith('x_'):
            problem(f'META.json: unknown key "{k}" (custom keys start with x_)')
    name = meta.get('name', '')
    if not (is_text(name) and len(name) >= 2 and not re.search(r'[/\\\x00-\x1f]', name)):
        problem('META.json: "name" must be at least 2 characters without slashes')
    for k in ('abstract', 'description', 'generated_by'):
        if k in meta and not is_text(meta[k]):
            problem(f'META.json: "{k}" must be a non-empty string')
    if not SEMVER.match(str(meta.get('version', ''))):
        problem('META.json: "version" must be a semantic version (A.B.C)')
    m = meta.get('maintainer')
    if not (is_text(m) or (isinstance(m, list) and m and all(is_text(x) for x in m))):
        problem('META.json: "maintainer" must be a string or a list of strings')
    lic = meta.get('license')
    if isinstance(lic, str):
        if lic not in LICENSES:
            problem(f'META.json: unknown license "{lic}"')
    elif not (isinstance(lic, (list, dict)) and lic):
        problem('META.json: "license" must be a known string, a list or an object')
    spec = meta.get('meta-spec', {})
    if not isinstance(spec, dict) or spec.get('version') != '1.0.0':
        problem('META.json: "meta-spec" must be {"version": "1.0.0", ...}')
    provides = meta.get('provides')
    if not isinstance(provides, dict) or not provides:
        problem('META.json: "provides" must name at least one extension')
        provides = {}
    for ext, p in provides.items():
        if not isinstance(p, dict) or not is_text(p.get('file')) or \
                not SEMVER.match(str(p.get('version', ''))):
            problem(f'META.json: provides.{ext} needs "file" and a semver "version"')
            continue
        for k in p:
            if k not in ('file', 'version', 'abstract', 'docfile') and not k.lower().startswith('x_'):
                problem(f'META.json: provides.{ext}: unknown key "{k}"')
        if 'docfile' in p and not os.path.exists(os.path.join(ROOT, p['docfile'])):
            problem(f'META.json: provides.{ext}.docfile {p["docfile"]} does not exist')
    for phase, rels in meta.get('prereqs', {}).items():
        if phase not in PHASES:
            problem(f'META.json: prereqs: unknown phase "{phase}"')
            continue
        for rel, reqs in rels.items():
            if rel not in RELATIONS:
                problem(f'META.json: prereqs.{phase}: unknown relation "{rel}"')
                continue
            for dep, ver in reqs.items():
                if not (ver == 0 or ver == '0' or SEMVER.match(str(ver))):
                    problem(f'META.json: prereqs.{phase}.{rel}.{dep}: "{ver}" is not a version')
    for k, v in meta.get('resources', {}).items():
        if k not in RESOURCES and not k.lower().startswith('x_'):
            problem(f'META.json: resources: unknown key "{k}"')
        elif RESOURCES.get(k) and (not isinstance(v, dict) or set(v) - RESOURCES[k]):
            problem(f'META.json: resources.{k}: keys must be among {sorted(RESOURCES[k])}')
    if meta.get('release_status', 'stable') not in ('stable', 'testing', 'unstable'):
        problem('META.json: "release_status" must be stable, testing or unstable')
    tags = meta.get('tags', [])
    if not isinstance(tags, list) or not all(is_text(t) and len(t) <= 255 for t in tags):
        problem('META.json: "tags" must be a list of strings of at most 255 characters')


def check_versions(meta):
    """One version: the control file's, everywhere else."""
    m = re.search(r"^default_version\s*=\s*'([^']+)'", read('halo_itsm.control'), re.M)
    if not m:
        problem('halo_itsm.control: no default_version')
        return
    version = m.group(1)
    semver = version if version.count('.') == 2 else version + '.0'
    if meta.get('version') != semver:
        problem(f'META.json: version {meta.get("version")} is not {semver} (control {version})')
    p = meta.get('provides', {}).get('halo_itsm', {})
    if p.get('version') != semver:
        problem(f'META.json: provides.halo_itsm.version is not {semver}')
    if p.get('file') != f'sql/halo_itsm--{version}.sql':
        problem(f'META.json: provides.halo_itsm.file is not sql/halo_itsm--{version}.sql')
    d = re.match(r'^halo-itsm \(([^)-]+)-[^)]+\)', read('debian/changelog'))
    if not d or d.group(1) != version:
        problem(f'debian/changelog: the latest entry is not version {version}-N')
    if not re.search(r'^## ' + re.escape(version) + r'\b', read('CHANGELOG.md'), re.M):
        problem(f'CHANGELOG.md: no "## {version}" section')
    if 'PostgreSQL License' not in read('LICENSE'):
        problem('LICENSE: not the PostgreSQL License that META.json names')
    for f in ('SECURITY.md', 'README.md'):
        if not os.path.exists(os.path.join(ROOT, f)):
            problem(f'{f} missing')


def main():
    try:
        meta = json.loads(read('META.json') or 'null')
    except ValueError as e:
        print(f'META.json: cannot be read as JSON: {e}')
        return 1
    if not isinstance(meta, dict):
        print('META.json: not a JSON object')
        return 1
    check_spec(meta)
    check_versions(meta)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
