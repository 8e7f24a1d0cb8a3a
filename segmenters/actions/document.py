"""What the actions shell keeps per customer besides its :class:`~actions.ActionState`.

Pure helpers for ``streams/worker/actions.py``: the customer's key features for a message, its
current segments for the re-check of delayed actions, its first assignment to each action
(per experiment), and the purchases the uplift report needs.

Purchases are kept so that the report is exact even when a purchase is read before the
segment change that assigned the customer (the two arrive on different topics, and
``segments.changes`` lags the input topics): a purchase is kept while it is recent
(``keep_s``, for assignments still to come) or while it falls in the conversion window of
one of the customer's first assignments (then it counts in the report and is kept).

>>> doc = ActionDoc.from_doc(None, "c-1")
>>> doc.add_purchase("o-1", 100.0, 20.0), doc.add_purchase("o-1", 100.0, 20.0)
(True, False)
>>> doc.assign("exp", "email/x", "treated", 50.0), doc.assign("exp", "email/x", "control", 60.0)
(True, False)
>>> doc.prune(now=10 * 86400.0, window_s=86400.0, keep_s=3600.0)
>>> doc.buys, doc.first
([['o-1', 100.0, 20.0]], {'exp': {'email/x': ['treated', 50.0]}})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from segmenters.actions import ActionState, Feature
from segmenters.clv.model import ClvModel
from segmenters.clv.summary import day_of, summary_at
from segmenters.state import CustomerState

#: Purchases kept per customer at most (newest win), whatever the windows say.
MAX_PURCHASES = 200


def iso_utc(at: float | None) -> str | None:
    """Epoch seconds as ISO-8601 UTC (``Z``), the output contract's time format.

    >>> iso_utc(1.0e9), iso_utc(1.5), iso_utc(None)
    ('2001-09-09T01:46:40Z', '1970-01-01T00:00:01.500000Z', None)
    """
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def customer_features(
    state: CustomerState | None,
    currency: str | None = None,
    clv: ClvModel | None = None,
    horizon_days: float = 365.0,
) -> dict[str, Feature]:
    """The customer's key features, as a message carries them (scalars only): times in
    ISO-8601 UTC, amounts in ``currency`` (the deployment's, carried as ``currency``).
    With a value model, a buyer's predictions too, with T counted to the day the
    segments were last evaluated (the event time of the decision).

    >>> s = CustomerState("c-1", orders=2, revenue=59.8, last_order_at=1.0e9,
    ...                   cart={"A": [2, 10.0, []]})
    >>> f = customer_features(s, "EUR")
    >>> f["cart_value"], f["currency"], f["last_order_at"], customer_features(None)
    (20.0, 'EUR', '2001-09-09T01:46:40Z', {})
    """
    if state is None:
        return {}
    features: dict[str, Feature] = {
        "orders": state.orders,
        "revenue": round(state.revenue, 2),
        "refunded": round(state.refunded, 2),
        "last_order_at": iso_utc(state.last_order_at),
        "first_seen": iso_utc(state.first_seen),
        "last_seen": iso_utc(state.last_seen),
        "cart_items": state.cart_items,
        "cart_value": state.cart_value,
        "country": state.geo.get("country"),
        "language": state.profile.get("language"),
    }
    if currency is not None:
        features["currency"] = currency
    at = state.eval_at if state.eval_at is not None else state.last_seen
    if clv is not None and state.buy_days and at is not None:
        summary = summary_at(state, day_of(at))
        if summary is not None:
            p = clv.predict(summary, horizon_days)
            features["p_alive"] = p.p_alive
            features["expected_orders"] = p.expected_orders
            features["expected_order_value"] = p.expected_order_value
            features["clv"] = p.clv
            features["value_model_version"] = p.model_version
    return features


def current_segments(state: CustomerState | None) -> dict[str, str | None]:
    """Dimension -> the customer's segment now (for :func:`actions.due`'s re-check)."""
    if state is None:
        return {}
    return {dim: state.segment(dim) for dim in state.segments}


@dataclass(slots=True)
class ActionDoc:
    """The stored per-customer document of the actions service."""

    state: ActionState
    #: experiment -> action id -> [group, at]: the customer's first assignment to each.
    first: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    #: Purchases as [order_id, at, amount], oldest first.
    buys: list[list[Any]] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None, customer_id: str) -> ActionDoc:
        if not doc:
            return cls(ActionState(customer_id))
        return cls(
            ActionState.from_doc(doc["state"]),
            {e: {a: list(v) for a, v in m.items()} for e, m in doc.get("first", {}).items()},
            [list(b) for b in doc.get("buys", [])],
        )

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"state": self.state.to_doc()}
        if self.first:
            doc["first"] = self.first
        if self.buys:
            doc["buys"] = self.buys
        return doc

    def add_purchase(self, order_id: str, at: float, amount: float) -> bool:
        """Record a purchase once per order id; False if it was known (a redelivery)."""
        if any(b[0] == order_id for b in self.buys):
            return False
        self.buys.append([order_id, at, amount])
        self.buys.sort(key=lambda b: (b[1], b[0]))
        return True

    def assign(self, experiment: str, action: str, group: str, at: float) -> bool:
        """Record the first assignment to ``action``; False if there was one already."""
        mine = self.first.setdefault(experiment, {})
        if action in mine:
            return False
        mine[action] = [group, at]
        return True

    def prune(self, *, now: float, window_s: float, keep_s: float) -> None:
        """Drop purchases no report can need: older than ``now - keep_s`` and in no
        first assignment's conversion window ``(at, at + window_s]``."""
        starts = [float(v[1]) for m in self.first.values() for v in m.values()]

        def needed(at: float) -> bool:
            return at > now - keep_s or any(s < at <= s + window_s for s in starts)

        self.buys = [b for b in self.buys if needed(float(b[1]))][-MAX_PURCHASES:]
