"""What the worker does when claiming fails: an item whose ticket cannot be built (here a
title template broken by a direct UPDATE of halo_itsm.integrations, bypassing
configure()'s check) becomes dead with the reason; the claim does not fail for every
item, the worker keeps running (same pid), and the other integration's cases are
delivered in the same rounds.
"""
from halo_test import (connect_integrations, ensure_extension, q, q1, reset_system,
                       set_system, timeout, wait_until, worker_pid)
from test_delivery import add_cases

SETTINGS = {"halo_itsm.poll_interval": "100ms", "halo_itsm.max_attempts": "2",
            "halo_itsm.backoff_base": "50ms", "halo_itsm.backoff_max": "200ms"}


def setup_module():
    ensure_extension("halo")
    set_system(SETTINGS)
    wait_until(worker_pid, msg="the delivery worker runs")


def teardown_module():
    reset_system(list(SETTINGS))


def states():
    """{sid: (state, result, last_error)} of the cases' items."""
    return {r[0]: tuple(r[1:]) for r in q(
        "SELECT c.sid, o.state, o.result, o.last_error"
        "  FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id")}


@timeout(90)
def test_an_item_whose_ticket_cannot_be_built_is_dead_and_the_worker_delivers_the_rest():
    broken, good = connect_integrations(2, prefix="claimfail")
    pid = worker_pid()
    # configure() refuses this template; an UPDATE of the table does not
    q("UPDATE halo_itsm.integrations SET case_title_template = '{{bogus}}' WHERE id = %s", broken)
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id) VALUES"
      " ('CF-BAD-1', 'one', 'low', %s), ('CF-GOOD-1', 'two', 'low', %s),"
      " ('CF-GOOD-2', 'three', 'high', %s)", broken, good, good)
    wait_until(lambda: q1("SELECT count(*) = 0 FROM halo_itsm.outbox"
                          " WHERE state IN ('pending', 'in_flight')"),
               timeout=30, msg="every item done or dead (%r)" % (states(),))
    assert worker_pid() == pid, "the delivery worker restarted"
    error = ('halo_itsm: the ticket for this case could not be built: invalid title template:'
             ' unknown variable "{{bogus}}" at position 1')
    assert states() == {"CF-BAD-1": ("dead", None, error),
                        "CF-GOOD-1": ("done", "created", None),
                        "CF-GOOD-2": ("done", "created", None)}, states()
    assert q1("SELECT count(*) FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
              " ON c.id = t.case_id WHERE c.sid LIKE 'CF-GOOD-%%'") == 2
    problem = q1("SELECT problem FROM halo_itsm.status WHERE integration_id = %s", broken)
    assert problem.endswith(error), problem
    # fixed, retry() delivers it
    q("UPDATE halo_itsm.integrations SET case_title_template = '{{sid}}: {{title}}' WHERE id = %s",
      broken)
    assert q1("SELECT halo_itsm.retry(%s)", broken) == 1
    wait_until(lambda: states()["CF-BAD-1"][:2] == ("done", "created"), timeout=30,
               msg="the retried item is delivered (%r)" % (states(),))
    assert worker_pid() == pid


@timeout(60)
def test_a_long_error_is_cut():
    # recording the created ticket fails with a 5,000-byte message: last_error keeps 1,000
    (iid,) = connect_integrations(1, prefix="longerr")
    q("CREATE FUNCTION halo_itsm.test_refuse_long() RETURNS trigger LANGUAGE plpgsql AS $$"
      " BEGIN RAISE EXCEPTION '%', repeat('x', 5000) USING ERRCODE = 'check_violation'; END $$")
    q("CREATE TRIGGER test_refuse_long BEFORE INSERT ON halo_itsm.tickets"
      " FOR EACH ROW EXECUTE FUNCTION halo_itsm.test_refuse_long()")
    try:
        q("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES ('LE-1', 'long error', 'low')")
        wait_until(lambda: states().get("LE-1", ("pending",))[0] == "dead", timeout=30,
                   msg="the item is dead (%r)" % (states(),))
    finally:
        q("DROP TRIGGER test_refuse_long ON halo_itsm.tickets")
        q("DROP FUNCTION halo_itsm.test_refuse_long()")
    error = states()["LE-1"][2]
    hid = max(t["id"] for t in __import__("test_delivery").MOCK.tickets())
    assert error == ("halo_itsm: Halo ticket %d was created, but recording it failed: %s..."
                     % (hid, "x" * 1000)), error[:200]
