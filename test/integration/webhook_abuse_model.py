"""webhook_abuse_model: the model of test_webhook_abuse's random phase and what it
shares with the fixed cases: the signed header names, the Python signer, the delivery
state set up by test_webhook_abuse.setup_module() (STATE), the fresh valid deliveries
(Base), a delivery being mutated (Mutation), the model that predicts ingest_webhook()'s
answer from the signing scheme and check order of docs/webhooks.md alone (Model), and the mutation
operators. Not a test module (run.py collects test_*.py only).
"""
import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import math
import os
import re
import time

SIGNED = ("content-length", "content-type", "host", "x-halo-date")
FIVE = SIGNED + ("x-signature",)
# the header names of a valid delivery, by their lower-case names
NAME = {"content-length": "Content-Length", "content-type": "Content-Type", "host": "Host",
        "x-halo-date": "X-Halo-Date", "x-signature": "X-Signature"}
WRONG_SECRET = "some-other-secret"      # in halo_test.KNOWN_SECRETS (log hygiene test)
STATE = {}


# --- signing ---------------------------------------------------------------------------

def _canonical(lower, body, host=None):
    """The signed bytes: trimmed values of the four signed headers, then the body."""
    vals = dict(lower, **({"host": host} if host is not None else {}))
    return "".join("%s:%s\n" % (n, str(vals[n]).strip(" \t")) for n in SIGNED).encode("utf-8") + body


def _py_sign(secret, canon):
    """base64(HMAC-SHA256(secret, canon)) with Python's hmac."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), canon, hashlib.sha256).digest()).decode()


def _imf(t):
    """IMF-fixdate of Unix time t (whole seconds)."""
    return email.utils.formatdate(t, usegmt=True)


def _rfc3339(t):
    """RFC 3339 (UTC, whole seconds) of Unix time t."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


# --- random mutations: the model ------------------------------------------------------------

def _ascii_lower(name):
    """name with A-Z in lower case (header names are compared in ASCII)."""
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in name)


def _strict_b64_32(s):
    """Is s the canonical standard base64 (with padding) of exactly 32 bytes?"""
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}=", s):
        return False
    return base64.b64encode(base64.b64decode(s)).decode() == s


class Base:
    """A fresh valid delivery of the random phase: a note on ABUSE-RANDOM's ticket."""

    def __init__(self, rng, seed, i):
        """Delivery i: its own id and action id; IMF or RFC 3339 date; headers shuffled."""
        tid = STATE["random_ticket"]
        self.id, self.action_id, self.note = "rnd-%d-%06d" % (seed, i), 5000000 + i, "Random note %06d" % i
        payload = {"id": self.id, "event": "Ticket Updated by Agent", "object_id": tid,
                   "ticket": {"id": tid, "status_id": 2, "hasbeenclosed": False},
                   "action": {"id": self.action_id, "ticket_id": tid, "who": "Fuzz", "note": self.note}}
        self.body = json.dumps(payload, separators=rng.choice(((",", ":"), (", ", ": ")))).encode()
        self.date = _imf(time.time()) if rng.random() < 0.7 else _rfc3339(time.time())
        lower = {"content-length": str(len(self.body)), "content-type": "application/json",
                 "host": STATE["signed_host"], "x-halo-date": self.date}
        self.canon = _canonical(lower, self.body)
        self.sig = _py_sign(STATE["secret"], self.canon)
        self.pairs = [[NAME[n], v] for n, v in lower.items()] + [["X-Signature", self.sig]]
        rng.shuffle(self.pairs)


class Mutation:
    """A delivery being mutated: key, header pairs (distinct names) and body."""

    def __init__(self, base):
        """A copy of base, not yet mutated."""
        self.base, self.key, self.body, self.ops = base, STATE["key"], base.body, []
        self.pairs = [list(p) for p in base.pairs]

    def find(self, lname):
        """Indexes of the pairs whose name is lname in any case."""
        return [i for i, (n, _) in enumerate(self.pairs) if _ascii_lower(n) == lname]

    def headers_json(self):
        """The headers as a JSON object."""
        assert len({n for n, _ in self.pairs}) == len(self.pairs)
        return json.dumps(dict(self.pairs))


class Model:
    """What ingest_webhook() must answer, from the spec and docs/webhooks.md alone."""

    def __init__(self):
        """Nothing processed yet."""
        self.processed = set()      # delivery ids accepted
        self.good_dates = set()     # x-halo-date values known to be readable and fresh

    def predict(self, m, host_signed, max_body):
        """(answers allowed for mutation m, signed bytes unchanged?): 'accepted',
        'duplicate' or SQLSTATEs; host_signed None when the received Host is signed."""
        if m.key != STATE["key"]:
            return {"WH001"}, False
        if len(m.body) > max_body:
            return {"WH002"}, False
        occ = {n: [] for n in FIVE}
        for name, value in m.pairs:
            if _ascii_lower(name) in occ:
                occ[_ascii_lower(name)].extend(value if isinstance(value, list) else [value])

        def valid(lname):
            """The trimmed value when the header came once, a string, non-empty, no control
            characters but tab; else None."""
            vals = occ[lname]
            if len(vals) != 1 or not isinstance(vals[0], str):
                return None
            t = vals[0].strip(" \t")
            bad = any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in t)
            return None if t == "" or bad else t

        cl, ct = valid("content-length"), valid("content-type")
        host = valid("host") if host_signed is None else host_signed
        if cl is None or ct is None or host is None or (host_signed and len(occ["host"]) > 1):
            return {"WH003"}, False
        date = valid("x-halo-date")
        if date is None:
            return {"WH003"}, False
        sig = valid("x-signature")
        if sig is None:
            return {"WH006"}, False
        if not re.fullmatch(r"[0-9]+", cl) or int(cl) != len(m.body):
            return {"WH004"}, False
        allowed = set()
        if date != m.base.date and date not in self.good_dates:
            allowed = {"WH003", "WH005"}        # PostgreSQL's parser and the clock decide
        if not _strict_b64_32(sig):
            return allowed | {"WH006"}, False
        canon = _canonical({"content-length": cl, "content-type": ct, "host": host, "x-halo-date": date},
                           m.body)
        unchanged = canon == m.base.canon and sig == m.base.sig
        mac_ok = hmac.compare_digest(base64.b64decode(sig),
                                     hmac.new(STATE["secret"].encode(), canon, hashlib.sha256).digest())
        assert unchanged == mac_ok, \
            "the model disagrees with itself: signed bytes unchanged %s, MAC ok %s" % (unchanged, mac_ok)
        if not unchanged:
            return allowed | {"WH007"}, False
        # verified, so the body is the base delivery's (valid JSON, an id, a ticket)
        return {"duplicate" if m.base.id in self.processed else "accepted"}, True


# --- random mutations: the operators (each mutates m and returns its label) -----------------

CHARS = "abcXYZ019:;,.=+/-_ \t\n\r\x01\x1f\x7f\u00e9\u00a0\u2028\u3000"
UNTRIMMED = ("\r", "\n", "\r\n", "\u00a0", "\u3000", "\x0b", "\x0c")
EXTRA_NAMES = ("User-Agent", "Accept", "X-Request-Id", "Date", "Signature", "X-Signature-256",
               "X-Halo-Date-2", "Content-Length ", " Host", "X-Forwarded-Host", "Authorization")


def _pick(m, rng):
    """Index of a pair: mostly one of the five headers, else any; None when there is none."""
    idx = [i for i, (n, _) in enumerate(m.pairs) if _ascii_lower(n) in FIVE or rng.random() < 0.1]
    return rng.choice(idx) if idx else None


def _edit_string(m, rng, fn):
    """Apply fn to a picked string value (or to a string element of an array value)."""
    i = _pick(m, rng)
    if i is None:
        return False
    v = m.pairs[i][1]
    js = [j for j, e in enumerate(v) if isinstance(e, str)] if isinstance(v, list) else []
    if isinstance(v, str):
        m.pairs[i][1] = fn(v)
    elif js:
        j = rng.choice(js)
        v[j] = fn(v[j])
    return isinstance(v, str) or bool(js)


def op_value(m, rng):
    """One character of a value: a bit flipped, or inserted, deleted, replaced; or
    whitespace that is not trimmed added."""
    kind = rng.choice(("bit flip", "bit flip", "insert", "delete", "replace", "untrimmed whitespace"))

    def fn(v):
        """The edited value."""
        k = rng.randrange(len(v) + 1)
        if kind == "insert":
            return v[:k] + rng.choice(CHARS) + v[k:]
        if kind == "untrimmed whitespace":
            return rng.choice(UNTRIMMED) + v if k % 2 else v + rng.choice(UNTRIMMED)
        if not v:
            return v
        k = min(k, len(v) - 1)
        if kind == "bit flip":
            return v[:k] + chr((ord(v[k]) ^ (1 << rng.randrange(8))) or 1) + v[k + 1:]
        return v[:k] + ("" if kind == "delete" else rng.choice(CHARS)) + v[k + 1:]
    return "value " + kind if _edit_string(m, rng, fn) else "noop"


def op_neutral(m, rng):
    """NEUTRAL (the signed bytes stay as they are): spaces and tabs around a value, a value
    as a one-element array, a header name in another ASCII case, or an unsigned header."""
    kind = rng.choice(("value padded", "value array of one", "name case", "extra header"))
    i = _pick(m, rng)
    if kind == "value padded":
        pad = lambda: "".join(rng.choice(" \t") for _ in range(rng.randrange(4)))  # noqa: E731
        return kind if _edit_string(m, rng, lambda v: pad() + v + pad()) else "noop"
    if kind == "extra header" or i is None:
        name = rng.choice(EXTRA_NAMES)
        if any(n == name for n, _ in m.pairs):
            return "noop"
        m.pairs.append([name, rng.choice(("x", "", " \r\n", "application/json", 5, None, ["a", "b"]))])
        return "extra header"
    if kind == "value array of one":
        if isinstance(m.pairs[i][1], list):
            return "noop"
        m.pairs[i][1] = [m.pairs[i][1]]
        return kind
    new = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in m.pairs[i][0])
    if any(n == new for j, (n, _) in enumerate(m.pairs) if j != i):
        return "noop"
    m.pairs[i][0] = new
    return kind


def op_value_type(m, rng):
    """A value blank, or not a string (number, null, boolean, object, arrays)."""
    i = _pick(m, rng)
    if i is None:
        return "noop"
    m.pairs[i][1] = rng.choice(("", " ", "\t", " \t ", 152, 0, None, True, {"v": "x"}, [], [[]]))
    return "value blank or not a string"


def op_header(m, rng):
    """A header removed, its name with a bit flipped, or the header twice (as an array,
    or under a name in another case)."""
    i = _pick(m, rng)
    if i is None:
        return "noop"
    name, value = m.pairs[i]
    kind = rng.choice(("removed", "name bit flip", "twice (array)", "twice (name case)"))
    if kind == "removed":
        del m.pairs[i]
    elif kind == "twice (array)":
        m.pairs[i][1] = value + value[:1] if isinstance(value, list) else [value, value]
    else:
        if kind == "name bit flip":
            k = rng.randrange(len(name))
            new = name[:k] + chr((ord(name[k]) ^ (1 << rng.randrange(7))) or 1) + name[k + 1:]
        else:
            new = name.swapcase() if rng.random() < 0.5 else _ascii_lower(name)
        if any(n == new for n, _ in m.pairs):
            return "noop"
        if kind == "name bit flip":
            m.pairs[i][0] = new
        else:
            other = rng.choice(("x", "1", "application/json"))
            m.pairs.append([new, value if rng.random() < 0.7 else other])
    return "header " + kind


def op_other_value(m, rng, model):
    """A plausible other value for one of the five headers."""
    lname = rng.choice(FIVE)
    idx = m.find(lname)
    if not idx:
        return "noop"
    now, tol, n, sig = time.time(), STATE["tolerance"], len(m.body), m.base.sig
    if lname == "content-length":
        v = rng.choice((str(n + 1), str(n - 1), "0%d" % n, "+%d" % n, "%d.0" % n, hex(n), "-0",
                        "%d %d" % (n, n), str(2 ** 64 + n), str(n * 10)))
    elif lname == "content-type":
        v = rng.choice(("application/json; charset=utf-8", "APPLICATION/JSON", "text/plain",
                        "application/json;"))
    elif lname == "host":
        v = rng.choice(("localhost", "127.0.0.1", STATE["signed_host"].upper(), STATE["signed_host"] + ".",
                        "evil.example.com", "127.0.0.1:1"))
    elif lname == "x-halo-date":
        kind = rng.randrange(5)
        if kind < 2:            # another fresh, readable date
            v = (_imf, _rfc3339)[kind](math.floor(now) + rng.choice((-1, 1)) * rng.choice((1, 2, 30, 100)))
            model.good_dates.add(v)
        elif kind == 2:         # out of the tolerance
            v = _imf(now + rng.choice((-1, 1)) * (tol + rng.choice((5, 60, 3600, 10 ** 6))))
        elif kind == 3:
            v = rng.choice(("now", "today", "epoch", "infinity", "yesterday", "0", str(int(now)),
                            m.base.date.lower()))
        else:
            v = _rfc3339(now)[:-1] + rng.choice(("", "+00:00", "-00:00", "+0000", "z", "+01:00", " UTC"))
    else:
        raw = bytearray(base64.b64decode(sig))
        raw[rng.randrange(32)] ^= 1 << rng.randrange(8)
        v = rng.choice((base64.b64encode(bytes(raw)).decode(), _py_sign(WRONG_SECRET, m.base.canon),
                        sig[:rng.randrange(44)], sig + rng.choice(("=", "A", " x")), sig.rstrip("="),
                        base64.b64encode(os.urandom(rng.choice((31, 33, 48)))).decode(), sig.swapcase(),
                        binascii.hexlify(raw).decode(),
                        base64.urlsafe_b64encode(base64.b64decode(sig)).decode()))  # may equal sig
    m.pairs[rng.choice(idx)][1] = v
    return "other " + lname


def op_body(m, rng, others):
    """The body: a bit flipped, a byte inserted, deleted or replaced, padded, or swapped
    for another delivery's; then, half the time, content-length set to its length."""
    b, k = m.body, rng.randrange(len(m.body))
    kind = rng.choice(("bit flip", "bit flip", "insert", "delete", "replace", "padded", "swapped"))
    if kind == "bit flip":
        m.body = b[:k] + bytes([b[k] ^ (1 << rng.randrange(8))]) + b[k + 1:]
    elif kind == "insert":
        m.body = b[:k] + bytes([rng.randrange(256)]) + b[k:]
    elif kind == "delete":
        m.body = b[:k] + b[k + 1:]
    elif kind == "replace":
        m.body = b[:k] + bytes([rng.randrange(256)]) + b[k + 1:]
    elif kind == "padded":
        m.body = b + b" " * rng.choice((1, 2, 1100))
    else:
        m.body = rng.choice(others).body
    if rng.random() < 0.5:
        for i in m.find("content-length"):
            m.pairs[i][1] = str(len(m.body))
        kind += ", length fixed"
    return "body " + kind


def op_key(m, rng):
    """The webhook key with one bit flipped."""
    k = rng.randrange(len(m.key))
    m.key = m.key[:k] + chr(ord(m.key[k]) ^ (1 << rng.randrange(7))) + m.key[k + 1:]
    return "key bit flip"


ALL_OPS = [op for op, weight in ((op_value, 17), (op_neutral, 10), (op_value_type, 4), (op_header, 11),
                                 (op_other_value, 8), (op_body, 20), (op_key, 1)) for _ in range(weight)]


def _mutate(m, rng, model, others):
    """Apply 1-3 operators: in 30 % of the mutations neutral ones only, else any."""
    neutral = rng.random() < 0.3
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = op_neutral if neutral else rng.choice(ALL_OPS)
        m.ops.append(op_other_value(m, rng, model) if op is op_other_value else
                     op_body(m, rng, others) if op is op_body else op(m, rng))
