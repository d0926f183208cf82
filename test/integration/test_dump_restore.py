"""Data survives operations (issue 5): pg_dump of database halo_manual and pg_restore into a
new cluster keep integrations and their secrets, cases, detections, tickets, the timeline,
webhook deliveries, pending, dead and maybe-sent outbox items and the identity sequences;
restoring queues nothing twice; and delivery continues in the new cluster with
CALL halo_itsm.deliver() (no shared_preload_libraries there) without a duplicate ticket.

The second cluster listens on a Unix socket only, in its own directory under the run
directory (same port number, no TCP port taken), and is always stopped at the end.
"""
import os
import shutil
import subprocess

import psycopg2

from halo_test import (PGBIN, PGHOST, PGPORT, RUN_DIR, Mock, connect_integrations,
                       ensure_extension, q, q1, timeout)

DB = "halo_manual"
MOCK = Mock()
TABLES = {"integrations": "id", "integration_secrets": "integration_id", "attachments": "id", "cases": "id",
          "detections": "id", "tickets": "id", "outbox": "id", "timeline": "id",
          "webhook_deliveries": "integration_id, delivery_id"}
SEQUENCES = ["integrations_id_seq", "attachments_id_seq", "cases_id_seq", "detections_id_seq", "tickets_id_seq",
             "outbox_id_seq", "timeline_id_seq"]
NEW = os.path.join(RUN_DIR, "restore")
NEW_DATA = os.path.join(NEW, "pgdata")
NEW_SOCK = os.path.join(NEW, "sock")


def setup_module():
    ensure_extension(DB)


def run(cmd, as_postgres=False, **kw):
    """Run a command (as the postgres OS user when asked and we are root); its output."""
    if as_postgres and os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    res = subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, **kw)
    assert res.returncode == 0, "%s failed (%d):\n%s" % (" ".join(cmd), res.returncode, res.stdout)
    return res.stdout


def new_cluster():
    """initdb and start the second cluster (Unix socket only); no preloaded libraries."""
    stop_new_cluster()
    shutil.rmtree(NEW, ignore_errors=True)
    os.makedirs(NEW_SOCK)
    if os.geteuid() == 0:
        shutil.chown(NEW, "postgres", "postgres")
        shutil.chown(NEW_SOCK, "postgres", "postgres")
    run([os.path.join(PGBIN, "initdb"), "-D", NEW_DATA, "--auth=trust", "-U", "postgres",
         "-E", "UTF8", "--locale=C.UTF-8"], as_postgres=True)
    with open(os.path.join(NEW_DATA, "postgresql.conf"), "a") as f:
        f.write("\n# test_dump_restore: the restored cluster\n"
                "port = %d\nlisten_addresses = ''\nunix_socket_directories = '%s'\n"
                "halo_itsm.allow_http = on\nhalo_itsm.allow_private_addresses = on\n"
                "halo_itsm.request_timeout = 3s\nlog_min_messages = debug1\n"
                % (PGPORT, NEW_SOCK))
    run([os.path.join(PGBIN, "pg_ctl"), "-D", NEW_DATA, "-l", os.path.join(NEW, "postgres.log"),
         "-w", "-t", "60", "start"], as_postgres=True)


def stop_new_cluster():
    if os.path.exists(os.path.join(NEW_DATA, "postmaster.pid")):
        subprocess.run((["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []) +
                       [os.path.join(PGBIN, "pg_ctl"), "-D", NEW_DATA, "-m", "fast", "-w",
                        "-t", "60", "stop"], cwd="/", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def connect(host, dbname):
    conn = psycopg2.connect(host=host, port=PGPORT, user="postgres", dbname=dbname,
                            application_name="halo_test")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
    return conn


def snapshot(conn):
    """Every row of every halo_itsm table (as JSON text, in key order) and every
    sequence's state."""
    out = {}
    with conn.cursor() as cur:
        for table, key in TABLES.items():
            # the built-in attachments are made by CREATE EXTENSION (not dumped)
            where = " WHERE NOT t.builtin" if table == "attachments" else ""
            cur.execute("SELECT row_to_json(t)::text FROM halo_itsm.%s t%s ORDER BY %s" % (table, where, key))
            out[table] = [r[0] for r in cur.fetchall()]
        for seq in SEQUENCES:
            cur.execute("SELECT last_value, is_called FROM halo_itsm.%s" % seq)
            out[seq] = cur.fetchone()
    return out


def fill_source():
    """Two integrations; delivered cases, a pending one, a dead one, one whose answer was
    lost (pending, maybe_sent), detections, timeline entries, a webhook delivery."""
    ids = connect_integrations(2, dbname=DB, prefix="dump")
    for k, sid in enumerate(("DMP-DONE-1", "DMP-DONE-2", "DMP-DONE-3")):
        q("INSERT INTO halo_itsm.cases (sid, title, description, severity, integration_id)"
          " VALUES (%s, %s, %s, 'high', %s)", sid, "Delivered \"case\" \u00fc " + sid,
          "line\nbreak\t\\", ids[k % 2], db=DB)
    q("CALL halo_itsm.deliver()", db=DB)
    # a dead item (Halo refused it), and one whose answer was lost after Halo created it
    MOCK.faults([{"method": "POST", "path": "/api/Tickets", "count": 1,
                  "action": {"type": "status", "status": 400, "body": {"Message": "no"}}},
                 {"method": "POST", "path": "/api/Tickets", "count": 1,
                  "action": {"type": "drop_after_create"}}])
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('DMP-DEAD', 'Refused', 'low', %s)", ids[0], db=DB)
    q("CALL halo_itsm.deliver()", db=DB)
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('DMP-LOST', 'Answer lost', 'medium', %s)", ids[0], db=DB)
    q("CALL halo_itsm.deliver()", db=DB)
    # a table of the platform's, attached (docs/attach.md): its rows pending
    q("DROP SCHEMA IF EXISTS plat CASCADE", db=DB)
    q("CREATE SCHEMA plat", db=DB)
    q("CREATE TABLE plat.incidents (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), ref text NOT NULL"
      " UNIQUE, name text NOT NULL, sev text, state text NOT NULL DEFAULT 'new', closed_at timestamptz)",
      db=DB)
    q("""SELECT halo_itsm.attach('plat.incidents', 'case', 'ref', 'name', 'sev',
             severity_map => '{"Sev1": "critical"}', status_column => 'state',
             closed_values => '{resolved}', closed_value => 'resolved', closed_at_column => 'closed_at',
             integration => %s)""", ids[0], db=DB)
    q("INSERT INTO plat.incidents (ref, name, sev) VALUES ('PLAT-1', 'Attached one', 'Sev1'),"
      " ('PLAT-2', 'Attached two', 'Sev9')", db=DB)
    # pending, never tried
    q("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
      " VALUES ('DMP-PEND-1', 'Pending one', 'critical', %s), ('DMP-PEND-2', 'Pending two',"
      " 'info', %s)", ids[0], ids[1], db=DB)
    q("INSERT INTO halo_itsm.detections (sid, title, severity, integration_id, case_id)"
      " SELECT 'DET-' || c.sid, 'Detection of ' || c.sid, 'high', c.integration_id, c.id"
      "   FROM halo_itsm.cases c", db=DB)
    q("INSERT INTO halo_itsm.detections (sid, title, severity, status, closed_at)"
      " VALUES ('DET-ALONE', 'Standalone, closed', 'low', 'closed', now())", db=DB)
    q("INSERT INTO halo_itsm.timeline (case_id, occurred_at, source, kind, author, body,"
      "                                integration_id, halo_ticket_id, halo_action_id)"
      " SELECT c.id, now() - interval '1 hour', 'halo', 'note', 'Agent \u00c5sa',"
      "        'Note with \"quotes\" and \\ and \u65e5\u672c for ' || c.sid, t.integration_id,"
      "        t.halo_ticket_id, 7000 + t.id"
      "   FROM halo_itsm.cases c JOIN halo_itsm.tickets t ON t.case_id = c.id", db=DB)
    q("INSERT INTO halo_itsm.timeline (case_id, occurred_at, source, kind, body)"
      " SELECT id, now(), 'local', 'comment', 'local comment' FROM halo_itsm.cases"
      "  WHERE sid = 'DMP-PEND-1'", db=DB)
    q("INSERT INTO halo_itsm.webhook_deliveries (integration_id, delivery_id, halo_ticket_id,"
      "                                          outcome)"
      " VALUES (%s, 'b7f1c6de-0000-4000-8000-000000000001', 1001, 'notes_added')", ids[0],
      db=DB)
    states = dict(q("SELECT c.sid, o.state || CASE WHEN o.maybe_sent THEN '+maybe_sent' ELSE ''"
                    " END FROM halo_itsm.outbox o JOIN halo_itsm.cases c ON c.id = o.case_id",
                    db=DB))
    assert states == {"DMP-DONE-1": "done", "DMP-DONE-2": "done", "DMP-DONE-3": "done",
                      "DMP-DEAD": "dead", "DMP-LOST": "pending+maybe_sent",
                      "DMP-PEND-1": "pending", "DMP-PEND-2": "pending",
                      "PLAT-1": "pending", "PLAT-2": "pending"}, states
    assert len(MOCK.tickets()) == 4     # three delivered, and the lost one


@timeout(180)
def test_dump_and_restore_into_new_cluster():
    fill_source()
    src = connect(PGHOST, DB)
    before = snapshot(src)
    dump = os.path.join(RUN_DIR, "halo_manual.dump")
    run([os.path.join(PGBIN, "pg_dump"), "-h", PGHOST, "-p", str(PGPORT), "-U", "postgres",
         "-Fc", "-f", dump, DB])
    try:
        new_cluster()
        run([os.path.join(PGBIN, "createdb"), "-h", NEW_SOCK, "-p", str(PGPORT), "-U",
             "postgres", "restored"])
        # --exit-on-error: any error (a COPY conflict, a missing function) fails the test
        run([os.path.join(PGBIN, "pg_restore"), "-h", NEW_SOCK, "-p", str(PGPORT), "-U",
             "postgres", "--exit-on-error", "-d", "restored", dump])
        new = connect(NEW_SOCK, "restored")
        after = snapshot(new)
        for name in before:
            assert after[name] == before[name], "%s differs after the restore:\n%r\n%r" % (
                name, before[name], after[name])
        with new.cursor() as cur:
            cur.execute("SHOW shared_preload_libraries")
            assert "halo_itsm" not in cur.fetchone()[0]

            # the attachment came back with its trigger: a new row of the platform's queues
            cur.execute("SELECT source::text, kind FROM halo_itsm.attachments WHERE NOT builtin")
            assert cur.fetchall() == [("plat.incidents", "case")]
            cur.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'plat.incidents'::regclass")
            assert cur.fetchall() == [("halo_itsm_enqueue",)]
            # delivery continues: pending items go, the lost one is found, not re-created
            cur.execute("INSERT INTO halo_itsm.cases (sid, title, severity, integration_id)"
                        " SELECT 'DMP-AFTER', 'After the restore', 'high', min(id)"
                        "   FROM halo_itsm.integrations RETURNING id")
            assert cur.fetchone()[0] == q1("SELECT max(id) + 1 FROM halo_itsm.cases", db=DB)
            cur.execute("INSERT INTO plat.incidents (ref, name, sev) VALUES ('PLAT-3', 'After', 'Sev1')")
            cur.execute("CALL halo_itsm.deliver()")
            cur.execute("SELECT c.sid, o.state, t.linked_by FROM halo_itsm.outbox o"
                        "  JOIN halo_itsm.cases c ON c.id = o.case_id"
                        "  LEFT JOIN halo_itsm.tickets t ON t.case_id = c.id ORDER BY c.sid")
            got = {sid: (state, linked) for sid, state, linked in cur.fetchall()}
        assert got == {"DMP-AFTER": ("done", "created"), "DMP-DEAD": ("dead", None),
                       "DMP-DONE-1": ("done", "created"), "DMP-DONE-2": ("done", "created"),
                       "DMP-DONE-3": ("done", "created"), "DMP-LOST": ("done", "found"),
                       "DMP-PEND-1": ("done", "created"), "DMP-PEND-2": ("done", "created"),
                       "PLAT-1": ("done", "created"), "PLAT-2": ("done", "created"),
                       "PLAT-3": ("done", "created")}, got
        # one ticket per delivered case in Halo, each linked in the restored database
        by_sid = {}
        for t in MOCK.tickets():
            by_sid.setdefault(t["third_party_id_string"], []).append(t["id"])
        assert sorted(by_sid) == sorted(s for s in got if s != "DMP-DEAD"), by_sid
        assert all(len(v) == 1 for v in by_sid.values()), by_sid
        with new.cursor() as cur:
            cur.execute("SELECT c.sid, t.halo_ticket_id FROM halo_itsm.tickets t"
                        " JOIN halo_itsm.cases c ON c.id = t.case_id")
            assert dict(cur.fetchall()) == {s: v[0] for s, v in by_sid.items()}
        new.close()
        # the source is untouched
        assert snapshot(src) == before
        src.close()
    finally:
        stop_new_cluster()
        q("SELECT halo_itsm.detach('plat.incidents') FROM halo_itsm.attachments"
          " WHERE source::text = 'plat.incidents'", db=DB)
        q("DROP SCHEMA IF EXISTS plat CASCADE", db=DB)
    shutil.rmtree(NEW, ignore_errors=True)
    os.remove(dump)
