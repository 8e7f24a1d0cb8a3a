"""What the mappers of every format share: the result type, event ids and the contract-v1
envelope, and the parsing of row values. Pure: no I/O, no clock."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Most lines one event may carry (contract v1); larger orders keep their total.
MAX_LINES = 500
#: Most units one line may carry (contract v1).
MAX_QUANTITY = 100_000


class ReplayError(Exception):
    """A problem with the input as a whole (unreadable file, bad mapping, missing column)."""


@dataclass
class Mapped:
    """What a mapper made of its input.

    ``rows`` counts data rows (or non-blank lines) read; ``skipped`` counts rows (or, where
    the reason says so, invoice lines) left out, by reason; ``notes`` counts things worth
    knowing that did not drop a row (duplicates sent with the same ``event_id``, customers
    without a known country, ...).
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)


class _RowError(ValueError):
    """A row that cannot be mapped; the message is the skip reason."""


def event_id(fmt: str, *parts: str) -> str:
    """``"<fmt>:<sha1 of the parts>"``: the same identity always gives the same id."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{fmt}:{digest}"


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``, seconds precision unless there are microseconds."""
    text = moment.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def envelope(event_id: str, customer: str, moment: datetime, session: str | None) -> dict[str, Any]:
    """The contract-v1 fields every replayed event carries."""
    common: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": iso(moment),
    }
    if session:
        common["session_id"] = session
    return common


def browse_event(
    common: dict[str, Any],
    *,
    page_type: str,
    sku: str | None,
    category: str | None,
    price: float | None,
) -> dict[str, Any]:
    """A replayed browse event: ``sku``, ``category`` and ``price`` only where the row has
    them (every mapper writes the keys in this order, so a replay's bytes stay stable)."""
    event = {**common, "type": "browse", "page_type": page_type}
    if sku:
        event["sku"] = sku
    if category:
        event["category"] = category
    if price is not None:
        event["price"] = price
    return event


def cart_event(
    common: dict[str, Any],
    *,
    add: bool,
    sku: str,
    quantity: int,
    category: str | None,
    price: float | None,
) -> dict[str, Any]:
    """A replayed cart addition or removal: ``category`` and ``unit_price`` only where the
    row has them."""
    event = {
        **common,
        "type": "cart",
        "action": "add" if add else "remove",
        "sku": sku,
        "quantity": quantity,
    }
    if category:
        event["category"] = category
    if price is not None:
        event["unit_price"] = price
    return event


def _time_key(event: dict[str, Any]) -> datetime:
    text = str(event["occurred_at"])
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def sort_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in ``occurred_at`` order; equal times keep their input order."""
    return sorted(events, key=_time_key)


def parse_until(text: str) -> datetime:
    """The end of a replay's time window: an ISO-8601 time (UTC unless it says otherwise),
    or a date alone, which keeps that whole UTC day.

    >>> iso(parse_until("1997-09-30")), iso(parse_until("1997-09-30T12:00:00+02:00"))
    ('1997-09-30T23:59:59.999999Z', '1997-09-30T10:00:00Z')
    """
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = datetime.strptime(raw, "%Y-%m-%d")
            return day.replace(hour=23, minute=59, second=59, microsecond=999_999, tzinfo=UTC)
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise ReplayError(f"--until {text!r}: not an ISO-8601 date or time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def events_until(
    events: list[dict[str, Any]], until: datetime | None
) -> tuple[list[dict[str, Any]], int]:
    """The events dated at or before ``until`` (all without one), and how many were after."""
    if until is None:
        return events, 0
    kept = [e for e in events if _time_key(e) <= until]
    return kept, len(events) - len(kept)


def _text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        raise _RowError(f"missing column {column}")
    return str(value).strip()


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"malformed {what}") from None
    if not math.isfinite(value):
        raise _RowError(f"malformed {what}")
    return value


def _price(text: str, what: str = "price") -> float:
    value = _number(text, what)
    if value < 0:
        raise _RowError(f"negative {what}")
    return round(value, 6)


def _quantity(text: str) -> int:
    value = _number(text, "quantity")
    if value != int(value):
        raise _RowError("malformed quantity")
    return int(value)


def _money(value: float) -> float:
    return round(value + 0.0, 2)


def _merge_lines(lines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Lines of the same sku, category and price merged (quantities added), at most
    :data:`MAX_LINES` of them; returns (lines, how many were dropped beyond the limit)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in lines:
        key = (line["sku"], line.get("category"), line.get("unit_price"))
        seen = merged.get(key)
        if seen is None:
            merged[key] = dict(line)
        elif seen["quantity"] + line["quantity"] <= MAX_QUANTITY:
            seen["quantity"] += line["quantity"]
        else:  # keep a line within the per-line limit
            merged[(*key, len(merged))] = dict(line)
    out = list(merged.values())
    return out[:MAX_LINES], max(0, len(out) - MAX_LINES)
