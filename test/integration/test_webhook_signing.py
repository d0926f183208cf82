"""Webhooks as Halo really sends them (issue 10): configurable signing, diagnosis of a
rejected delivery, batches, system actions, 7-digit fractions, accepted-but-unusable.

The mock signs with each candidate layout and setting of shared/webhook-signature.md (its
own Python code, test/mock/webhooks.py). For each: the integration with the default
scheme rejects the delivery; halo_itsm.rejected_webhooks keeps it; diagnose_webhook()
names the layout and the exact configure_webhook_signature() call; after that call the
same delivery, resent byte for byte, is accepted.
"""
import email.utils
import json
import time

from halo_test import ensure_extension, fresh_integration, q, q1
from webhook_helpers import (MOCK, Receiver, add_case, answer, point_mock_at_receiver, post,
                             signed_headers, timeline, wait_ticket, webhook_settings)
from halo_test import RECEIVER_PORT

STATE = {}
DEFAULT_HEADERS = ["content-length", "content-type", "host", "x-halo-date"]

# (mock signing settings, expected diagnosis: layout, signature header, signed headers,
#  digest, prefix, timestamp header)
SCHEMES = [
    ({"layout": "blank_line"}, ("blank_line", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "space"}, ("space", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "crlf"}, ("crlf", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "values"}, ("values", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "body", "signed_headers": [], "timestamp_header": "none"},
     ("body", "x-signature", [], "base64", "", "none")),
    ({"layout": "cavage"}, ("cavage", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "cavage_digest"}, ("cavage_digest", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"layout": "rfc9421"}, ("rfc9421", "x-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"digest": "hex"}, ("default", "x-signature", DEFAULT_HEADERS, "hex", "", "x-halo-date")),
    ({"prefix": "sha256="}, ("default", "x-signature", DEFAULT_HEADERS, "base64", "sha256=", "x-halo-date")),
    ({"digest": "hex", "prefix": "sha256=", "layout": "cavage"},
     ("cavage", "x-signature", DEFAULT_HEADERS, "hex", "sha256=", "x-halo-date")),
    ({"signature_header": "x-halo-signature"},
     ("default", "x-halo-signature", DEFAULT_HEADERS, "base64", "", "x-halo-date")),
    ({"signed_headers": ["host", "x-halo-date", "content-type", "content-length"]},
     ("default", "x-signature", ["host", "x-halo-date", "content-type", "content-length"], "base64", "",
      "x-halo-date")),
    ({"signed_headers": ["content-type", "host"], "timestamp_header": "none"},
     ("default", "x-signature", ["content-type", "host"], "base64", "", "none")),
    ({"signed_headers": ["content-length", "content-type", "host", "x-halo-timestamp"],
      "timestamp_header": "x-halo-timestamp"},
     ("default", "x-signature", ["content-length", "content-type", "host", "x-halo-timestamp"], "base64", "",
      "x-halo-timestamp")),
]


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    STATE["receiver"] = Receiver("halo")
    point_mock_at_receiver(STATE["integration"])


def teardown_module():
    MOCK.webhook(enabled=False, signing=None, batch=1)
    STATE.pop("receiver").stop()


def _reset(**overrides):
    overrides.setdefault("signing", None)
    overrides.setdefault("batch", 1)
    return point_mock_at_receiver(STATE["integration"], **overrides)


def _default_scheme():
    q1("SELECT halo_itsm.configure_webhook_signature(%s, signature_header => 'x-signature',"
       " signed_headers => '{content-length,content-type,host,x-halo-date}', digest => 'base64',"
       " prefix => '', timestamp_header => 'x-halo-date', layout => 'default')", STATE["integration"])


def _call(iid, sig, names, digest, prefix, ts, layout):
    return ("SELECT halo_itsm.configure_webhook_signature(%d, signature_header => '%s', signed_headers => "
            "ARRAY[%s]::text[], digest => '%s', prefix => '%s', timestamp_header => '%s', layout => '%s')"
            % (iid, sig, ", ".join("'%s'" % n for n in names), digest, prefix, ts, layout))


def _last_rejected():
    """(id, integration_id, sqlstate, headers, body as text or None) of the newest kept
    rejection (other test modules may have kept bodies that are not UTF-8)."""
    row = q("SELECT id, integration_id, sqlstate, headers, body"
            " FROM halo_itsm.rejected_webhooks ORDER BY id DESC LIMIT 1")[0]
    return row[:4] + (None if row[4] is None else bytes(row[4]).decode("utf-8"),)


def test_each_layout_is_rejected_diagnosed_configured_and_accepted():
    iid = STATE["integration"]
    add_case("WH-SIGN")
    tid = wait_ticket("WH-SIGN")
    for n, (signing, (layout, sig, names, digest, prefix, ts)) in enumerate(SCHEMES):
        _default_scheme()
        _reset(signing=signing)
        r = MOCK.add_note(tid, "Signed with %s (%d)." % (json.dumps(signing, sort_keys=True), n), "Sam")
        delivery = r["webhook"]
        assert delivery["status"] in (400, 401), (signing, delivery)
        rid, r_iid, sqlstate, headers, body = _last_rejected()
        assert (r_iid, body) == (iid, delivery["body"]), signing
        assert sqlstate == answer(delivery)["sqlstate"], (signing, sqlstate, answer(delivery))
        assert {k.lower(): v for k, v in headers.items()} == \
            {k.lower(): v for k, v in delivery["headers"].items()}, signing
        d = q1("SELECT halo_itsm.diagnose_webhook(%s)", rid)
        want_call = _call(iid, sig, names, digest, prefix, ts, layout)
        assert (d["verified"], d["layout"], d["signature_header"], d["signed_headers"], d["digest"],
                d["prefix"], d["timestamp_header"], d["secret"], d["call"]) == \
            (True, layout, sig, names, digest, prefix, ts, "current", want_call), (signing, d)
        q(d["call"])
        again = MOCK.call("POST", "/_mock/webhooks/%d/resend" % delivery["id"])
        assert again["status"] == 200, (signing, again)
        assert answer(again)["notes_added"] == 1, (signing, answer(again))
    assert [row[3] for row in timeline("WH-SIGN")] == \
        ["Signed with %s (%d)." % (json.dumps(s, sort_keys=True), n) for n, (s, _) in enumerate(SCHEMES)]
    _default_scheme()


def test_diagnosis_without_a_match_says_what_to_check():
    _default_scheme()
    add_case("WH-NOMATCH")
    tid = wait_ticket("WH-NOMATCH")
    _reset(secret="not-the-secret-at-all")
    r = MOCK.add_note(tid, "forged", "X")
    assert r["webhook"]["status"] == 401
    rid = _last_rejected()[0]
    d = q1("SELECT halo_itsm.diagnose_webhook(%s)", rid)
    assert (d["verified"], d["layout"], d["call"], d["sqlstate"]) == (False, None, None, "WH007"), d
    assert d["tried"] > 100, d
    for word in ("secret", "host", "clocks", "webhook_settings(%d)" % STATE["integration"]):
        assert word in d["hint"], (word, d["hint"])


def test_diagnosis_of_a_stale_delivery_names_the_clock():
    _default_scheme()
    add_case("WH-STALE")
    tid = wait_ticket("WH-STALE")
    _reset(date_offset_s=-900)
    r = MOCK.add_note(tid, "late", "X")
    assert (r["webhook"]["status"], answer(r["webhook"])["sqlstate"]) == (401, "WH005")
    d = q1("SELECT halo_itsm.diagnose_webhook(%s)", _last_rejected()[0])
    assert (d["verified"], d["layout"]) == (True, "default"), d
    assert 899 <= d["date_offset_seconds"] <= 905, d
    assert "clocks (NTP)" in d["hint"] and "behind" in d["hint"], d


def test_rejected_webhooks_keeps_only_real_keys_and_is_owner_only():
    _default_scheme()
    before = q1("SELECT count(*) FROM halo_itsm.rejected_webhooks")
    body = b'{"id": "no-key"}'
    status, got = post("/halo/nosuchkey", signed_headers("x", body), body)
    assert (status, got["sqlstate"]) == (404, "WH001"), got
    assert q1("SELECT count(*) FROM halo_itsm.rejected_webhooks") == before
    assert q1("SELECT has_table_privilege('public', 'halo_itsm.rejected_webhooks', 'SELECT')") is False
    assert q1("SELECT has_function_privilege('public', 'halo_itsm.diagnose_webhook(bigint)', 'EXECUTE')") is False
    url, secret = webhook_settings(STATE["integration"])
    path = url[len("http://127.0.0.1:%d" % RECEIVER_PORT):]
    for i in range(40):
        b = json.dumps({"id": "flood-%d" % i}).encode()
        assert post(path, signed_headers("wrong", b), b)[0] == 401
    # bounded: the newest 32 are kept, newest first
    assert [bytes(r[0]).decode() for r in q("SELECT body FROM halo_itsm.rejected_webhooks")] == \
        ['{"id": "flood-%d"}' % i for i in range(39, 7, -1)]
    # a body over the limit: kept without it (WH002)
    big = b'{"id": "big", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert post(path, signed_headers(secret, big), big)[0] == 413
    row = _last_rejected()
    assert (row[2], row[4]) == ("WH002", None), row[:3]
    d = q1("SELECT halo_itsm.diagnose_webhook(%s)", row[0])
    assert d["verified"] is False and "not kept" in d["hint"], d


def test_batched_delivery_applies_each_event_once_all_or_nothing():
    _default_scheme()
    add_case("WH-BATCH")
    tid = wait_ticket("WH-BATCH")
    _reset(batch=3)
    assert MOCK.add_note(tid, "first", "Bo")["webhook"] is None
    assert MOCK.add_note(tid, "second", "Bo")["webhook"] is None
    r = MOCK.add_note(tid, "third", "Bo")
    delivery = r["webhook"]
    assert delivery["status"] == 200, delivery
    got = answer(delivery)
    assert got["outcome"] == "batch" and [e["notes_added"] for e in got["events"]] == [1, 1, 1], got
    assert [e["delivery_id"] for e in got["events"]] == delivery["event_id"]
    assert [x[3] for x in timeline("WH-BATCH")] == ["first", "second", "third"]
    # replayed: each event is a duplicate on its own
    again = answer(MOCK.call("POST", "/_mock/webhooks/%d/resend" % delivery["id"]))
    assert [e["outcome"] for e in again["events"]] == ["duplicate"] * 3, again
    # a batch whose last event is unusable (no id) is refused as a whole: nothing applied
    url, secret = webhook_settings(STATE["integration"])
    path = url[len("http://127.0.0.1:%d" % RECEIVER_PORT):]
    events = [{"id": "b-ok", "object_id": tid, "ticket": {"id": tid, "status_id": 9},
               "action": {"id": 880001, "ticket_id": tid, "who": "Bo", "note": "not applied"}},
              {"object_id": tid}]
    raw = json.dumps(events).encode()
    status, got = post(path, signed_headers(secret, raw), raw)
    assert (status, got["sqlstate"]) == (400, "WH011"), got
    assert q1("SELECT count(*) FROM halo_itsm.webhook_deliveries WHERE delivery_id = 'b-ok'") == 0
    assert [x[3] for x in timeline("WH-BATCH")] == ["first", "second", "third"]
    assert q1("SELECT status FROM halo_itsm.cases WHERE sid = 'WH-BATCH'") == "open"


def test_system_actions_by_action_systemid_and_seven_digit_times():
    _default_scheme()
    add_case("WH-SYS")
    tid = wait_ticket("WH-SYS")
    url, secret = webhook_settings(STATE["integration"])
    path = url[len("http://127.0.0.1:%d" % RECEIVER_PORT):]
    payload = {"id": "sys-1", "object_id": tid, "timestamp": "2026-11-28T15:56:01.1234567Z",
               "ticket": {"id": tid, "status_id": 2},
               "actions": [{"id": 770001, "ticket_id": tid, "who": "System", "note": "Status changed",
                            "action_systemid": 21, "who_type": 0, "datetime": "2026-11-28T15:56:00.1234567Z"},
                           {"id": 770002, "ticket_id": tid, "who": "Ann", "note": "Looked at it",
                            "action_systemid": 0, "who_type": 1, "datetime": "2026-11-28T15:56:01.9999994Z"}]}
    raw = json.dumps(payload).encode()
    status, got = post(path, signed_headers(secret, raw), raw)
    assert (status, got["notes_added"]) == (200, 1), got
    assert q("SELECT author, body, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
             " FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = 'WH-SYS'") == \
        [("Ann", "Looked at it", "2026-11-28 15:56:01.999999")]
    # the mock's own actions carry action_systemid and who_type, never is_system
    actions = MOCK.actions()
    assert actions and all("is_system" not in a and "action_systemid" in a and "who_type" in a
                           for a in actions), actions[:2]
    assert any(a["action_systemid"] != 0 for a in actions)


def test_verified_but_unusable_is_accepted_and_recorded():
    _default_scheme()
    url, secret = webhook_settings(STATE["integration"])
    path = url[len("http://127.0.0.1:%d" % RECEIVER_PORT):]
    raw = b'{"id": "client-1", "event": "Client Updated", "object_id": 0}'
    status, got = post(path, signed_headers(secret, raw), raw)
    assert (status, got) == (200, {"outcome": "ignored", "delivery_id": "client-1", "halo_ticket_id": None,
                                   "reason": "the event names no ticket (neither ticket.id nor object_id)"}), got
    raw2 = b'{"id": "unknown-ticket-1", "object_id": 987654, "ticket": {"id": 987654, "status_id": 9}}'
    status, got = post(path, signed_headers(secret, raw2), raw2)
    assert (status, got["outcome"]) == (200, "ignored"), got
    assert q("SELECT delivery_id, halo_ticket_id, outcome FROM halo_itsm.webhook_deliveries"
             " WHERE delivery_id IN ('client-1', 'unknown-ticket-1') ORDER BY 1") == \
        [("client-1", None, "ignored"), ("unknown-ticket-1", 987654, "ignored")]
    status, got = post(path, signed_headers(secret, raw), raw)
    assert (status, got["outcome"]) == (200, "duplicate"), got
