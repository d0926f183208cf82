"""
faults.py - fault injection rules for the mock Halo server.

A rule matches a request by method and path (case-insensitive; a path ending in
"*" matches by prefix; either may be omitted to match anything), and optionally by
query parameters ("query": {"name": "value"}, each compared with the parameter's
first value) and by a substring of the request body ("body_contains"). It carries
an action: status, drop, drop_after_create, delay or expire_tokens. A status
action answers its "status" with a JSON "body", or with bytes sent as they are:
"raw" (a string, sent as UTF-8) or "raw_base64", with "content_type" (default
application/json) - for answers that are not JSON, or not valid UTF-8.  Rules are
tried in order; the first one with count remaining fires and its count is
decremented under the state lock.  A "random" rule draws from its own seeded
generator and fires a fault with the given probabilities; when the draw picks
no fault the request falls through to the later rules.
"""

import base64
import random

ACTION_TYPES = ('status', 'drop', 'drop_after_create', 'delay', 'expire_tokens')
RANDOM_KEYS = ('status_500', 'status_429', 'drop_after_create', 'delay')


def parse_rule(raw):
    """Validate one rule from POST /_mock/faults; return the stored form."""
    if not isinstance(raw, dict):
        raise ValueError('a rule must be a JSON object')
    rule = {'method': raw.get('method'), 'path': raw.get('path'), 'fired': 0,
            'query': raw.get('query'), 'body_contains': raw.get('body_contains')}
    for key in ('method', 'path', 'body_contains'):
        if rule[key] is not None and not isinstance(rule[key], str):
            raise ValueError('%s must be a string' % key)
    if rule['query'] is not None and not (
            isinstance(rule['query'], dict)
            and all(isinstance(v, str) for v in rule['query'].values())):
        raise ValueError('query must be an object of strings')
    if 'random' in raw:
        rnd = raw['random']
        if not isinstance(rnd, dict):
            raise ValueError('random must be an object')
        for key in RANDOM_KEYS:
            p = rnd.get(key, 0)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError('random.%s must be a probability' % key)
        rule['random'] = dict(rnd)
        rule['rng'] = random.Random(rnd.get('seed'))
        rule['count'] = raw.get('count', -1)
    else:
        action = raw.get('action')
        if not isinstance(action, dict) or action.get('type') not in ACTION_TYPES:
            raise ValueError('action.type must be one of ' + ', '.join(ACTION_TYPES))
        if action['type'] == 'status' and not isinstance(action.get('status'), int):
            raise ValueError('a status action needs an integer "status"')
        if 'raw' in action and not isinstance(action['raw'], str):
            raise ValueError('raw must be a string')
        if 'raw_base64' in action:
            try:
                base64.b64decode(action['raw_base64'], validate=True)
            except (TypeError, ValueError):
                raise ValueError('raw_base64 must be base64')
        if action['type'] == 'delay' and not isinstance(action.get('ms'), (int, float)):
            raise ValueError('a delay action needs a number "ms"')
        rule['action'] = dict(action)
        rule['count'] = raw.get('count', 1)
    if not isinstance(rule['count'], int) or isinstance(rule['count'], bool):
        raise ValueError('count must be an integer (-1 = forever)')
    return rule


def _matches(rule, method, path, query, body):
    """Tell whether a rule applies to this method, path, query and body."""
    if rule['count'] == 0:
        return False
    if rule['method'] and rule['method'].upper() != method.upper():
        return False
    want = rule['path']
    if want:
        want, path = want.lower().rstrip('/'), path.lower().rstrip('/')
        if want.endswith('*'):
            if not path.startswith(want[:-1]):
                return False
        elif path != want:
            return False
    for name, value in (rule.get('query') or {}).items():
        if (query or {}).get(name, [None])[0] != value:
            return False
    if rule.get('body_contains') is not None:
        if rule['body_contains'].encode('utf-8') not in (body or b''):
            return False
    return True


def raw_answer(action):
    """The bytes and content type a status action sends as they are, or None for JSON."""
    if 'raw_base64' in action:
        data = base64.b64decode(action['raw_base64'])
    elif 'raw' in action:
        data = action['raw'].encode('utf-8')
    else:
        return None
    return data, action.get('content_type') or 'application/json'


def _draw(rule):
    """Draw a fault action from a random rule, or None for no fault."""
    rnd = rule['random']
    r = rule['rng'].random()
    edge = 0.0
    for key in RANDOM_KEYS:
        edge += rnd.get(key, 0)
        if r < edge:
            if key == 'status_500':
                return {'type': 'status', 'status': 500}
            if key == 'status_429':
                return {'type': 'status', 'status': 429,
                        'retry_after': rnd.get('retry_after')}
            if key == 'delay':
                return {'type': 'delay', 'ms': rnd.get('delay_ms', 1000)}
            return {'type': key}
    return None


def pick_fault(state, method, path, query=None, body=b''):
    """Return the fault action to apply to this request (a dict), or None."""
    with state.lock:
        for rule in state.faults:
            if not _matches(rule, method, path, query, body):
                continue
            action = _draw(rule) if 'random' in rule else dict(rule['action'])
            if action is None:
                continue
            if rule['count'] > 0:
                rule['count'] -= 1
            rule['fired'] += 1
            return action
    return None


def describe(rules):
    """Return the rules as JSON-friendly dicts (without the random generator)."""
    return [{k: v for k, v in r.items() if k != 'rng'} for r in rules]
