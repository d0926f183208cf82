#!/usr/bin/python3
"""
mock_halo.py - a mock Halo ITSM REST API server for the halo_itsm tests.

Usage:
  python3 test/mock/mock_halo.py --port 18080 [--auth-port 18090] [--tls-cert F --tls-key K]
                                 [--latency-ms N] [--openapi PATH] [--quiet]
  python3 test/mock/mock_halo.py --self-test

Serves Halo's /api/... endpoints on 127.0.0.1 and its authorisation server's
/token on another port (default port + 10; GET /api/authinfo names it), records every
request, injects faults and sends signed webhooks, all driven through the
/_mock/... control API (see README.md beside this file).  Standard library only.
The pieces live beside this file: halo_state.py (state), halo_api.py (Halo
endpoints), control_api.py (/_mock), faults.py, webhooks.py, handler.py (HTTP)
and selftest.py.
"""

import argparse
import os
import signal
import ssl
import sys
import threading

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from halo_state import State, find_openapi, load_schemas  # noqa: E402
from handler import MockServer  # noqa: E402


def load_schemas_or_warn(path):
    """Load the Faults/Actions schemas; on failure say so on stderr and return None."""
    try:
        return load_schemas(path)
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write('mock_halo: cannot load OpenAPI subset %s (%s); '
                         'field validation is disabled\n' % (path, e))
        return None


def default_auth_port(port):
    """The authorisation server's port when none is given: port + 10, or any free port
    when port is 0."""
    return port + 10 if port else 0


def make_server(port=0, latency_ms=0, openapi=None, tls_cert=None, tls_key=None,
                quiet=True, auth_port=None):
    """Build the instance's MockServer (not yet serving) with fresh state; its .auth is the
    authorisation server (another MockServer on auth_port, same state and TLS)."""
    state = State(latency_ms=latency_ms, schemas=load_schemas_or_warn(find_openapi(openapi)))
    ctx = None
    if tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_cert, tls_key)
    server = MockServer(port, state, ssl_context=ctx, quiet=quiet)
    if auth_port is None:
        auth_port = default_auth_port(port)
    try:
        server.auth = MockServer(auth_port, state, ssl_context=ctx, quiet=quiet, role='auth')
    except OSError:
        server.server_close()
        raise
    state.instance_url, state.auth_server_url = server.url, server.auth.url
    return server


def start_in_thread(**kwargs):
    """Start a mock server and its authorisation server in daemon threads; return the
    instance's server (use .url, .auth.url, .shutdown() and .auth.shutdown())."""
    server = make_server(**kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=server.auth.serve_forever, daemon=True).start()
    return server


def parse_args(argv):
    """Parse the command line."""
    p = argparse.ArgumentParser(description='Mock Halo ITSM API server (127.0.0.1 only).')
    p.add_argument('--port', type=int, default=18080, help='port (0 = ephemeral)')
    p.add_argument('--auth-port', type=int, default=None,
                   help='port of the authorisation server (default: port + 10; 0 = ephemeral)')
    p.add_argument('--tls-cert', help='PEM certificate: serve HTTPS')
    p.add_argument('--tls-key', help='PEM private key for --tls-cert')
    p.add_argument('--latency-ms', type=float, default=0,
                   help='default delay before every /api and /auth answer')
    p.add_argument('--openapi', help='path of halo-openapi-subset.json')
    p.add_argument('--quiet', action='store_true', help='no per-request log lines')
    p.add_argument('--self-test', action='store_true',
                   help='check the signature golden vector and the main flows, then exit')
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error('--tls-cert and --tls-key go together')
    return args


def main(argv=None):
    """Run the server until SIGTERM/SIGINT, or run the self-test."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        import selftest
        return selftest.run(openapi=args.openapi)
    try:
        server = make_server(args.port, args.latency_ms, args.openapi,
                             args.tls_cert, args.tls_key, args.quiet, args.auth_port)
    except (OSError, ssl.SSLError) as e:
        sys.stderr.write('mock_halo: cannot start: %s\n' % e)
        return 2

    def stop(signum, frame):
        """Stop serving (from another thread: shutdown() waits for the loop)."""
        threading.Thread(target=server.shutdown, daemon=True).start()
        threading.Thread(target=server.auth.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=server.auth.serve_forever, kwargs={'poll_interval': 0.2},
                     daemon=True).start()
    print('mock_halo listening on %s (authorisation server %s)' % (server.url, server.auth.url),
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.auth.shutdown()
        server.auth.server_close()
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
