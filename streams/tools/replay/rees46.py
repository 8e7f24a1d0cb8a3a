"""The ``rees46`` format (REES46 Open CDP clickstream): views, cart changes and purchases.

``view`` -> browse, ``cart`` -> cart add, ``remove_from_cart`` -> cart remove, ``purchase``
rows -> one purchase per (user, session), its rows as lines, timed at its first row,
``order_id`` = the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from streams.tools.replay.common import (
    Mapped,
    _merge_lines,
    _money,
    _price,
    _RowError,
    _text,
    browse_event,
    cart_event,
    envelope,
    event_id,
    iso,
)

REES46_COLUMNS = (
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
)


def _rees46_time(text: str) -> datetime:
    raw = text.removesuffix(" UTC").strip()
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise _RowError("malformed event_time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 1990 <= moment.year <= 2100:
        raise _RowError("event_time out of range")
    return moment


def map_rees46(rows: Iterable[dict[str, Any]]) -> Mapped:
    """REES46 rows -> events (see the module docstring).

    Exact duplicate rows give the same ``event_id`` (segstream applies them once) and are
    counted in ``notes``; a duplicate purchase row is not added to its order twice.
    """
    out = Mapped()
    seen_rows: set[str] = set()
    orders: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        out.rows += 1
        try:
            values = tuple(_text(row, c) for c in REES46_COLUMNS)
            when, kind, sku, category_id, category_code, _, price_text, user, session = values
            identity = event_id("rees46", *values)
            duplicate = identity in seen_rows
            seen_rows.add(identity)
            if not user:
                raise _RowError("missing user_id")
            moment = _rees46_time(when)
            if kind not in ("view", "cart", "remove_from_cart", "purchase"):
                raise _RowError("unknown event_type")
            if not sku and kind != "view":
                raise _RowError("missing product_id")
            price = _price(price_text) if price_text else None
            category = category_code or category_id or None
        except _RowError as exc:
            out.skipped[str(exc)] += 1
            continue
        if duplicate:
            out.notes["exact duplicate rows (same event_id, applied once)"] += 1
        common = envelope(identity, user, moment, session)
        if kind == "view":
            out.events.append(
                browse_event(common, page_type="product", sku=sku, category=category, price=price)
            )
        elif kind in ("cart", "remove_from_cart"):
            out.events.append(
                cart_event(
                    common,
                    add=kind == "cart",
                    sku=sku,
                    quantity=1,
                    category=category,
                    price=price,
                )
            )
        else:
            if price is None:
                out.skipped["purchase row without price"] += 1
                continue
            order_id = session or f"{user}@{iso(moment)}"
            line = {"sku": sku, "quantity": 1, "unit_price": price}
            if category:
                line["category"] = category
            order = orders.get((user, order_id))
            if order is None:
                order = {
                    **common,
                    "event_id": event_id("rees46", "order", user, order_id),
                    "type": "purchase",
                    "order_id": order_id,
                    "lines": [],
                    "currency": "USD",
                    "_rows": set(),
                }
                orders[(user, order_id)] = order
                out.events.append(order)  # its place in time: the first row of the order
            if identity in order["_rows"]:
                continue  # an exact duplicate row is not a second unit
            order["_rows"].add(identity)
            order["lines"].append(line)
    for order in orders.values():
        del order["_rows"]
        raw_total = sum(ln["quantity"] * ln["unit_price"] for ln in order["lines"])
        order["lines"], dropped = _merge_lines(order["lines"])
        if dropped:
            out.notes["order lines beyond 500 left out (total kept)"] += dropped
        order["total"] = _money(raw_total)
    out.notes["purchase events (one per user and session)"] += len(orders)
    return out
