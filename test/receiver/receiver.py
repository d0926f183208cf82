#!/usr/bin/python3
"""receiver.py: an example external webhook receiver for halo_itsm (Python stdlib + psycopg2).

    HALO_RECEIVER_DSN="host=/tmp dbname=halo user=halo_receiver" receiver.py --port 8080
    receiver.py --port 8080 --dsn "host=/tmp dbname=halo user=halo_receiver"

The extension's own listener (halo_itsm.listen_addresses) needs no receiver; this one is
for those who already run an HTTP service in front of the database.

Halo POSTs each delivery to /halo/<webhook key>. The receiver passes the key, every request
header (as a JSON object) and the raw body to halo_itsm.ingest_webhook(), which verifies
and applies the delivery in one transaction, and answers Halo with the status that
halo_itsm.webhook_http_status(sqlstate) gives (200 when accepted; the one map, shared with
the listener and documented in docs/webhooks.md). GET /healthz answers 200 when the database
answers, else 503.

- The password is never on the command line (where `ps` shows it): give it in PGPASSWORD
  or a PGPASSFILE (libpq reads both); a --dsn holding password= is refused.
- One database connection is kept (and made again after a failure); deliveries take it in
  turn.
- Every socket has a timeout; a Content-Length that is not a number is answered 400; a
  chunked body is read (up to --max-body bytes), not taken as empty.

The database role needs only EXECUTE on halo_itsm.ingest_webhook(text, jsonb, bytea).
"""
import argparse
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

PREFIX = "/halo/"


class BadRequest(Exception):
    """A request that cannot be read: (status, message)."""


class Database:
    """One kept connection, made again after a failure; used by one request at a time."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.conn = None
        self.lock = threading.Lock()
        self.statuses = {}      # sqlstate -> HTTP status, as webhook_http_status() says

    def _connection(self):
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(self.dsn, connect_timeout=10)
            self.conn.autocommit = True
        return self.conn

    def _drop(self):
        try:
            if self.conn is not None:
                self.conn.close()
        except psycopg2.Error:
            pass
        self.conn = None

    def run(self, sql, args=()):
        """The first row of sql; a broken connection is made again once."""
        with self.lock:
            for attempt in (1, 2):
                try:
                    with self._connection().cursor() as cur:
                        cur.execute(sql, args)
                        return cur.fetchone()
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    self._drop()
                    if attempt == 2:
                        raise

    def http_status(self, sqlstate):
        """The HTTP status for an error's SQLSTATE (500 when even that cannot be asked)."""
        if sqlstate not in self.statuses:
            try:
                self.statuses[sqlstate] = self.run("SELECT halo_itsm.webhook_http_status(%s)", (sqlstate,))[0]
            except psycopg2.Error:
                return 500
        return self.statuses[sqlstate]


class Receiver(BaseHTTPRequestHandler):
    db = None
    max_body = 8 * 1024 * 1024    # a first, coarse limit; the database applies its own
    timeout = 30                  # seconds, for every read and write on the socket
    protocol_version = "HTTP/1.1"

    def read_body(self):
        """The raw body: by Content-Length, or chunked; raises BadRequest."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.read_chunked()
        value = self.headers.get("Content-Length")
        if value is None:
            return b""
        if not re.fullmatch(r"[0-9]{1,15}", value.strip()):
            raise BadRequest(400, "Content-Length is not a number")
        length = int(value)
        if length > self.max_body:
            raise BadRequest(413, "body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest(400, "the body ended before Content-Length bytes")
        return body

    def read_chunked(self):
        body = b""
        while True:
            line = self.rfile.readline(100)
            size = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size):
                raise BadRequest(400, "malformed chunk size")
            n = int(size, 16)
            if len(body) + n > self.max_body:
                raise BadRequest(413, "body too large")
            if n == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass        # trailers
                return body
            chunk = self.rfile.read(n)
            if len(chunk) != n or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest(400, "malformed chunk")
            body += chunk

    def do_GET(self):
        if self.path != "/healthz":
            return self.answer(404, {"error": "not found"})
        try:
            self.db.run("SELECT 1")
        except psycopg2.Error as e:
            return self.answer(503, {"status": "unavailable", "error": str(e).strip()})
        return self.answer(200, {"status": "ok"})

    def do_POST(self):
        if not self.path.startswith(PREFIX) or len(self.path) == len(PREFIX):
            self.close_connection = True
            return self.answer(404, {"error": "not a webhook URL"})
        key = self.path[len(PREFIX):].split("?", 1)[0]
        try:
            body = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            return self.answer(e.args[0], {"error": e.args[1]})
        headers = {}
        for name, value in self.headers.items():   # keep repeated headers: the check needs them
            headers.setdefault(name, []).append(value)
        headers = {n: v[0] if len(v) == 1 else v for n, v in headers.items()}
        try:
            result = self.db.run("SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)",
                                 (key, json.dumps(headers), psycopg2.Binary(body)))[0]
        except psycopg2.Error as e:
            status = self.db.http_status(e.pgcode) if e.pgcode else 500
            message = ((e.diag.message_primary if e.diag else None) or str(e)).strip()
            self.log_message("%s %s: %s", status, e.pgcode, message)
            return self.answer(status, {"error": message, "sqlstate": e.pgcode})
        return self.answer(200, result)

    def answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=30, help="socket timeout in seconds (default 30)")
    parser.add_argument("--dsn", default=os.environ.get("HALO_RECEIVER_DSN"),
                        help="libpq connection string without a password (default: $HALO_RECEIVER_DSN)")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or HALO_RECEIVER_DSN")
    if re.search(r"(^|\s)password\s*=", args.dsn) or re.search(r"://[^/@:]*:[^/@]*@", args.dsn):
        parser.error("the DSN holds a password, which `ps` would show: put it in PGPASSWORD or a PGPASSFILE")
    Receiver.db = Database(args.dsn)
    Receiver.timeout = args.timeout
    server = ThreadingHTTPServer((args.bind, args.port), Receiver)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("receiver listening on http://%s:%d%s<key>" % (args.bind, args.port, PREFIX), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
