"""Who may send: write keys, allowed origins (CORS), the per-client rate limiter, and
client addresses and their pseudonyms. Pure: the time and the client are passed in."""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def site_for_key(given: str | None, keys: Mapping[str, str]) -> str | None:
    """The site whose write key ``given`` is, or None. With no keys configured, every
    request is site ``-``. Every key is compared in constant time.

    >>> keys = {"shop-de": "k1", "shop-fr": "k2"}
    >>> site_for_key("k2", keys), site_for_key("k3", keys), site_for_key(None, keys)
    ('shop-fr', None, None)
    >>> site_for_key(None, {})
    '-'
    """
    if not keys:
        return "-"
    found = None
    presented = (given or "").encode()
    for site, key in keys.items():
        if hmac.compare_digest(presented, key.encode()) and given:
            found = site
    return found


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


@dataclass(frozen=True)
class Cors:
    allowed: bool
    headers: dict[str, str] = field(default_factory=dict)


PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Write-Key",
    "Access-Control-Max-Age": "600",
}


def cors_decision(
    origin: str | None,
    allowed: Sequence[str],
    *,
    preflight: bool = False,
    host: str | None = None,
) -> Cors:
    """Whether a request from ``origin`` may write, and the CORS headers of its answer.

    A request without an Origin header (a server, a pixel in an ``<img>``) is not a CORS
    request: allowed, no headers; so is one from a page of the collector itself (the
    origin's host is ``host``, the request's Host). Any other origin must be in
    ``allowed`` (or it is ``["*"]``); the origin is echoed, never ``*``, with
    ``Vary: Origin``.

    >>> cors_decision("http://127.0.0.1:8088", [], host="127.0.0.1:8088").allowed
    True

    >>> cors_decision(None, []).allowed
    True
    >>> cors_decision("https://evil.example", ["https://shop.example"]).allowed
    False
    >>> cors_decision("https://Shop.example/", ["https://shop.example"]).headers
    {'Access-Control-Allow-Origin': 'https://Shop.example/', 'Vary': 'Origin'}
    >>> sorted(cors_decision("https://a.example", ["*"], preflight=True).headers)[:3]
    ['Access-Control-Allow-Headers', 'Access-Control-Allow-Methods', 'Access-Control-Allow-Origin']
    """
    if origin is None:
        return Cors(True)
    if host and normalize_origin(origin).split("://", 1)[-1] == host.lower():
        return Cors(True)
    wanted = {normalize_origin(o) for o in allowed}
    if "*" not in wanted and normalize_origin(origin) not in wanted:
        return Cors(False, {"Vary": "Origin"})
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers.update(PREFLIGHT_HEADERS)
    return Cors(True, headers)


class RateLimiter:
    """A token bucket per client: ``rate`` tokens a second, at most ``burst`` saved up.
    Buckets of the least recently seen clients are dropped beyond ``max_clients`` (a
    dropped client starts again with a full bucket).

    >>> rl = RateLimiter(rate=10, burst=20)
    >>> rl.take("ip-1", 20, now=0.0), rl.take("ip-1", 1, now=0.0)
    (0.0, 0.1)
    >>> rl.take("ip-1", 5, now=0.5), rl.take("ip-2", 1, now=0.5)
    (0.0, 0.0)
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, cost: int, *, now: float) -> float:
        """Take ``cost`` tokens: 0.0 if allowed, else the seconds until they would be there
        (nothing is taken then). A cost above ``burst`` can never pass."""
        if self.rate <= 0:
            return 0.0
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        if cost <= tokens:
            tokens -= cost
            wait = 0.0
        else:
            wait = (min(cost, self.burst) - tokens) / self.rate if cost <= self.burst else 3600.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def pseudonym(value: str, salt: bytes) -> str:
    """A short keyed hash, to tell clients apart in logs without writing their address.

    >>> pseudonym("203.0.113.9", b"s") == pseudonym("203.0.113.9", b"s") != pseudonym("x", b"s")
    True
    """
    return hmac.new(salt, value.encode(), hashlib.sha256).hexdigest()[:12]


def client_address(peer: str | None, forwarded_for: str | None, *, behind_proxy: bool) -> str:
    """The client's address: the peer, or behind a proxy the last X-Forwarded-For entry.

    >>> client_address("10.0.0.2", "198.51.100.1, 203.0.113.9", behind_proxy=True)
    '203.0.113.9'
    >>> client_address("10.0.0.2", "198.51.100.1", behind_proxy=False)
    '10.0.0.2'
    """
    if behind_proxy and forwarded_for:
        last = forwarded_for.split(",")[-1].strip()
        if last:
            return last
    return peer or "-"
