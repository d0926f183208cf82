"""
halo_state.py - the in-memory state of the mock Halo server.

One State object holds the configuration, the registered API clients, the access
tokens, tickets, actions, the request log, the fault rules and the webhook
configuration and log.  Everything is guarded by one lock, State.lock; callers
take it around every read or write.  This module also loads the property names
and types of the Faults (ticket) and Actions schemas from Halo's OpenAPI subset,
which the API uses to reject fields that Halo does not know.
"""

import copy
import html
import json
import os
import re
import secrets
import threading
import time

CLOSED_STATUS_IDS = {9}
FIRST_TICKET_ID = 1001
FIRST_ACTION_ID = 5001
INT_RANGES = {'int32': (-2 ** 31, 2 ** 31 - 1), 'int64': (-2 ** 63, 2 ** 63 - 1)}


# The action_systemid of the mock's system actions ("Ticket logged"); any non-zero value.
SYSTEM_ACTION_ID = 21


def halo_time(ts=None):
    """Format epoch seconds (default: now) as Halo's API does: UTC with 7 fractional digits."""
    ts = time.time() if ts is None else ts
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts)) + '.%07dZ' % int((ts % 1) * 10 ** 7)


def utc_iso(ts=None):
    """Format epoch seconds (default: now) as ISO 8601 UTC, e.g. 2026-11-28T15:56:01Z."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ',
                         time.gmtime(time.time() if ts is None else ts))


# the scopes an API application grants unless a test says otherwise: those halo_itsm's
# setup guide asks for
DEFAULT_SCOPES = ('read:tickets', 'edit:tickets', 'read:customers')


def default_config(latency_ms=0):
    """Return a fresh copy of the default configuration."""
    return {
        'latency_ms': latency_ms,
        'token_expires_in': 3600,
        'require_category': True,
        'validate_fields': True,
        'honour_third_party_filter': False,
        'rate_limit': None,
        'clients': [{'client_id': 'test-client', 'client_secret': 'test-secret',
                     'tenant': None, 'scopes': list(DEFAULT_SCOPES)}],
        # where the token endpoint is: 'separate' (Halo's authorisation server, another
        # port of this process, at {auth_path}/token, named by GET /api/authinfo) or
        # 'instance' (the older POST {instance}/auth/token; no /api/authinfo)
        'auth_server': 'separate',
        'auth_path': '',
        'authinfo_tenant': None,
        'teams': [{'id': 1, 'name': 'SOC'}, {'id': 2, 'name': 'Service Desk'}],
        'categories': [{'id': 1, 'value': 'Security>Incident', 'type_id': 1},
                       {'id': 2, 'value': 'Security', 'type_id': 1}],
        'customers': [{'id': 1, 'name': 'Acme'}, {'id': 12, 'name': 'Globex'}],
        'ticket_types': [{'id': 1, 'name': 'Incident'}],
        'priorities': [{'id': i, 'priorityid': i, 'name': 'P%d' % i}
                       for i in range(1, 5)],
        'statuses': [{'id': 1, 'name': 'New'}, {'id': 2, 'name': 'In Progress'},
                     {'id': 9, 'name': 'Closed'}],
    }


def _named_list(value, key, extra=None):
    """Normalise a list of names or {id, key} objects into [{id, key, ...}]."""
    if not isinstance(value, list):
        raise ValueError('expected a list')
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {'id': i + 1, key: item}
        elif isinstance(item, dict):
            item = dict(item)
            if key not in item and 'name' in item:
                item[key] = item['name']
            if not isinstance(item.get(key), str):
                raise ValueError('entry %d needs a string "%s"' % (i, key))
            item.setdefault('id', i + 1)
        else:
            raise ValueError('entry %d must be a string or an object' % i)
        for k, v in (extra or {}).items():
            item.setdefault(k, v)
        out.append(item)
    return out


def _clients(value):
    """Validate the list of registered API clients."""
    if not isinstance(value, list):
        raise ValueError('expected a list')
    out = []
    for i, c in enumerate(value):
        if not (isinstance(c, dict) and isinstance(c.get('client_id'), str)
                and isinstance(c.get('client_secret'), str)):
            raise ValueError('entry %d needs string client_id and client_secret' % i)
        tenant = c.get('tenant')
        if tenant is not None and not isinstance(tenant, str):
            raise ValueError('entry %d: tenant must be a string' % i)
        scopes = c.get('scopes', list(DEFAULT_SCOPES))
        if not (isinstance(scopes, list) and all(isinstance(x, str) for x in scopes)):
            raise ValueError('entry %d: scopes must be a list of strings' % i)
        out.append({'client_id': c['client_id'], 'client_secret': c['client_secret'],
                    'tenant': tenant or None, 'scopes': scopes})
    return out


def _one_of(*values):
    """Validate a value among values."""
    def check(value):
        if value not in values:
            raise ValueError('expected one of %s' % ', '.join(map(str, values)))
        return value
    return check


def _auth_path(value):
    """Validate a path prefix: '' or '/word[/word...]' without a trailing slash."""
    if not isinstance(value, str) or not re.fullmatch(r'(/[A-Za-z0-9._~-]+)*', value):
        raise ValueError("expected '' or a path such as '/auth'")
    return value


def _optional_text(value):
    """Validate a string or null."""
    if value is not None and not isinstance(value, str):
        raise ValueError('expected a string or null')
    return value


def _number(value):
    """Validate a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError('expected a non-negative number')
    return value


def _boolean(value):
    """Validate a boolean."""
    if not isinstance(value, bool):
        raise ValueError('expected true or false')
    return value


def _rate_limit(value):
    """Validate {max_requests, window_s, retry_after?} or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError('expected an object or null')
    out = {'max_requests': int(_number(value.get('max_requests', -1))),
           'window_s': _number(value.get('window_s', -1))}
    if value.get('retry_after') is not None:
        out['retry_after'] = str(value['retry_after'])
    return out


CONFIG_KEYS = {
    'latency_ms': _number,
    'token_expires_in': lambda v: int(_number(v)),
    'require_category': _boolean,
    'validate_fields': _boolean,
    'honour_third_party_filter': _boolean,
    'rate_limit': _rate_limit,
    'clients': _clients,
    'auth_server': _one_of('separate', 'instance'),
    'auth_path': _auth_path,
    'authinfo_tenant': _optional_text,
    'teams': lambda v: _named_list(v, 'name'),
    'categories': lambda v: _named_list(v, 'value', {'type_id': 1}),
    'customers': lambda v: _named_list(v, 'name'),
    'ticket_types': lambda v: _named_list(v, 'name'),
    'priorities': lambda v: _named_list(v, 'name'),
    'statuses': lambda v: _named_list(v, 'name'),
}


def load_schemas(path):
    """Return {'Faults': {prop: spec}, 'Actions': {prop: spec}} from the OpenAPI file."""
    with open(path, encoding='utf-8') as f:
        doc = json.load(f)
    schemas = doc['components']['schemas']
    return {name: dict(schemas[name]['properties']) for name in ('Faults', 'Actions')}


def type_error(spec, value):
    """Return None when value fits the OpenAPI property spec, else what was expected."""
    if value is None:
        return None if spec.get('nullable') or '$ref' in spec else 'a non-null value'
    if '$ref' in spec:
        return None if isinstance(value, dict) else 'an object'
    kind = spec.get('type')
    if kind == 'integer':
        lo, hi = INT_RANGES.get(spec.get('format'), INT_RANGES['int64'])
        ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
        return None if ok else 'an integer (%s)' % spec.get('format', 'int')
    if kind == 'number':
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else 'a number'
    if kind == 'boolean':
        return None if isinstance(value, bool) else 'a boolean'
    if kind == 'string':
        return None if isinstance(value, str) else 'a string'
    if kind == 'array':
        return None if isinstance(value, list) else 'an array'
    return None


class State:
    """All mutable mock state, guarded by self.lock."""

    def __init__(self, latency_ms=0, schemas=None):
        """Create the state with default config; schemas may be None (no field check)."""
        self.lock = threading.RLock()
        self.default_latency_ms = latency_ms
        self.schemas = schemas
        self.request_seq = 0
        # every token issued, webhook secret configured and signature sent since the
        # start; reset() keeps it, so that the log hygiene test can grep for all of them
        self.ledger = {'tokens': [], 'webhook_secrets': [], 'signatures': []}
        # the base URLs of this process's servers, set once they listen (mock_halo.py)
        self.instance_url = None
        self.auth_server_url = None
        self.reset()

    def reset(self):
        """Clear all data and restore the default configuration."""
        with self.lock:
            self.config = default_config(self.default_latency_ms)
            self.tokens = {}
            self.tickets = {}
            self.actions = []
            self.requests = []
            self.faults = []
            self.webhook = {}
            self.webhook_log = []
            self.rate_window = []
            self.next_ticket_id = FIRST_TICKET_ID
            self.next_action_id = FIRST_ACTION_ID

    def update_config(self, changes):
        """Apply config changes after validating them all; raise ValueError if bad."""
        if not isinstance(changes, dict):
            raise ValueError('config must be a JSON object')
        clean = {}
        for key, value in changes.items():
            if key not in CONFIG_KEYS:
                raise ValueError('unknown config key: %s' % key)
            try:
                clean[key] = CONFIG_KEYS[key](value)
            except (ValueError, TypeError) as e:
                raise ValueError('%s: %s' % (key, e))
        with self.lock:
            self.config.update(clean)
            return copy.deepcopy(self.config)

    def config_copy(self, key=None):
        """Return a deep copy of the whole config, or of one key."""
        with self.lock:
            return copy.deepcopy(self.config if key is None else self.config[key])

    # ---- tokens -----------------------------------------------------------

    def auth_url(self):
        """The authorisation server's URL as GET /api/authinfo names it, or None when the
        token endpoint is on the instance (auth_server 'instance')."""
        with self.lock:
            if self.config['auth_server'] != 'separate' or self.auth_server_url is None:
                return None
            return self.auth_server_url + self.config['auth_path']

    def find_client(self, client_id, client_secret, tenant):
        """Return the registered client matching the credentials and tenant, or None."""
        with self.lock:
            for c in self.config['clients']:
                if c['client_id'] == client_id and c['client_secret'] == client_secret:
                    if c['tenant'] is None or c['tenant'] == tenant:
                        return c
        return None

    def issue_token(self, client_id):
        """Create an access token for client_id; return (token, expires_in)."""
        token = secrets.token_urlsafe(32)
        with self.lock:
            expires_in = self.config['token_expires_in']
            self.tokens[token] = {'client_id': client_id,
                                  'expires_at': time.time() + expires_in}
            self.ledger['tokens'].append(token)
        return token, expires_in

    def check_token(self, token):
        """Return the token's client_id if the token is known and unexpired, else None."""
        with self.lock:
            info = self.tokens.get(token)
            if info is None or time.time() >= info['expires_at']:
                return None
            return info['client_id']

    def expire_tokens(self):
        """Invalidate every issued token."""
        with self.lock:
            self.tokens.clear()

    def rate_limited(self):
        """Count a request against config rate_limit. Returns None when within it, else
        the headers of the 429: none, as hosted Halo sends (its "Rate Limit Reached" body
        only), unless rate_limit names a retry_after ("auto": the seconds until the window
        lets a request through)."""
        with self.lock:
            rl = self.config.get('rate_limit')
            if not rl or rl['max_requests'] < 0 or rl['window_s'] <= 0:
                return None
            now = time.time()
            self.rate_window = [t for t in self.rate_window if t > now - rl['window_s']]
            if len(self.rate_window) >= rl['max_requests']:
                wait = self.rate_window[0] + rl['window_s'] - now
                if rl.get('retry_after') is None:
                    return {}
                if rl['retry_after'] == 'auto':
                    return {'Retry-After': str(max(1, int(wait + 0.999)))}
                return {'Retry-After': rl['retry_after']}
            self.rate_window.append(now)
            return None

    # ---- request log ------------------------------------------------------

    def log_request(self, entry):
        """Append a request log entry, assigning its seq; return the entry."""
        with self.lock:
            self.request_seq += 1
            entry['seq'] = self.request_seq
            self.requests.append(entry)
            return entry

    def requests_since(self, since, method=None, path=None):
        """Return copies of logged requests with seq > since, optionally filtered."""
        with self.lock:
            out = [r for r in self.requests if r['seq'] > since
                   and (method is None or r['method'] == method.upper())
                   and (path is None or r['path'].lower() == path.lower())]
            return copy.deepcopy(out)

    # ---- tickets and actions ----------------------------------------------

    def new_ticket(self, fields):
        """Store a new ticket built from the posted fields; return it."""
        with self.lock:
            tid = self.next_ticket_id
            self.next_ticket_id += 1
            ticket = {'id': tid}
            ticket.update({k: v for k, v in fields.items() if k != 'id'})
            ticket.setdefault('status_id', 1)
            ticket.setdefault('hasbeenclosed', ticket['status_id'] in CLOSED_STATUS_IDS)
            ticket.setdefault('dateoccurred', utc_iso())
            ticket.setdefault('agent_name', None)
            for c in self.config['customers']:
                if c['id'] == ticket.get('client_id'):
                    ticket.setdefault('client_name', c['name'])
            self.tickets[tid] = ticket
            self.add_action(tid, {'note': 'Ticket logged', 'outcome': 'Ticket logged',
                                  'who': 'System', 'hiddenfromuser': False},
                            is_system=True)
            return ticket

    def update_ticket(self, ticket, fields):
        """Apply fields to an existing ticket; keep hasbeenclosed in step with status."""
        with self.lock:
            for k, v in fields.items():
                if k != 'id':
                    ticket[k] = v
            if 'status_id' in fields and 'hasbeenclosed' not in fields:
                self.set_status(ticket, fields['status_id'])
            return ticket

    def set_status(self, ticket, status_id):
        """Set a ticket's status_id and derive hasbeenclosed/dateclosed from it."""
        with self.lock:
            ticket['status_id'] = status_id
            closed = status_id in CLOSED_STATUS_IDS
            if closed and not ticket.get('hasbeenclosed'):
                ticket['dateclosed'] = utc_iso()
            ticket['hasbeenclosed'] = closed

    def add_action(self, ticket_id, fields, who='API User', app_id=None, is_system=False):
        """Create an action on ticket_id from fields; apply new_status; return it."""
        with self.lock:
            aid = self.next_action_id
            self.next_action_id += 1
            note = fields.get('note')
            note_html = fields.get('note_html')
            if note is None and note_html is not None:
                note = _strip_html(note_html)
            if note_html is None and note is not None:
                note_html = _to_html(note)
            action = {'id': aid, 'ticket_id': ticket_id}
            action.update({k: v for k, v in fields.items() if k not in ('id', 'ticket_id')})
            action.update({'note': note, 'note_html': note_html})
            action.setdefault('who', who)
            action['datetime'] = halo_time()
            action.setdefault('outcome', None)
            action.setdefault('hiddenfromuser', False)
            action.setdefault('new_status', None)
            action['actionby_application_id'] = app_id
            # Halo marks system actions with a non-zero action_systemid and sends no
            # is_system field (shared/halo-api.md); who_type 0 is the system, 1 an agent
            action['action_systemid'] = SYSTEM_ACTION_ID if is_system else 0
            action['who_type'] = 0 if is_system else 1
            self.actions.append(action)
            if action['new_status'] is not None and ticket_id in self.tickets:
                self.set_status(self.tickets[ticket_id], action['new_status'])
            return action

    def ticket_actions(self, ticket_id):
        """Return the actions of one ticket, oldest first."""
        with self.lock:
            return [a for a in self.actions if a['ticket_id'] == ticket_id]


def _strip_html(text):
    """Crudely turn HTML into plain text for an action's note."""
    return html.unescape(re.sub(r'<[^>]*>', '', re.sub(r'<br\s*/?>', '\n', text)))


def _to_html(text):
    """Turn a plain note into the HTML Halo would store."""
    return html.escape(text).replace('\n', '<br>')


def find_openapi(explicit=None):
    """Return the OpenAPI subset path (explicit, or ../../../shared beside the script)."""
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, '..', '..', '..', 'shared',
                                         'halo-openapi-subset.json'))
