"""Synthetic shop traffic: a deterministic generator and a paced Kafka producer.

:func:`generate` is pure: customers, seed, start time, duration and rate in, contract-v1
event dicts out (JSON-ready, ``occurred_at`` as ISO-8601 with ``Z``), in non-decreasing
``occurred_at`` order. The same arguments always give the same events. It never reads the
clock and does no I/O.

Every customer gets one persona from a fixed mix (:data:`PERSONA_MIX`); the persona shapes
sessions, baskets, devices and buying frequency but never appears in the events. It is the
ground truth for scoring the behaviour clustering: :func:`persona_of`, :func:`personas`, or
the ``truth`` argument of :func:`generate`.

:func:`simulate` sends the generated events to Kafka, paced in real time (event time is
wall time), and returns a :class:`SimulationStats`.

>>> from datetime import UTC, datetime, timedelta
>>> events = list(generate(3, seed=1, start=datetime(2026, 11, 22, tzinfo=UTC),
...                        duration_s=2, rate=10))
>>> len(events), events[0]["type"], events[0]["occurred_at"][:19], events[-1]["occurred_at"][:19]
(20, 'profile', '2026-11-22T00:00:00', '2026-11-22T00:00:01')
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from .settings import Settings
from .topics import finish, input_producer

log = logging.getLogger(__name__)

#: Share of customers per persona (sums to 1).
PERSONA_MIX: dict[str, float] = {
    "window_shopper": 0.30,
    "cart_abandoner": 0.20,
    "one_time_buyer": 0.15,
    "loyal_big_spender": 0.10,
    "bargain_hunter": 0.15,
    "lapsing_buyer": 0.10,
}
PERSONAS = tuple(PERSONA_MIX)

#: Event rate used to space event times when :func:`simulate` runs with ``rate=0``.
UNPACED_RATE = 1000.0

CURRENCY = "EUR"
REFUND_SHARE = 0.01

# --- catalog -----------------------------------------------------------------------------

#: category -> (sku prefix, cheapest price, dearest price)
CATEGORIES: dict[str, tuple[str, float, float]] = {
    "electronics": ("EL", 25.0, 1500.0),
    "apparel": ("AP", 9.0, 250.0),
    "shoes": ("SH", 20.0, 320.0),
    "home": ("HO", 5.0, 700.0),
    "beauty": ("BE", 3.0, 120.0),
    "sports": ("SP", 8.0, 450.0),
    "toys": ("TO", 4.0, 150.0),
    "books": ("BO", 4.0, 60.0),
    "grocery": ("GR", 1.0, 40.0),
    "jewellery": ("JE", 30.0, 2500.0),
}
SKUS_PER_CATEGORY = 30


def _build_catalog() -> dict[str, list[tuple[str, float]]]:
    """Skus of every category as (sku, price), cheapest first. Fixed, independent of seed."""
    rng = random.Random("segstream-catalog-v1")
    catalog = {}
    for category, (prefix, lo, hi) in CATEGORIES.items():
        prices = sorted(
            math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(SKUS_PER_CATEGORY)
        )
        catalog[category] = [
            (f"{prefix}-{k:04d}", max(0.99, round(p) - 0.01)) for k, p in enumerate(prices)
        ]
    return catalog


CATALOG = _build_catalog()

#: (country, region, city, language); a customer lives in one place.
PLACES: tuple[tuple[str, str, str, str], ...] = (
    ("GB", "England", "London", "en"),
    ("GB", "England", "Manchester", "en"),
    ("GB", "Scotland", "Edinburgh", "en"),
    ("DE", "Bavaria", "Munich", "de"),
    ("DE", "Berlin", "Berlin", "de"),
    ("DE", "Hamburg", "Hamburg", "de"),
    ("FR", "Île-de-France", "Paris", "fr"),
    ("FR", "Auvergne-Rhône-Alpes", "Lyon", "fr"),
    ("US", "California", "San Francisco", "en"),
    ("US", "New York", "New York", "en"),
    ("PL", "Masovia", "Warsaw", "pl"),
    ("PL", "Lesser Poland", "Kraków", "pl"),
    ("ES", "Community of Madrid", "Madrid", "es"),
    ("IT", "Lombardy", "Milan", "it"),
    ("NL", "North Holland", "Amsterdam", "nl"),
)
PLACE_WEIGHTS = (14, 5, 3, 8, 8, 4, 10, 4, 6, 6, 8, 4, 7, 7, 6)

INCOME_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
GENDERS = ("female", "male", "non_binary", "undisclosed")
DEVICES = ("desktop", "mobile", "tablet")


@dataclass(frozen=True)
class _Behaviour:
    """How a persona behaves; every range is inclusive."""

    activity: float  # relative chance of being the next customer to act
    devices: tuple[float, float, float]  # weights of DEVICES
    app_share: float  # chance that a mobile/tablet user shops in the app
    favourites: tuple[str, ...]  # categories this persona leans to
    tier: str  # "budget", "premium" or "any": which skus it looks at
    views: tuple[int, int]  # browse events per session after the entry page
    adds: tuple[int, int]  # cart adds in a session with a cart
    quantity: tuple[int, int]
    search_share: float  # share of browses that are searches
    remove_share: float  # chance of removing an item in a session with a cart
    discount_share: float  # chance that an order carries a discount
    discount: tuple[float, float]  # discount as a share of the subtotal
    birth_years: tuple[int, int]
    income: tuple[float, float, float, float, float]  # weights of INCOME_BANDS
    consent: float  # chance of marketing consent


BEHAVIOURS: dict[str, _Behaviour] = {
    "window_shopper": _Behaviour(
        activity=1.0,
        devices=(0.40, 0.50, 0.10),
        app_share=0.30,
        favourites=("apparel", "shoes", "home", "books", "electronics"),
        tier="any",
        views=(3, 9),
        adds=(0, 0),
        quantity=(1, 1),
        search_share=0.15,
        remove_share=0.0,
        discount_share=0.0,
        discount=(0.0, 0.0),
        birth_years=(1960, 2006),
        income=(1, 2, 3, 2, 1),
        consent=0.40,
    ),
    "cart_abandoner": _Behaviour(
        activity=0.9,
        devices=(0.35, 0.55, 0.10),
        app_share=0.40,
        favourites=("apparel", "shoes", "electronics", "beauty"),
        tier="any",
        views=(2, 6),
        adds=(1, 3),
        quantity=(1, 2),
        search_share=0.15,
        remove_share=0.25,
        discount_share=0.0,
        discount=(0.0, 0.0),
        birth_years=(1970, 2004),
        income=(1, 2, 3, 2, 1),
        consent=0.55,
    ),
    "one_time_buyer": _Behaviour(
        activity=0.8,
        devices=(0.45, 0.45, 0.10),
        app_share=0.20,
        favourites=("home", "toys", "books", "sports", "electronics"),
        tier="any",
        views=(2, 6),
        adds=(1, 2),
        quantity=(1, 2),
        search_share=0.25,
        remove_share=0.10,
        discount_share=0.10,
        discount=(0.05, 0.10),
        birth_years=(1955, 2004),
        income=(1, 2, 3, 2, 1),
        consent=0.35,
    ),
    "loyal_big_spender": _Behaviour(
        activity=1.6,
        devices=(0.70, 0.20, 0.10),
        app_share=0.60,
        favourites=("electronics", "jewellery", "apparel", "home", "shoes"),
        tier="premium",
        views=(2, 5),
        adds=(2, 4),
        quantity=(1, 2),
        search_share=0.10,
        remove_share=0.05,
        discount_share=0.05,
        discount=(0.05, 0.10),
        birth_years=(1962, 1992),
        income=(0, 0, 1, 4, 6),
        consent=0.75,
    ),
    "bargain_hunter": _Behaviour(
        activity=1.4,
        devices=(0.15, 0.75, 0.10),
        app_share=0.70,
        favourites=("grocery", "apparel", "beauty", "toys", "home"),
        tier="budget",
        views=(4, 11),
        adds=(1, 4),
        quantity=(1, 3),
        search_share=0.35,
        remove_share=0.35,
        discount_share=0.70,
        discount=(0.10, 0.30),
        birth_years=(1978, 2006),
        income=(4, 4, 2, 1, 0),
        consent=0.85,
    ),
    "lapsing_buyer": _Behaviour(
        activity=0.9,
        devices=(0.45, 0.45, 0.10),
        app_share=0.30,
        favourites=("home", "sports", "apparel", "books"),
        tier="any",
        views=(2, 5),
        adds=(1, 3),
        quantity=(1, 2),
        search_share=0.20,
        remove_share=0.10,
        discount_share=0.10,
        discount=(0.05, 0.15),
        birth_years=(1950, 2000),
        income=(1, 2, 3, 2, 1),
        consent=0.45,
    ),
}

#: Chance that a lapsing buyer who has made their early orders acts when picked.
LAPSED_ACTIVITY = 0.15


# --- personas ----------------------------------------------------------------------------


def customer_id(index: int, seed: int) -> str:
    return f"c-{seed}-{index:05d}"


_persona_cache: dict[tuple[int, int], tuple[str, ...]] = {}


def personas(customers: int, seed: int) -> tuple[str, ...]:
    """Persona of every customer index: exact quotas of :data:`PERSONA_MIX`, seeded shuffle."""
    key = (customers, seed)
    cached = _persona_cache.get(key)
    if cached is not None:
        return cached
    exact = [share * customers for share in PERSONA_MIX.values()]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: customers - sum(counts)]:
        counts[i] += 1
    assigned = [p for p, n in zip(PERSONAS, counts, strict=True) for _ in range(n)]
    random.Random(f"segstream-personas-{seed}").shuffle(assigned)
    result = tuple(assigned)
    if len(_persona_cache) > 16:
        _persona_cache.clear()
    _persona_cache[key] = result
    return result


def persona_of(customer: str, customers: int, seed: int) -> str:
    """The persona :func:`generate` gave ``customer`` (an id like ``c-7-00042``)."""
    prefix = f"c-{seed}-"
    if not customer.startswith(prefix):
        raise ValueError(f"{customer!r} is not a customer of seed {seed}")
    index = int(customer[len(prefix) :])
    if not 0 <= index < customers:
        raise ValueError(f"{customer!r} is not one of {customers} customers")
    return personas(customers, seed)[index]


# --- customers ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Customer:
    index: int
    id: str
    persona: str
    behaviour: _Behaviour
    place: tuple[str, str, str, str]
    device: str
    app_user: bool
    favourites: list[str]
    profile: dict[str, Any]
    early_orders: int = 0  # lapsing buyers: orders before they drift away
    started: bool = False
    sessions: int = 0
    plan: deque[dict[str, Any]] = field(default_factory=deque)
    cart: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> line
    orders: list[dict[str, Any]] = field(default_factory=list)
    refunded: set[str] = field(default_factory=set)
    refund_pending: bool = False

    @property
    def lapsed(self) -> bool:
        return self.persona == "lapsing_buyer" and len(self.orders) >= self.early_orders


def _new_customer(rng: random.Random, index: int, seed: int, persona: str) -> _Customer:
    b = BEHAVIOURS[persona]
    place = rng.choices(PLACES, weights=PLACE_WEIGHTS)[0]
    device = rng.choices(DEVICES, weights=b.devices)[0]
    favourites = rng.sample(b.favourites, k=min(3, len(b.favourites)))
    country, region, city, language = place
    profile = {
        "birth_year": rng.randint(*b.birth_years),
        "gender": rng.choices(GENDERS, weights=(48, 46, 2, 4))[0],
        "income_band": rng.choices(INCOME_BANDS, weights=b.income)[0],
        "country": country,
        "region": region,
        "city": city,
        "marketing_consent": rng.random() < b.consent,
        "language": language,
    }
    return _Customer(
        index=index,
        id=customer_id(index, seed),
        persona=persona,
        behaviour=b,
        place=place,
        device=device,
        app_user=device != "desktop" and rng.random() < b.app_share,
        favourites=favourites,
        profile=profile,
        early_orders=rng.choice((1, 1, 2)) if persona == "lapsing_buyer" else 0,
    )


# --- sessions ----------------------------------------------------------------------------


class _Planner:
    """Plans a customer's next visit as a list of event bodies (no envelope yet)."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.seed = seed
        self.orders = 0

    def _category(self, c: _Customer) -> str:
        if self.rng.random() < 0.75:
            return self.rng.choice(c.favourites)
        return self.rng.choice(list(CATEGORIES))

    def _sku(self, c: _Customer, category: str) -> tuple[str, float]:
        skus = CATALOG[category]
        third = len(skus) // 3
        tier = c.behaviour.tier
        if tier == "budget" and self.rng.random() < 0.85:
            return self.rng.choice(skus[:third])
        if tier == "premium" and self.rng.random() < 0.85:
            return self.rng.choice(skus[-third:])
        return self.rng.choice(skus)

    def _kind(self, c: _Customer) -> str:
        """browse, cart (add and leave) or buy."""
        r = self.rng.random()
        bought = len(c.orders)
        match c.persona:
            case "window_shopper":
                return "browse"
            case "cart_abandoner":
                if not c.cart:
                    return "cart"
                return "cart" if r < 0.35 and len(c.cart) < 8 else "browse"
            case "one_time_buyer":
                if bought:
                    return "browse"
                return "buy" if c.sessions > 0 or r < 0.6 else "browse"
            case "loyal_big_spender":
                return "buy" if r < 0.7 else "browse"
            case "bargain_hunter":
                if r < 0.35:
                    return "buy"
                return "cart" if r < 0.55 and len(c.cart) < 8 else "browse"
            case "lapsing_buyer":
                return "browse" if c.lapsed else "buy"
        raise AssertionError(c.persona)  # pragma: no cover

    def session(self, c: _Customer) -> list[dict[str, Any]]:
        rng, b = self.rng, c.behaviour
        out: list[dict[str, Any]] = []
        if c.refund_pending:
            c.refund_pending = False
            refund = self._refund(c)
            if refund is not None:
                out.append(refund)
        kind = self._kind(c)
        c.sessions += 1
        device = c.device if rng.random() < 0.85 else rng.choices(DEVICES, weights=b.devices)[0]
        channel = "app" if device != "desktop" and c.app_user else "web"
        session = {
            "session_id": f"s-{self.seed}-{c.index:05d}-{c.sessions}",
            "device": device,
            "channel": channel,
        }

        def browse(page_type: str, **fields: Any) -> None:
            out.append({**session, "type": "browse", "page_type": page_type, **fields})

        def view(category: str) -> tuple[str, float]:
            sku, price = self._sku(c, category)
            browse("product", sku=sku, category=category, price=price)
            return sku, price

        entry = rng.choices(("home", "search", "category"), weights=(5, 3, 2))[0]
        if entry == "category":
            browse("category", category=self._category(c))
        else:
            browse(entry)
        views = rng.randint(*b.views)
        if c.persona == "lapsing_buyer" and c.lapsed:
            views = rng.randint(0, 2)
        viewed: list[tuple[str, str, float]] = []
        for _ in range(views):
            r = rng.random()
            category = self._category(c)
            if r < b.search_share:
                browse("search")
            elif r < b.search_share + 0.2:
                browse("category", category=category)
            else:
                sku, price = view(category)
                viewed.append((sku, category, price))
        if kind == "browse":
            return out

        for _ in range(rng.randint(max(1, b.adds[0]), max(1, b.adds[1]))):
            if viewed and rng.random() < 0.7:
                sku, category, price = rng.choice(viewed)
            else:
                category = self._category(c)
                sku, price = view(category)
                viewed.append((sku, category, price))
            quantity = rng.randint(*b.quantity)
            out.append(
                {
                    **session,
                    "type": "cart",
                    "action": "add",
                    "sku": sku,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": price,
                }
            )
            line = c.cart.get(sku)
            if line is None:
                c.cart[sku] = {
                    "sku": sku,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": price,
                }
            else:
                line["quantity"] += quantity
        if len(c.cart) >= 2 and rng.random() < b.remove_share:
            sku = rng.choice(list(c.cart))
            line = c.cart.pop(sku)
            out.append(
                {
                    **session,
                    "type": "cart",
                    "action": "remove",
                    "sku": sku,
                    "category": line["category"],
                    "quantity": line["quantity"],
                    "unit_price": line["unit_price"],
                }
            )
        if kind == "buy":
            out.append(self._purchase(c, session))
        return out

    def _purchase(self, c: _Customer, session: dict[str, Any]) -> dict[str, Any]:
        rng, b = self.rng, c.behaviour
        lines = [dict(line) for line in c.cart.values()]
        c.cart.clear()
        subtotal = round(sum(ln["quantity"] * ln["unit_price"] for ln in lines), 2)
        self.orders += 1
        event: dict[str, Any] = {
            **session,
            "type": "purchase",
            "order_id": f"o-{self.seed}-{self.orders:07d}",
            "lines": lines,
            "currency": CURRENCY,
        }
        discount = 0.0
        if rng.random() < b.discount_share:
            discount = round(subtotal * rng.uniform(*b.discount), 2)
            event["discount"] = discount
        event["total"] = round(subtotal - discount, 2)
        c.orders.append(
            {
                "order_id": event["order_id"],
                "total": event["total"],
                "lines": [dict(line) for line in lines],
            }
        )
        if rng.random() < REFUND_SHARE:
            c.refund_pending = True
        return event

    def _refund(self, c: _Customer) -> dict[str, Any] | None:
        open_orders = [o for o in c.orders if o["order_id"] not in c.refunded]
        if not open_orders:
            return None
        order = self.rng.choice(open_orders)
        c.refunded.add(order["order_id"])
        if len(order["lines"]) > 1 and self.rng.random() < 0.5:
            line = self.rng.choice(order["lines"])
            lines = [dict(line)]
            total = round(line["quantity"] * line["unit_price"], 2)
            total = min(total, order["total"])
        else:
            lines = [dict(line) for line in order["lines"]]
            total = order["total"]
        return {"type": "refund", "order_id": order["order_id"], "total": total, "lines": lines}


# --- the generator -----------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _stream(
    customers: int, *, seed: int, start: datetime, duration_s: float, rate: float
) -> Iterator[tuple[float, _Customer, dict[str, Any]]]:
    """(seconds after ``start``, customer, event) for :func:`generate` and :func:`simulate`."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of events per second")
    if not duration_s >= 0 or not math.isfinite(duration_s):
        raise ValueError("duration_s must be a non-negative number of seconds")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)

    rng = random.Random(f"segstream-traffic-{seed}")
    mix = personas(customers, seed)
    population = [_new_customer(rng, i, seed, mix[i]) for i in range(customers)]
    cumulative: list[float] = []
    total_weight = 0.0
    for c in population:
        total_weight += c.behaviour.activity
        cumulative.append(total_weight)
    planner = _Planner(rng, seed)

    n_events = round(rate * duration_s)
    step_us = 1e6 / rate
    geo_of = {
        place: {"country": place[0], "region": place[1], "city": place[2]} for place in PLACES
    }
    for n in range(n_events):
        while True:
            i = bisect.bisect_right(cumulative, rng.random() * total_weight)
            c = population[min(i, customers - 1)]
            if c.plan or not c.lapsed or rng.random() < LAPSED_ACTIVITY:
                break
        if not c.started:
            c.started = True
            body: dict[str, Any] = {"type": "profile", "attributes": dict(c.profile)}
        else:
            if not c.plan:
                c.plan.extend(planner.session(c))
            body = c.plan.popleft()
        # Stratified jitter: event n falls in [n, n + 1) steps, so times never go back.
        offset_us = math.floor((n + rng.random()) * step_us)
        event = {
            "schema_version": 1,
            "event_id": f"sim-{seed}-{n}",
            "customer_id": c.id,
            "occurred_at": _iso(start + timedelta(microseconds=offset_us)),
            "geo": dict(geo_of[c.place]),
            **body,
        }
        yield offset_us / 1e6, c, event


def generate(
    customers: int,
    *,
    seed: int,
    start: datetime,
    duration_s: float,
    rate: float,
    truth: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``round(rate * duration_s)`` contract-v1 event dicts from ``customers`` customers.

    Events are spread over ``duration_s`` seconds of event time from ``start`` (a naive
    ``start`` is taken as UTC), in non-decreasing ``occurred_at`` order. Each customer's
    first event is its ``profile``. If ``truth`` is given, it is filled with the persona of
    every customer (``customer_id -> persona``) before the first event is yielded.
    """
    if truth is not None:
        truth.update((customer_id(i, seed), p) for i, p in enumerate(personas(customers, seed)))
    for _, _, event in _stream(customers, seed=seed, start=start, duration_s=duration_s, rate=rate):
        yield event


# --- the producer ------------------------------------------------------------------------


@dataclass
class SimulationStats:
    """What :func:`simulate` sent.

    ``events`` were delivered, ``failed`` were not; ``by_type`` and ``by_persona`` count
    every event offered to the producer (delivered or not).
    """

    events: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    by_type: dict[str, int] = field(default_factory=dict)
    by_persona: dict[str, int] = field(default_factory=dict)  # events per persona
    customers_by_persona: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Events sent per wall-clock second."""
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def simulate(
    settings: Settings,
    *,
    customers: int,
    rate: float,
    duration: float,
    seed: int = 7,
    progress: bool = True,
    truth_path: Path | None = None,
    days: float | None = None,
) -> SimulationStats:
    """Send simulated traffic to Kafka for ``duration`` seconds at ``rate`` events/s.

    Event time is wall time: the events start now and each is sent when it is due.
    With ``days``, the same events span that many days of event time instead, ending
    now: weeks of shop life in a minute, for RFM recency, lapsing and tenure to show.
    ``rate=0`` sends as fast as possible, with event times spaced as if at
    :data:`UNPACED_RATE` events/s (so ``UNPACED_RATE * duration`` events) and ending
    now: an event is never dated after it is sent (workers dead-letter events dated
    more than ``SEGSTREAM_MAX_FUTURE_S`` ahead of their record timestamp).
    Ctrl-C stops early; what was sent is flushed and counted.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0 (0 means as fast as possible)")
    paced = rate > 0
    event_rate = rate if paced else UNPACED_RATE

    mix = personas(customers, seed) if customers >= 1 else ()
    if truth_path is not None:
        truth = {customer_id(i, seed): p for i, p in enumerate(mix)}
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        truth_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))

    producer, topics = input_producer(settings, "simulate")
    failures: list[BaseException] = []
    by_type: Counter[str] = Counter()
    by_persona: Counter[str] = Counter()
    stats = SimulationStats(customers_by_persona=dict(Counter(mix)))

    span = duration if days is None else days * 86400.0
    speed = span / duration if duration > 0 else 1.0  # event seconds per wall second
    if not paced:  # sent at once: event times end now
        start = datetime.now(UTC) - timedelta(seconds=span)
    else:  # each sent when due; with days, the last is due now
        start = datetime.now(UTC) - timedelta(seconds=span - duration if days else 0)
    t0 = time.monotonic()
    bar = tqdm(
        total=round(event_rate * duration),
        unit="ev",
        desc="simulate",
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    try:
        for offset_s, c, event in _stream(
            customers, seed=seed, start=start, duration_s=span, rate=event_rate / speed
        ):
            if paced:
                wait = offset_s / speed - (time.monotonic() - t0)
                if wait > 0.001:
                    time.sleep(wait)
            future = producer.send(
                topics[event["type"]], key=c.id.encode(), value=orjson.dumps(event)
            )
            future.add_errback(failures.append)
            by_type[event["type"]] += 1
            by_persona[c.persona] += 1
            bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        bar.close()
        finish(producer)
    stats.elapsed_s = time.monotonic() - t0
    stats.failed = len(failures)
    stats.events = sum(by_type.values()) - stats.failed
    stats.by_type = dict(by_type)
    stats.by_persona = dict(by_persona)
    if failures:
        log.warning("%d events were not delivered; first error: %s", len(failures), failures[0])
    return stats
