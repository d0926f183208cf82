"""webhook_helpers: what the webhook integration tests (test_webhook*.py) share: the
receiver process (test/receiver/receiver.py), pointing the mock's webhook at it, signing
with the mock's own code, raw HTTP posts to the receiver, and waiting for tickets.
"""
import email.utils
import json
import os
import socket
import subprocess
import time

from halo_test import Mock, PGHOST, PGPORT, PGUSER, RECEIVER_PORT, RUN_DIR, q, q1, raw_post, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECEIVER = os.path.join(ROOT, "test", "receiver", "receiver.py")
PYTHON = "/usr/bin/python3"
MOCK = Mock()


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Receiver:
    """The webhook receiver, started on HI_RECEIVER_PORT for one database."""

    def __init__(self, dbname):
        assert not _port_open(RECEIVER_PORT), \
            "port %d (HI_RECEIVER_PORT) is taken: another receiver still runs?" % RECEIVER_PORT
        dsn = "host=%s port=%d user=%s dbname=%s application_name=halo_receiver" % (
            PGHOST, PGPORT, PGUSER, dbname)
        self.log_path = os.path.join(RUN_DIR, "receiver-%s.log" % dbname)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PYTHON, RECEIVER, "--port", str(RECEIVER_PORT), "--dsn", dsn],
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open(RECEIVER_PORT):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the receiver did not start; see %s" % self.log_path)
            time.sleep(0.05)

    def stop(self):
        """Stop the receiver (by its own pid) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def webhook_settings(integration, dbname="halo"):
    """(url, secret) from halo_itsm.webhook_settings()."""
    return q("SELECT url, secret FROM halo_itsm.webhook_settings(%s)", integration, db=dbname)[0]


def point_mock_at_receiver(integration, dbname="halo", **overrides):
    """Configure the mock's webhook with the URL and secret the extension gives; the other
    settings back to their defaults unless overridden. Returns the mock's config."""
    url, secret = webhook_settings(integration, dbname)
    cfg = {"url": url, "secret": secret, "mode": "full", "enabled": True, "drop_next": 0,
           "date_offset_s": 0, "date_format": "imf", "send_host": None}
    cfg.update(overrides)
    return MOCK.webhook(**cfg)


def mock_sign(secret, headers, body):
    """x-signature for headers and body (bytes), computed by the mock's own code."""
    return MOCK.call("POST", "/_mock/sign", {"secret": secret, "headers": headers,
                                              "body": body.decode("utf-8")})["signature"]


def signed_headers(secret, body, date=None, host="127.0.0.1:%d" % RECEIVER_PORT):
    """The headers Halo would send for body (bytes), signed by the mock's code."""
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
               "Host": host, "X-Halo-Date": date or email.utils.formatdate(usegmt=True)}
    headers["X-Signature"] = mock_sign(secret, headers, body)
    return headers


def post(path, headers, body):
    """POST body to the receiver exactly with these headers; (status, decoded JSON answer)."""
    status, _, doc = raw_post(RECEIVER_PORT, path, headers, body)
    return status, doc


def answer(delivery):
    """The receiver's JSON answer to a delivery in the mock's webhook log."""
    assert delivery is not None and delivery["sent"], delivery
    return json.loads(delivery["response"])


def add_case(sid, dbname="halo", title="Suspicious login", severity="high"):
    """Insert a case; returns its id."""
    return q1("INSERT INTO halo_itsm.cases (sid, title, severity) VALUES (%s, %s, %s) RETURNING id",
              sid, title, severity, db=dbname)


def wait_ticket(sid, dbname="halo", timeout=20):
    """Wait until the case sid has its Halo ticket; returns the ticket id."""
    return wait_until(lambda: q1("""SELECT t.halo_ticket_id FROM halo_itsm.tickets t
                                      JOIN halo_itsm.cases c ON c.id = t.case_id WHERE c.sid = %s""",
                                 sid, db=dbname),
                      timeout=timeout, msg="ticket of %s" % sid)


def timeline(sid, dbname="halo"):
    """The timeline rows of a case: (kind, source, author, body, internal, halo_ticket_id,
    halo_action_id), oldest first."""
    return q("""SELECT t.kind, t.source, t.author, t.body, t.internal, t.halo_ticket_id, t.halo_action_id
                  FROM halo_itsm.timeline t JOIN halo_itsm.cases c ON c.id = t.case_id
                 WHERE c.sid = %s ORDER BY t.occurred_at, t.id""", sid, db=dbname)


def case_status(sid, dbname="halo"):
    """(status, closed_at is set) of a case."""
    return tuple(q("SELECT status, closed_at IS NOT NULL FROM halo_itsm.cases WHERE sid = %s",
                   sid, db=dbname)[0])
