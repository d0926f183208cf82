"""Token lifetimes from Halo's expires_in, short and absurd: the worker renews a token a
tenth of its lifetime before it expires (at most a minute before), clamps expires_in to
1 s .. a day, and uses a token it has just fetched at least once. So a stream of cases
costs at most one token request per lifetime: with 1 s about one a second, with 30, 59,
60, 61 s or 1e13 s exactly one - never a loop of token requests.
"""
import time

from halo_test import ensure_extension, fresh_integration, q1, timeout
from test_delivery import MOCK, add_cases, wait_states

STREAM_S = 3.0      # cases arrive for this long, one every 0.2 s


def setup_module():
    """The extension in halo."""
    ensure_extension("halo")


def _stream(lifetime):
    """Cases arriving for STREAM_S seconds against tokens of this lifetime; returns the
    token requests, the API requests and the seconds the stream took."""
    fresh_integration()
    MOCK.config(token_expires_in=lifetime)
    n = int(STREAM_S / 0.2)
    start = time.monotonic()
    for k in range(n):
        add_cases([("LIFE-%d-%02d" % (lifetime % 1000, k), "Case %d" % k, "low")])
        time.sleep(max(0, start + (k + 1) * 0.2 - time.monotonic()))
    wait_states({"done": n})
    took = time.monotonic() - start
    reqs = MOCK.requests()
    tokens = [r for r in reqs if r["path"] == "/token"]
    # the authorisation server is discovered once, whatever the tokens' lifetime
    assert [r["path"] for r in reqs].count("/api/authinfo") == 1, [r["path"] for r in reqs]
    api = [r for r in reqs if r["path"].startswith("/api/") and r["path"] != "/api/authinfo"]
    # (a 1 s token may expire on its way, answered 401 and renewed once: so no more
    # than one 401 per token, and n creates answered 200)
    assert [r["status"] for r in api].count(200) == n, [(r["path"], r["status"]) for r in api]
    assert len(api) - n <= len(tokens) - 1 and (lifetime == 1 or len(api) == n), len(api)
    # every token fetched was used (no token fetched only to be thrown away)
    used = {r["headers"]["authorization"] for r in api}
    assert len(used) == len(tokens), (len(used), len(tokens))
    return tokens, api, took


@timeout(60)
def test_one_second_tokens_cost_one_request_a_second_at_most():
    tokens, api, took = _stream(1)
    # renewed at 0.9 s: at most one request per 0.9 s of the stream, plus the first
    assert 2 <= len(tokens) <= int(took / 0.9) + 2, (len(tokens), took)
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(tokens, tokens[1:])]
    assert min(gaps) >= 0.85, gaps


@timeout(60)
def test_30_59_60_61_second_tokens_are_fetched_once():
    for lifetime in (30, 59, 60, 61):
        tokens, api, took = _stream(lifetime)
        assert took < lifetime * 0.9
        assert len(tokens) == 1, (lifetime, len(tokens))


@timeout(60)
def test_huge_expires_in_is_clamped_not_overflowed():
    tokens, api, took = _stream(10 ** 13)
    assert len(tokens) == 1, len(tokens)
    assert q1("SELECT count(*) FROM halo_itsm.outbox WHERE attempts <> 1") == 0
