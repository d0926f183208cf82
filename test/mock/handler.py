"""
handler.py - HTTP plumbing of the mock Halo server.

MockServer is a ThreadingHTTPServer bound to 127.0.0.1 (optionally TLS, with the
handshake done in the connection's own thread).  MockHandler speaks HTTP/1.1 with
keep-alive, reads each request (Content-Length or chunked), logs every request
outside /_mock/ with the time its request line was read, applies fault rules,
rate limit and latency, checks bearer tokens on /api/..., and dispatches to
halo_api or control_api.  The same handler serves the authorisation server (a
MockServer with role 'auth' on another port, sharing the State), which answers
the token endpoint only.  Every answer is JSON with an exact Content-Length,
except an injected fault's raw body (faults.raw_answer), sent as it is.
"""

import json
import sys
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import control_api
import faults
import halo_api

MAX_BODY = 16 * 1024 * 1024


class Request:
    """A parsed request as the endpoint functions see it."""

    def __init__(self, method, path, query, headers, body):
        """Store the request parts and parse the body as JSON when possible."""
        self.method, self.path, self.query = method, path, query
        self.headers, self.body = headers, body
        self.client_id = None
        self.json, self.json_error = None, None
        if body.strip():
            try:
                self.json = json.loads(body.decode('utf-8'))
            except (ValueError, UnicodeDecodeError) as e:
                self.json_error = str(e)


class MockHandler(BaseHTTPRequestHandler):
    """Handles one connection: any number of keep-alive requests."""

    protocol_version = 'HTTP/1.1'
    server_version = 'mock_halo/1.0'
    timeout = 300
    disable_nagle_algorithm = True

    def setup(self):
        """Wrap the connection in TLS (in this thread) when the server has a context."""
        ctx = self.server.ssl_context
        if ctx is not None:
            self.request.settimeout(self.timeout)
            self.request = ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def parse_request(self):
        """Note the moment the request line was read, then parse the headers."""
        self.received_at = time.time()
        return super().parse_request()

    def log_message(self, fmt, *args):
        """Log one line per request to stderr unless --quiet."""
        if not self.server.quiet:
            sys.stderr.write('mock_halo: %s %s\n' % (self.address_string(), fmt % args))

    def do_GET(self):
        """Handle GET."""
        self.handle_any()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def read_body(self):
        """Read the request body (Content-Length or chunked); raise ValueError if bad."""
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            chunks = []
            while True:
                size = int(self.rfile.readline(1024).split(b';')[0].strip() or b'x', 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass
                    return b''.join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
                if sum(map(len, chunks)) > MAX_BODY:
                    raise ValueError('body too large')
        length = int(self.headers.get('Content-Length') or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError('bad Content-Length')
        body = self.rfile.read(length)
        if len(body) != length:
            raise ValueError('body shorter than Content-Length')
        return body

    def handle_any(self):
        """Read, log, fault-inject, dispatch and answer one request."""
        state = self.server.state
        path, _, qs = self.path.partition('?')
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ', ' + value if name in headers else value
        try:
            body = self.read_body()
        except ValueError as e:
            self.close_connection = True
            self.send_json(400, {'error': 'bad request body: %s' % e})
            return
        query = urllib.parse.parse_qs(qs, keep_blank_values=True)
        req = Request(self.command, path, query, headers, body)
        if path.startswith('/_mock/'):
            self.send_json(*self.safely(control_api.route, req, state))
            return
        entry = state.log_request({
            'server': self.server.role,
            'method': self.command, 'path': path, 'query': query, 'headers': headers,
            'body': body.decode('utf-8', 'replace'), 'json': req.json,
            'received_at': self.received_at, 'status': None, 'answered_at': None})
        self.answer_logged(req, entry)

    def answer_logged(self, req, entry):
        """Apply faults, latency and dispatch to a logged request, then answer it."""
        state = self.server.state
        fault = faults.pick_fault(state, req.method, req.path, req.query, req.body)
        kind = fault['type'] if fault else None
        if fault:
            with state.lock:
                entry['fault'] = dict(fault)
        if kind == 'expire_tokens':
            state.expire_tokens()
        if kind == 'delay' and fault.get('before'):
            time.sleep(fault['ms'] / 1000.0)
        if kind == 'status':
            extra = dict(fault.get('headers') or {})
            if fault.get('retry_after') is not None:
                extra['Retry-After'] = str(fault['retry_after'])
            raw = faults.raw_answer(fault)
            result = (fault['status'], raw if raw is not None else
                      fault.get('body', {'error': 'injected fault', 'status': fault['status']}), extra)
        elif kind == 'drop':
            result = None
        else:
            result = self.safely(self.dispatch, req)
        latency = state.config_copy('latency_ms')
        if latency:
            time.sleep(latency / 1000.0)
        if kind == 'delay' and not fault.get('before'):
            time.sleep(fault['ms'] / 1000.0)
        if kind in ('drop', 'drop_after_create'):
            with state.lock:
                entry['status'], entry['answered_at'] = 'dropped', time.time()
            self.close_connection = True
            return
        with state.lock:
            entry['status'], entry['answered_at'] = result[0], time.time()
        self.send_json(*result)

    def dispatch(self, req):
        """Route the token endpoint (on the authorisation server, or on the instance when
        auth_server is 'instance'), /api/authinfo and authenticated /api/... requests."""
        state = self.server.state
        lower = req.path.lower().rstrip('/')
        separate = state.config_copy('auth_server') == 'separate'
        if self.server.role == 'auth':
            token_path = state.config_copy('auth_path').lower() + '/token'
            if not separate or lower != token_path:
                return 404, {'error': 'not found'}
        elif lower == '/auth/token' and separate:
            return 404, {'error': 'not found'}
        elif lower != '/auth/token' and lower != '/api' and not lower.startswith('/api/'):
            return 404, {'error': 'not found'}
        limited = state.rate_limited()
        if limited is not None:
            return 429, {'ClassName': 'HaloRateLimitException',
                         'Message': 'Rate Limit Reached - 300 Requests per rolling 5 minute window'}, limited
        if self.server.role == 'auth' or lower == '/auth/token':
            return halo_api.auth_token(req, state)
        if lower == '/api/authinfo':
            return halo_api.authinfo(req, state)
        scheme, _, token = req.headers.get('authorization', '').strip().partition(' ')
        client_id = state.check_token(token.strip()) if scheme.lower() == 'bearer' else None
        if client_id is None:
            return 401, {'error': 'invalid_token'}, {
                'WWW-Authenticate': 'Bearer error="invalid_token"'}
        req.client_id = client_id
        return halo_api.route(req, state)

    def safely(self, func, *args):
        """Call func(*args) and turn any exception into a 500 JSON answer."""
        try:
            return func(*args)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            return 500, {'error': 'mock internal error: %s: %s' % (type(e).__name__, e)}

    def send_json(self, status, obj, extra_headers=None):
        """Send a JSON answer (or, for a tuple (bytes, content type), those bytes) with an
        exact Content-Length."""
        if isinstance(obj, tuple):
            data, ctype = obj
        else:
            data = json.dumps(obj, ensure_ascii=False).encode('utf-8')
            ctype = 'application/json; charset=utf-8'
        try:
            self.send_response(status)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length', str(len(data)))
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header('Connection', 'close')
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


class MockServer(ThreadingHTTPServer):
    """Threaded HTTP(S) server on 127.0.0.1 carrying the shared State."""

    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: a burst of connections from the
    # engine (up to max_concurrent_requests at once) overflowed it, and a dropped SYN
    # is retried after 1 s, the test cluster's connect_timeout. Real servers queue more.
    request_queue_size = 128

    def __init__(self, port, state, ssl_context=None, quiet=False, role='instance'):
        """Bind 127.0.0.1:port (0 = ephemeral) and remember state and options. role:
        'instance' (the Halo instance) or 'auth' (its authorisation server, which
        answers the token endpoint only)."""
        self.state = state
        self.ssl_context = ssl_context
        self.quiet = quiet
        self.role = role
        super().__init__(('127.0.0.1', port), MockHandler)

    @property
    def url(self):
        """The base URL, e.g. http://127.0.0.1:18080."""
        scheme = 'https' if self.ssl_context else 'http'
        return '%s://127.0.0.1:%d' % (scheme, self.server_address[1])

    def handle_error(self, request, client_address):
        """Report handler errors briefly; ignore clients that went away."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)) or self.quiet:
            return
        sys.stderr.write('mock_halo: error from %s: %s: %s\n'
                         % (client_address, type(exc).__name__, exc))
