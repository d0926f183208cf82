"""
webhooks.py - Halo-style signed webhooks sent by the mock server.

Implements the signing scheme of the project reference shared/webhook-signature.md on its own
(hmac/hashlib/base64, independent of the extension's C code): the canonical
string is "content-length:V\\ncontent-type:V\\nhost:V\\nx-halo-date:V\\n" followed
by the raw body, and X-Signature is base64(HMAC-SHA256(secret, canonical)).
Deliveries are POSTed synchronously with http.client and logged in the state.

Halo's Webhook object makes the scheme configurable (signature header, headers to sign,
digest encoding, prefix, timestamp header), and the exact canonical layout is not
published, so the mock signs with a configurable "signing" scheme: the default is the one
above; the candidate layouts of webhook-signature.md are built by layout_bytes() below.
With "batch": N > 1 the mock holds events and sends N of them as one JSON array (Halo's
batching); "mode": "event_only" leaves the ticket and action out.
"""

import base64
import copy
import email.utils
import hashlib
import hmac
import http.client
import json
import ssl
import time
import urllib.parse
import uuid

from halo_state import utc_iso

SIGNED_HEADERS = ('content-length', 'content-type', 'host', 'x-halo-date')

GOLDEN = {
    'secret': 'hX3v9Qw2Lk8Zp4Rt7Yb1Nc6Md0Fg5Sj2',
    'body': '{"id":"5b0c2f4e-8d1a-4c1e-9a57-2f1f0d3e6b11","event":"Ticket Updated by Agent",'
            '"object_id":4242,"ticket":{"id":4242,"status_id":9,"hasbeenclosed":true}}',
    'headers': {'content-length': '152', 'content-type': 'application/json',
                'host': 'soc.example.com', 'x-halo-date': 'Sat, 28 Nov 2026 15:56:01 GMT'},
    'signature': 'UMHDx/bdoVfqCevuc11L1BqGTBpzX5lbR+hF7lUdUpc=',
}

CONFIG_DEFAULTS = {'url': None, 'secret': None, 'mode': 'full', 'enabled': True,
                   'drop_next': 0, 'date_offset_s': 0, 'date_format': 'imf',
                   'send_host': None, 'signing': None, 'batch': 1}

# The signing scheme the mock uses unless "signing" changes some of it.
SIGNING_DEFAULTS = {'layout': 'default', 'signature_header': 'x-signature',
                    'signed_headers': list(SIGNED_HEADERS), 'digest': 'base64', 'prefix': '',
                    'timestamp_header': 'x-halo-date'}

LAYOUTS = ('default', 'blank_line', 'space', 'crlf', 'values', 'body', 'cavage',
           'cavage_digest', 'rfc9421')


def layout_bytes(layout, pairs, body):
    """The bytes signed under a candidate layout of webhook-signature.md.

    pairs: [(lower-case name, value)] in signing order; values are stripped of spaces/tabs.
    """
    pairs = [(n, str(v).strip(' \t')) for n, v in pairs]
    if layout == 'default':
        return ''.join('%s:%s\n' % p for p in pairs).encode() + body
    if layout == 'blank_line':
        return ''.join('%s:%s\n' % p for p in pairs).encode() + b'\n' + body
    if layout == 'space':
        return ''.join('%s: %s\n' % p for p in pairs).encode() + body
    if layout == 'crlf':
        return ''.join('%s:%s\r\n' % p for p in pairs).encode() + body
    if layout == 'values':
        return ''.join('%s\n' % v for _, v in pairs).encode() + body
    if layout == 'body':
        return body
    if layout == 'cavage':
        return '\n'.join('%s: %s' % p for p in pairs).encode() + body
    if layout == 'cavage_digest':
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        lines = ['%s: %s' % p for p in pairs] + ['digest: SHA-256=' + digest]
        return '\n'.join(lines).encode()
    if layout == 'rfc9421':
        return ''.join('"%s": %s\n' % p for p in pairs).encode() + body
    raise ValueError('unknown layout ' + layout)


def sign_scheme(secret, scheme, headers, body):
    """(header name, value) of the signature of headers and body under scheme."""
    sc = dict(SIGNING_DEFAULTS, **(scheme or {}))
    lower = {k.lower(): v for k, v in headers.items()}
    pairs = [] if sc['layout'] == 'body' else [(n, lower[n]) for n in sc['signed_headers']]
    mac = hmac.new(secret.encode('utf-8'), layout_bytes(sc['layout'], pairs, body),
                   hashlib.sha256).digest()
    digest = mac.hex() if sc['digest'] == 'hex' else base64.b64encode(mac).decode('ascii')
    return sc['signature_header'], sc['prefix'] + digest


def canonical(headers, body):
    """Build the canonical bytes from the four signed headers and the raw body."""
    lower = {k.lower(): v for k, v in headers.items()}
    lines = []
    for name in SIGNED_HEADERS:
        if name not in lower:
            raise KeyError(name)
        lines.append('%s:%s\n' % (name, str(lower[name]).strip(' \t')))
    return ''.join(lines).encode('utf-8') + body


def sign(secret, headers, body):
    """Return base64(HMAC-SHA256(secret, canonical(headers, body)))."""
    mac = hmac.new(secret.encode('utf-8'), canonical(headers, body), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode('ascii')


def golden_ok():
    """Check sign() against the golden vector in webhook-signature.md."""
    body = GOLDEN['body'].encode('utf-8')
    return (len(body) == 152
            and sign(GOLDEN['secret'], GOLDEN['headers'], body) == GOLDEN['signature'])


def url_host(url):
    """Return the host[:port] of a URL, leaving out the scheme's default port."""
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == 'https' else 80
    host = parts.hostname or ''
    if ':' in host:
        host = '[%s]' % host
    return host if parts.port in (None, default) else '%s:%d' % (host, parts.port)


def configure(state, changes):
    """Merge changes into the webhook config (validated); return the new config."""
    if not isinstance(changes, dict):
        raise ValueError('webhook config must be a JSON object')
    unknown = set(changes) - set(CONFIG_DEFAULTS) - {'webhook_id'}
    if unknown:
        raise ValueError('unknown webhook keys: ' + ', '.join(sorted(unknown)))
    if changes.get('mode', 'full') not in ('full', 'event_only'):
        raise ValueError('mode must be "full" or "event_only"')
    if changes.get('date_format', 'imf') not in ('imf', 'rfc3339'):
        raise ValueError('date_format must be "imf" or "rfc3339"')
    signing = changes.get('signing')
    if signing is not None:
        if not isinstance(signing, dict) or set(signing) - set(SIGNING_DEFAULTS):
            raise ValueError('signing must be an object with keys among '
                             + ', '.join(sorted(SIGNING_DEFAULTS)))
        if signing.get('layout', 'default') not in LAYOUTS:
            raise ValueError('signing.layout must be one of ' + ', '.join(LAYOUTS))
        if signing.get('digest', 'base64') not in ('base64', 'hex'):
            raise ValueError('signing.digest must be "base64" or "hex"')
    if not isinstance(changes.get('batch', 1), int) or changes.get('batch', 1) < 1:
        raise ValueError('batch must be a positive integer')
    url = changes.get('url')
    if url is not None and urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise ValueError('url must be http:// or https://')
    with state.lock:
        if not state.webhook:
            state.webhook = dict(CONFIG_DEFAULTS, webhook_id=str(uuid.uuid4()))
        state.webhook.update(changes)
        if changes.get('secret'):
            state.ledger['webhook_secrets'].append(changes['secret'])
        return dict(state.webhook)


def build_payload(cfg, ticket, action, message):
    """Build the delivery payload (full or event_only) for a ticket update."""
    payload = {'id': str(uuid.uuid4()), 'webhook_id': cfg['webhook_id'],
               'event': 'Ticket Updated by Agent', 'message': message,
               'object_id': ticket['id'], 'agent_id': 3, 'timestamp': utc_iso()}
    if cfg['mode'] == 'full':
        payload['ticket'] = copy.deepcopy(ticket)
        if action is not None:
            payload['action'] = copy.deepcopy(action)
    return payload


def emit(state, ticket, action, message):
    """Send a webhook for a ticket change if configured; return its log entry or None.

    With "batch": N > 1 the event is held until N are pending, then all are sent as one
    JSON array (returns None while held).
    """
    with state.lock:
        cfg = dict(state.webhook)
        if not cfg.get('url') or not cfg.get('enabled'):
            return None
        payload = build_payload(cfg, ticket, action, message)
        if cfg.get('batch', 1) > 1:
            pending = state.webhook.setdefault('_pending', [])
            pending.append(payload)
            if len(pending) < cfg['batch']:
                return None
            payload = list(pending)
            del state.webhook['_pending']
        dropped = cfg['drop_next'] > 0
        if dropped:
            state.webhook['drop_next'] -= 1
    return send_payload(state, cfg, payload, dropped)


def send_payload(state, cfg, payload, dropped=False):
    """Sign and POST one payload (an event object or a batch array); return its log entry."""
    body = json.dumps(payload, separators=(',', ':'), ensure_ascii=False).encode('utf-8')
    when = time.time() + cfg.get('date_offset_s', 0)
    date = (email.utils.formatdate(when, usegmt=True) if cfg['date_format'] == 'imf'
            else utc_iso(when))
    headers = {'Content-Type': 'application/json', 'Content-Length': str(len(body)),
               'Host': url_host(cfg['url']), 'X-Halo-Date': date}
    scheme = dict(SIGNING_DEFAULTS, **(cfg.get('signing') or {}))
    if scheme['timestamp_header'] not in (None, 'none', 'x-halo-date'):
        headers[scheme['timestamp_header']] = headers.pop('X-Halo-Date')
    if cfg.get('secret') is not None:
        name, value = sign_scheme(cfg['secret'], scheme, headers, body)
        headers[name if name != 'x-signature' else 'X-Signature'] = value
        with state.lock:
            state.ledger['signatures'].append(value)
    if cfg.get('send_host'):
        headers['Host'] = cfg['send_host']
    entry = {'url': cfg['url'], 'headers': headers, 'body': body.decode('utf-8'),
             'event_id': payload['id'] if isinstance(payload, dict) else [p['id'] for p in payload],
             'status': None, 'response': None,
             'sent': False, 'dropped': dropped, 'error': None}
    with state.lock:
        entry['id'] = len(state.webhook_log) + 1
        state.webhook_log.append(entry)
    if not dropped:
        deliver(entry)
    return copy.deepcopy(entry)


def deliver(entry):
    """POST a logged delivery (url, headers, body) and record the outcome in it."""
    parts = urllib.parse.urlsplit(entry['url'])
    path = (parts.path or '/') + ('?' + parts.query if parts.query else '')
    if parts.scheme == 'https':
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=10,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
    body = entry['body'].encode('utf-8')
    try:
        conn.putrequest('POST', path, skip_host=True, skip_accept_encoding=True)
        for name, value in entry['headers'].items():
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        entry['status'] = resp.status
        entry['response'] = resp.read().decode('utf-8', 'replace')
        entry['sent'] = True
        entry['error'] = None
    except (OSError, http.client.HTTPException) as e:
        entry['error'] = '%s: %s' % (type(e).__name__, e)
    finally:
        conn.close()
    return entry


def resend(state, webhook_id):
    """Deliver a logged webhook again, byte for byte (replay); return the new entry."""
    with state.lock:
        old = next((w for w in state.webhook_log if w['id'] == webhook_id), None)
        if old is None:
            return None
        entry = {k: copy.deepcopy(old[k]) for k in ('url', 'headers', 'body', 'event_id')}
        entry.update({'status': None, 'response': None, 'sent': False,
                      'dropped': False, 'error': None, 'resent_from': webhook_id,
                      'id': len(state.webhook_log) + 1})
        state.webhook_log.append(entry)
    deliver(entry)
    return copy.deepcopy(entry)
