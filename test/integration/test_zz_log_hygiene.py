"""Log hygiene (issue 5). This module sorts last among the integration tests: it reads the
whole server log of the run (log_min_messages = debug1; the regress stage logs into the
same file) and asserts that no secret, token or signature appears in it:

- every client secret the tests used (halo_test.KNOWN_SECRETS, remember_secret()) and every
  client and webhook secret (also the previous one) stored in any database now;
- every access token the mock Halo issued, every webhook secret it was given and every
  X-Signature it sent (its /_mock/secrets ledger, also of mocks stopped during the run);

each as is, URL-encoded and JSON-escaped. It also makes the functions that take a secret
or a signature fail on purpose and checks that their statement was not logged.
"""
import json
import re
import secrets
import urllib.parse

import psycopg2

from halo_test import (PGHOST, PGPORT, expect_error, known_secrets, log_mark, mock_secrets, q,
                       q1, server_log, wait_until)

MIN_LEN = 8     # shorter strings would match by chance


def _databases_with_extension():
    out = []
    for (name,) in q("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1",
                     db="postgres"):
        conn = psycopg2.connect(host=PGHOST, port=PGPORT, user="postgres", dbname=name,
                                application_name="halo_test")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'halo_itsm'")
                if cur.fetchone()[0]:
                    out.append(name)
        finally:
            conn.close()
    return out


def collect_secrets():
    """{secret: where it comes from}."""
    found = {}

    def add(value, where):
        if isinstance(value, str) and len(value) >= MIN_LEN:
            found.setdefault(value, where)

    for s in known_secrets():
        add(s, "test secret")
    for dbname in _databases_with_extension():
        for row in q("SELECT client_secret, webhook_secret, previous_webhook_secret"
                     "  FROM halo_itsm.integration_secrets", db=dbname):
            for value, what in zip(row, ("client secret", "webhook secret", "previous webhook secret")):
                add(value, "%s in %s" % (what, dbname))
    ledger = mock_secrets()
    for key, what in (("tokens", "access token"), ("webhook_secrets", "webhook secret"),
                      ("signatures", "x-signature")):
        for value in ledger[key]:
            add(value, "%s from the mock" % what)
    return found


def variants(s):
    """How a secret could be written: as is, URL-encoded (form or query), JSON-escaped."""
    return {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s),
            json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1]}


def distinct_log_text(text):
    """The log's distinct lines without their time and pid prefix (much smaller)."""
    prefix = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+ \[\d+\] ")
    return "\n".join(sorted({prefix.sub("", line) for line in text.splitlines()}))


def leaks(text, found):
    return sorted((where, s) for s, where in found.items() if any(v in text for v in variants(s)))


def test_log_is_verbose():
    assert q1("SHOW log_min_messages") == "debug1"
    assert len(server_log()) > 0


def test_no_secret_token_or_signature_in_server_log():
    found = collect_secrets()
    text = distinct_log_text(server_log())
    bad = leaks(text, found)
    kinds = {}
    for where in found.values():
        kinds[where.split(" in ")[0].split(" from ")[0]] = kinds.get(
            where.split(" in ")[0].split(" from ")[0], 0) + 1
    assert not bad, "secrets in the server log: %r" % bad[:20]
    # nothing that looks like a form body with a secret, or a bearer token
    assert not re.search(r"client_secret=[^&\s]", text), "a token request body was logged"
    assert not re.search(r"Bearer [A-Za-z0-9_\-.~+/]{16,}", text), "a bearer token was logged"
    print("# %d secrets checked against %d distinct log lines: %r"
          % (len(found), text.count("\n") + 1, kinds))


def test_failing_calls_do_not_log_their_secrets():
    """A statement that fails is logged (log_min_error_statement = error), and with it any
    secret among its arguments, unless the function hides it."""
    ids = [r[0] for r in q("SELECT id FROM halo_itsm.integrations ORDER BY id LIMIT 1",
                           db="halo_manual")]
    if not ids:
        ids = [q1("SELECT halo_itsm.connect('http://127.0.0.1:9', 'c', 'loghyg-secret-0a9f31c2',"
                  " name => 'loghyg')", db="halo_manual")]
    name = q1("SELECT name FROM halo_itsm.integrations WHERE id = %s", ids[0], db="halo_manual")
    mark = log_mark()
    s = {k: "leakcheck-%s-%s" % (k, secrets.token_hex(8))
         for k in ("url", "dup", "cred", "cred2", "sig", "ingest")}
    calls = [
        ("22023", "SELECT halo_itsm.connect('ftp://halo.example.com', 'c', %s)", (s["url"],)),
        ("42710", "SELECT halo_itsm.connect('http://127.0.0.1:9', 'c', %s, name => %s)",
         (s["dup"], name)),
        ("P0002", "SELECT halo_itsm.set_credentials(-1, 'c', %s)", (s["cred"],)),
        ("22023", "SELECT halo_itsm.set_credentials(%s, '', %s)", (ids[0], s["cred2"])),
    ]
    if q1("SELECT to_regproc('halo_itsm.webhook_signature') IS NOT NULL", db="halo_manual"):
        calls.append((None, "SELECT halo_itsm.webhook_signature(%s, '{}'::jsonb, 'x')",
                      (s["sig"],)))
    if q1("SELECT to_regproc('halo_itsm.ingest_webhook') IS NOT NULL", db="halo_manual"):
        key = q1("SELECT webhook_key FROM halo_itsm.integrations WHERE id = %s", ids[0],
                 db="halo_manual")
        headers = {"content-type": "application/json", "host": "127.0.0.1",
                   "x-halo-date": "Sat, 28 Nov 2026 15:56:01 GMT", "content-length": "2",
                   "x-signature": s["ingest"]}
        calls.append((None, "SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, '{}')",
                       (key, json.dumps(headers))))
    for sqlstate, sql, args in calls:
        if sqlstate:
            expect_error(sqlstate, q, sql, *args, db="halo_manual")
        else:
            try:
                q(sql, *args, db="halo_manual")
                raise AssertionError("no error from %s" % sql)
            except psycopg2.Error:
                pass
    # the errors themselves reach the log (so the statements would have, if not hidden)
    wait_until(lambda: server_log(mark).count("ERROR:") >= len(calls), timeout=10,
               msg="the errors in the server log")
    text = server_log(mark)
    bad = leaks(text, {v: k for k, v in s.items()})
    assert not bad, "the failing statement was logged with its secret: %r\n%s" % (bad, text[-3000:])
