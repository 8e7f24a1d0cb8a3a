"""The ``mapped`` format: any other CSV layout, described by a TOML mapping file (see
``config/replay-example.toml``): the mapping's schema, reading it, and its mapper."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from segmenters.tomlfile import load_toml
from streams.tools.replay.common import (
    MAX_QUANTITY,
    Mapped,
    ReplayError,
    _merge_lines,
    _money,
    _price,
    _quantity,
    _RowError,
    _text,
    browse_event,
    cart_event,
    envelope,
    event_id,
)

Kind = Literal["browse", "cart_add", "cart_remove", "purchase", "refund", "skip"]


class MappedColumns(BaseModel):
    """Which CSV column holds which field; only the first three are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(min_length=1)
    occurred_at: str = Field(min_length=1)
    type: str = Field(min_length=1)
    sku: str | None = None
    category: str | None = None
    price: str | None = None
    quantity: str | None = None
    session_id: str | None = None
    order_id: str | None = None


class MappingConfig(BaseModel):
    """A ``--mapping`` file: see ``config/replay-example.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field("mapped", min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")
    time_format: str = Field("iso", min_length=1)
    timezone: str = "UTC"
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: MappedColumns
    types: dict[str, Kind] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @_model_validator(mode="after")
    def _needed_columns(self) -> MappingConfig:
        kinds = set(self.types.values())
        if kinds & {"cart_add", "cart_remove", "purchase", "refund"} and not self.columns.sku:
            raise ValueError("columns.sku is required when types map to cart, purchase or refund")
        if kinds & {"purchase", "refund"} and not self.columns.price:
            raise ValueError("columns.price is required when types map to purchase or refund")
        if "refund" in kinds and not self.columns.order_id:
            raise ValueError("columns.order_id is required when types map to refund")
        return self

    def needed(self) -> list[str]:
        """The CSV columns this mapping reads."""
        return [c for c in self.columns.model_dump().values() if c]


def parse_mapping(text: str) -> MappingConfig:
    """A mapping from TOML text; :class:`ReplayError` says what is wrong and where."""
    doc = load_toml(text, ReplayError)
    try:
        return MappingConfig.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "mapping"
            problems.append(f"  {where}: {err['msg']}")
        raise ReplayError("invalid mapping:\n" + "\n".join(problems)) from None


def load_mapping(path: Path) -> MappingConfig:
    """Read and validate a ``--mapping`` file; :class:`ReplayError` names the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReplayError(f"cannot read mapping {path}: {exc}") from None
    try:
        return parse_mapping(text)
    except ReplayError as exc:
        raise ReplayError(f"{path}: {exc}") from None


def _mapped_time(text: str, config: MappingConfig) -> datetime:
    fmt = config.time_format
    try:
        if fmt in ("unix", "unix_ms"):
            seconds = float(text) / (1000.0 if fmt == "unix_ms" else 1.0)
            moment = datetime.fromtimestamp(seconds, UTC)
        elif fmt == "iso":
            moment = datetime.fromisoformat(text)
        else:
            moment = datetime.strptime(text, fmt)
    except (ValueError, OverflowError, OSError):
        raise _RowError("malformed time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(config.timezone))
    if not 1990 <= moment.year <= 2100:
        raise _RowError("time out of range")
    return moment.astimezone(UTC)


def map_mapped(rows: Iterable[dict[str, Any]], config: MappingConfig) -> Mapped:
    """Rows of any CSV layout -> events, as ``config`` says.

    Purchase and refund rows are lines: rows of one customer with the same order id (the
    ``order_id`` column) form one event, at the time of its first row; without that column
    each row is its own order.
    """
    out = Mapped()
    cols = config.columns
    src = config.source
    orders: dict[tuple[str, str, str], dict[str, Any]] = {}
    seen_rows: set[str] = set()
    for row in rows:
        out.rows += 1
        try:
            values = tuple(_text(row, c) for c in config.needed())
            identity = event_id(src, *values)
            customer = _text(row, cols.customer_id)
            if not customer:
                raise _RowError("missing customer_id")
            raw_kind = _text(row, cols.type)
            kind = config.types.get(raw_kind)
            if kind is None:
                raise _RowError(f"unmapped type {raw_kind!r}")
            if kind == "skip":
                raise _RowError(f"type {raw_kind!r} mapped to skip")
            moment = _mapped_time(_text(row, cols.occurred_at), config)
            sku = _text(row, cols.sku) if cols.sku else ""
            if kind != "browse" and not sku:
                raise _RowError("missing sku")
            price_text = _text(row, cols.price) if cols.price else ""
            price = _price(price_text) if price_text else None
            qty_text = _text(row, cols.quantity) if cols.quantity else ""
            quantity = _quantity(qty_text) if qty_text else 1
            if kind == "refund":
                quantity = abs(quantity)
            if not 1 <= quantity <= MAX_QUANTITY:
                raise _RowError("quantity out of range")
            category = (_text(row, cols.category) if cols.category else "") or None
            session = (_text(row, cols.session_id) if cols.session_id else "") or None
            order_ref = (_text(row, cols.order_id) if cols.order_id else "") or None
            if kind in ("purchase", "refund") and price is None:
                raise _RowError("missing price")
        except _RowError as exc:
            out.skipped[str(exc)] += 1
            continue
        if identity in seen_rows:
            out.notes["exact duplicate rows (same event_id, applied once)"] += 1
        seen_rows.add(identity)
        common = envelope(identity, customer, moment, session)
        if kind == "browse":
            out.events.append(
                browse_event(
                    common,
                    page_type="product" if sku else "other",
                    sku=sku,
                    category=category,
                    price=price,
                )
            )
        elif kind in ("cart_add", "cart_remove"):
            out.events.append(
                cart_event(
                    common,
                    add=kind == "cart_add",
                    sku=sku,
                    quantity=quantity,
                    category=category,
                    price=price,
                )
            )
        else:
            order_id = order_ref or identity.split(":", 1)[1][:20]
            key = (kind, customer, order_id)
            order = orders.get(key)
            if order is None:
                order = {
                    **common,
                    "event_id": event_id(src, kind, customer, order_id),
                    "type": kind,
                    "order_id": order_id,
                    "lines": [],
                    "_rows": set(),
                }
                if kind == "purchase":
                    order["currency"] = config.currency
                orders[key] = order
                out.events.append(order)
            if identity in order["_rows"]:
                continue
            order["_rows"].add(identity)
            line = {"sku": sku, "quantity": quantity, "unit_price": price}
            if category:
                line["category"] = category
            order["lines"].append(line)
    empty: set[int] = set()
    for key, order in orders.items():
        del order["_rows"]
        raw_total = _money(sum(ln["quantity"] * ln["unit_price"] for ln in order["lines"]))
        order["lines"], dropped = _merge_lines(order["lines"])
        if dropped:
            out.notes["order lines beyond 500 left out (total kept)"] += dropped
        order["total"] = raw_total
        if key[0] == "refund" and raw_total <= 0:
            empty.add(id(order))
            out.notes["refunds of nothing (total 0, not sent)"] += 1
    if empty:
        out.events = [e for e in out.events if id(e) not in empty]
    return out
