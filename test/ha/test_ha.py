"""High availability (issue 13): halo_itsm under Patroni, through switchovers and
failovers, with nothing lost or doubled. Runs against the cluster of test/ha/cluster.sh
(node1 and node2, etcd, the mock Halo); test/ha/run.py runs these in order, each leaving
a primary and a streaming replica for the next.

Sizes: HI_HA_CASES cases (default 200; HI_LONG=1: 2,000) over 5 integrations, the mock
slowed down so that the failure comes in the middle of the delivery. The figures measured
(cases, tickets, duplicates, lost, seconds from the failure to the first request of the
new primary, the replication wait's latency) are appended to FIGURES.
"""
import http.client
import json
import os
import signal
import statistics
import subprocess
import time

HA_RUN = os.environ.get("HI_HA_RUN", "/tmp/halo_itsm-run-ha")
PG_PORT = int(os.environ.get("HI_HA_PG_PORT", "54371"))
REST_PORT = int(os.environ.get("HI_HA_REST_PORT", "18131"))
LISTEN_PORT = int(os.environ.get("HI_HA_LISTEN_PORT", "18141"))
PUBLIC_PORT = int(os.environ.get("HI_HA_PUBLIC_PORT", "18140"))
os.environ["PGHOST"] = "127.0.0.1"
os.environ["PGPORT"] = str(PG_PORT)
os.environ["HI_MOCK_PORT"] = os.environ.get("HI_HA_MOCK_PORT", "18120")
os.environ["HI_RUN_DIR"] = HA_RUN
os.environ.pop("HI_PG_LOG", None)

import psycopg2  # noqa: E402

import halo_test as ht  # noqa: E402
from halo_test import (Mock, assert_one_ticket_per_case, close_connections,  # noqa: E402,F401
                       connect_integrations, insert_cases, q, q1, timeout, wait_drained,
                       wait_until)

CLUSTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster.sh")
NODES = ("node1", "node2")
LONG = os.environ.get("HI_LONG") == "1"
CASES = int(os.environ.get("HI_HA_CASES", "2000" if LONG else "200"))
INTEGRATIONS = 5
# the mock's latency: the whole delivery takes about 12 s (CI) or 20 s (long), and the
# failure comes after a third
LATENCY_MS = 50 if LONG else 300
WORKER = "halo_itsm delivery worker"
LAUNCHER = "halo_itsm launcher"
STANDBY_LINE = "halo_itsm: this server is a hot standby: it delivers nothing and applies no webhook until it is promoted"
MOCK = Mock()
FIGURES = []


# --- the cluster ----------------------------------------------------------------------

def port(node):
    return PG_PORT + NODES.index(node)


def other(node):
    return NODES[1 - NODES.index(node)]


def cluster(*args, check=True):
    """Run test/ha/cluster.sh with args; its output."""
    res = subprocess.run(["bash", CLUSTER] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=180)
    assert not check or res.returncode == 0, "cluster.sh %s: %s" % (" ".join(args), res.stdout)
    return res.stdout


def role(node):
    """Patroni's role of node (primary, replica) or None when its REST API is down."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", REST_PORT + NODES.index(node), timeout=2)
        conn.request("GET", "/patroni")
        doc = json.loads(conn.getresponse().read())
        conn.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    r = doc.get("role")
    return "primary" if r == "master" else r


def on(node, sql, *args, dbname="halo"):
    """Rows of sql on node (autocommit, a connection of its own)."""
    conn = psycopg2.connect(host="127.0.0.1", port=port(node), user="postgres", dbname=dbname,
                            connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def in_recovery(node):
    try:
        return on(node, "SELECT pg_is_in_recovery()", dbname="postgres")[0][0]
    except psycopg2.Error:
        return None


def use(node):
    """Point halo_test's q()/q1() (and its helpers) at node."""
    close_connections()
    ht.PGPORT = port(node)


def primary():
    """The node Patroni has as primary (waits for one), now used by q()."""
    node = wait_until(lambda: next((n for n in NODES if role(n) == "primary"
                                    and in_recovery(n) is False), None),
                      timeout=90, msg="a primary")
    use(node)
    return node


def wait_streaming(node, timeout=120):
    """Wait until node is a replica streaming from the primary."""
    def streams():
        try:
            return on(node, "SELECT status FROM pg_stat_wal_receiver", dbname="postgres") == [("streaming",)]
        except psycopg2.Error:
            return False
    wait_until(lambda: role(node) == "replica" and streams(), timeout=timeout,
               interval=0.2, msg="%s streaming" % node)


def halo_backends(node):
    """The halo_itsm background processes running on node, sorted."""
    return sorted(r[0] for r in on(node, "SELECT backend_type FROM pg_stat_activity"
                                         " WHERE backend_type LIKE 'halo_itsm%%'", dbname="postgres"))


def node_log(node):
    with open(os.path.join(HA_RUN, "%s-patroni.out" % node), errors="replace") as f:
        return f.read()


def caught_up(src, dst):
    """Wait until dst has replayed what src has written."""
    lsn = on(src, "SELECT pg_current_wal_lsn()::text", dbname="postgres")[0][0]
    wait_until(lambda: on(dst, "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn,
                          dbname="postgres")[0][0], timeout=30, msg="%s caught up" % dst)


def wait_worker(node, timeout=60):
    wait_until(lambda: halo_backends(node).count(WORKER) == 1, timeout=timeout,
               interval=0.1, msg="the delivery worker on %s" % node)


# --- delivery through a failure ---------------------------------------------------------

def requests_after(t):
    """Requests the mock received after time t (epoch seconds), oldest first."""
    return sorted((r for r in MOCK.requests() if r.get("received_at") and r["received_at"] > t),
                  key=lambda r: r["received_at"])


def fail_during_delivery(how, label):
    """Queue CASES cases over INTEGRATIONS integrations on the primary, the mock slow; when
    a third have tickets, fail the primary (how: 'switchover', 'kill' of its Patroni and
    postmaster, or 'crash': kill -9 of the postmaster alone); wait for the other node (for
    'crash' the same one, restarted by Patroni) to be primary and to drain the outbox. Asserts one ticket per case, all linked;
    records the figures. Returns (old primary, new primary)."""
    old = primary()
    new = other(old)
    ids = connect_integrations(INTEGRATIONS, prefix="ha")
    MOCK.config(latency_ms=LATENCY_MS)
    sids = insert_cases("%s-" % label, CASES, ids, batch=100)
    caught_up(old, new)
    wait_until(lambda: len(MOCK.tickets()) >= CASES // 3, timeout=120, interval=0.05,
               msg="a third of the tickets")
    before = len(MOCK.tickets())
    t_fail = time.time()
    if how == "switchover":
        cluster("switchover", old, new)
    elif how == "kill":
        cluster("kill", old)
    else:
        # kill -9 of the postmaster alone: Patroni, still holding the leader key,
        # starts it again on the same node (crash recovery)
        cluster("crash", old)
        new = old
        wait_until(lambda: in_recovery(old) is None, timeout=10, interval=0.02,
                   msg="%s down" % old)
    wait_until(lambda: in_recovery(new) is False, timeout=90, interval=0.05,
               msg="%s promoted" % new)
    t_promoted = time.time()
    use(new)
    wait_worker(new, timeout=30)
    waited = wait_drained(stall=120, retry_connect=True)
    checked = assert_one_ticket_per_case(sids=sids)
    tickets = MOCK.tickets()
    # from the promotion on: requests the old primary sent just before it died can still
    # be read by the mock after the failure
    after = requests_after(t_promoted)
    first = after[0]["received_at"] if after else float("nan")
    lookups = sum(1 for r in after if r["method"] == "GET" and r["path"].startswith("/api/Tickets"))
    FIGURES.append("%s: %d cases over %d integrations, %d tickets (%d before the failure), "
                   "0 duplicates, 0 lost; %s primary (read-write) %.1f s after the failure, first request "
                   "to Halo from it %.1f s after the failure (%.1f s after promotion); "
                   "%d lookups (GET /api/Tickets) by the new primary; drained in %.1f s"
                   % (label, checked, INTEGRATIONS, len(tickets), before, new,
                      t_promoted - t_fail, first - t_fail, first - t_promoted, lookups, waited))
    assert len(tickets) == CASES, (len(tickets), CASES)
    # the failure came in the middle of the delivery: the new primary sent requests
    assert before < CASES and after, (before, len(after))
    return old, new


def setup_module():
    """The extension on the primary (replicated to the replica), the delivery worker there."""
    node = primary()
    q("CREATE EXTENSION IF NOT EXISTS halo_itsm")
    wait_worker(node)
    wait_streaming(other(node))


@timeout(120)
def test_only_the_primary_delivers_and_listens_and_the_replica_says_so_once():
    p = primary()
    r = other(p)
    assert halo_backends(p) == ["halo_itsm delivery worker", "halo_itsm launcher",
                                "halo_itsm webhook listener"], halo_backends(p)
    caught_up(p, r)
    # the replica: the listener only (it answers 503), no launcher, no worker
    assert halo_backends(r) == ["halo_itsm webhook listener"], halo_backends(r)
    assert node_log(r).count(STANDBY_LINE) == 1, node_log(r)[-3000:]
    assert node_log(p).count(STANDBY_LINE) == 0
    # a case inserted on the primary gets one ticket, through the primary's worker
    iid = connect_integrations(1, prefix="solo")[0]
    insert_cases("solo-", 3, [iid])
    wait_drained()
    assert assert_one_ticket_per_case() == 3


def _post(node, path, headers, body):
    """POST body to node's webhook listener exactly with these headers: (status, headers, JSON)."""
    return ht.raw_post(LISTEN_PORT + NODES.index(node), path, headers, body)


@timeout(600)
def test_switchover_during_delivery_one_ticket_per_case_and_webhooks_survive():
    old, new = fail_during_delivery("switchover", "switchover")
    # a webhook applied on the new primary, then Halo closes the ticket of one case
    iid = q1("SELECT min(id) FROM halo_itsm.integrations")
    url, secret = q("SELECT url, secret FROM halo_itsm.webhook_settings(%s)", iid)[0]
    key = url.rstrip("/").rsplit("/", 1)[1]
    sid = q1("SELECT c.sid FROM halo_itsm.cases c JOIN halo_itsm.tickets t ON t.case_id = c.id"
             " WHERE t.integration_id = %s ORDER BY c.sid LIMIT 1", iid)
    tid = q1("SELECT t.halo_ticket_id FROM halo_itsm.tickets t JOIN halo_itsm.cases c"
             " ON c.id = t.case_id WHERE c.sid = %s", sid)
    # Halo signs a delivery for the public address (a proxy in front of the primary, where
    # nothing listens in this test: the mock's attempt fails, its log keeps what it signed)
    MOCK.webhook(url="http://127.0.0.1:%d/halo/%s" % (PUBLIC_PORT, key),
                 secret=secret, mode="full", enabled=True, drop_next=0, date_offset_s=0,
                 date_format="imf", send_host=None)
    MOCK.close_ticket(tid, "Ada Agent")
    delivery = wait_until(lambda: next(iter(MOCK.webhooks()), None), timeout=30,
                          msg="the webhook delivery")
    # the proxy passes it to the primary's listener: applied
    status, headers, doc = _post(new, "/halo/" + key, delivery["headers"], delivery["body"])
    assert (status, doc["outcome"]) == (200, "case_closed"), (status, doc)
    assert q1("SELECT status FROM halo_itsm.cases WHERE sid = %s", sid) == "closed"
    wait_streaming(old)
    caught_up(new, old)
    # the same delivery to the replica (the old primary): 503 with Retry-After, nothing applied
    status, headers, doc = _post(old, "/halo/" + key, delivery["headers"], delivery["body"])
    assert (status, headers.get("Retry-After"), doc["sqlstate"]) == (503, "30", "25006"), (status, doc)
    # switch back: the delivery applied before is a duplicate on the other node
    cluster("switchover", new, old)
    wait_until(lambda: in_recovery(old) is False, timeout=90, interval=0.05, msg="switched back")
    use(old)
    wait_worker(old)
    status, headers, doc = _post(old, "/halo/" + key, delivery["headers"], delivery["body"])
    assert (status, doc["outcome"]) == (200, "duplicate"), (status, doc)
    assert q1("SELECT count(*) FROM halo_itsm.webhook_deliveries") == 1
    wait_streaming(new)
    assert halo_backends(new) == ["halo_itsm webhook listener"], halo_backends(new)


@timeout(600)
def test_kill_9_during_delivery_then_pg_rewind_and_back_as_an_idle_replica():
    old, new = fail_during_delivery("kill", "kill-9")
    # the old primary comes back: Patroni rewinds it (pg_rewind) and it follows the new one
    mark = len(node_log(old))
    cluster("up", old)
    wait_streaming(old, timeout=180)
    log = node_log(old)[mark:]
    assert "pg_rewind" in log or "rewind" in log.lower(), log[-3000:]
    assert halo_backends(old) == ["halo_itsm webhook listener"], halo_backends(old)
    assert log.count(STANDBY_LINE) == 1, log[-3000:]
    # no second worker: new cases get one ticket each
    ids = [r[0] for r in q("SELECT id FROM halo_itsm.integrations ORDER BY id")]
    MOCK.config(latency_ms=0)
    sids = insert_cases("after-rewind-", 20, ids)
    wait_drained()
    by_sid = ht.mock_tickets_by_sid()
    assert [len(by_sid.get(s, [])) for s in sids] == [1] * 20
    assert assert_one_ticket_per_case() == CASES + 20


@timeout(600)
def test_kill_9_of_the_postmaster_alone_patroni_restarts_it_one_ticket_per_case():
    old, new = fail_during_delivery("crash", "postmaster-kill-9")
    assert old == new
    wait_streaming(other(new))
    assert halo_backends(other(new)) == ["halo_itsm webhook listener"]


def _lost_wal_round(wait_for_replication):
    """A case committed on the primary while the replica receives nothing, then the primary
    dies: returns the number of Halo tickets for that case once it is inserted again on
    the new primary."""
    p = primary()
    r = other(p)
    iid = connect_integrations(1, prefix="lost-%s" % wait_for_replication)[0]
    q("ALTER SYSTEM SET halo_itsm.wait_for_replication = %s" % wait_for_replication)
    q("SELECT pg_reload_conf()")
    insert_cases("warm-", 1, [iid])      # a token, and the setting read
    wait_drained()
    caught_up(p, r)
    sid = "lost-%s-000001" % wait_for_replication
    # the primary's walsender stopped: nothing more leaves the primary (stopping the
    # standby's walreceiver would not do: the kernel would still take the WAL into its
    # socket), and the flush position the standby reported last stays where it is
    walsnd = on(p, "SELECT pid FROM pg_stat_replication", dbname="postgres")[0][0]
    os.kill(walsnd, signal.SIGSTOP)
    try:
        insert_cases("lost-%s-" % wait_for_replication, 1, [iid])
        if wait_for_replication == "off":
            wait_until(lambda: sid in ht.mock_tickets_by_sid(), timeout=30, msg="the ticket")
        else:
            wait_until(lambda: q1("SELECT count(*) FROM halo_itsm.outbox WHERE state = 'in_flight'") == 1,
                       timeout=30, msg="the item claimed")
            time.sleep(1.0)
            assert sid not in ht.mock_tickets_by_sid(), "sent before the standby had it"
        cluster("kill", p)
    finally:
        os.kill(walsnd, signal.SIGKILL)     # a stopped process notices no postmaster death
    wait_until(lambda: in_recovery(r) is False, timeout=90, interval=0.1, msg="%s promoted" % r)
    use(r)
    wait_worker(r)
    assert q1("SELECT count(*) FROM halo_itsm.cases WHERE sid = %s", sid) == 0, "not lost"
    # the application inserts the case again on the new primary
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES (%s, 'Case 1 of lost', 'high', %s)", sid, iid)
    wait_drained()
    n = len(ht.mock_tickets_by_sid().get(sid, []))
    cluster("up", p)
    wait_streaming(p, timeout=180)
    q("ALTER SYSTEM RESET halo_itsm.wait_for_replication")
    q("SELECT pg_reload_conf()")
    return n


@timeout(600)
def test_async_window_without_the_wait_a_lost_commit_gives_a_second_ticket():
    n = _lost_wal_round("off")
    FIGURES.append("lost WAL, wait_for_replication = off: %d tickets for the one case" % n)
    assert n == 2, n


@timeout(600)
def test_async_window_with_the_wait_one_ticket():
    n = _lost_wal_round("on")
    FIGURES.append("lost WAL, wait_for_replication = on: %d ticket for the one case" % n)
    assert n == 1, n


def _latency(label, count=40):
    """Seconds from each commit (client side) to the mock's receipt of its create, median
    and 90th percentile; one case at a time."""
    iid = q1("SELECT min(id) FROM halo_itsm.integrations")
    out = []
    for k in range(count):
        sid = "lat-%s-%03d" % (label, k)
        q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
          " VALUES (%s, %s, 'high', %s)", sid, sid, iid)
        t = time.time()
        req = wait_until(lambda: next((x for x in MOCK.requests(method="POST")
                                       if x["path"].startswith("/api/Tickets")
                                       and sid in (x.get("body") or "")), None),
                         timeout=30, interval=0.002, msg="the create of %s" % sid)
        out.append(req["received_at"] - t)
        wait_drained()
        MOCK.call("DELETE", "/_mock/requests")
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.9)]


@timeout(600)
def test_replication_wait_latency():
    p = primary()
    wait_streaming(other(p))
    connect_integrations(1, prefix="lat")
    figures = {}
    for setting in ("off", "on"):
        q("ALTER SYSTEM SET halo_itsm.wait_for_replication = %s" % setting)
        q("SELECT pg_reload_conf()")
        time.sleep(0.5)
        figures[setting] = _latency(setting)
    q("ALTER SYSTEM RESET halo_itsm.wait_for_replication")
    q("SELECT pg_reload_conf()")
    FIGURES.append("commit-to-request latency, one streaming replica, median / p90: "
                   "wait_for_replication = off %.1f / %.1f ms, on %.1f / %.1f ms"
                   % (figures["off"][0] * 1000, figures["off"][1] * 1000,
                      figures["on"][0] * 1000, figures["on"][1] * 1000))
