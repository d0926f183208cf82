"""test_webhook_abuse: bad webhook deliveries are refused and change nothing (issue 5,
"Webhook abuse"), database halo.

The deliveries are built here and passed to halo_itsm.ingest_webhook(key, headers, body)
directly, as a receiver would. Valid ones are signed by the mock's own code
(POST /_mock/sign) or by Python's hmac (checked against the spec's golden vector and the
mock), never by the extension's webhook_signature(), so that the test does not trust the
code it tests.

- test_bad_deliveries_are_refused: a table of (name, mutation, SQLSTATE[, settings]).
  Each bad delivery starts from a valid one that would close a linked case and add a
  note, so that a delivery accepted by mistake changes rows. Each must fail with its
  SQLSTATE and a "halo_itsm:" message with a hint and without the secret, and leave
  every halo_itsm table and sequence as it was (snapshots before and after).
- test_harmless_variants_are_accepted: the controls: dates just inside the tolerance,
  RFC 3339, header names in any case, values padded with spaces and tabs, one-element
  arrays, extra unsigned headers, an unsigned Host, a body of exactly webhook_max_body.
- test_replay_is_a_duplicate: the same delivery again (also re-dated and re-signed, or
  with another body under the same id) is a "duplicate" and changes nothing.
- test_random_mutations: HI_ABUSE_MUTATIONS (default 10,000) random mutations of fresh
  valid deliveries (seed HI_ABUSE_SEED, else random; printed with the counts). A model
  of the scheme (webhook_abuse_model.py) written from the signing reference and the
  check order of docs/webhooks.md (not from src/inbound/webhook.c) predicts each answer: accepted exactly when the signed bytes
  (trimmed values, the signed host, the body) and the signature are unchanged and the
  delivery is otherwise valid; "duplicate" only for an id already processed; else the
  SQLSTATE (where PostgreSQL's date parser decides, a set: a changed x-halo-date may be
  WH003 or WH005 before WH006/WH007). Batches of 500 alternate webhook_base_url
  (configured: Host is not signed; '': the received Host is) and webhook_max_body
  (default, 1024). The tables are checked after each batch.

Deterministic bit flips of the table: content-length: bit 0 of the last digit (the
length changes by one: WH004); content-type: bit 0 of the first character
("`pplication/json": WH007); host (webhook_base_url = '', so that Host is signed): bit 0
of the first character ("027.0.0.1:...": WH007); x-halo-date: bit 0 of the last digit of
the seconds (one second off, still readable and fresh: WH007); x-signature: bit 0 of the
first MAC byte, re-encoded (WH007), the case bit of a letter among the first 42
characters (still canonical base64: WH007), and bit 0 of the '=' (WH006).
"""
import base64
import binascii
import email.utils
import json
import math
import os
import random
import time
import urllib.parse

import psycopg2

from halo_test import db, ensure_extension, fresh_integration, q, q1, timeout, wait_drained
from webhook_helpers import MOCK, add_case, wait_ticket, webhook_settings
from webhook_abuse_model import (Base, Model, Mutation, NAME, SIGNED, STATE, WRONG_SECRET,
                                 _canonical, _imf, _mutate, _py_sign, _rfc3339)

INGEST = "SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)"
NO_HOST_URL = {"halo_itsm.webhook_base_url": ""}    # settings: the received Host is signed
JSON_NULL = object()    # headers given as the JSON value null (None: SQL NULL)
DROP = object()         # _hdr(): remove the header


# --- setup ------------------------------------------------------------------------------

def setup_module():
    """An integration, two cases with tickets, nothing left in flight; signers checked."""
    ensure_extension("halo")
    iid = STATE["integration"] = fresh_integration("halo")
    url, STATE["secret"] = webhook_settings(iid)
    STATE["key"] = url.rsplit("/", 1)[1]
    STATE["base_url"] = q1("SELECT current_setting('halo_itsm.webhook_base_url')")
    STATE["signed_host"] = _url_host(STATE["base_url"])     # also what valid Host headers say
    for name in ("tolerance", "max_body"):
        STATE[name] = int(q1("SELECT setting FROM pg_settings WHERE name = %s",
                             "halo_itsm.webhook_" + name))
    add_case("ABUSE-1")
    add_case("ABUSE-RANDOM")
    STATE["ticket"] = wait_ticket("ABUSE-1")
    STATE["random_ticket"] = wait_ticket("ABUSE-RANDOM")
    wait_drained("halo")
    STATE["relations"] = _relations()
    STATE["n"] = 0
    # the Python signer agrees with the spec's golden vector and with the mock's code
    golden = {"content-length": "152", "content-type": "application/json",
              "host": "soc.example.com", "x-halo-date": "Sat, 28 Nov 2026 15:56:01 GMT"}
    gbody = (b'{"id":"5b0c2f4e-8d1a-4c1e-9a57-2f1f0d3e6b11","event":"Ticket Updated by Agent",'
             b'"object_id":4242,"ticket":{"id":4242,"status_id":9,"hasbeenclosed":true}}')
    assert _py_sign("hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2", _canonical(golden, gbody)) == \
        "UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc="
    h = _base_headers(gbody)
    assert _py_sign(STATE["secret"], _canonical({k.lower(): v for k, v in h.items()}, gbody)) == \
        _mock_sign(h, gbody)


def _url_host(url):
    """host[:port] of a URL, lower case, port only when not the scheme's default (the spec)."""
    u = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(u.scheme)
    return u.hostname.lower() if u.port in (None, default) else "%s:%d" % (u.hostname.lower(), u.port)


def _relations():
    """(tables, sequences) of schema halo_itsm."""
    rows = q("SELECT relname, relkind FROM pg_class WHERE relnamespace = 'halo_itsm'::regnamespace"
             " AND relkind IN ('r', 'p', 'S') ORDER BY relname")
    tables = [n for n, k in rows if k in ("r", "p")]
    assert {"webhook_deliveries", "timeline", "cases", "detections", "tickets", "outbox",
            "integrations", "integration_secrets"} <= set(tables), tables
    return tables, [n for n, k in rows if k == "S"]


# --- signing, deliveries, snapshots -----------------------------------------------------


def _mock_sign(headers, body, secret=None):
    """x-signature computed by the mock's code (headers as given, body raw)."""
    return MOCK.call("POST", "/_mock/sign", {
        "secret": STATE["secret"] if secret is None else secret, "headers": headers,
        "body_base64": base64.b64encode(body).decode()})["signature"]


def _base_headers(body, date=None):
    """The unsigned headers of a valid delivery of body."""
    return {"Content-Type": "application/json", "Content-Length": str(len(body)),
            "Host": STATE["signed_host"], "X-Halo-Date": date or _imf(time.time())}


def _payload(closing=True):
    """A full-object payload for ABUSE-1's ticket with a new id and action: a note, and
    (closing) status 9."""
    STATE["n"] += 1
    n, tid = STATE["n"], STATE["ticket"]
    return {"id": "abuse-%06d" % n, "event": "Ticket Updated by Agent", "object_id": tid,
            "ticket": {"id": tid, "status_id": 9 if closing else 2, "hasbeenclosed": closing},
            "action": {"id": 700000 + n, "ticket_id": tid, "who": "Mallory",
                       "note": "Closing note %06d" % n, "new_status": 9 if closing else 2}}


def _body(payload):
    """The JSON bytes of a payload."""
    return json.dumps(payload).encode()


def _signed(body, date=None, secret=None):
    """A delivery {key, headers, body} of body, signed by the mock's code."""
    h = _base_headers(body, date)
    h["X-Signature"] = _mock_sign(h, body, secret)
    return {"key": STATE["key"], "headers": h, "body": body}


def _valid(closing=True):
    """A fresh valid delivery (new delivery id and action id) for ABUSE-1."""
    return _signed(_body(_payload(closing)))


def _ingest(cur, d):
    """ingest_webhook() of a delivery; its result."""
    headers = d["headers"]
    text = None if headers is None else "null" if headers is JSON_NULL else json.dumps(headers)
    cur.execute(INGEST, (d["key"], text, d["body"]))
    return cur.fetchone()[0]


def _snapshot(cur):
    """{relation: fingerprint} of every halo_itsm table (count, md5 of its rows) and sequence."""
    tables, seqs = STATE["relations"]
    parts = ["SELECT '%s', (SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, ','"
             " ORDER BY t::text)), '') FROM halo_itsm.%s t)" % (n, n) for n in tables]
    parts += ["SELECT '%s', (SELECT last_value || ':' || is_called FROM halo_itsm.%s)" % (n, n)
              for n in seqs]
    cur.execute(" UNION ALL ".join(parts))
    return dict(cur.fetchall())


def _changed(before, after):
    """The relations whose fingerprints differ."""
    return sorted(k for k in before if before[k] != after.get(k))


def _ingest_with(cur, d, settings):
    """_ingest() with session settings in force; the result or the psycopg2 error."""
    for name, value in (settings or {}).items():
        cur.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
    try:
        return _ingest(cur, d)
    except psycopg2.Error as e:
        return e
    finally:
        for name in settings or {}:
            cur.execute("RESET %s" % name)


# --- the table of bad deliveries ------------------------------------------------------------

def _flip(s, i, bit):
    """s with bit `bit` of character i flipped."""
    return s[:i] + chr(ord(s[i]) ^ (1 << bit)) + s[i + 1:]


def _hdr(name, fn):
    """Mutation: header `name` (lower case) set to fn(value, delivery); DROP removes it."""
    def mutate(d):
        v = fn(d["headers"][NAME[name]], d)
        if v is DROP:
            del d["headers"][NAME[name]]
        else:
            d["headers"][NAME[name]] = v
        return d
    return mutate


def _set(name, value):
    """Mutation: header `name` set to value."""
    return _hdr(name, lambda v, d: value)


def _also(name):
    """Mutation: the header a second time, under its lower-case name."""
    def mutate(d):
        d["headers"][name] = d["headers"][NAME[name]]
        return d
    return mutate


def _renamed(name, new_name):
    """Mutation: the header under another name."""
    def mutate(d):
        d["headers"][new_name] = d["headers"].pop(NAME[name])
        return d
    return mutate


def _edited(fn, fix_length=False):
    """Mutation: the body replaced by fn(body), the signature kept (content-length too,
    unless fix_length)."""
    def mutate(d):
        d["body"] = fn(d["body"])
        if fix_length:
            d["headers"]["Content-Length"] = str(len(d["body"]))
        return d
    return mutate


def _resigned(fn=lambda b: b, date=None, secret=None):
    """Mutation: a new delivery of body fn(body), correctly signed (with date(), secret)."""
    return lambda d: _signed(fn(d["body"]), date=date and date(), secret=secret)


def _raw(body):
    """Mutation: a correctly signed delivery of this body."""
    return _resigned(lambda b: body)


def _dated(offset, form=_imf, ceil=False):
    """Mutation: re-signed with x-halo-date now + offset s, rounded away from now."""
    return _resigned(date=lambda: form((math.ceil if ceil else math.floor)(time.time()) + offset))


def _edited_payload(fn, closing=True):
    """Mutation: a new payload edited by fn(payload), correctly signed."""
    def mutate(d):
        p = _payload(closing)
        fn(p)
        return _signed(_body(p))
    return mutate


def _sized(size, closing=True):
    """Mutation: a correctly signed JSON body of exactly size bytes (padded in a string)."""
    def mutate(d):
        p = dict(_payload(closing), pad="")
        p["pad"] = "x" * (size - len(_body(p)))
        assert len(_body(p)) == size
        return _signed(_body(p))
    return mutate


def _other(field, value):
    """Mutation: the delivery's key or headers replaced by value."""
    def mutate(d):
        d[field] = value
        return d
    return mutate


def _sig(fn):
    """Mutation: x-signature replaced by fn(signature)."""
    return _hdr("x-signature", lambda v, d: fn(v))


def _date_is(text):
    """Mutation: re-signed with x-halo-date text() (a function: evaluated late)."""
    return _resigned(date=text)


def _mac_flipped(sig):
    """The signature with bit 0 of its first MAC byte flipped, re-encoded."""
    raw = bytearray(base64.b64decode(sig))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _padding_bits_set(sig):
    """The same 32 bytes to a lenient decoder, but not the canonical encoding."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(sig[42])
    return sig[:42] + alphabet[last | 1 if last % 4 == 0 else last & ~3] + "="


def _note_flip(mask, offset=0):
    """Body edit: a bit of the note text changed in place (same length)."""
    def fn(body):
        b = bytearray(body)
        b[body.index(b"Closing note") + offset] ^= mask
        return bytes(b)
    return fn


def _swapped(d):
    """Mutation: the body swapped for another valid delivery's body of the same length."""
    other = _valid()["body"]
    assert len(other) == len(d["body"]) and other != d["body"]
    d["body"] = other
    return d


def _cases():
    """The table: (name, mutation of a valid closing delivery, SQLSTATE[, settings])."""
    tol = STATE["tolerance"]
    other_key = "0" * 32 if STATE["key"] != "0" * 32 else "1" * 32
    length = lambda f: _hdr("content-length", lambda v, d: f(len(d["body"])))  # noqa: E731
    cases = [
        ("unknown webhook key", _other("key", other_key), "WH001"),
        ("webhook key with one bit flipped", _other("key", _flip(STATE["key"], 0, 0)), "WH001"),
        ("empty webhook key", _other("key", ""), "WH001"),
        ("NULL webhook key", _other("key", None), "WH001"),
        ("body 1 byte over webhook_max_body = 1024", _sized(1025), "WH002",
         {"halo_itsm.webhook_max_body": "1024"}),
        ("body 1 byte over the default 1 MB", _sized(1024 * 1024 + 1), "WH002",
         {"halo_itsm.webhook_max_body": str(1024 * 1024)}),
        ("headers not an object (array)", _other("headers", [["Host", STATE["signed_host"]]]), "WH003"),
        ("headers JSON null", _other("headers", JSON_NULL), "WH003"),
        ("headers SQL NULL", _other("headers", None), "WH003"),
        ("content-length not a string", _set("content-length", 0), "WH003"),
        ("content-type with CR LF and a header after it",
         _set("content-type", "application/json\r\nX-Injected: 1"), "WH003"),
        ("x-halo-date with a control character", _set("x-halo-date", "\x01"), "WH003"),
    ]
    for name in SIGNED:
        settings = NO_HOST_URL if name == "host" else None
        cases += [(what % name, mutate, "WH003", settings) for what, mutate in (
            ("%s missing", _set(name, DROP)),
            ("%s empty", _set(name, "")),
            ("%s spaces and tabs only", _set(name, " \t ")),
            ("%s name with one bit flipped (so missing)", _renamed(name, _flip(NAME[name], 0, 0))),
            ("%s twice (second name in lower case)", _also(name)),
            ("%s twice (JSON array)", _hdr(name, lambda v, d: [v, v])),
            ("%s as an empty array", _set(name, [])))]
    cases += [
        ("Host twice, also when webhook_base_url's host is signed", _also("host"), "WH003"),
        ("content-length: one bit flipped (length +-1)",
         _hdr("content-length", lambda v, d: _flip(v, len(v) - 1, 0)), "WH004"),
        ("content-length: body length + 1", length(lambda n: str(n + 1)), "WH004"),
        ("content-length: signed +N", length(lambda n: "+%d" % n), "WH004"),
        ("content-length: hexadecimal", length(hex), "WH004"),
        ("content-length: 2^64 + length (overflow)", length(lambda n: str(2 ** 64 + n)), "WH004"),
        ("body 1 byte short of content-length", _edited(lambda b: b[:-1]), "WH004"),
        ("x-halo-date tolerance + 2 s behind (IMF)", _dated(-(tol + 2)), "WH005"),
        ("x-halo-date tolerance + 2 s ahead (IMF)", _dated(tol + 2, ceil=True), "WH005"),
        ("x-halo-date tolerance + 2 s behind (RFC 3339)", _dated(-(tol + 2), _rfc3339), "WH005"),
        ("x-halo-date tolerance + 2 s ahead (RFC 3339)", _dated(tol + 2, _rfc3339, ceil=True), "WH005"),
        ("x-halo-date unparsable: yesterday", _date_is(lambda: "yesterday"), "WH003"),
        ("x-halo-date unparsable: now", _date_is(lambda: "now"), "WH003"),
        ("x-halo-date unparsable: no zone", _date_is(lambda: _rfc3339(time.time())[:-1]), "WH003"),
        ("x-halo-date unparsable: UTC for GMT", _date_is(lambda: _imf(time.time()).replace("GMT", "UTC")),
         "WH003"),
        ("x-halo-date unparsable: 31 November", _date_is(lambda: "Tue, 31 Nov 2026 12:00:00 GMT"), "WH003"),
        ("x-halo-date unparsable: hour 25", _date_is(lambda: "Sat, 28 Nov 2026 25:00:00 GMT"), "WH003"),
        ("x-halo-date unparsable: Unix time", _date_is(lambda: str(int(time.time()))), "WH003"),
        # PostgreSQL's date parser raises (22023 "time zone not recognized") on a word it
        # takes for a zone; found by test_random_mutations (HI_ABUSE_SEED=45725923)
        ("x-halo-date unparsable: a word taken for a zone",
         _date_is(lambda: "Wed, 02 Dec c202 16:56:43 GMT"), "WH003"),
        ("x-signature missing", _set("x-signature", DROP), "WH006"),
        ("x-signature empty", _set("x-signature", ""), "WH006"),
        ("x-signature not a string", _set("x-signature", 1), "WH006"),
        ("x-signature twice (JSON array)", _hdr("x-signature", lambda v, d: [v, v]), "WH006"),
        ("x-signature twice (second name in lower case)", _also("x-signature"), "WH006"),
        ("x-signature name with one bit flipped (so missing)", _renamed("x-signature", "Y-Signature"),
         "WH006"),
        ("x-signature truncated: padding dropped", _sig(lambda v: v[:-1]), "WH006"),
        ("x-signature truncated to 40 characters", _sig(lambda v: v[:40]), "WH006"),
        ("x-signature truncated to half", _sig(lambda v: v[:22]), "WH006"),
        ("x-signature with a character appended", _sig(lambda v: v + "A"), "WH006"),
        ("x-signature not base64 (44 x '!')", _set("x-signature", "!" * 44), "WH006"),
        ("x-signature: first character '-' (base64url)", _sig(lambda v: "-" + v[1:]), "WH006"),
        ("x-signature: one bit of '=' flipped", _sig(lambda v: _flip(v, 43, 0)), "WH006"),
        ("x-signature: non-zero padding bits", _sig(_padding_bits_set), "WH006"),
        ("x-signature: base64 of 31 bytes", _set("x-signature", base64.b64encode(b"\x01" * 31).decode()),
         "WH006"),
        ("x-signature: base64 of 33 bytes", _set("x-signature", base64.b64encode(b"\x01" * 33).decode()),
         "WH006"),
        ("x-signature: hex digest", _sig(lambda v: binascii.hexlify(base64.b64decode(v)).decode()),
         "WH006"),
        ("x-signature: 'sha256=' prefix", _sig(lambda v: "sha256=" + v), "WH006"),
        ("x-signature with a space inside", _sig(lambda v: v[:20] + " " + v[21:]), "WH006"),
        ("wrong secret", _resigned(secret=WRONG_SECRET), "WH007"),
        ("x-signature: one bit of the MAC flipped", _sig(_mac_flipped), "WH007"),
        ("x-signature: case bit of one letter flipped",
         _sig(lambda v: _flip(v, next(i for i, c in enumerate(v[:42]) if c.isalpha()), 5)), "WH007"),
        ("x-signature of another delivery", _sig(lambda v: _valid()["headers"]["X-Signature"]), "WH007"),
        ("body: one bit flipped", _edited(_note_flip(0x20)), "WH007"),
        ("body: high bit set in one byte (not UTF-8)", _edited(_note_flip(0x80, 1)), "WH007"),
        ("body swapped for another of the same length", _swapped, "WH007"),
        ("body truncated, content-length adjusted", _edited(lambda b: b[:-1], fix_length=True), "WH007"),
        ("content-type: one bit flipped", _hdr("content-type", lambda v, d: _flip(v, 0, 0)), "WH007"),
        ("host: one bit flipped (Host signed)", _hdr("host", lambda v, d: _flip(v, 0, 0)), "WH007",
         NO_HOST_URL),
        ("host: another host (Host signed)", _set("host", "evil.example.com"), "WH007", NO_HOST_URL),
        ("x-halo-date: one bit flipped (one second off)", _hdr("x-halo-date", lambda v, d: _flip(v, 24, 0)),
         "WH007"),
        ("x-halo-date: same instant in RFC 3339", _hdr("x-halo-date", lambda v, d: _rfc3339(
            email.utils.parsedate_to_datetime(v).timestamp())), "WH007"),
        ("body not UTF-8", _raw(b'{"id": "bad-\xff", "object_id": 1}'), "WH008"),
        ("body: overlong UTF-8", _raw(b'{"id": "bad-\xc0\xaf", "object_id": 1}'), "WH008"),
        ("body: UTF-8 encoded surrogate", _raw(b'{"id": "bad-\xed\xa0\x80", "object_id": 1}'), "WH008"),
        ("body: NUL byte", _raw(b'{"id": "bad-\x00", "object_id": 1}'), "WH008"),
        # \u0000 and lone surrogate escapes are not refused: they become U+FFFD
        # (test_escapes_jsonb_cannot_store_become_fffd_and_the_closure_applies)
        ("body: JSON cut short", _resigned(lambda b: b[:-1]), "WH008"),
        ("body: trailing garbage", _resigned(lambda b: b + b"x"), "WH008"),
        ("body: two JSON objects", _resigned(lambda b: b + b), "WH008"),
        # a JSON array is a batch (test_webhook_signing.py); its events must be objects
        ("body: JSON array of a string", _raw(b'["bad"]'), "WH008"),
        ("body: JSON string", _raw(b'"bad"'), "WH008"),
        ("body: empty", _raw(b""), "WH008"),
        # jsonb cannot hold these (SQLSTATE 22003 and 54001 before the fix in ParsePayload)
        ("body: a number beyond numeric's range",
         _resigned(lambda b: b.replace(b'"status_id": 9', b'"status_id": 9e1000000', 1)), "WH008"),
        ("body: arrays nested 100,000 deep",
         _resigned(lambda b: b[:-1] + b', "deep": ' + b"[" * 100000 + b"]" * 100000 + b"}"), "WH008"),
        ("duplicate key: id", _resigned(lambda b: b.replace(b'{"id": ', b'{"id": "other", "id": ', 1)),
         "WH009"),
        ("duplicate key: ticket.status_id",
         _resigned(lambda b: b.replace(b'"status_id": 9', b'"status_id": 2, "status_id": 9', 1)), "WH009"),
        ("duplicate key spelled with an escape (\\u0069d)",
         _resigned(lambda b: b.replace(b'{"id": ', b'{"\\u0069d": "other", "id": ', 1)), "WH009"),
        # a verified payload that names no ticket is accepted as 'ignored' (issue 10;
        # test_webhook_signing.py): no longer a refusal
        ("payload has no id", _edited_payload(lambda p: p.pop("id")), "WH011"),
        ("payload id blank", _edited_payload(lambda p: p.update(id="  ")), "WH011"),
        ("payload id of 201 characters", _edited_payload(lambda p: p.update(id="x" * 201)), "WH011"),
    ]
    return cases


def test_bad_deliveries_are_refused():
    """Each bad delivery: its SQLSTATE, a proper message, and no row anywhere changed."""
    failures, counts = [], {}
    with db("halo").cursor() as cur:
        for case in _cases():
            name, mutate, sqlstate = case[:3]
            d = mutate(_valid())
            before = _snapshot(cur)
            got = _ingest_with(cur, d, case[3] if len(case) > 3 else None)
            changed = _changed(before, _snapshot(cur))
            code = got.pgcode if isinstance(got, psycopg2.Error) else "accepted: %r" % (got,)
            counts[sqlstate] = counts.get(sqlstate, 0) + 1
            problems = [] if code == sqlstate else ["%s, expected %s" % (code, sqlstate)]
            if isinstance(got, psycopg2.Error):
                diag = got.diag
                text = " ".join(filter(None, (diag.message_primary, diag.message_detail,
                                              diag.message_hint)))
                if not (diag.message_primary or "").startswith("halo_itsm: ") or not diag.message_hint:
                    problems.append("message without the halo_itsm: prefix or without a hint: %r" % text)
                if STATE["secret"] in text:
                    problems.append("the secret is in the message")
            if changed:
                problems.append("rows changed in %s" % changed)
            if problems:
                failures.append("%s: %s" % (name, "; ".join(problems)))
    print("bad deliveries: %d cases, by SQLSTATE %s" % (sum(counts.values()), sorted(counts.items())))
    assert not failures, "%d bad deliveries misbehaved:\n%s" % (len(failures), "\n".join(failures))
    assert q("SELECT status FROM halo_itsm.cases WHERE sid = 'ABUSE-1'") == [("open",)]
    assert q("SELECT count(*) FROM halo_itsm.timeline") == [(0,)]
    assert q("SELECT count(*) FROM halo_itsm.webhook_deliveries") == [(0,)]


# --- controls: harmless variants are accepted -----------------------------------------------

def _headers_mapped(fn):
    """Mutation: every header (name, value) replaced by fn(name, value)."""
    def mutate(d):
        d["headers"] = dict(fn(k, v) for k, v in d["headers"].items())
        return d
    return mutate


def _extra_headers(d):
    """Mutation: unsigned headers added (one looks like content-length but has a space)."""
    d["headers"].update({"User-Agent": "Halo", "X-Request-Id": "42", "Date": "yesterday",
                         "X-Signature-256": "not checked", "Content-Length ": "not the same header",
                         "Accept": ["a", "b"], "X-Number": 5, "X-Empty": ""})
    return d


def _controls():
    """(name, mutation of a valid note delivery, settings): all accepted."""
    tol = STATE["tolerance"]
    mixed = lambda k: "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(k))  # noqa: E731
    return [
        ("unchanged", lambda d: d, None),
        ("x-halo-date tolerance - 2 s behind (IMF)", _dated(-(tol - 2)), None),
        ("x-halo-date tolerance - 2 s ahead (IMF)", _dated(tol - 2, ceil=True), None),
        ("x-halo-date tolerance - 2 s behind (RFC 3339)", _dated(-(tol - 2), _rfc3339), None),
        ("x-halo-date tolerance - 2 s ahead (RFC 3339)", _dated(tol - 2, _rfc3339, ceil=True), None),
        ("x-halo-date RFC 3339 with a fraction and +02:00", _resigned(date=lambda: time.strftime(
            "%Y-%m-%dT%H:%M:%S.250+02:00", time.gmtime(time.time() + 7200))), None),
        ("header names in lower case", _headers_mapped(lambda k, v: (k.lower(), v)), None),
        ("header names in upper case", _headers_mapped(lambda k, v: (k.upper(), v)), None),
        ("header names in mixed case", _headers_mapped(lambda k, v: (mixed(k), v)), None),
        ("values padded with spaces and tabs", _headers_mapped(lambda k, v: (k, " \t %s\t  " % v)), None),
        ("every header a one-element array", _headers_mapped(lambda k, v: (k, [v])), None),
        ("extra unsigned headers", _extra_headers, None),
        ("Host not signed (webhook_base_url): one bit flipped", _hdr("host", lambda v, d: _flip(v, 0, 0)),
         None),
        ("Host not signed (webhook_base_url): missing", _set("host", DROP), None),
        ("Host not signed (webhook_base_url): a control character", _set("host", "a\x01b"), None),
        ("body of exactly webhook_max_body = 1024", _sized(1024, closing=False),
         {"halo_itsm.webhook_max_body": "1024"}),
        # an unreadable Halo time is no reason to refuse (SQLSTATE 22009 before the fix in _halo_time)
        ("action datetime with zone +25:00 (the note gets the fallback time)", _edited_payload(
            lambda p: p["action"].update(datetime="2026-11-28T10:00:00+25:00"), closing=False), None),
        ("payload timestamp with zone -99:00", _edited_payload(
            lambda p: p.update(timestamp="2026-11-28T10:00:00-99:00"), closing=False), None),
    ]


def test_harmless_variants_are_accepted():
    """Each control adds its note: one delivery row and one timeline row, nothing else."""
    failures = []
    with db("halo").cursor() as cur:
        for name, mutate, settings in _controls():
            d = mutate(_valid(closing=False))
            delivery_id = json.loads(d["body"])["id"]
            before = _snapshot(cur)
            got = _ingest_with(cur, d, settings)
            changed = _changed(before, _snapshot(cur))
            if not isinstance(got, dict) or \
                    (got.get("outcome"), got.get("notes_added"), got.get("delivery_id")) != \
                    ("notes_added", 1, delivery_id):
                failures.append("%s: %s" % (name, got))
            elif changed != ["timeline", "timeline_id_seq", "webhook_deliveries"]:
                failures.append("%s: changed %s" % (name, changed))
    assert not failures, "harmless variants refused:\n" + "\n".join(failures)
    assert q("SELECT status FROM halo_itsm.cases WHERE sid = 'ABUSE-1'") == [("open",)]


def test_replay_is_a_duplicate():
    """A delivery closes the case; its replays are duplicates and change nothing."""
    with db("halo").cursor() as cur:
        d = _valid(closing=True)
        p = json.loads(d["body"])
        got = _ingest(cur, d)
        assert (got["outcome"], got["closed"], got["delivery_id"]) == ("case_closed", True, p["id"]), got
        dup = {"outcome": "duplicate", "delivery_id": p["id"], "halo_ticket_id": STATE["ticket"]}
        before = _snapshot(cur)
        assert _ingest(cur, d) == dup                                       # byte for byte
        assert _ingest(cur, _signed(d["body"], date=_imf(time.time() + 1))) == dup     # re-dated, re-signed
        p2 = dict(p, action=dict(p["action"], id=p["action"]["id"] + 1, note="Replayed with a twist"))
        assert _ingest(cur, _signed(_body(p2))) == dup                      # same id, another body
        assert _changed(before, _snapshot(cur)) == []
    assert q("SELECT delivery_id, outcome FROM halo_itsm.webhook_deliveries WHERE delivery_id = %s",
             p["id"]) == [(p["id"], "case_closed")]


def test_escapes_jsonb_cannot_store_become_fffd_and_the_closure_applies():
    """A signed delivery whose note holds \\u0000 or a lone surrogate escape is accepted,
    as Halo's answers to the worker are: each such escape becomes U+FFFD, and the closure
    in the same delivery applies (refusing it would lose the closure at every retry)."""
    with db("halo").cursor() as cur:
        for esc in (b"\\u0000", b"\\ud800", b"\\udfff"):
            q("UPDATE halo_itsm.cases SET status = 'open', closed_at = NULL WHERE sid = 'ABUSE-1'")
            d = _resigned(lambda b: b.replace(b"Closing note", esc + b"losing note"))(_valid(closing=True))
            p = json.loads(d["body"])
            got = _ingest(cur, d)
            assert (got["outcome"], got["closed"], got["delivery_id"]) == ("case_closed", True, p["id"]), \
                (esc, got)
            assert q1("SELECT status FROM halo_itsm.cases WHERE sid = 'ABUSE-1'") == "closed"
            assert q1("SELECT body FROM halo_itsm.timeline WHERE halo_action_id = %s",
                      p["action"]["id"]) == "\ufffd" + p["action"]["note"][1:], esc


def _check_tables(cur, initial, model, bases):
    """Every table as it was but webhook_deliveries and timeline, which hold exactly the
    initial rows plus one per accepted delivery."""
    changed = [k for k in _changed(initial["snapshot"], _snapshot(cur))
               if k not in ("webhook_deliveries", "timeline", "timeline_id_seq")]
    assert not changed, "rows changed in %s" % changed
    for what, rows, expected in (
            ("webhook_deliveries",
             _rows(cur, "delivery_id, outcome, halo_ticket_id FROM halo_itsm.webhook_deliveries"),
             {(i, "notes_added", STATE["random_ticket"]) for i in model.processed}),
            ("timeline", _rows(cur, "kind, halo_action_id, body FROM halo_itsm.timeline"),
             {("note", bases[i].action_id, bases[i].note) for i in model.processed})):
        expected |= initial[what]
        assert rows == expected, "%s: unexpected rows %r, missing rows %r" % (
            what, sorted(rows - expected)[:5], sorted(expected - rows)[:5])


def _rows(cur, select):
    """The set of rows of SELECT select."""
    cur.execute("SELECT " + select)
    return set(cur.fetchall())


# (webhook_base_url, webhook_max_body) of the batches of 500, in turn
MODES = (("configured", None), ("", None), ("configured", 1024), ("", 1024))


@timeout(600)
def test_random_mutations():
    """Random mutations are accepted exactly when the model says so, else refused with
    the predicted SQLSTATE; rejected ones change no row."""
    n = int(os.environ.get("HI_ABUSE_MUTATIONS", "10000"))
    seed = int(os.environ.get("HI_ABUSE_SEED") or random.SystemRandom().randrange(1, 2 ** 31))
    print("random mutations: seed %d (HI_ABUSE_SEED=%d repeats the run), %d mutations" % (seed, seed, n),
          flush=True)
    rng, model = random.Random(seed), Model()
    counts, ops, bases, recent = {}, {}, {}, []
    unchanged_count = 0
    start = time.monotonic()
    with db("halo").cursor() as cur:
        initial = {"snapshot": _snapshot(cur),
                   "webhook_deliveries": _rows(cur, "delivery_id, outcome, halo_ticket_id"
                                                    " FROM halo_itsm.webhook_deliveries"),
                   "timeline": _rows(cur, "kind, halo_action_id, body FROM halo_itsm.timeline")}
        for i in range(n):
            if i % 500 == 0:
                if i:
                    _check_tables(cur, initial, model, bases)
                base_url, max_body = MODES[(i // 500) % len(MODES)]
                host_signed = STATE["signed_host"] if base_url == "configured" else None
                limit = max_body or STATE["max_body"]
                cur.execute("SELECT set_config('halo_itsm.webhook_base_url', %s, false),"
                            " set_config('halo_itsm.webhook_max_body', %s, false)",
                            (STATE["base_url"] if base_url == "configured" else "", str(limit)))
            if recent and rng.random() < 0.03:
                m = Mutation(rng.choice(recent[-200:]))        # a replay of an earlier delivery
                m.ops.append("replay")
                if rng.random() < 0.5:
                    _mutate(m, rng, model, recent[-50:])
            else:
                base = Base(rng, seed, i)
                bases[base.id] = base
                recent.append(base)
                m = Mutation(base)
                _mutate(m, rng, model, recent[-50:])
            for label in m.ops:
                ops[label] = ops.get(label, 0) + 1
            allowed, unchanged = model.predict(m, host_signed, limit)
            unchanged_count += unchanged
            try:
                cur.execute(INGEST, (m.key, m.headers_json(), m.body))
                res = cur.fetchone()[0]
                got = "accepted" if res.get("outcome") == "notes_added" else res.get("outcome")
                assert res.get("delivery_id") == m.base.id, res
            except psycopg2.Error as e:
                got = e.pgcode
            assert got in allowed, "mutation %d (HI_ABUSE_SEED=%d): got %s, expected %s\n  ops: %s\n" \
                "  key: %r\n  headers: %s\n  body: %r" % (
                    i, seed, got, sorted(allowed), m.ops, m.key, m.headers_json(), m.body)
            if got == "accepted":
                model.processed.add(m.base.id)
            counts[got] = counts.get(got, 0) + 1
        _check_tables(cur, initial, model, bases)
        cur.execute("RESET halo_itsm.webhook_base_url; RESET halo_itsm.webhook_max_body")
    listed = lambda d: ", ".join("%s %d" % kv for kv in sorted(d.items()))  # noqa: E731
    print("random mutations: %d in %.1f s; signed bytes unchanged: %d; answers: %s"
          % (n, time.monotonic() - start, unchanged_count, listed(counts)), flush=True)
    print("random mutations: operators: %s" % listed(ops), flush=True)
    assert counts.get("accepted", 0) + counts.get("duplicate", 0) == unchanged_count
    if n >= 2000:       # the mix reached every check
        for code in ("accepted", "duplicate") + tuple("WH00%d" % k for k in range(1, 8)):
            assert counts.get(code), "no %s among %d mutations: %s" % (code, n, counts)
