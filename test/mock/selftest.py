"""
selftest.py - in-process self-test of the mock Halo server (--self-test).

Checks the webhook signature against the golden vector of webhook-signature.md,
then starts the mock on an ephemeral 127.0.0.1 port with a tiny webhook receiver
and walks the main flows: tokens, ticket create/update/list/get, actions, lookups,
faults, the request log and signed webhooks.  Prints "N passed, N failed".
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import webhooks


class Results:
    """Counts and reports checks."""

    def __init__(self):
        """Start with no checks."""
        self.passed = self.failed = 0

    def check(self, name, ok, detail=''):
        """Record one check, printing failures."""
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print('FAIL: %s %s' % (name, detail))


class Client:
    """A keep-alive JSON client for the mock."""

    def __init__(self, port, auth_port=None):
        """Open a connection to 127.0.0.1:port (the instance); token calls go to
        auth_port (the authorisation server)."""
        self.port = port
        self.auth = Client(auth_port) if auth_port else None
        self.conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
        self.token = None

    def token_call(self, form, query=''):
        """POST /token to the authorisation server; (status, headers, JSON)."""
        return self.auth.call('POST', '/token' + query, form=form)

    def call(self, method, path, body=None, form=None, auth=True, raw=None):
        """Send one request; return (status, headers, parsed JSON or None)."""
        headers = {}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers['Content-Type'] = 'application/x-www-form-urlencoded'
        elif raw is not None:
            data = raw
            headers['Content-Type'] = 'application/json'
        elif body is not None:
            data = json.dumps(body).encode()
            headers['Content-Type'] = 'application/json'
        else:
            data = None
        if auth and self.token and path.startswith('/api'):
            headers['Authorization'] = 'Bearer ' + self.token
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            text = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
            return None, {}, None
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return resp.status, dict(resp.getheaders()), parsed

    def login(self):
        """Fetch a token for the default client."""
        _, _, tok = self.token_call({
            'grant_type': 'client_credentials', 'client_id': 'test-client',
            'client_secret': 'test-secret', 'scope': 'read:tickets edit:tickets'})
        self.token = tok and tok.get('access_token')
        return tok


def start_receiver():
    """Start a webhook receiver that stores deliveries; return (server, list)."""
    got = []

    class Receiver(BaseHTTPRequestHandler):
        """Stores each POST and answers 200 ok."""

        protocol_version = 'HTTP/1.1'

        def do_POST(self):
            """Record the delivery."""
            body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
            got.append({'headers': {k.lower(): v for k, v in self.headers.items()},
                        'body': body, 'path': self.path})
            self.send_response(200)
            self.send_header('Content-Length', '2')
            self.end_headers()
            self.wfile.write(b'ok')

        def log_message(self, *args):
            """Stay quiet."""

    server = ThreadingHTTPServer(('127.0.0.1', 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def check_tickets(r, c, has_schema):
    """Token, ticket and action flows."""
    st, _, b = c.call('GET', '/api/authinfo')
    r.check('authinfo names the authorisation server',
            st == 200 and b == {'auth_url': 'http://127.0.0.1:%d' % c.auth.port}, b)
    form = {'grant_type': 'client_credentials', 'client_id': 'test-client',
            'client_secret': 'test-secret', 'scope': 'read:tickets'}
    r.check('no token endpoint on the instance', c.call('POST', '/auth/token', form=form)[0] == 404)
    st, _, b = c.token_call({'grant_type': 'password'})
    r.check('bad grant -> 400', st == 400 and b == {'error': 'unsupported_grant_type'}, b)
    st, _, b = c.token_call(dict(form, client_secret='x'))
    r.check('bad secret -> 401', st == 401 and b['error'] == 'invalid_client', b)
    for scope in ('all', '', 'read:tickets  edit:tickets', 'read:tickets all'):
        st, _, b = c.token_call(dict(form, scope=scope))
        r.check('scope %r not granted -> 400' % scope, st == 400 and b['error'] == 'invalid_scope', b)
    c.call('POST', '/_mock/config', {'auth_server': 'instance'})
    st, _, b = c.call('POST', '/auth/token', form=form)
    r.check('auth_server instance: token on the instance', st == 200, b)
    r.check('auth_server instance: no authinfo', c.call('GET', '/api/authinfo')[0] == 404)
    r.check('auth_server instance: no /token', c.token_call(form)[0] == 404)
    c.call('POST', '/_mock/config', {'auth_server': 'separate', 'auth_path': '/auth',
                                     'authinfo_tenant': 'acme'})
    st, _, b = c.call('GET', '/api/authinfo')
    r.check('authinfo with auth_path and tenant', b == {
        'auth_url': 'http://127.0.0.1:%d/auth' % c.auth.port, 'tenant_id': 'acme'}, b)
    r.check('token under auth_path', c.auth.call('POST', '/auth/token', form=form)[0] == 200)
    c.call('POST', '/_mock/config', {'auth_path': '', 'authinfo_tenant': None})
    st, _, b = c.call('GET', '/api/Tickets')
    r.check('no token -> 401', st == 401 and b == {'error': 'invalid_token'}, b)
    tok = c.login()
    r.check('token', tok and tok['token_type'] == 'Bearer' and tok['expires_in'] == 3600, tok)
    st, _, b = c.call('POST', '/api/Tickets', [{'summary': 'x'}])
    r.check('no category -> 400', st == 400 and 'Category 1' in b.get('Message', ''), b)
    if has_schema:
        st, _, b = c.call('POST', '/api/Tickets', [{'summary': 'x', 'category_1': 'Security',
                                                    'bogus_field': 1}])
        r.check('unknown field -> 400', st == 400 and 'bogus_field' in b['Message'], b)
        st, _, b = c.call('POST', '/api/Tickets', [{'category_1': 'Security', 'client_id': '1'}])
        r.check('wrong type -> 400', st == 400 and 'client_id' in b['Message'], b)
    st, _, b = c.call('POST', '/api/Tickets', {'summary': 'x'})
    r.check('object body -> 400', st == 400, b)
    st, _, b = c.call('POST', '/api/Tickets', raw=b'[{')
    r.check('bad JSON -> 400', st == 400, b)
    t = {'summary': 'Malware on host', 'details': 'd', 'tickettype_id': 1, 'priority_id': 2,
         'client_id': 12, 'team': 'SOC', 'category_1': 'Security>Incident',
         'third_party_id_string': 'case-1'}
    st, _, b = c.call('POST', '/api/Tickets', [t])
    r.check('create', st == 200 and b['id'] == 1001 and b['status_id'] == 1
            and b['hasbeenclosed'] is False and b['agent_name'] is None, b)
    st, _, b = c.call('POST', '/api/Tickets', [dict(t, third_party_id_string='case-2'),
                                               dict(t, third_party_id_string='case-3')])
    r.check('create two', st == 200 and [x['id'] for x in b] == [1002, 1003], b)
    st, _, b = c.call('POST', '/api/Tickets', [{'id': 1002, 'summary': 'renamed'}])
    r.check('update', st == 200 and b['id'] == 1002 and b['summary'] == 'renamed', b)
    st, _, b = c.call('GET', '/api/Tickets?third_party_id_string=case-2')
    r.check('tpid filter ignored', st == 200 and b['record_count'] == 3, b)
    c.call('POST', '/_mock/config', {'honour_third_party_filter': True})
    st, _, b = c.call('GET', '/api/Tickets?third_party_id_string=case-2')
    r.check('tpid filter honoured', b['record_count'] == 1 and b['tickets'][0]['id'] == 1002, b)
    st, _, b = c.call('GET', '/api/Tickets?search=CASE-3')
    r.check('search never matches the third party id', b['record_count'] == 0, b)
    st, _, b = c.call('GET', '/api/Tickets?search=RENAMED')
    r.check('search matches the summary', b['record_count'] == 1 and b['tickets'][0]['id'] == 1002, b)
    r.check('list items: list columns only', all(
        'third_party_id_string' not in x and 'hasbeenclosed' not in x for x in b['tickets']), b)
    st, _, b = c.call('GET', '/api/Tickets?order=id&orderdesc=true')
    r.check('newest first', [x['id'] for x in b['tickets']] == [1003, 1002, 1001], b)
    st, _, b = c.call('GET', '/api/Tickets?pageinate=true&page_size=2&page_no=2')
    r.check('paging', b['record_count'] == 3 and [x['id'] for x in b['tickets']] == [1003], b)
    st, _, b = c.call('GET', '/api/Tickets/999')
    r.check('get unknown -> 404', st == 404, b)
    st, _, b = c.call('POST', '/api/Actions', [{'ticket_id': 1001, 'note': 'hello',
                                                'outcome': 'Note', 'hiddenfromuser': True}])
    r.check('post action', st == 200 and b['id'] == 5004 and b['note'] == 'hello'
            and b['actionby_application_id'] == 'test-client', b)
    st, _, b = c.call('GET', '/api/Tickets/1001?includelastaction=true')
    r.check('get + last_action', st == 200 and b['last_action']['note'] == 'hello', b)
    st, _, b = c.call('GET', '/api/Actions?ticket_id=1001')
    r.check('actions', b['record_count'] == 2 and b['actions'][0]['action_systemid'] != 0
            and 'is_system' not in b['actions'][0], b)
    st, _, b = c.call('GET', '/api/Actions?ticket_id=1001&excludesys=true')
    r.check('excludesys', b['record_count'] == 1 and b['ticket_id'] == 1001, b)
    r.check('no note_html unless asked', 'note_html' not in b['actions'][0], b)
    st, _, b = c.call('GET', '/api/Actions?ticket_id=1001&excludesys=true&includehtmlnote=true')
    r.check('note_html when asked', b['actions'][0]['note_html'] == 'hello', b)
    st, _, b = c.call('POST', '/api/Actions', [{'ticket_id': 4242, 'note': 'x'}])
    r.check('action on unknown ticket -> 404', st == 404, b)
    st, _, b = c.call('GET', '/api/Team')
    r.check('teams', b == [{'id': 1, 'name': 'SOC'}, {'id': 2, 'name': 'Service Desk'}], b)
    st, _, b = c.call('GET', '/api/Client')
    r.check('clients', b['record_count'] == 2 and b['clients'][1]['id'] == 12, b)
    st, _, b = c.call('GET', '/api/Nope')
    r.check('unknown path -> 404', st == 404, b)


def check_faults(r, c):
    """Fault injection and the request log."""
    seq = c.call('GET', '/_mock/requests')[2][-1]['seq']
    c.call('POST', '/_mock/faults', {'rules': [
        {'method': 'POST', 'path': '/api/Tickets', 'action': {'type': 'status', 'status': 500}},
        {'method': 'POST', 'path': '/api/Tickets',
         'action': {'type': 'status', 'status': 429, 'retry_after': '2'}},
        {'method': 'POST', 'path': '/api/Tickets', 'action': {'type': 'drop_after_create'}},
        {'method': 'GET', 'path': '/api/Team', 'action': {'type': 'delay', 'ms': 200}}]})
    t = [{'summary': 'f', 'category_1': 'Security'}]
    r.check('fault 500', c.call('POST', '/api/Tickets', t)[0] == 500)
    st, h, _ = c.call('POST', '/api/Tickets', t)
    r.check('fault 429 + Retry-After', st == 429 and h.get('Retry-After') == '2', h)
    st, _, _ = c.call('POST', '/api/Tickets', t)
    n = len(c.call('GET', '/_mock/tickets')[2])
    r.check('drop_after_create', st is None and n == 4, (st, n))
    r.check('faults used up', c.call('POST', '/api/Tickets', t)[0] == 200)
    start = time.time()
    c.call('GET', '/api/Team')
    r.check('delay', time.time() - start >= 0.2)
    log = c.call('GET', '/_mock/requests?since=%d' % seq)[2]
    r.check('request log', [e['status'] for e in log] == [500, 429, 'dropped', 200, 200]
            and isinstance(log[0]['received_at'], float)
            and log[0]['headers'].get('authorization', '').startswith('Bearer'), log)
    c.call('POST', '/_mock/faults', {'rules': [{'action': {'type': 'expire_tokens'}}]})
    r.check('expire_tokens', c.call('GET', '/api/Team')[0] == 401)
    c.login()
    c.call('POST', '/_mock/faults', {'rules': [{'method': 'GET', 'path': '/api/Status',
                                                'random': {'seed': 1, 'status_500': 0.5}}]})
    codes = [c.call('GET', '/api/Status')[0] for _ in range(20)]
    r.check('random faults', 500 in codes and 200 in codes, codes)
    c.call('DELETE', '/_mock/faults')
    # raw answers, picked by query parameter and by body
    c.call('POST', '/_mock/faults', {'rules': [
        {'method': 'GET', 'path': '/api/Actions', 'query': {'ticket_id': '7'}, 'count': 2,
         'action': {'type': 'status', 'status': 200, 'raw': 'Infinity'}},
        {'method': 'POST', 'path': '/api/Tickets', 'body_contains': 'RAW-1',
         'action': {'type': 'status', 'status': 200, 'raw_base64': 'PGh0bWw+/w==',
                    'content_type': 'text/html'}}]})
    conn = http.client.HTTPConnection('127.0.0.1', c.port, timeout=10)
    auth = {'Authorization': 'Bearer ' + c.token}
    got = []
    for path in ('/api/Actions?ticket_id=8', '/api/Actions?ticket_id=7', '/api/Actions?ticket_id=7',
                 '/api/Actions?ticket_id=7'):
        conn.request('GET', path, headers=auth)
        resp = conn.getresponse()
        got.append((resp.status, resp.read()[:8]))
    r.check('raw answer by query, count', got == [
        (200, b'{"ticket'), (200, b'Infinity'), (200, b'Infinity'), (200, b'{"ticket')], got)
    conn.request('POST', '/api/Tickets', body=json.dumps([{'summary': 'RAW-1', 'category_1': 'S'}]),
                 headers=dict(auth, **{'Content-Type': 'application/json'}))
    resp = conn.getresponse()
    r.check('raw bytes by body', (resp.status, resp.getheader('Content-Type'), resp.read())
            == (200, 'text/html', b'<html>\xff'))
    conn.close()
    c.call('DELETE', '/_mock/faults')


def check_webhooks(r, c):
    """Agent close/note with signed webhooks to a local receiver."""
    recv, got = start_receiver()
    url = 'http://127.0.0.1:%d/halo/key1' % recv.server_address[1]
    secret = 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2'
    c.call('POST', '/_mock/webhook', {'url': url, 'secret': secret})
    st, _, b = c.call('POST', '/_mock/tickets/1001/close', {'agent_name': 'Alice'})
    r.check('close', st == 200 and b['ticket']['status_id'] == 9
            and b['ticket']['hasbeenclosed'] and b['webhook']['status'] == 200, b)
    ok = len(got) == 1
    if ok:
        h, body = got[0]['headers'], got[0]['body']
        sig = webhooks.sign(secret, {'content-length': h['content-length'],
                                     'content-type': h['content-type'],
                                     'host': h['host'], 'x-halo-date': h['x-halo-date']}, body)
        p = json.loads(body)
        ok = (sig == h['x-signature'] and h['host'] == url.split('/')[2]
              and p['object_id'] == 1001 and p['ticket']['agent_name'] == 'Alice'
              and p['action']['new_status'] == 9 and got[0]['path'] == '/halo/key1')
    r.check('signed webhook delivered', ok, got)
    c.call('POST', '/_mock/webhook', {'drop_next': 1, 'mode': 'event_only'})
    c.call('POST', '/_mock/tickets/1002/note', {'note': 'n1', 'who': 'Bob'})
    c.call('POST', '/_mock/tickets/1002/note', {'note': 'n2', 'who': 'Bob'})
    p = json.loads(got[-1]['body'])
    r.check('drop_next + event_only', len(got) == 2 and 'ticket' not in p
            and p['object_id'] == 1002, got)
    log = c.call('GET', '/_mock/webhooks')[2]
    r.check('webhook log', [w['sent'] for w in log] == [True, False, True], log)
    c.call('POST', '/_mock/webhooks/1/resend')
    r.check('resend', len(got) == 3 and got[2]['body'] == got[0]['body'])
    st, _, b = c.call('GET', '/api/Actions?ticket_id=1002&excludesys=true')
    r.check('agent notes visible', b['record_count'] == 2 and b['actions'][0]['who'] == 'Bob', b)
    g = webhooks.GOLDEN
    st, _, b = c.call('POST', '/_mock/sign', {'secret': g['secret'], 'headers': g['headers'],
                                              'body': g['body']})
    r.check('/_mock/sign', b and b['signature'] == g['signature'], b)
    recv.shutdown()
    recv.server_close()


def check_expiry(r, c):
    """Tokens expire after expires_in seconds; tenants are enforced."""
    c.call('POST', '/_mock/config', {'token_expires_in': 1, 'clients': [
        {'client_id': 'test-client', 'client_secret': 'test-secret', 'tenant': 'acme'}]})
    r.check('tenant required', c.login() is not None and c.token is None)
    st, _, b = c.token_call({
        'grant_type': 'client_credentials', 'client_id': 'test-client',
        'client_secret': 'test-secret', 'scope': 'read:customers'}, '?tenant=acme')
    c.token = b and b.get('access_token')
    r.check('tenant token', st == 200 and b['expires_in'] == 1, b)
    r.check('token works', c.call('GET', '/api/Status')[0] == 200)
    time.sleep(1.1)
    r.check('token expired', c.call('GET', '/api/Status')[0] == 401)
    c.call('POST', '/_mock/reset')
    r.check('reset', c.call('GET', '/_mock/tickets')[2] == [])


def run(openapi=None):
    """Run all checks; print the tally; return the exit status (0 = all passed)."""
    from mock_halo import start_in_thread
    r = Results()
    r.check('golden vector', webhooks.golden_ok())
    server = start_in_thread(port=0, openapi=openapi, quiet=True)
    c = Client(server.server_address[1], server.auth.server_address[1])
    try:
        for part in (lambda: check_tickets(r, c, server.state.schemas is not None),
                     lambda: check_faults(r, c), lambda: check_webhooks(r, c),
                     lambda: check_expiry(r, c)):
            try:
                part()
            except Exception as e:
                r.check('no exception', False, '%s: %s' % (type(e).__name__, e))
    finally:
        server.shutdown()
        server.server_close()
        server.auth.shutdown()
        server.auth.server_close()
    print('%d passed, %d failed' % (r.passed, r.failed))
    sys.stdout.flush()
    return 0 if r.failed == 0 else 1
