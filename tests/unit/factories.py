"""Small builders of contract-v1 events for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from segmenters.events import Event, parse_event

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


class Events:
    """Builds one customer's events with increasing ids and chosen times."""

    def __init__(self, customer_id: str = "c-1", start: datetime = T0) -> None:
        self.customer_id = customer_id
        self.start = start
        self.n = 0

    def _base(self, type_: str, minutes: float, **fields: Any) -> dict[str, Any]:
        self.n += 1
        return {
            "schema_version": 1,
            "event_id": f"{self.customer_id}-e{self.n}",
            "type": type_,
            "customer_id": self.customer_id,
            "occurred_at": (self.start + timedelta(minutes=minutes)).isoformat(),
            **fields,
        }

    def browse(self, minutes: float = 0, **kw: Any) -> dict[str, Any]:
        return self._base("browse", minutes, page_type="product", **kw)

    def add(
        self, sku: str, minutes: float = 0, price: float = 10.0, qty: int = 1
    ) -> dict[str, Any]:
        return self._base(
            "cart", minutes, action="add", sku=sku, quantity=qty, unit_price=price, category="shoes"
        )

    def remove(self, sku: str, minutes: float = 0, qty: int = 1) -> dict[str, Any]:
        return self._base("cart", minutes, action="remove", sku=sku, quantity=qty)

    def clear(self, minutes: float = 0) -> dict[str, Any]:
        return self._base("cart", minutes, action="clear")

    def purchase(
        self, order: str, skus: list[str], minutes: float = 0, price: float = 10.0
    ) -> dict[str, Any]:
        lines = [{"sku": s, "quantity": 1, "unit_price": price} for s in skus]
        return self._base(
            "purchase",
            minutes,
            order_id=order,
            lines=lines,
            total=price * len(skus),
            currency="EUR",
        )

    def refund(self, order: str, total: float, minutes: float = 0) -> dict[str, Any]:
        return self._base("refund", minutes, order_id=order, total=total)

    def profile(self, minutes: float = 0, **attributes: Any) -> dict[str, Any]:
        return self._base("profile", minutes, attributes=attributes)


def ev(d: dict[str, Any]) -> Event:
    return parse_event(orjson.dumps(d))
