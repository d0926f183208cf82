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
  of the scheme written from shared/webhook-signature.md and the README's check order
  (not from src/inbound/webhook.c) predicts each answer: accepted exactly when the signed bytes
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
import hashlib
import hmac
import json
import math
import os
import random
import re
import time
import urllib.parse

import psycopg2

from halo_test import db, ensure_extension, fresh_integration, q, q1, timeout, wait_drained
from webhook_helpers import MOCK, add_case, wait_ticket, webhook_settings

INGEST = "SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)"
SIGNED = ("content-length", "content-type", "host", "x-halo-date")
FIVE = SIGNED + ("x-signature",)
# the header names of a valid delivery, by their lower-case names
NAME = {"content-length": "Content-Length", "content-type": "Content-Type", "host": "Host",
        "x-halo-date": "X-Halo-Date", "x-signature": "X-Signature"}
WRONG_SECRET = "some-other-secret"      # in halo_test.KNOWN_SECRETS (log hygiene test)
NO_HOST_URL = {"halo_itsm.webhook_base_url": ""}    # settings: the received Host is signed
JSON_NULL = object()    # headers given as the JSON value null (None: SQL NULL)
DROP = object()         # _hdr(): remove the header
STATE = {}


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

def _canonical(lower, body, host=None):
    """The signed bytes: trimmed values of the four signed headers, then the body."""
    vals = dict(lower, **({"host": host} if host is not None else {}))
    return "".join("%s:%s\n" % (n, str(vals[n]).strip(" \t")) for n in SIGNED).encode("utf-8") + body


def _py_sign(secret, canon):
    """base64(HMAC-SHA256(secret, canon)) with Python's hmac."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), canon, hashlib.sha256).digest()).decode()


def _mock_sign(headers, body, secret=None):
    """x-signature computed by the mock's code (headers as given, body raw)."""
    return MOCK.call("POST", "/_mock/sign", {
        "secret": STATE["secret"] if secret is None else secret, "headers": headers,
        "body_base64": base64.b64encode(body).decode()})["signature"]


def _imf(t):
    """IMF-fixdate of Unix time t (whole seconds)."""
    return email.utils.formatdate(t, usegmt=True)


def _rfc3339(t):
    """RFC 3339 (UTC, whole seconds) of Unix time t."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


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


# --- random mutations: the model ------------------------------------------------------------

def _ascii_lower(name):
    """name with A-Z in lower case (header names are compared in ASCII)."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name)


def _strict_b64_32(s):
    """Is s the canonical standard base64 (with padding) of exactly 32 bytes?"""
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}=", s):
        return False
    return base64.b64encode(base64.b64decode(s)).decode() == s


class Base:
    """A fresh valid delivery of the random phase: a note on ABUSE-RANDOM's ticket."""

    def __init__(self, rng, seed, i):
        """Delivery i: its own id and action id; IMF or RFC 3339 date; headers shuffled."""
        tid = STATE["random_ticket"]
        self.id, self.action_id, self.note = "rnd-%d-%06d" % (seed, i), 5000000 + i, "Random note %06d" % i
        payload = {"id": self.id, "event": "Ticket Updated by Agent", "object_id": tid,
                   "ticket": {"id": tid, "status_id": 2, "hasbeenclosed": False},
                   "action": {"id": self.action_id, "ticket_id": tid, "who": "Fuzz", "note": self.note}}
        self.body = json.dumps(payload, separators=rng.choice(((",", ":"), (", ", ": ")))).encode()
        self.date = _imf(time.time()) if rng.random() < 0.7 else _rfc3339(time.time())
        lower = {"content-length": str(len(self.body)), "content-type": "application/json",
                 "host": STATE["signed_host"], "x-halo-date": self.date}
        self.canon = _canonical(lower, self.body)
        self.sig = _py_sign(STATE["secret"], self.canon)
        self.pairs = [[NAME[n], v] for n, v in lower.items()] + [["X-Signature", self.sig]]
        rng.shuffle(self.pairs)


class Mutation:
    """A delivery being mutated: key, header pairs (distinct names) and body."""

    def __init__(self, base):
        """A copy of base, not yet mutated."""
        self.base, self.key, self.body, self.ops = base, STATE["key"], base.body, []
        self.pairs = [list(p) for p in base.pairs]

    def find(self, lname):
        """Indexes of the pairs whose name is lname in any case."""
        return [i for i, (n, _) in enumerate(self.pairs) if _ascii_lower(n) == lname]

    def headers_json(self):
        """The headers as a JSON object."""
        assert len({n for n, _ in self.pairs}) == len(self.pairs)
        return json.dumps(dict(self.pairs))


class Model:
    """What ingest_webhook() must answer, from the spec and the README alone."""

    def __init__(self):
        """Nothing processed yet."""
        self.processed = set()      # delivery ids accepted
        self.good_dates = set()     # x-halo-date values known to be readable and fresh

    def predict(self, m, host_signed, max_body):
        """(answers allowed for mutation m, signed bytes unchanged?): 'accepted',
        'duplicate' or SQLSTATEs; host_signed None when the received Host is signed."""
        if m.key != STATE["key"]:
            return {"WH001"}, False
        if len(m.body) > max_body:
            return {"WH002"}, False
        occ = {n: [] for n in FIVE}
        for name, value in m.pairs:
            if _ascii_lower(name) in occ:
                occ[_ascii_lower(name)].extend(value if isinstance(value, list) else [value])

        def valid(lname):
            """The trimmed value when the header came once, a string, non-empty, no control
            characters but tab; else None."""
            vals = occ[lname]
            if len(vals) != 1 or not isinstance(vals[0], str):
                return None
            t = vals[0].strip(" \t")
            bad = any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in t)
            return None if t == "" or bad else t

        cl, ct = valid("content-length"), valid("content-type")
        host = valid("host") if host_signed is None else host_signed
        if cl is None or ct is None or host is None or (host_signed and len(occ["host"]) > 1):
            return {"WH003"}, False
        date = valid("x-halo-date")
        if date is None:
            return {"WH003"}, False
        sig = valid("x-signature")
        if sig is None:
            return {"WH006"}, False
        if not re.fullmatch(r"[0-9]+", cl) or int(cl) != len(m.body):
            return {"WH004"}, False
        allowed = set()
        if date != m.base.date and date not in self.good_dates:
            allowed = {"WH003", "WH005"}        # PostgreSQL's parser and the clock decide
        if not _strict_b64_32(sig):
            return allowed | {"WH006"}, False
        canon = _canonical({"content-length": cl, "content-type": ct, "host": host, "x-halo-date": date},
                           m.body)
        unchanged = canon == m.base.canon and sig == m.base.sig
        mac_ok = hmac.compare_digest(base64.b64decode(sig),
                                     hmac.new(STATE["secret"].encode(), canon, hashlib.sha256).digest())
        assert unchanged == mac_ok, \
            "the model disagrees with itself: signed bytes unchanged %s, MAC ok %s" % (unchanged, mac_ok)
        if not unchanged:
            return allowed | {"WH007"}, False
        # verified, so the body is the base delivery's (valid JSON, an id, a ticket)
        return {"duplicate" if m.base.id in self.processed else "accepted"}, True


# --- random mutations: the operators (each mutates m and returns its label) -----------------

CHARS = "abcXYZ019:;,.=+/-_ \t\n\r\x01\x1f\x7f\u00e9\u00a0\u2028\u3000"
UNTRIMMED = ("\r", "\n", "\r\n", "\u00a0", "\u3000", "\x0b", "\x0c")
EXTRA_NAMES = ("User-Agent", "Accept", "X-Request-Id", "Date", "Signature", "X-Signature-256",
               "X-Halo-Date-2", "Content-Length ", " Host", "X-Forwarded-Host", "Authorization")


def _pick(m, rng):
    """Index of a pair: mostly one of the five headers, else any; None when there is none."""
    idx = [i for i, (n, _) in enumerate(m.pairs) if _ascii_lower(n) in FIVE or rng.random() < 0.1]
    return rng.choice(idx) if idx else None


def _edit_string(m, rng, fn):
    """Apply fn to a picked string value (or to a string element of an array value)."""
    i = _pick(m, rng)
    if i is None:
        return False
    v = m.pairs[i][1]
    js = [j for j, e in enumerate(v) if isinstance(e, str)] if isinstance(v, list) else []
    if isinstance(v, str):
        m.pairs[i][1] = fn(v)
    elif js:
        j = rng.choice(js)
        v[j] = fn(v[j])
    return isinstance(v, str) or bool(js)


def op_value(m, rng):
    """One character of a value: a bit flipped, or inserted, deleted, replaced; or
    whitespace that is not trimmed added."""
    kind = rng.choice(("bit flip", "bit flip", "insert", "delete", "replace", "untrimmed whitespace"))

    def fn(v):
        """The edited value."""
        k = rng.randrange(len(v) + 1)
        if kind == "insert":
            return v[:k] + rng.choice(CHARS) + v[k:]
        if kind == "untrimmed whitespace":
            return rng.choice(UNTRIMMED) + v if k % 2 else v + rng.choice(UNTRIMMED)
        if not v:
            return v
        k = min(k, len(v) - 1)
        if kind == "bit flip":
            return v[:k] + chr((ord(v[k]) ^ (1 << rng.randrange(8))) or 1) + v[k + 1:]
        return v[:k] + ("" if kind == "delete" else rng.choice(CHARS)) + v[k + 1:]
    return "value " + kind if _edit_string(m, rng, fn) else "noop"


def op_neutral(m, rng):
    """NEUTRAL (the signed bytes stay as they are): spaces and tabs around a value, a value
    as a one-element array, a header name in another ASCII case, or an unsigned header."""
    kind = rng.choice(("value padded", "value array of one", "name case", "extra header"))
    i = _pick(m, rng)
    if kind == "value padded":
        pad = lambda: "".join(rng.choice(" \t") for _ in range(rng.randrange(4)))  # noqa: E731
        return kind if _edit_string(m, rng, lambda v: pad() + v + pad()) else "noop"
    if kind == "extra header" or i is None:
        name = rng.choice(EXTRA_NAMES)
        if any(n == name for n, _ in m.pairs):
            return "noop"
        m.pairs.append([name, rng.choice(("x", "", " \r\n", "application/json", 5, None, ["a", "b"]))])
        return "extra header"
    if kind == "value array of one":
        if isinstance(m.pairs[i][1], list):
            return "noop"
        m.pairs[i][1] = [m.pairs[i][1]]
        return kind
    new = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in m.pairs[i][0])
    if any(n == new for j, (n, _) in enumerate(m.pairs) if j != i):
        return "noop"
    m.pairs[i][0] = new
    return kind


def op_value_type(m, rng):
    """A value blank, or not a string (number, null, boolean, object, arrays)."""
    i = _pick(m, rng)
    if i is None:
        return "noop"
    m.pairs[i][1] = rng.choice(("", " ", "\t", " \t ", 152, 0, None, True, {"v": "x"}, [], [[]]))
    return "value blank or not a string"


def op_header(m, rng):
    """A header removed, its name with a bit flipped, or the header twice (as an array,
    or under a name in another case)."""
    i = _pick(m, rng)
    if i is None:
        return "noop"
    name, value = m.pairs[i]
    kind = rng.choice(("removed", "name bit flip", "twice (array)", "twice (name case)"))
    if kind == "removed":
        del m.pairs[i]
    elif kind == "twice (array)":
        m.pairs[i][1] = value + value[:1] if isinstance(value, list) else [value, value]
    else:
        if kind == "name bit flip":
            k = rng.randrange(len(name))
            new = name[:k] + chr((ord(name[k]) ^ (1 << rng.randrange(7))) or 1) + name[k + 1:]
        else:
            new = name.swapcase() if rng.random() < 0.5 else _ascii_lower(name)
        if any(n == new for n, _ in m.pairs):
            return "noop"
        if kind == "name bit flip":
            m.pairs[i][0] = new
        else:
            other = rng.choice(("x", "1", "application/json"))
            m.pairs.append([new, value if rng.random() < 0.7 else other])
    return "header " + kind


def op_other_value(m, rng, model):
    """A plausible other value for one of the five headers."""
    lname = rng.choice(FIVE)
    idx = m.find(lname)
    if not idx:
        return "noop"
    now, tol, n, sig = time.time(), STATE["tolerance"], len(m.body), m.base.sig
    if lname == "content-length":
        v = rng.choice((str(n + 1), str(n - 1), "0%d" % n, "+%d" % n, "%d.0" % n, hex(n), "-0",
                        "%d %d" % (n, n), str(2 ** 64 + n), str(n * 10)))
    elif lname == "content-type":
        v = rng.choice(("application/json; charset=utf-8", "APPLICATION/JSON", "text/plain",
                        "application/json;"))
    elif lname == "host":
        v = rng.choice(("localhost", "127.0.0.1", STATE["signed_host"].upper(), STATE["signed_host"] + ".",
                        "evil.example.com", "127.0.0.1:1"))
    elif lname == "x-halo-date":
        kind = rng.randrange(5)
        if kind < 2:            # another fresh, readable date
            v = (_imf, _rfc3339)[kind](math.floor(now) + rng.choice((-1, 1)) * rng.choice((1, 2, 30, 100)))
            model.good_dates.add(v)
        elif kind == 2:         # out of the tolerance
            v = _imf(now + rng.choice((-1, 1)) * (tol + rng.choice((5, 60, 3600, 10 ** 6))))
        elif kind == 3:
            v = rng.choice(("now", "today", "epoch", "infinity", "yesterday", "0", str(int(now)),
                            m.base.date.lower()))
        else:
            v = _rfc3339(now)[:-1] + rng.choice(("", "+00:00", "-00:00", "+0000", "z", "+01:00", " UTC"))
    else:
        raw = bytearray(base64.b64decode(sig))
        raw[rng.randrange(32)] ^= 1 << rng.randrange(8)
        v = rng.choice((base64.b64encode(bytes(raw)).decode(), _py_sign(WRONG_SECRET, m.base.canon),
                        sig[:rng.randrange(44)], sig + rng.choice(("=", "A", " x")), sig.rstrip("="),
                        base64.b64encode(os.urandom(rng.choice((31, 33, 48)))).decode(), sig.swapcase(),
                        binascii.hexlify(raw).decode(),
                        base64.urlsafe_b64encode(base64.b64decode(sig)).decode()))  # may equal sig
    m.pairs[rng.choice(idx)][1] = v
    return "other " + lname


def op_body(m, rng, others):
    """The body: a bit flipped, a byte inserted, deleted or replaced, padded, or swapped
    for another delivery's; then, half the time, content-length set to its length."""
    b, k = m.body, rng.randrange(len(m.body))
    kind = rng.choice(("bit flip", "bit flip", "insert", "delete", "replace", "padded", "swapped"))
    if kind == "bit flip":
        m.body = b[:k] + bytes([b[k] ^ (1 << rng.randrange(8))]) + b[k + 1:]
    elif kind == "insert":
        m.body = b[:k] + bytes([rng.randrange(256)]) + b[k:]
    elif kind == "delete":
        m.body = b[:k] + b[k + 1:]
    elif kind == "replace":
        m.body = b[:k] + bytes([rng.randrange(256)]) + b[k + 1:]
    elif kind == "padded":
        m.body = b + b" " * rng.choice((1, 2, 1100))
    else:
        m.body = rng.choice(others).body
    if rng.random() < 0.5:
        for i in m.find("content-length"):
            m.pairs[i][1] = str(len(m.body))
        kind += ", length fixed"
    return "body " + kind


def op_key(m, rng):
    """The webhook key with one bit flipped."""
    k = rng.randrange(len(m.key))
    m.key = m.key[:k] + chr(ord(m.key[k]) ^ (1 << rng.randrange(7))) + m.key[k + 1:]
    return "key bit flip"


ALL_OPS = [op for op, weight in ((op_value, 17), (op_neutral, 10), (op_value_type, 4), (op_header, 11),
                                 (op_other_value, 8), (op_body, 20), (op_key, 1)) for _ in range(weight)]


def _mutate(m, rng, model, others):
    """Apply 1-3 operators: in 30 % of the mutations neutral ones only, else any."""
    neutral = rng.random() < 0.3
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = op_neutral if neutral else rng.choice(ALL_OPS)
        m.ops.append(op_other_value(m, rng, model) if op is op_other_value else
                     op_body(m, rng, others) if op is op_body else op(m, rng))


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
