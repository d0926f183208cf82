"""The same webhook delivery ingested by two sessions at once has one effect: one session
applies it, the other answers "duplicate" (database halo; the deliveries are signed by
the mock's code and passed to halo_itsm.ingest_webhook() directly, as two receivers
would).
"""
import email.utils
import json
import threading

from halo_test import db, ensure_extension, fresh_integration, q, q1, wait_until
from webhook_helpers import add_case, signed_headers, wait_ticket, webhook_settings

STATE = {}
INGEST = "SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)"


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    url, STATE["secret"] = webhook_settings(STATE["integration"])
    STATE["key"] = url.rsplit("/", 1)[1]
    add_case("RACE-1")
    STATE["ticket"] = wait_ticket("RACE-1")


def _delivery(delivery_id, action_id, note):
    """(headers, body) of a full-object delivery with one note, signed now."""
    tid = STATE["ticket"]
    body = json.dumps({"id": delivery_id, "event": "Ticket Updated by Agent", "object_id": tid,
                       "ticket": {"id": tid, "status_id": 2, "hasbeenclosed": False},
                       "action": {"id": action_id, "ticket_id": tid, "who": "Race", "note": note}}).encode()
    return signed_headers(STATE["secret"], body, date=email.utils.formatdate(usegmt=True)), body


def _ingest_in_threads(deliveries, before_start=None, between=None):
    """Ingest each (headers, body) in its own session and thread; returns the results."""
    conns = [db("halo") for _ in deliveries]
    results = [None] * len(deliveries)
    errors = []
    barrier = threading.Barrier(len(deliveries))

    def run(i):
        try:
            with conns[i].cursor() as cur:
                barrier.wait()
                headers, body = deliveries[i]
                cur.execute(INGEST, (STATE["key"], json.dumps(headers), body))
                results[i] = cur.fetchone()[0]
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(deliveries))]
    for t in threads:
        t.start()
    if between:
        between()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def _rows_for_action(action_id):
    return q1("SELECT count(*) FROM halo_itsm.timeline WHERE halo_action_id = %s", action_id)


def test_same_delivery_lined_up_behind_a_lock():
    """Session A records the delivery and waits for the case lock held by a third session;
    B waits for A's delivery row. When the lock goes, A applies and B is a duplicate."""
    holder = db("halo", autocommit=False)
    with holder.cursor() as cur:
        cur.execute("SELECT 1 FROM halo_itsm.cases WHERE sid = 'RACE-1' FOR UPDATE")
    delivery = _delivery("race-locked", 880001, "Seen twice, applied once.")

    def release_when_both_wait():
        wait_until(lambda: q1("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                              " AND query LIKE %s", "%ingest_webhook%") == 2,
                   msg="both sessions waiting")
        holder.commit()

    results = _ingest_in_threads([delivery, delivery], between=release_when_both_wait)
    assert sorted(r["outcome"] for r in results) == ["duplicate", "notes_added"], results
    applied = [r for r in results if r["outcome"] == "notes_added"][0]
    assert applied["notes_added"] == 1 and applied["case_sid"] == "RACE-1", applied
    assert _rows_for_action(880001) == 1
    assert q("SELECT outcome FROM halo_itsm.webhook_deliveries WHERE delivery_id = 'race-locked'") == \
        [("notes_added",)]


def test_same_delivery_at_the_same_moment():
    """Two sessions released by a barrier, twenty times: always exactly one effect."""
    for n in range(20):
        delivery = _delivery("race-%d" % n, 881000 + n, "Race %d." % n)
        results = _ingest_in_threads([delivery, delivery])
        assert sorted(r["outcome"] for r in results) == ["duplicate", "notes_added"], (n, results)
        assert _rows_for_action(881000 + n) == 1, n
    assert q1("SELECT count(*) FROM halo_itsm.webhook_deliveries WHERE delivery_id LIKE 'race-%%'"
              " AND delivery_id <> 'race-locked'") == 20


def test_different_deliveries_with_the_same_action():
    """Two deliveries (different ids) carrying the same action: both are recorded, the note
    is added once."""
    a = _delivery("race-a", 882001, "Same action.")
    b = _delivery("race-b", 882001, "Same action.")
    results = _ingest_in_threads([a, b])
    assert sorted(r["notes_added"] for r in results) == [0, 1], results
    assert sorted(r["outcome"] for r in results) == ["no_change", "notes_added"], results
    assert _rows_for_action(882001) == 1
