"""
halo_api.py - the Halo ITSM REST endpoints of the mock server.

POST {auth server}/token (OAuth2 client credentials, with the scopes the API
application is granted), GET /api/authinfo (which names the authorisation
server) and the /api/... endpoints the extension uses: Tickets (create/update/list/get), Actions (list/create) and the
lookup lists (Team, Category, Client, TicketType, Priority, Status).  Every
function takes a Request (see handler.py) and the State and returns
(status, json_body[, extra_headers]).  Field names follow Halo's OpenAPI subset;
its lookup endpoints carry no response schema, so their shapes follow what
Halo itself answers (bare arrays, except Client which is wrapped).
"""

import base64
import copy
import re
import urllib.parse

import webhooks
from halo_state import type_error


def halo_error(message, status=400):
    """Return a Halo-like validation error response."""
    return status, {'ClassName': 'HaloValidationException', 'Message': message}


def auth_token(req, state):
    """POST {auth server}/token (or {instance}/auth/token): issue a bearer token for valid
    client credentials (form or Basic) and a granted scope."""
    if req.method != 'POST':
        return 405, {'error': 'method not allowed'}
    form = urllib.parse.parse_qs(req.body.decode('utf-8', 'replace'), keep_blank_values=True)
    first = {k: v[0] for k, v in form.items()}
    scheme, _, cred = req.headers.get('authorization', '').partition(' ')
    if 'client_id' not in first and scheme.lower() == 'basic':
        try:
            pair = base64.b64decode(cred.strip()).decode('utf-8')
        except ValueError:
            pair = ''
        first['client_id'], _, first['client_secret'] = (
            urllib.parse.unquote(x) for x in pair.partition(':'))
    if first.get('grant_type') != 'client_credentials':
        return 400, {'error': 'unsupported_grant_type'}
    tenant = req.query.get('tenant', [None])[0]
    client = state.find_client(first.get('client_id'), first.get('client_secret'), tenant)
    if client is None:
        return 401, {'error': 'invalid_client',
                     'error_description': 'unknown client, wrong secret or wrong tenant'}
    # the stricter reading of OAuth2: every scope asked for must be granted to the API
    # application (an application granted 'all' is not given a narrower scope), and an
    # empty scope is refused
    asked = first.get('scope', '').split(' ')
    if not all(asked) or any(x not in client['scopes'] for x in asked):
        return 400, {'error': 'invalid_scope',
                     'error_description': 'the API application is not granted the scope asked for'}
    token, expires_in = state.issue_token(client['client_id'])
    return 200, {'access_token': token, 'token_type': 'Bearer',
                 'expires_in': expires_in, 'scope': first.get('scope', '')}


def authinfo(req, state):
    """GET /api/authinfo (no token needed): the authorisation server's URL and, when
    configured, the tenant, as Halo answers them; 404 when the token endpoint is on the
    instance (the older Halo)."""
    if req.method != 'GET':
        return 405, {'error': 'method not allowed'}
    url = state.auth_url()
    if url is None:
        return 404, {'error': 'not found'}
    body = {'auth_url': url}
    tenant = state.config_copy('authinfo_tenant')
    if tenant is not None:
        body['tenant_id'] = tenant
    return 200, body


def _qbool(req, name):
    """Read a true/false query parameter."""
    return req.query.get(name, [''])[0].strip().lower() in ('true', '1', 'yes')


def _qint(req, name, default=None):
    """Read an integer query parameter; raise ValueError when malformed."""
    values = req.query.get(name)
    if not values or values[0].strip() == '':
        return default
    return int(values[0])


def _check_fields(state, schema, obj):
    """Return an error message if obj has fields unknown to schema or of wrong type."""
    props = state.schemas[schema]
    for name, value in obj.items():
        if name not in props:
            return "The field '%s' does not exist on %s" % (name, schema)
        expected = type_error(props[name], value)
        if expected:
            return "The field '%s' must be %s" % (name, expected)
    return None


def _json_array(req):
    """Return the request's JSON array of objects, or an error response."""
    if req.json_error:
        return None, halo_error('Invalid JSON: %s' % req.json_error)
    if not isinstance(req.json, list):
        return None, halo_error('The request body must be a JSON array')
    for i, item in enumerate(req.json):
        if not isinstance(item, dict):
            return None, halo_error('Element %d of the array is not an object' % i)
    return req.json, None


def _known_id(mapping, value):
    """Return value if it is an integer key of mapping, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value in mapping:
        return value
    return None


def post_tickets(req, state):
    """POST /api/Tickets: create new tickets or update those whose id exists."""
    items, err = _json_array(req)
    if err:
        return err
    with state.lock:
        cfg = state.config
        for item in items:
            if cfg['validate_fields'] and state.schemas:
                msg = _check_fields(state, 'Faults', item)
                if msg:
                    return halo_error(msg)
            if _known_id(state.tickets, item.get('id')) is not None:
                continue
            if cfg['require_category'] and not str(item.get('category_1') or '').strip():
                return halo_error('Category 1 is mandatory for this Ticket Type')
        out = []
        for item in items:
            ticket = state.tickets.get(_known_id(state.tickets, item.get('id')))
            if ticket is not None:
                state.update_ticket(ticket, item)
            else:
                ticket = state.new_ticket(item)
            out.append(copy.deepcopy(ticket))
    return 200, (out[0] if len(out) == 1 else out)


# The columns of a ticket list item (the shape n8n's HaloPSA node records for "ticket
# getAll"): never third_party_id_string nor hasbeenclosed, which only GET /api/Tickets/{id}
# answers. A lookup must confirm its candidates from the whole ticket.
LIST_COLUMNS = ('id', 'summary', 'details', 'status_id', 'tickettype_id', 'priority_id',
                'client_id', 'client_name', 'site_id', 'user_id', 'team', 'team_id',
                'category_1', 'category_2', 'category_3', 'category_4', 'agent_id',
                'dateoccurred', 'datecreated', 'dateclosed', 'deadlinedate')


def _list_item(ticket):
    """A ticket as a list shows it: its list columns only."""
    return {k: copy.deepcopy(ticket[k]) for k in LIST_COLUMNS if k in ticket}


def _ticket_matches(req, t, honour_tpid):
    """Apply the list filters of GET /api/Tickets to one ticket. search matches the
    summary and the details only (never the third party id), case-insensitively."""
    search = req.query.get('search', [''])[0].strip().lower()
    if search and not any(search in str(t.get(f) or '').lower()
                          for f in ('summary', 'details')):
        return False
    ids = req.query.get('ticketids', [''])[0]
    if ids.strip() and t['id'] not in {int(x) for x in ids.split(',') if x.strip()}:
        return False
    if _qbool(req, 'open_only') and t.get('hasbeenclosed'):
        return False
    for name in ('status_id', 'client_id'):
        want = _qint(req, name)
        if want is not None and t.get(name) != want:
            return False
    tpid = req.query.get('third_party_id_string')
    if honour_tpid and tpid and t.get('third_party_id_string') != tpid[0]:
        return False
    return True


def list_tickets(req, state):
    """GET /api/Tickets: filtered, ordered (order=id|summary..., orderdesc=true), optionally
    paginated list of tickets; items carry the list columns only."""
    try:
        with state.lock:
            honour = state.config['honour_third_party_filter']
            found = [_list_item(t) for _, t in sorted(state.tickets.items())
                     if _ticket_matches(req, t, honour)]
        order = req.query.get('order', [''])[0].strip().lower()
        if order:
            found.sort(key=lambda t: (t.get(order) is None, str(t.get(order))
                                      if not isinstance(t.get(order), int) else t.get(order)))
        if _qbool(req, 'orderdesc'):
            found.reverse()
        body = {'record_count': len(found)}
        if _qbool(req, 'pageinate'):
            size = min(max(_qint(req, 'page_size', 50), 1), 100)
            page = max(_qint(req, 'page_no', 1), 1)
            found = found[(page - 1) * size: page * size]
            body.update({'page_no': page, 'page_size': size})
    except ValueError:
        return halo_error('A numeric query parameter is not a number')
    body['tickets'] = found
    return 200, body


def get_ticket(req, state, tid):
    """GET /api/Tickets/{id}: one ticket, with last_action on request."""
    with state.lock:
        ticket = state.tickets.get(tid)
        if ticket is None:
            return 404, {'error': 'not found'}
        ticket = copy.deepcopy(ticket)
        if _qbool(req, 'includelastaction'):
            actions = state.ticket_actions(tid)
            ticket['last_action'] = copy.deepcopy(actions[-1]) if actions else None
    return 200, ticket


def list_actions(req, state):
    """GET /api/Actions?ticket_id=N[&excludesys=true][&includehtmlnote=true]."""
    try:
        tid = _qint(req, 'ticket_id')
    except ValueError:
        tid = None
    if tid is None:
        return halo_error('ticket_id is required')
    actions = state.ticket_actions(tid)
    if _qbool(req, 'excludesys'):
        actions = [a for a in actions if not a.get('action_systemid')]
    actions = copy.deepcopy(actions)
    if not _qbool(req, 'includehtmlnote'):
        # like Halo: note_html only when asked for
        for a in actions:
            a.pop('note_html', None)
    return 200, {'ticket_id': tid, 'record_count': len(actions), 'actions': actions}


def post_actions(req, state):
    """POST /api/Actions: add notes (and optional status changes) to tickets."""
    items, err = _json_array(req)
    if err:
        return err
    with state.lock:
        for item in items:
            if state.config['validate_fields'] and state.schemas:
                msg = _check_fields(state, 'Actions', item)
                if msg:
                    return halo_error(msg)
            if _known_id(state.tickets, item.get('ticket_id')) is None:
                return 404, {'error': 'not found',
                             'Message': 'Ticket %s not found' % item.get('ticket_id')}
        out = [copy.deepcopy(state.add_action(item['ticket_id'], item, who='API User',
                                              app_id=req.client_id))
               for item in items]
        tickets = [copy.deepcopy(state.tickets[a['ticket_id']]) for a in out]
    # like Halo, an action added through the API fires the ticket's webhook too (the
    # extension must not take its own notes back as new ones)
    for ticket, action in zip(tickets, out):
        webhooks.emit(state, ticket, action, 'Ticket ID: %07d has been updated by API User.' % ticket['id'])
    return 200, (out[0] if len(out) == 1 else out)


def list_clients(req, state):
    """GET /api/Client: {"record_count", "clients"} with optional search."""
    search = req.query.get('search', [''])[0].strip().lower()
    with state.lock:
        clients = [dict(c) for c in state.config['customers']
                   if search in c['name'].lower()]
    return 200, {'record_count': len(clients), 'clients': clients}


LOOKUPS = {'team': 'teams', 'category': 'categories', 'tickettype': 'ticket_types',
           'priority': 'priorities', 'status': 'statuses'}


def route(req, state):
    """Dispatch an authenticated /api request; return (status, body[, headers])."""
    parts = [p for p in req.path.lower().split('/') if p][1:]
    if not parts:
        return 404, {'error': 'not found'}
    name, rest = parts[0], parts[1:]
    if name == 'tickets' and not rest:
        handlers = {'GET': list_tickets, 'POST': post_tickets}
    elif name == 'tickets' and len(rest) == 1:
        if not re.fullmatch(r'-?\d+', rest[0]):
            return 404, {'error': 'not found'}
        handlers = {'GET': lambda r, s: get_ticket(r, s, int(rest[0]))}
    elif name == 'actions' and not rest:
        handlers = {'GET': list_actions, 'POST': post_actions}
    elif name == 'client' and not rest:
        handlers = {'GET': list_clients}
    elif name in LOOKUPS and not rest:
        key = LOOKUPS[name]
        handlers = {'GET': lambda r, s: (200, s.config_copy(key))}
    else:
        return 404, {'error': 'not found'}
    if req.method not in handlers:
        return 405, {'error': 'method not allowed'}
    return handlers[req.method](req, state)
