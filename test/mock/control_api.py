"""
control_api.py - the /_mock/... control endpoints (no auth, JSON in and out).

Tests use them to reset and configure the mock, read the request log, inject
faults, act as a Halo agent (close a ticket, add a note), configure and inspect
outgoing webhooks, and compute signatures.  Every function takes a Request and
the State and returns (status, json_body).
"""

import base64
import copy
import re

import faults
import webhooks


class NotFound(Exception):
    """Raised by a control handler when the ticket or webhook does not exist."""


def _body(req):
    """Return the JSON object body ({} when empty); raise ValueError otherwise."""
    if req.json_error:
        raise ValueError('invalid JSON: %s' % req.json_error)
    if req.json is None:
        return {}
    if not isinstance(req.json, dict):
        raise ValueError('the body must be a JSON object')
    return req.json


def reset(req, state):
    """POST /_mock/reset: back to the initial state."""
    state.reset()
    return 200, {'ok': True}


def config(req, state):
    """GET or POST /_mock/config: read or change the configuration."""
    if req.method == 'GET':
        return 200, state.config_copy()
    return 200, state.update_config(_body(req))


def requests_log(req, state):
    """GET /_mock/requests[?since=SEQ&method=M&path=P] or DELETE to clear it."""
    if req.method == 'DELETE':
        with state.lock:
            state.requests.clear()
        return 200, {'ok': True}
    since = int(req.query.get('since', ['0'])[0] or 0)
    return 200, state.requests_since(since, req.query.get('method', [None])[0],
                                     req.query.get('path', [None])[0])


def fault_rules(req, state):
    """GET, POST (append {"rules": [...]}) or DELETE /_mock/faults."""
    if req.method == 'DELETE':
        with state.lock:
            state.faults.clear()
        return 200, {'ok': True}
    if req.method == 'POST':
        body = _body(req)
        raw = body.get('rules', [body] if body else [])
        if not isinstance(raw, list):
            raise ValueError('rules must be a list')
        parsed = [faults.parse_rule(r) for r in raw]
        with state.lock:
            state.faults.extend(parsed)
    with state.lock:
        return 200, {'rules': copy.deepcopy(faults.describe(state.faults))}


def list_all(key):
    """Build a handler returning a copy of a whole collection."""
    def handler(req, state):
        """GET /_mock/tickets or /_mock/actions."""
        with state.lock:
            data = state.tickets.values() if key == 'tickets' else state.actions
            return 200, copy.deepcopy(list(data))
    return handler


def _ticket(state, tid):
    """Return the live ticket with id tid or raise NotFound."""
    ticket = state.tickets.get(tid)
    if ticket is None:
        raise NotFound('ticket %d not found' % tid)
    return ticket


def ticket_close(req, state, tid):
    """POST /_mock/tickets/{id}/close: an agent closes the ticket; emit a webhook."""
    body = _body(req)
    agent = body.get('agent_name', 'Agent')
    note = body.get('note', 'Ticket closed by %s' % agent)
    with state.lock:
        ticket = _ticket(state, tid)
        ticket['agent_name'] = agent
        if 'closure_note' in body or 'note' in body:
            ticket['closure_note'] = body.get('closure_note', note)
        action = state.add_action(tid, {'note': note, 'outcome': 'Closed', 'new_status': 9,
                                        'who': agent, 'hiddenfromuser': False})
        ticket, action = copy.deepcopy(ticket), copy.deepcopy(action)
    sent = webhooks.emit(state, ticket, action,
                         'Ticket ID: %07d has been closed by %s.' % (tid, agent))
    return 200, {'ticket': ticket, 'action': action, 'webhook': sent}


def ticket_note(req, state, tid):
    """POST /_mock/tickets/{id}/note: an agent adds a note; emit a webhook."""
    body = _body(req)
    who = body.get('who', 'Agent')
    fields = {'note': body.get('note'), 'who': who,
              'hiddenfromuser': bool(body.get('hiddenfromuser', False)),
              'outcome': body.get('outcome', 'Note')}
    if body.get('note_html') is not None:
        fields['note_html'] = body['note_html']
    if body.get('new_status') is not None:
        fields['new_status'] = body['new_status']
    with state.lock:
        ticket = _ticket(state, tid)
        action = copy.deepcopy(state.add_action(tid, fields))
        ticket = copy.deepcopy(ticket)
    sent = webhooks.emit(state, ticket, action,
                         'Ticket ID: %07d has been updated by %s.' % (tid, who))
    return 200, {'ticket': ticket, 'action': action, 'webhook': sent}


def ticket_update(req, state, tid):
    """POST /_mock/tickets/{id}/update {"fields": {...}, "webhook": bool}: raw edit."""
    body = _body(req)
    fields = body.get('fields', {})
    if not isinstance(fields, dict):
        raise ValueError('fields must be an object')
    with state.lock:
        ticket = copy.deepcopy(state.update_ticket(_ticket(state, tid), fields))
    sent = None
    if body.get('webhook', True):
        sent = webhooks.emit(state, ticket, None, 'Ticket ID: %07d has been updated.' % tid)
    return 200, {'ticket': ticket, 'webhook': sent}


def webhook_config(req, state):
    """GET or POST /_mock/webhook: read or change the outgoing webhook config."""
    if req.method == 'GET':
        with state.lock:
            return 200, dict(state.webhook)
    return 200, webhooks.configure(state, _body(req))


def webhook_log(req, state):
    """GET /_mock/webhooks: every delivery attempted (or dropped)."""
    with state.lock:
        return 200, copy.deepcopy(state.webhook_log)


def webhook_resend(req, state, wid):
    """POST /_mock/webhooks/{id}/resend: replay a logged delivery byte for byte."""
    entry = webhooks.resend(state, wid)
    if entry is None:
        raise NotFound('webhook %d not found' % wid)
    return 200, entry


def secrets_ledger(req, state):
    """GET /_mock/secrets: every token, webhook secret and signature since the start."""
    with state.lock:
        return 200, copy.deepcopy(state.ledger)


def sign(req, state):
    """POST /_mock/sign {"secret", "headers", "body" | "body_base64"} -> signature."""
    body = _body(req)
    secret, headers = body.get('secret'), body.get('headers', {})
    if not isinstance(secret, str) or not isinstance(headers, dict):
        raise ValueError('secret (string) and headers (object) are required')
    if 'body_base64' in body:
        raw = base64.b64decode(body['body_base64'])
    else:
        raw = str(body.get('body', '')).encode('utf-8')
    headers = {k.lower(): str(v) for k, v in headers.items()}
    headers.setdefault('content-length', str(len(raw)))
    try:
        canon = webhooks.canonical(headers, raw)
    except KeyError as e:
        raise ValueError('missing signed header %s' % e)
    return 200, {'signature': webhooks.sign(secret, headers, raw),
                 'canonical': canon.decode('utf-8', 'replace')}


ROUTES = [
    (r'health', {'GET': lambda r, s: (200, {'ok': True})}),
    (r'servers', {'GET': lambda r, s: (200, {'instance': s.instance_url,
                                             'auth': s.auth_server_url})}),
    (r'reset', {'POST': reset}),
    (r'config', {'GET': config, 'POST': config}),
    (r'requests', {'GET': requests_log, 'DELETE': requests_log}),
    (r'faults', {'GET': fault_rules, 'POST': fault_rules, 'DELETE': fault_rules}),
    (r'tickets', {'GET': list_all('tickets')}),
    (r'actions', {'GET': list_all('actions')}),
    (r'tickets/(\d+)/close', {'POST': ticket_close}),
    (r'tickets/(\d+)/note', {'POST': ticket_note}),
    (r'tickets/(\d+)/update', {'POST': ticket_update}),
    (r'webhook', {'GET': webhook_config, 'POST': webhook_config}),
    (r'webhooks', {'GET': webhook_log}),
    (r'webhooks/(\d+)/resend', {'POST': webhook_resend}),
    (r'sign', {'POST': sign}),
    (r'secrets', {'GET': secrets_ledger}),
]


def route(req, state):
    """Dispatch a /_mock/... request; return (status, body)."""
    rest = req.path[len('/_mock/'):].strip('/')
    for pattern, handlers in ROUTES:
        m = re.fullmatch(pattern, rest)
        if not m:
            continue
        if req.method not in handlers:
            return 405, {'error': 'method not allowed'}
        args = [int(g) for g in m.groups()]
        try:
            return handlers[req.method](req, state, *args)
        except (ValueError, TypeError) as e:
            return 400, {'error': str(e)}
        except NotFound as e:
            return 404, {'error': str(e)}
    return 404, {'error': 'not found'}
