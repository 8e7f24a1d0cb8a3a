"""One customer's behavioural state, and how an event changes it.

The state is a plain document (``to_doc``/``from_doc``), stored as JSON in Redis.
Its layout is public API, versioned by ``state_version`` and described in
docs/state_format.md; a layout change comes with a migration in :func:`migrate`.

Times are event times in epoch seconds. Counters of browsing and cart additions decay
with a half-life, so "browsing intensity" means recent browsing.

>>> from segmenters.config import StateConfig
>>> s = CustomerState("c-1")
>>> decayed_add(None, 1.0, 100.0, half_life_s=10.0)
[1.0, 100.0]
>>> decayed_add([1.0, 100.0], 1.0, 110.0, half_life_s=10.0)
[1.5, 110.0]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

STATE_VERSION = 5


def short_hash(value: str) -> str:
    """A 40-bit digest: enough to tell recent ids apart, small enough to keep many.

    >>> short_hash("order-1")
    'e2838cf16d'
    """
    return hashlib.blake2b(value.encode(), digest_size=5).hexdigest()


def id_number(value: str) -> int:
    """A 52-bit digest of an id, as an integer: exact in a double (Lua's numbers) and
    stored by Redis as a compact integer set.

    >>> id_number("order-1")
    4178804707940283
    """
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=7).digest()) >> 4


def decayed_add(
    counter: list[float] | None, amount: float, at: float, *, half_life_s: float
) -> list[float]:
    """Add ``amount`` at time ``at`` to an exponentially decaying counter ``[value, as_of]``.

    An amount older than ``as_of`` is added already decayed, so the result does not
    depend on the order the additions arrive in.
    """
    if counter is None:
        return [amount, at]
    value, as_of = counter
    if at >= as_of:
        return [value * math.exp2(-(at - as_of) / half_life_s) + amount, at]
    return [value + amount * math.exp2(-(as_of - at) / half_life_s), as_of]


def decayed_value(counter: list[float] | None, now: float, *, half_life_s: float) -> float:
    """The counter's value at ``now``."""
    if counter is None:
        return 0.0
    value, as_of = counter
    return value * math.exp2(-max(0.0, now - as_of) / half_life_s)


@dataclass(slots=True)
class CustomerState:
    """Everything segstream remembers about one customer (see docs/state_format.md)."""

    customer_id: str
    state_version: int = STATE_VERSION
    first_seen: float | None = None
    last_seen: float | None = None
    events: int = 0
    orders: int = 0
    revenue: float = 0.0
    items: int = 0
    first_order_at: float | None = None
    last_order_at: float | None = None
    refunds: int = 0
    refunded: float = 0.0
    views: list[float] | None = None
    cart_adds: list[float] | None = None
    #: sku -> [quantity, unit_price, [[added_at, quantity], ...]]
    cart: dict[str, list[Any]] = field(default_factory=dict)
    cart_at: float | None = None
    #: sku -> time of its latest purchase (recent skus only)
    bought: dict[str, float] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    #: category -> weighted, decayed affinity (views, cart additions, purchase lines), all
    #: as of ``interests_at``: the interest dimension's evidence.
    interests: dict[str, float] = field(default_factory=dict)
    interests_at: float | None = None
    devices: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    geo: dict[str, str] = field(default_factory=dict)
    geo_at: float | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    segments: dict[str, list[Any]] = field(default_factory=dict)
    #: dimension -> changes recorded in it so far: the latest change's position in the
    #: dimension's history, from which its ``change_id`` derives (0 when absent).
    positions: dict[str, int] = field(default_factory=dict)
    #: Event time the segments were last evaluated at (by an event or a timer).
    eval_at: float | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    order_ids: list[str] = field(default_factory=list)
    #: True while the latest event applied was replayed with ``--no-actions``: changes
    #: from timers and rescoring then carry the mark too, until a live event clears it.
    no_actions: bool = False
    #: UTC day number (as text) -> value of that day's orders: the purchase days the
    #: value models read (``segmenters.clv.summary``). Every day is kept, so the summary
    #: does not depend on the order events arrive in.
    buy_days: dict[str, float] = field(default_factory=dict)
    #: UTC day number (as text) -> amount refunded on that day.
    refund_days: dict[str, float] = field(default_factory=dict)
    #: The predicted value (CLV, rounded to cents) the buyer was last ranked with in the
    #: value dimension; None while churned or unscored. The shared value histogram counts
    #: it, so it is kept with the state that the histogram moves are computed from.
    clv: float | None = None

    @property
    def cart_items(self) -> int:
        return sum(int(line[0]) for line in self.cart.values())

    @property
    def cart_value(self) -> float:
        return round(sum(float(line[0]) * float(line[1] or 0.0) for line in self.cart.values()), 2)

    def segment(self, dimension: str) -> str | None:
        entry = self.segments.get(dimension)
        return None if entry is None else str(entry[0])

    def enter(self, dimension: str, segment: str, at: float) -> int:
        """Record entering ``segment`` at ``at``; its position in the dimension's history."""
        self.segments[dimension] = [segment, at]
        position = self.positions.get(dimension, 0) + 1
        self.positions[dimension] = position
        return position

    def copy(self) -> CustomerState:
        """A copy whose containers can be changed without touching this one."""
        return CustomerState(
            customer_id=self.customer_id,
            state_version=self.state_version,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            events=self.events,
            orders=self.orders,
            revenue=self.revenue,
            items=self.items,
            first_order_at=self.first_order_at,
            last_order_at=self.last_order_at,
            refunds=self.refunds,
            refunded=self.refunded,
            views=None if self.views is None else list(self.views),
            cart_adds=None if self.cart_adds is None else list(self.cart_adds),
            cart={k: [v[0], v[1], [list(a) for a in v[2]]] for k, v in self.cart.items()},
            cart_at=self.cart_at,
            bought=dict(self.bought),
            categories=dict(self.categories),
            interests=dict(self.interests),
            interests_at=self.interests_at,
            devices=dict(self.devices),
            channels=dict(self.channels),
            geo=dict(self.geo),
            geo_at=self.geo_at,
            profile=dict(self.profile),
            segments={k: list(v) for k, v in self.segments.items()},
            positions=dict(self.positions),
            eval_at=self.eval_at,
            offsets=dict(self.offsets),
            order_ids=list(self.order_ids),
            no_actions=self.no_actions,
            buy_days=dict(self.buy_days),
            refund_days=dict(self.refund_days),
            clv=self.clv,
        )

    def to_doc(self) -> dict[str, Any]:
        """The stored form: every field but the ones at their default (empty, zero, None)."""
        doc: dict[str, Any] = {"customer_id": self.customer_id, "state_version": self.state_version}
        for name in self.__slots__[2:]:
            value = getattr(self, name)
            if value:
                doc[name] = value
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CustomerState:
        doc = migrate(doc)
        return cls(**doc)


def _drop_recent_event_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: the recent event-id list left the state; the store's id set holds every
    applied id (docs/state_format.md)."""
    doc = {k: v for k, v in doc.items() if k != "event_ids"}
    doc["state_version"] = 2
    return doc


def _count_positions(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: ``positions`` counts each dimension's changes. How many a v2 state had is
    not known; counting from 0 is safe, because a change id digests the change's content
    too, and no v2 id was built this way."""
    return {**doc, "state_version": 3}


def _purchase_days(doc: dict[str, Any]) -> dict[str, Any]:
    """v3 -> v4: ``buy_days`` keeps the value of each purchase day. A v3 document knows
    only its first and latest order: they become the purchase days, sharing the net
    revenue equally (one day if both are the same). Replaying the customer's history
    (``segstream replay``) rebuilds the days exactly."""
    doc = {**doc, "state_version": 4}
    first, last = doc.get("first_order_at"), doc.get("last_order_at")
    if first is None or last is None or "buy_days" in doc:
        return doc
    days = sorted({str(int(first // 86_400)), str(int(last // 86_400))}, key=int)
    share = round(float(doc.get("revenue", 0.0)) / len(days), 2)
    doc["buy_days"] = dict.fromkeys(days, share)
    return doc


def _seed_interests(doc: dict[str, Any]) -> dict[str, Any]:
    """v4 -> v5: ``interests`` holds each category's decayed affinity. A v4 document knows
    only how often each category was seen: each sighting counts weight 1, as of its last
    event. Replaying the customer's history (``segstream replay``) rebuilds the affinities
    exactly."""
    doc = {**doc, "state_version": 5}
    categories = doc.get("categories")
    if not categories or "interests" in doc:
        return doc
    doc["interests"] = {k: float(v) for k, v in categories.items()}
    doc["interests_at"] = doc.get("last_seen")
    return doc


#: Migrations from each older ``state_version`` to the next one, pure functions on docs.
MIGRATIONS: dict[int, Any] = {
    1: _drop_recent_event_ids,
    2: _count_positions,
    3: _purchase_days,
    4: _seed_interests,
}


def migrate(doc: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored document to the current ``state_version``.

    >>> migrate({"customer_id": "c-1", "state_version": 1, "event_ids": ["8eb3e1bcef"]})
    {'customer_id': 'c-1', 'state_version': 5}
    >>> migrate({"customer_id": "c-2", "state_version": 3, "revenue": 30.0,
    ...          "first_order_at": 86_400.0, "last_order_at": 5 * 86_400.0})["buy_days"]
    {'1': 15.0, '5': 15.0}
    >>> d = migrate({"customer_id": "c-3", "state_version": 4, "last_seen": 60.0,
    ...              "categories": {"shoes": 3, "bags": 1}})
    >>> d["interests"], d["interests_at"]
    ({'shoes': 3.0, 'bags': 1.0}, 60.0)
    """
    version = int(doc.get("state_version", 1))
    if version > STATE_VERSION:
        raise ValueError(
            f"state_version {version} is newer than this engine understands ({STATE_VERSION})"
        )
    while version < STATE_VERSION:
        doc = MIGRATIONS[version](doc)
        version = int(doc["state_version"])
    return doc
