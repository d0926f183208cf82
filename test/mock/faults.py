"""
faults.py - fault injection rules for the mock Halo server.

A rule matches a request by method and path (case-insensitive; a path ending in
"*" matches by prefix; either may be omitted to match anything) and carries an
action: status, drop, drop_after_create, delay or expire_tokens.  Rules are
tried in order; the first one with count remaining fires and its count is
decremented under the state lock.  A "random" rule draws from its own seeded
generator and fires a fault with the given probabilities; when the draw picks
no fault the request falls through to the later rules.
"""

import random

ACTION_TYPES = ('status', 'drop', 'drop_after_create', 'delay', 'expire_tokens')
RANDOM_KEYS = ('status_500', 'status_429', 'drop_after_create', 'delay')


def parse_rule(raw):
    """Validate one rule from POST /_mock/faults; return the stored form."""
    if not isinstance(raw, dict):
        raise ValueError('a rule must be a JSON object')
    rule = {'method': raw.get('method'), 'path': raw.get('path'), 'fired': 0}
    for key in ('method', 'path'):
        if rule[key] is not None and not isinstance(rule[key], str):
            raise ValueError('%s must be a string' % key)
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
        if action['type'] == 'delay' and not isinstance(action.get('ms'), (int, float)):
            raise ValueError('a delay action needs a number "ms"')
        rule['action'] = dict(action)
        rule['count'] = raw.get('count', 1)
    if not isinstance(rule['count'], int) or isinstance(rule['count'], bool):
        raise ValueError('count must be an integer (-1 = forever)')
    return rule


def _matches(rule, method, path):
    """Tell whether a rule applies to this method and path."""
    if rule['count'] == 0:
        return False
    if rule['method'] and rule['method'].upper() != method.upper():
        return False
    want = rule['path']
    if want:
        want, path = want.lower().rstrip('/'), path.lower().rstrip('/')
        if want.endswith('*'):
            return path.startswith(want[:-1])
        return path == want
    return True


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


def pick_fault(state, method, path):
    """Return the fault action to apply to this request (a dict), or None."""
    with state.lock:
        for rule in state.faults:
            if not _matches(rule, method, path):
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
