"""The webhook listener on a hot standby answers 503 (so that Halo retries) and says so once.

A standby of the test cluster (pg_basebackup -R) on the next ports: its listener starts
(BgWorkerStart_ConsistentState), answers every request 503 with Retry-After, and logs the
standby once; nothing is applied.
"""
import email.utils
import http.client
import json
import os
import shutil
import subprocess
import time

from halo_test import PGBIN, PGHOST, PGPORT, RUN_DIR, ensure_extension, q1, timeout, wait_until

LISTEN_PORT = int(os.environ.get("HI_LISTEN_PORT", "18082"))
STANDBY_PORT = PGPORT + 1
STANDBY_LISTEN = LISTEN_PORT + 1
STANDBY_DIR = os.path.join(RUN_DIR, "standby")
STANDBY_LOG = os.path.join(RUN_DIR, "standby.log")


def as_postgres(cmd):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


def get(path, headers=None, method="GET", body=None):
    conn = http.client.HTTPConnection("127.0.0.1", STANDBY_LISTEN, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {"Host": "x"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else None
    finally:
        conn.close()


@timeout(180)
def test_standby_listener_answers_503():
    ensure_extension("halo")
    key = q1("SELECT webhook_key FROM halo_itsm.integrations ORDER BY id LIMIT 1") or "some-key"
    shutil.rmtree(STANDBY_DIR, ignore_errors=True)
    os.makedirs(RUN_DIR, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(RUN_DIR, "postgres", "postgres")
    r = as_postgres([os.path.join(PGBIN, "pg_basebackup"), "-h", PGHOST, "-p", str(PGPORT), "-U", "postgres",
                     "-D", STANDBY_DIR, "-R", "-X", "stream"])
    assert r.returncode == 0, r.stdout
    with open(os.path.join(STANDBY_DIR, "postgresql.auto.conf"), "a") as f:
        f.write("port = %d\nhalo_itsm.listen_port = %d\ncron.database_name = 'postgres'\n"
                "hot_standby = on\n" % (STANDBY_PORT, STANDBY_LISTEN))
    if os.path.exists(STANDBY_LOG):     # pg_ctl -l appends: count this start's lines only
        os.unlink(STANDBY_LOG)
    r = as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", STANDBY_DIR, "-l", STANDBY_LOG, "-w", "-t", "60", "start"])
    if r.returncode != 0 and os.path.exists(STANDBY_LOG):
        with open(STANDBY_LOG) as f:    # the next test's standby reuses this log
            r.stdout += "\n--- standby log:\n" + f.read()[-3000:]
    assert r.returncode == 0, r.stdout
    try:
        def answers():
            try:
                return get("/healthz")
            except OSError:
                return None
        status, headers, doc = wait_until(answers, timeout=30, msg="the standby's listener")
        assert status == 503 and headers.get("Retry-After") == "30", (status, headers, doc)
        body = b'{"id": "standby-1"}'
        hdrs = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(body)),
                "X-Halo-Date": email.utils.formatdate(usegmt=True), "X-Signature": "A" * 43 + "="}
        for _ in range(3):
            status, headers, doc = get("/halo/%s" % key, hdrs, "POST", body)
            assert (status, doc["sqlstate"]) == (503, "25006"), (status, doc)
        time.sleep(0.3)
        with open(STANDBY_LOG, errors="replace") as f:
            log = f.read()
        assert log.count("the server is a hot standby: the webhook listener answers 503") == 1, log[-3000:]
    finally:
        as_postgres([os.path.join(PGBIN, "pg_ctl"), "-D", STANDBY_DIR, "-m", "immediate", "-w", "stop"])
        shutil.rmtree(STANDBY_DIR, ignore_errors=True)
