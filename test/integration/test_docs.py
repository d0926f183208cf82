"""The documentation against the code, in both directions.

Reads README.md and every docs/*.md (pages added later are read too) and a fresh install of
the extension (a database of its own, on the test cluster that preloads the library):

  - every name the docs give as `halo_itsm.<name>` is an object of the extension (function,
    procedure, table, view, type; internal `_` names included) or a setting in pg_settings;
  - every function a reference table of docs/ lists unqualified (a table row whose first
    cell holds `name(...)` or `CALL name(...)`) is a function of the extension;
  - every object of the extension whose name does not start with `_` is named in docs/
    (as `halo_itsm.<name>`, or for a function also as a reference table's `name(...)`);
  - every setting `halo_itsm.*` in pg_settings is named in docs/ as `halo_itsm.<name>`;
  - every relative link of README.md and docs/*.md points to a file that exists and, with
    `#anchor`, to a heading of that file; every docs/*.md page is linked from README.md.

A failure names each missing item and where it was (or should be) written.
"""
import glob
import os
import re

from halo_test import db, q

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DOCS_DB = "halo_docs"
# `halo_itsm.<word>` that names a file, not an object or a setting
FILE_SUFFIXES = {"c", "h", "so", "control", "sql", "md", "zip", "tar", "deb", "json"}

QUALIFIED = re.compile(r"(?<![\w.$/-])halo_itsm\.([A-Za-z_][A-Za-z0-9_]*)")
CODE_SPAN = re.compile(r"`([^`]+)`")
ENTRY = re.compile(r"^(?:CALL\s+)?([a-z_][a-z0-9_]*)\s*\(")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def doc_files(with_readme=True):
    """README.md (optionally) and docs/*.md, relative to the repository root."""
    files = sorted(os.path.relpath(f, ROOT) for f in glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return (["README.md"] if with_readme else []) + files


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def qualified_names(text):
    """{name: first line number} of every `halo_itsm.<name>` in text (file names left out)."""
    found = {}
    for no, line in enumerate(text.split("\n"), 1):
        for m in QUALIFIED.finditer(line):
            if m.group(1) not in FILE_SUFFIXES:
                found.setdefault(m.group(1), no)
    return found


def reference_entries(text):
    """{function name: line number} of the unqualified `name(...)` in the first cell of a
    table row that holds only code spans (the reference tables of docs/), outside code
    blocks."""
    found = {}
    fenced = False
    for no, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or not line.lstrip().startswith("|"):
            continue
        cell = line.strip().strip("|").split("|")[0]
        if CODE_SPAN.sub("", cell).strip(" ,") != "":
            continue    # prose that quotes a call, not a reference entry
        for span in CODE_SPAN.findall(cell):
            m = ENTRY.match(span.strip())
            if m:
                found.setdefault(m.group(1), no)
    return found


def problems(pages, objects, internal, settings):
    """What is wrong between the pages ({file: text}) and the install: a list of sentences.
    objects: {name: kind} of the public objects; internal: names starting with `_`;
    settings: the names after `halo_itsm.` in pg_settings."""
    out = []
    documented = set()
    for rel, text in pages.items():
        in_docs = rel.startswith("docs/")
        for name, no in sorted(qualified_names(text).items(), key=lambda kv: kv[1]):
            if name not in objects and name not in internal and name not in settings:
                out.append("%s:%d names halo_itsm.%s, which is neither an object of the "
                           "extension nor a setting" % (rel, no, name))
            elif in_docs:
                documented.add(name)
        if not in_docs:
            continue
        for name, no in sorted(reference_entries(text).items(), key=lambda kv: kv[1]):
            if objects.get(name) != "function" and name not in internal:
                out.append("%s:%d lists %s(...), which is not a function of the extension"
                           % (rel, no, name))
            else:
                documented.add(name)
    for name, kind in sorted(objects.items()):
        if name not in documented:
            out.append("the %s halo_itsm.%s is documented in no docs/*.md page" % (kind, name))
    for name in sorted(settings):
        if name not in documented:
            out.append("the setting halo_itsm.%s is documented in no docs/*.md page" % name)
    return out


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip())
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(text):
    """The anchors of the headings of a markdown text (code blocks skipped)."""
    seen = {}
    out = set()
    fenced = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            a = anchor(line.lstrip("#"))
            n = seen.get(a, 0)
            seen[a] = n + 1
            out.add(a if n == 0 else "%s-%d" % (a, n))
    return out


def link_problems(pages):
    """Relative links of the pages whose file or heading does not exist."""
    out = []
    for rel, text in pages.items():
        for no, line in enumerate(text.split("\n"), 1):
            for target in LINK.findall(line):
                if re.match(r"^[a-z]+:", target):
                    continue
                path, _, frag = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(rel), path)) if path else rel
                if not os.path.exists(os.path.join(ROOT, dest)):
                    out.append("%s:%d links to %s, which does not exist" % (rel, no, dest))
                elif frag and dest.endswith(".md") and frag not in anchors(read(dest)):
                    out.append("%s:%d links to %s#%s, a heading that does not exist"
                               % (rel, no, dest, frag))
    return out


def installed():
    """({public name: kind}, {internal names}, {setting names}) of a fresh install."""
    rows = q("""
        SELECT p.proname, 'function' FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'halo_itsm'
        UNION
        SELECT c.relname, CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view'
                                         ELSE 'table' END
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass
           AND d.objid = c.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'halo_itsm'
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
        UNION
        SELECT t.typname, 'type' FROM pg_catalog.pg_type t
          JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_type'::regclass
           AND d.objid = t.oid AND d.deptype = 'e'
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'halo_itsm'
         WHERE t.typtype IN ('e', 'd', 'c', 'r')""", db=DOCS_DB)
    objects = {n: k for n, k in rows if not n.startswith("_")}
    internal = {n for n, _ in rows if n.startswith("_")}
    settings = {n[len("halo_itsm."):] for (n,) in
                q("SELECT name FROM pg_catalog.pg_settings WHERE name LIKE 'halo\\_itsm.%'",
                  db=DOCS_DB)}
    return objects, internal, settings


def setup_module():
    conn = db("postgres")
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS " + DOCS_DB)
        cur.execute("CREATE DATABASE " + DOCS_DB)
    q("CREATE EXTENSION halo_itsm", db=DOCS_DB)


def teardown_module():
    from halo_test import close_connections
    close_connections()
    with db("postgres").cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS " + DOCS_DB)


def test_the_checker_names_what_is_missing_both_ways():
    pages = {
        "README.md": "SELECT halo_itsm.connect(); halo_itsm.nosuch; see halo_itsm.control",
        "docs/sql.md": "| `connect(url)` | x |\n| `CALL frob()`, `retry(x)` | y |\n"
                       "| `pg_cancel_backend()` ends it | prose, not an entry |\n"
                       "```\n| `ignored_in_code(x)` |\n```\n`halo_itsm.tickets`, "
                       "halo_itsm.database_name, `halo_itsm._claim()`",
    }
    objects = {"connect": "function", "retry": "function", "tickets": "table",
               "status": "view", "severity": "type"}
    got = problems(pages, objects, {"_claim"}, {"database_name", "listen_port"})
    assert got == [
        "README.md:1 names halo_itsm.nosuch, which is neither an object of the extension "
        "nor a setting",
        "docs/sql.md:2 lists frob(...), which is not a function of the extension",
        "the type halo_itsm.severity is documented in no docs/*.md page",
        "the view halo_itsm.status is documented in no docs/*.md page",
        "the setting halo_itsm.listen_port is documented in no docs/*.md page",
    ], got
    # a reference entry counts in docs/ only: README.md's mention documents nothing
    assert problems({"README.md": "| `connect(x)` |"}, {"connect": "function"}, set(), set()) \
        == ["the function halo_itsm.connect is documented in no docs/*.md page"]
    assert anchor("How delivery works, and what it promises") == \
        "how-delivery-works-and-what-it-promises"
    assert anchor("What `ingest_webhook()` checks") == "what-ingest_webhook-checks"


def test_docs_and_install_agree():
    pages = {rel: read(rel) for rel in doc_files()}
    assert any(rel.startswith("docs/") for rel in pages), "no docs/*.md page"
    objects, internal, settings = installed()
    assert "cases" in objects and "database_name" in settings, (objects, settings)
    found = problems(pages, objects, internal, settings)
    assert not found, "the docs and the code disagree:\n  " + "\n  ".join(found)


def test_links_resolve():
    pages = {rel: read(rel) for rel in doc_files()}
    found = link_problems(pages)
    linked = {os.path.normpath(t.partition("#")[0]) for t in LINK.findall(pages["README.md"])}
    found += ["%s is not linked from README.md (add a row to its Documentation table)" % rel
              for rel in doc_files(with_readme=False) if rel not in linked]
    assert not found, "broken links:\n  " + "\n  ".join(found)
