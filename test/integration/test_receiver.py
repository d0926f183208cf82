"""The example external receiver (test/receiver/receiver.py) no longer crashes or leaks.

Checked over real HTTP: a Content-Length that is not a number is answered 400 and the
receiver lives on; a chunked body is read whole (a signed delivery sent chunked is applied);
a client that sends nothing is dropped at the socket timeout; deliveries share one kept
database connection, which is made again after it is terminated; a DSN with a password is
refused (ps would show it); GET /healthz answers 200; a rejection is answered with the
status of halo_itsm.webhook_http_status().
"""
import json
import os
import socket
import subprocess
import time

from halo_test import PGHOST, PGPORT, PGUSER, RECEIVER_PORT, RUN_DIR, ensure_extension, fresh_integration, q, q1
from webhook_helpers import RECEIVER, PYTHON, _port_open, add_case, signed_headers, wait_ticket

STATE = {}
DSN = "host=%s port=%d user=%s dbname=halo application_name=halo_receiver_test" % (PGHOST, PGPORT, PGUSER)


def setup_module():
    ensure_extension("halo")
    STATE["integration"] = fresh_integration("halo")
    STATE["key"], STATE["secret"] = q(
        """SELECT i.webhook_key, s.webhook_secret FROM halo_itsm.integrations i
             JOIN halo_itsm.integration_secrets s ON s.integration_id = i.id WHERE i.id = %s""",
        STATE["integration"])[0]
    assert not _port_open(RECEIVER_PORT)
    STATE["log"] = open(os.path.join(RUN_DIR, "receiver-test.log"), "ab")
    STATE["proc"] = subprocess.Popen([PYTHON, RECEIVER, "--port", str(RECEIVER_PORT), "--timeout", "2"],
                                     env=dict(os.environ, HALO_RECEIVER_DSN=DSN),
                                     stdout=STATE["log"], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _port_open(RECEIVER_PORT):
        assert STATE["proc"].poll() is None and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.05)


def teardown_module():
    STATE["proc"].terminate()
    STATE["proc"].wait(10)
    STATE["log"].close()


def raw(data, wait=5):
    """Send raw bytes; (status, body bytes) of the answer (0 when closed without one)."""
    with socket.create_connection(("127.0.0.1", RECEIVER_PORT), timeout=wait) as s:
        s.sendall(data)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                head, _, rest = got.partition(b"\r\n\r\n")
                if _ and b"content-length:" in head.lower():
                    n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(rest) >= n:
                        break
        except socket.timeout:
            pass
    line = got.split(b"\r\n", 1)[0].split()
    return (int(line[1]) if len(line) >= 2 else 0), got.partition(b"\r\n\r\n")[2]


def delivery(tid, action_id):
    body = json.dumps({"id": "rcv-%d" % action_id, "event": "Ticket Updated by Agent", "ticket_id": tid,
                       "ticket": {"id": tid, "status_id": 2},
                       "actions": [{"id": action_id, "ticket_id": tid, "note": "from the receiver",
                                    "who": "Eve", "action_systemid": 0}]}).encode()
    return body, signed_headers(STATE["secret"], body)


def request_bytes(headers, body, chunked=False):
    head = "POST /halo/%s HTTP/1.1\r\n" % STATE["key"] + "".join("%s: %s\r\n" % kv for kv in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 40]), body[i:i + 40])
                        for i in range(0, len(body), 40)) + b"0\r\n\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


def test_health_check():
    status, body = raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


def test_non_numeric_content_length_is_400_and_the_receiver_lives_on():
    for value in ("abc", "-1", "1e3", " "):
        status, _ = raw(b"POST /halo/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n\r\n{}"
                        % (STATE["key"].encode(), value.encode()))
        assert status == 400, (value, status)
    assert STATE["proc"].poll() is None


def test_a_chunked_body_is_read_whole_and_applied():
    add_case("RCV-CHUNK")
    tid = wait_ticket("RCV-CHUNK")
    body, headers = delivery(tid, 7001)
    status, answer = raw(request_bytes(headers, body, chunked=True))
    assert status == 200, (status, answer)
    assert json.loads(answer)["notes_added"] == 1


def test_a_rejection_gets_the_shared_status():
    add_case("RCV-REJ")
    tid = wait_ticket("RCV-REJ")
    body, headers = delivery(tid, 7002)
    headers["X-Signature"] = "A" * 43 + "="
    status, answer = raw(request_bytes(headers, body))
    assert (status, json.loads(answer)["sqlstate"]) == (401, "WH007")
    assert q1("SELECT halo_itsm.webhook_http_status('WH007')") == 401


def test_a_silent_client_is_dropped_at_the_socket_timeout():
    with socket.create_connection(("127.0.0.1", RECEIVER_PORT), timeout=10) as s:
        start = time.monotonic()
        s.sendall(b"POST /halo/x HTTP/1.1\r\n")
        assert s.recv(100) == b""
        assert 1.5 <= time.monotonic() - start <= 6


def test_one_kept_connection_made_again_after_a_failure():
    add_case("RCV-CONN")
    tid = wait_ticket("RCV-CONN")
    for i in range(5):
        body, headers = delivery(tid, 7100 + i)
        assert raw(request_bytes(headers, body))[0] == 200
    pids = [r[0] for r in q("SELECT pid FROM pg_stat_activity WHERE application_name = 'halo_receiver_test'")]
    assert len(pids) == 1, pids
    q("SELECT pg_terminate_backend(%s)", pids[0])
    time.sleep(0.2)
    body, headers = delivery(tid, 7200)
    assert raw(request_bytes(headers, body))[0] == 200
    assert q1("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'halo_receiver_test'") == 1


def test_a_password_in_the_dsn_is_refused():
    res = subprocess.run([PYTHON, RECEIVER, "--port", "1", "--dsn", DSN + " password=hunter2"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=10)
    assert res.returncode == 2 and "PGPASSFILE" in res.stdout, res.stdout
