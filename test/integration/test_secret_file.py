"""Client secrets that never appear in a statement's text (issue 9, item 7).

halo_itsm.secret_from_file(path) reads a secret from a file on the database server, for
connect() and set_credentials() (and set_credentials_from_file()). After such a call, a
pg_monitor member looking at pg_stat_activity sees the path, never the secret, and the
server log does not hold it either. Files that are not safe, and callers who may not read
server files, get a clear error (SQLSTATE, `halo_itsm:` message, hint).

Runs in database halo_manual (no worker), with two throwaway login roles.
"""
import os
import pwd
import shutil
import tempfile
import time

import psycopg2

from halo_test import (MOCK_PORT, PGHOST, PGPORT, PGUSER, RUN_DIR, db, ensure_extension,
                       expect_error, fresh_integration, log_mark, q, q1, remember_secret,
                       server_log, timeout)

DB = "halo_manual"
MONITOR = "hi_test_monitor_role"
SETUP = "hi_test_setup_role"        # may run set_credentials(), may not read server files
SECRET = remember_secret("fIlE-sEcReT-7q2Wd9Zk4Lp1")
SECRET2 = remember_secret("fIlE-sEcReT-two-Hn5Rb8Tc3")
STATE = {}


def _server_owned(path, mode):
    """chmod path to mode and, when the tests run as root, give it to the server's user."""
    os.chmod(path, mode)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


def _file(name, content, mode=0o600):
    path = os.path.join(STATE["dir"], name)
    with open(path, "wb") as f:
        f.write(content)
    _server_owned(path, mode)
    return path


def _drop_roles():
    for role in (MONITOR, SETUP):
        if q1("SELECT count(*) FROM pg_roles WHERE rolname = %s", role, db=DB):
            q("DROP OWNED BY %s" % role, db=DB)
            q("DROP ROLE %s" % role, db=DB)


def setup_module():
    ensure_extension(DB)
    _drop_roles()
    q("CREATE ROLE %s LOGIN IN ROLE pg_monitor" % MONITOR, db=DB)
    q("CREATE ROLE %s LOGIN" % SETUP, db=DB)
    q("GRANT EXECUTE ON FUNCTION halo_itsm.secret_from_file(text),"
      " halo_itsm.set_credentials_from_file(integer, text, text),"
      " halo_itsm.set_credentials(integer, text, text) TO %s" % SETUP, db=DB)
    STATE["dir"] = tempfile.mkdtemp(prefix="secrets-", dir=RUN_DIR)
    _server_owned(STATE["dir"], 0o700)


def teardown_module():
    _drop_roles()
    shutil.rmtree(STATE.pop("dir"), ignore_errors=True)


def _activity_as_monitor(pid):
    conn = psycopg2.connect(host=PGHOST, port=PGPORT, user=MONITOR, dbname=DB,
                            application_name="halo_test")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_secret_from_file_never_in_statement_text_or_log():
    iid = fresh_integration(DB)
    path = _file("client_secret", (SECRET + "\n").encode())
    mark = log_mark()
    conn = db(DB)      # stays open: pg_stat_activity keeps its last statement
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute("SELECT halo_itsm.set_credentials_from_file(%s, 'file-client', %s)", (iid, path))
    seen = _activity_as_monitor(pid)
    assert seen == "SELECT halo_itsm.set_credentials_from_file(%d, 'file-client', '%s')" % (iid, path)
    assert q("SELECT i.client_id, s.client_secret FROM halo_itsm.integrations i"
             " JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id WHERE i.id = %s",
             iid, db=DB) == [("file-client", SECRET)]

    # connect() takes it the same way
    path2 = _file("second_secret", SECRET2.encode(), mode=0o640)
    with conn.cursor() as cur:
        cur.execute("SELECT halo_itsm.connect(%s, 'c2', halo_itsm.secret_from_file(%s),"
                    " name => 'from-file')", ("http://127.0.0.1:%d" % MOCK_PORT, path2))
        iid2 = cur.fetchone()[0]
    assert SECRET2 not in _activity_as_monitor(pid)
    assert q1("SELECT client_secret FROM halo_itsm.integration_secrets WHERE integration_id = %s",
              iid2, db=DB) == SECRET2
    log = server_log(mark)
    assert SECRET not in log and SECRET2 not in log


def _bad(sqlstate, path, message, role=None):
    """secret_from_file(path) fails with sqlstate, a `halo_itsm:` message containing
    message, and a hint."""
    if role is None:
        e = expect_error(sqlstate, "SELECT halo_itsm.secret_from_file(%s)", path, db=DB)
    else:
        conn = psycopg2.connect(host=PGHOST, port=PGPORT, user=role, dbname=DB,
                                application_name="halo_test")
        try:
            def run():
                with conn.cursor() as cur:
                    cur.execute("SELECT halo_itsm.set_credentials_from_file(1, 'c', %s)", (path,))
            e = expect_error(sqlstate, run)
        finally:
            conn.close()
    assert e.diag.message_primary.startswith("halo_itsm: "), e.diag.message_primary
    assert message in e.diag.message_primary, e.diag.message_primary
    assert e.diag.message_hint, "no hint: %s" % e.diag.message_primary
    return e


@timeout(20)
def test_a_fifo_is_refused_at_once():
    # opening a FIFO for reading waits for a writer (and cannot be cancelled): the file is
    # opened without waiting and refused as not a regular file, within a second
    fresh_integration(DB)
    fifo = os.path.join(STATE["dir"], "fifo")
    os.mkfifo(fifo)
    _server_owned(fifo, 0o600)
    started = time.monotonic()
    _bad("42809", fifo, "is not a regular file")
    assert time.monotonic() - started < 1.0


def test_unsafe_files_and_callers_are_refused():
    fresh_integration(DB)
    good = _file("good", SECRET.encode())
    _bad("22023", "relative/path", "must be absolute")
    _bad("22023", None, "is required")
    _bad("58P01", os.path.join(STATE["dir"], "missing"), "could not open the secret file")
    _bad("42809", STATE["dir"], "is not a regular file")
    _bad("22023", _file("world", SECRET.encode(), mode=0o644),
         "is accessible to other users of the server (mode 0644)")
    _bad("22023", _file("group_writable", SECRET.encode(), mode=0o660),
         "is accessible to other users of the server (mode 0660)")
    _bad("22023", _file("empty", b"\n"), "holds no usable secret")
    _bad("22023", _file("nul", b"abc\x00def"), "holds no usable secret")
    _bad("22023", _file("latin1", b"caf\xe9"), "holds no usable secret")
    _bad("22023", _file("large", b"x" * 5000), "has 5000 bytes, more than 4096")
    # a role that may set credentials but not read server files
    _bad("42501", good, "needs the privileges of pg_read_server_files", role=SETUP)
    # none of the refusals changed the stored secret
    assert q1("SELECT client_secret FROM halo_itsm.integration_secrets", db=DB) == "test-secret"
