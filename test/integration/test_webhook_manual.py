"""Webhooks without the background worker (database halo_manual): CALL halo_itsm.deliver()
performs the ticket syncs that webhooks and reconcile() queue.
"""
from halo_test import ensure_extension, fresh_integration, q, q1
from webhook_helpers import (MOCK, Receiver, add_case, answer, case_status, point_mock_at_receiver,
                             timeline, wait_ticket)

DB = "halo_manual"
STATE = {}


def setup_module():
    ensure_extension(DB)
    STATE["integration"] = fresh_integration(DB)
    STATE["receiver"] = Receiver(DB)
    point_mock_at_receiver(STATE["integration"], DB)


def teardown_module():
    MOCK.webhook(enabled=False)
    STATE.pop("receiver").stop()


def deliver():
    q("CALL halo_itsm.deliver()", db=DB)


def test_deliver_performs_the_sync_an_event_only_webhook_queued():
    add_case("MAN-1", dbname=DB)
    deliver()
    tid = wait_ticket("MAN-1", dbname=DB, timeout=2)
    point_mock_at_receiver(STATE["integration"], DB, mode="event_only")
    r = MOCK.add_note(tid, "Checked the firewall logs.", "Hana", hidden=True)
    got = answer(r["webhook"])
    assert (got["outcome"], got["sync_queued"], got["case_sid"]) == ("sync_queued", True, "MAN-1"), got
    assert timeline("MAN-1", DB) == []
    assert q("SELECT state FROM halo_itsm.outbox WHERE kind = 'sync'", db=DB) == [("pending",)]
    deliver()
    assert timeline("MAN-1", DB) == [("note", "halo", "Hana", "Checked the firewall logs.", True, tid,
                                      r["action"]["id"])]
    assert q("SELECT state, result FROM halo_itsm.outbox WHERE kind = 'sync'", db=DB) == [("done", "synced")]
    assert q1("SELECT last_synced_at IS NOT NULL FROM halo_itsm.tickets WHERE halo_ticket_id = %s", tid, db=DB)


def test_reconcile_then_deliver_catch_up_a_dropped_close():
    tid = wait_ticket("MAN-1", dbname=DB, timeout=2)
    point_mock_at_receiver(STATE["integration"], DB, drop_next=1)
    r = MOCK.close_ticket(tid, "Ivan")
    assert r["webhook"]["dropped"]
    assert case_status("MAN-1", DB) == ("open", False)
    assert q1("CALL halo_itsm.reconcile()", db=DB) == 1
    assert q1("CALL halo_itsm.reconcile()", db=DB) == 0     # already queued
    deliver()
    assert case_status("MAN-1", DB) == ("closed", True)
    assert timeline("MAN-1", DB)[-2:] == [
        ("note", "halo", "Ivan", "Ticket closed by Ivan", False, tid, r["action"]["id"]),
        ("closed", "halo", "Ivan", "Closed in Halo by Ivan (ticket %d, status 9)." % tid, False, tid, None)]
    assert q1("CALL halo_itsm.reconcile()", db=DB) == 0     # closed cases are not synced
