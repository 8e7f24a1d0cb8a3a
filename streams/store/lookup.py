"""Read-only views shared by the command line and the worker's HTTP API.

One place for the public shape of a customer look-up, so ``segstream customer ID --json``
and ``GET /customers/{id}`` agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 (UTC), None stays None.

    >>> iso(0.0)
    '1970-01-01T00:00:00+00:00'
    """
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def customer_view(state: Any) -> dict[str, Any]:
    """The public look-up shape: segments plus the headline state fields."""
    return {
        "customer_id": state.customer_id,
        "segments": {dim: entry[0] for dim, entry in state.segments.items()},
        "state": {
            "orders": state.orders,
            "revenue": state.revenue,
            "items": state.items,
            "refunds": state.refunds,
            "first_seen": iso(state.first_seen),
            "last_seen": iso(state.last_seen),
            "last_order_at": iso(state.last_order_at),
            "cart_items": state.cart_items,
            "cart_value": state.cart_value,
            "events": state.events,
            "devices": state.devices,
            "geo": state.geo,
            "profile": state.profile,
        },
    }
