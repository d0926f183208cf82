#!/usr/bin/python3
"""receiver.py: a minimal webhook receiver for halo_itsm (Python stdlib + psycopg2).

    receiver.py --port 8080 --dsn "host=/tmp dbname=halo user=halo_receiver"

Halo POSTs each delivery to /halo/<webhook key>. The receiver passes the key, every request
header (as a JSON object) and the raw body to halo_itsm.ingest_webhook(), which verifies
and applies the delivery in one transaction, and answers Halo by the result:

    200  applied, duplicate, ignored or sync queued (the JSON that ingest_webhook returned)
    404  WH001 unknown webhook key
    413  WH002 body too large
    400  WH003 signed header missing/doubled/empty, WH004 content-length mismatch,
         WH008 not JSON, WH009 duplicate key, WH010 no ticket id, WH011 no delivery id
    401  WH005 date outside the tolerance, WH006 bad x-signature, WH007 wrong signature
    500  anything else (the database is down, ...): Halo retries later

The database role needs only EXECUTE on halo_itsm.ingest_webhook(text, jsonb, bytea).
"""
import argparse
import json
import signal
import sys
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

STATUS = {"WH001": 404, "WH002": 413, "WH003": 400, "WH004": 400, "WH005": 401,
          "WH006": 401, "WH007": 401, "WH008": 400, "WH009": 400, "WH010": 400,
          "WH011": 400}
PREFIX = "/halo/"


class Receiver(BaseHTTPRequestHandler):
    dsn = None
    max_body = 8 * 1024 * 1024    # a first, coarse limit; the database applies its own

    def do_POST(self):
        if not self.path.startswith(PREFIX) or len(self.path) == len(PREFIX):
            return self.answer(404, {"error": "not a webhook URL"})
        key = self.path[len(PREFIX):].split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body:
            return self.answer(413, {"error": "body too large"})
        body = self.rfile.read(length)
        headers = {}
        for name, value in self.headers.items():   # keep repeated headers: the check needs them
            headers.setdefault(name, []).append(value)
        headers = {n: v[0] if len(v) == 1 else v for n, v in headers.items()}
        try:
            with closing(psycopg2.connect(self.dsn)) as conn:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT halo_itsm.ingest_webhook(%s, %s::jsonb, %s)",
                                (key, json.dumps(headers), psycopg2.Binary(body)))
                    result = cur.fetchone()[0]
        except psycopg2.Error as e:
            status = STATUS.get(e.pgcode, 500)
            message = (e.diag.message_primary or str(e)).strip()
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
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    args = parser.parse_args()
    Receiver.dsn = args.dsn
    server = ThreadingHTTPServer((args.bind, args.port), Receiver)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("receiver listening on http://%s:%d%s<key>" % (args.bind, args.port, PREFIX), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
