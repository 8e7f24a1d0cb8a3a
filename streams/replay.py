"""Replay recorded shop data (CSV or JSON lines) into segstream's input topics.

Two halves, as everywhere in segstream:

- **Mappers** are pure. Each takes the rows of one format (``dict`` per CSV row, or text
  lines) and returns a :class:`Mapped`: contract-v1 event dicts (JSON-ready,
  ``occurred_at`` as ISO-8601 with ``Z``) plus what was read and why rows were skipped.
  No I/O, no clock: the same rows always give the same events, with the same ids.
- :func:`replay` reads a file (plain or gzip), maps it, sorts the events by
  ``occurred_at`` (stable) and produces them to Kafka, keyed by ``customer_id``, paced or
  as fast as possible.

Event ids are derived from each row's identity (``"<format>:<sha1>"``), so a second replay
of the same file sends the same event ids and order ids. segstream remembers only the most
recent ids of each customer (``SEGSTREAM_STATE__RECENT_EVENT_IDS``, default 16, and
``__RECENT_ORDER_IDS``, 32), so a second replay changes nothing only for customers whose
events and orders fit in that memory; older events of busier customers are applied again.
Replay a file once per deployment (or into fresh topics and keys).

Replayed history never sends a customer a message: each retention action acts only on a
segment change at most its ``max_age_s`` old by the wall clock (docs/actions.md), and
before sending, :func:`actions_notice` says which actions the target deployment's policy
would take and from which date on. ``--no-actions`` marks every replayed record with the
Kafka header ``segstream-no-actions: 1``: the worker segments those events and marks the
changes they cause ``no_actions``, which the actions agent suppresses (``replay``).

Formats:

``rees46``
    ``event_time,event_type,product_id,category_id,category_code,brand,price,user_id,
    user_session`` (REES46 Open CDP). ``view`` -> browse, ``cart`` -> cart add,
    ``remove_from_cart`` -> cart remove, ``purchase`` rows -> one purchase per
    (user, session), its rows as lines, timed at its first row, ``order_id`` = the session.
``online-retail``
    ``InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country``
    (UCI Online Retail, times in UK local time). One purchase per invoice, ``C`` invoices
    are refunds, ``A`` invoices (adjustments) and rows without a customer are skipped, and
    every customer gets one ``profile`` with their country (ISO-3166 alpha-2).
``jsonl``
    One contract-v1 event per line, sent as it is once it parses.
``mapped``
    Any other CSV layout, described by a TOML file (see ``config/replay-example.toml`` and
    :class:`MappingConfig`).

>>> rows = [{"event_time": "2019-10-01 00:00:05 UTC", "event_type": "view",
...          "product_id": "7", "category_id": "21", "category_code": "shoes",
...          "brand": "", "price": "59.90", "user_id": "42", "user_session": "s-1"}]
>>> out = map_rees46(rows)
>>> e = out.events[0]
>>> e["type"], e["customer_id"], e["occurred_at"], e["sku"], e["category"], e["price"]
('browse', '42', '2019-10-01T00:00:05Z', '7', 'shoes', 59.9)
>>> e["event_id"].startswith("rees46:"), out.rows, dict(out.skipped)
(True, 1, {})
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import math
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from segmenters.events import InvalidEvent, parse_event
from segmenters.policy import DAY, Policy

log = logging.getLogger(__name__)

FORMATS = ("rees46", "online-retail", "jsonl", "mapped")

#: Most lines one event may carry (contract v1); larger orders keep their total.
MAX_LINES = 500
#: Most units one line may carry (contract v1).
MAX_QUANTITY = 100_000

UK = ZoneInfo("Europe/London")

#: Country names of the UCI Online Retail data -> ISO-3166 alpha-2. Names that are not one
#: country ("Channel Islands", "European Community", "Unspecified") are left out on purpose.
COUNTRY_CODES: dict[str, str] = {
    "Australia": "AU",
    "Austria": "AT",
    "Bahrain": "BH",
    "Belgium": "BE",
    "Brazil": "BR",
    "Canada": "CA",
    "Cyprus": "CY",
    "Czech Republic": "CZ",
    "Denmark": "DK",
    "EIRE": "IE",
    "Ireland": "IE",
    "Finland": "FI",
    "France": "FR",
    "Germany": "DE",
    "Greece": "GR",
    "Hong Kong": "HK",
    "Iceland": "IS",
    "Israel": "IL",
    "Italy": "IT",
    "Japan": "JP",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Malta": "MT",
    "Netherlands": "NL",
    "Norway": "NO",
    "Poland": "PL",
    "Portugal": "PT",
    "RSA": "ZA",
    "South Africa": "ZA",
    "Saudi Arabia": "SA",
    "Singapore": "SG",
    "Spain": "ES",
    "Sweden": "SE",
    "Switzerland": "CH",
    "United Arab Emirates": "AE",
    "United Kingdom": "GB",
    "USA": "US",
    "United States": "US",
}


class ReplayError(Exception):
    """A problem with the input as a whole (unreadable file, bad mapping, missing column)."""


# --- results -----------------------------------------------------------------------------


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


# --- helpers (pure) ----------------------------------------------------------------------


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


def _time_key(event: dict[str, Any]) -> datetime:
    text = str(event["occurred_at"])
    return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)


def sort_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events in ``occurred_at`` order; equal times keep their input order."""
    return sorted(events, key=_time_key)


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


# --- rees46 ------------------------------------------------------------------------------

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
            browse: dict[str, Any] = {**common, "type": "browse", "page_type": "product"}
            if sku:
                browse["sku"] = sku
            if category:
                browse["category"] = category
            if price is not None:
                browse["price"] = price
            out.events.append(browse)
        elif kind in ("cart", "remove_from_cart"):
            cart: dict[str, Any] = {
                **common,
                "type": "cart",
                "action": "add" if kind == "cart" else "remove",
                "sku": sku,
                "quantity": 1,
            }
            if category:
                cart["category"] = category
            if price is not None:
                cart["unit_price"] = price
            out.events.append(cart)
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


# --- online retail -----------------------------------------------------------------------

ONLINE_RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)


def _uk_time(text: str) -> datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S"):
        try:
            local = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not 1990 <= local.year <= 2100:
            raise _RowError("InvoiceDate out of range")
        return local.replace(tzinfo=UK).astimezone(UTC)
    raise _RowError("malformed InvoiceDate")


def _customer(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def map_online_retail(rows: Iterable[dict[str, Any]]) -> Mapped:
    """UCI Online Retail invoice lines -> purchases, refunds and profiles.

    Invoice lines are grouped per (invoice, customer): an invoice is one order, sent as one
    event at its (earliest) invoice time. Lines with the same sku and price are merged.
    """
    out = Mapped()
    invoices: dict[tuple[str, str], dict[str, Any]] = {}
    seen_rows: set[tuple[str, ...]] = set()
    times: dict[str, datetime] = {}  # the lines of an invoice repeat its time
    for row in rows:
        out.rows += 1
        try:
            values = tuple(_text(row, c) for c in ONLINE_RETAIL_COLUMNS)
            invoice, sku, _description, qty_text, date_text, price_text, cust, country = values
            if not invoice:
                raise _RowError("missing InvoiceNo")
            if invoice[0] in "Aa":
                raise _RowError("adjustment invoice (A...)")
            if not cust:
                raise _RowError("missing CustomerID")
            quantity = _quantity(qty_text)
            price = _number(price_text, "UnitPrice")
            moment = times.get(date_text) or times.setdefault(date_text, _uk_time(date_text))
            if not sku:
                raise _RowError("missing StockCode")
        except _RowError as exc:
            out.skipped[str(exc)] += 1
            continue
        if values in seen_rows:
            out.notes["exact duplicate rows (kept as invoice lines)"] += 1
        seen_rows.add(values)
        customer = _customer(cust)
        refund = invoice[0] in "Cc"
        key = (invoice, customer)
        inv = invoices.get(key)
        if inv is None:
            inv = {
                "invoice": invoice,
                "customer": customer,
                "refund": refund,
                "at": moment,
                "country": country,
                "lines": [],
            }
            invoices[key] = inv
        inv["at"] = min(inv["at"], moment)
        units = abs(quantity) if refund else quantity
        if units <= 0 or price < 0:
            what = "refund" if refund else "purchase"
            out.skipped[f"{what} line with quantity <= 0 or price < 0"] += 1
            continue
        if units > MAX_QUANTITY:
            out.skipped["line quantity above 100000"] += 1
            continue
        inv["lines"].append({"sku": sku, "quantity": units, "unit_price": round(price, 6)})

    first: dict[str, tuple[datetime, str]] = {}  # customer -> (first invoice time, country)
    order_events: list[dict[str, Any]] = []
    for inv in invoices.values():
        if not inv["lines"]:
            out.notes["invoices without a valid line (not sent)"] += 1
            continue
        raw_total = _money(sum(ln["quantity"] * ln["unit_price"] for ln in inv["lines"]))
        lines, dropped = _merge_lines(inv["lines"])
        if dropped:
            out.notes["invoice lines beyond 500 left out (total kept)"] += dropped
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": event_id("online-retail", "invoice", inv["invoice"], inv["customer"]),
            "type": "refund" if inv["refund"] else "purchase",
            "customer_id": inv["customer"],
            "occurred_at": iso(inv["at"]),
            "order_id": inv["invoice"],
            "lines": lines,
            "total": raw_total,
        }
        if inv["refund"]:
            if raw_total <= 0:
                out.notes["refunds of nothing (total 0, not sent)"] += 1
                continue
        else:
            event["currency"] = "GBP"
        order_events.append(event)
        seen = first.get(inv["customer"])
        if seen is None or inv["at"] < seen[0]:
            first[inv["customer"]] = (inv["at"], inv["country"])

    profiles: list[dict[str, Any]] = []
    unknown: Counter[str] = Counter()
    for customer, (moment, country) in first.items():
        code = COUNTRY_CODES.get(country)
        if code is None:
            unknown[country or "(empty)"] += 1
            continue
        profiles.append(
            {
                "schema_version": 1,
                "event_id": event_id("online-retail", "profile", customer),
                "type": "profile",
                "customer_id": customer,
                "occurred_at": iso(moment),
                "attributes": {"country": code},
            }
        )
    for name, n in sorted(unknown.items()):
        out.notes[f"customers with unknown country {name!r} (no profile)"] += n
    out.events = profiles + order_events  # a profile sorts before its first invoice
    return out


# --- jsonl -------------------------------------------------------------------------------


def map_jsonl(lines: Iterable[str | bytes], *, max_bytes: int = 65536) -> Mapped:
    """Contract-v1 events, one per line; lines that do not parse are skipped and counted."""
    out = Mapped()
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        out.rows += 1
        try:
            parse_event(text, max_bytes=max_bytes)
        except InvalidEvent as exc:
            reason = exc.reason.split(";")[0]
            if reason.startswith("invalid JSON"):
                reason = "invalid JSON"
            elif len(reason) > 80:
                reason = reason[:77] + "..."
            out.skipped[f"malformed event: {reason}"] += 1
            continue
        out.events.append(orjson.loads(text))
    return out


# --- mapped (a TOML mapping of another CSV layout) ---------------------------------------

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
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ReplayError(f"not valid TOML: {exc}") from None
    try:
        return MappingConfig.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"]) or "mapping"
            problems.append(f"  {where}: {err['msg']}")
        raise ReplayError("invalid mapping:\n" + "\n".join(problems)) from None


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
            event: dict[str, Any] = {
                **common,
                "type": "browse",
                "page_type": "product" if sku else "other",
            }
            for name, value in (("sku", sku or None), ("category", category), ("price", price)):
                if value is not None:
                    event[name] = value
            out.events.append(event)
        elif kind in ("cart_add", "cart_remove"):
            event = {
                **common,
                "type": "cart",
                "action": "add" if kind == "cart_add" else "remove",
                "sku": sku,
                "quantity": quantity,
            }
            if category:
                event["category"] = category
            if price is not None:
                event["unit_price"] = price
            out.events.append(event)
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


# --- reading files -----------------------------------------------------------------------


def open_text(path: Path) -> io.TextIOBase:
    """``path`` as text (UTF-8, BOM ignored), gunzipped when it is gzip (by its first bytes)."""
    try:
        with path.open("rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        if gz:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None


def _csv_rows(
    handle: io.TextIOBase, required: Iterable[str], delimiter: str = ","
) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(handle, delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise ReplayError(
            f"missing column(s) {', '.join(missing)}; the header has: {', '.join(header) or '-'}"
        )
    yield from reader


def read_and_map(
    path: Path,
    fmt: str,
    *,
    mapping: MappingConfig | None = None,
    max_bytes: int = 65536,
) -> Mapped:
    """Read ``path`` in format ``fmt`` and map it; the events come back sorted by time."""
    if fmt not in FORMATS:
        raise ReplayError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "mapped" and mapping is None:
        raise ReplayError("--format mapped needs --mapping FILE")
    handle = open_text(path)
    try:
        if fmt == "rees46":
            result = map_rees46(_csv_rows(handle, REES46_COLUMNS))
        elif fmt == "online-retail":
            result = map_online_retail(_csv_rows(handle, ONLINE_RETAIL_COLUMNS))
        elif fmt == "jsonl":
            result = map_jsonl(handle, max_bytes=max_bytes)
        else:
            assert mapping is not None
            rows = _csv_rows(handle, mapping.needed(), mapping.delimiter)
            result = map_mapped(rows, mapping)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None
    finally:
        handle.close()
    result.events = sort_events(result.events)
    return result


# --- producing ---------------------------------------------------------------------------


@dataclass
class ReplayStats:
    """What :func:`replay` read and sent."""

    file: str = ""
    format: str = ""
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    events: int = 0  # delivered
    failed: int = 0
    not_sent: int = 0  # beyond --limit or after Ctrl-C
    first_at: str | None = None
    last_at: str | None = None
    read_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False


def render(stats: ReplayStats) -> str:
    """The summary printed at the end of a replay."""
    sending_s = stats.elapsed_s - stats.read_s
    rate = stats.events / sending_s if sending_s > 0 else 0.0
    by_type = ", ".join(f"{t} {n}" for t, n in sorted(stats.by_type.items(), key=lambda x: -x[1]))
    out = [
        f"replayed {stats.file} ({stats.format})",
        f"  rows read        {stats.rows}",
        f"  events produced  {stats.events} ({by_type or 'none'})",
    ]
    if stats.first_at:
        out.append(f"  event time       {stats.first_at} .. {stats.last_at}")
    if stats.failed:
        out.append(f"  not delivered    {stats.failed}")
    if stats.not_sent:
        why = "interrupted" if stats.interrupted else "beyond --limit"
        out.append(f"  not sent         {stats.not_sent} ({why})")
    skipped = sum(stats.skipped.values())
    out.append(f"  rows skipped     {skipped}")
    for reason, n in sorted(stats.skipped.items(), key=lambda x: (-x[1], x[0])):
        out.append(f"    {n:>9}  {reason}")
    if stats.notes:
        out.append("  notes")
        for note, n in sorted(stats.notes.items(), key=lambda x: (-x[1], x[0])):
            out.append(f"    {n:>9}  {note}")
    out.append(
        f"  seconds          {stats.elapsed_s:.1f} (reading and mapping {stats.read_s:.1f}, "
        f"sending {sending_s:.1f} at {rate:,.0f} events/s)"
    )
    return "\n".join(out)


def _age(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds < 2 * DAY else f"{seconds / DAY:g} days"


def actions_notice(
    policy: Policy | None, *, wall: float, no_actions: bool, times: list[float]
) -> str:
    """What the target deployment will do about the replayed events, said before sending.

    ``policy``: the deployment's retention policy (None: its actions agent is off);
    ``times``: the ``occurred_at`` of the events to send (epoch seconds).

    >>> from segmenters.policy import DEFAULT_POLICY
    >>> print(actions_notice(DEFAULT_POLICY, wall=100 * DAY, no_actions=False,
    ...                      times=[0.0, 99.9 * DAY]))  # doctest: +NORMALIZE_WHITESPACE
    actions: this deployment's policy (version 2026-11-24.1) sends ads/reactivation,
      ads/win_back, email/abandoned_cart, email/vip_offer, email/win_back, but only for
      segment changes recent by the wall clock; older ones are suppressed `stale`:
      email/abandoned_cart (max age 6 h): changes dated before 1970-04-10T18:00:00Z;
        1 of 2 events to send are newer
      ads/reactivation, ads/win_back, email/vip_offer, email/win_back (max age 24 h):
        changes dated before 1970-04-10T00:00:00Z; 1 of 2 events to send are newer
      (timers fire later than the events: at_risk comes 30 days after the last order)
      --no-actions: act on none of them
    >>> actions_notice(DEFAULT_POLICY, wall=0.0, no_actions=True, times=[])[:60]
    'actions: replayed events are marked no-actions (Kafka header'
    """
    if no_actions:
        return (
            "actions: replayed events are marked no-actions (Kafka header "
            "segstream-no-actions: 1): the worker segments them and never acts on the "
            "changes they cause (suppressed `replay`)"
        )
    if policy is None:
        return "actions: this deployment runs no actions agent (SEGSTREAM_ACTIONS_ENABLED=false)"
    used = sorted({a for rule in policy.rules for a in rule.actions})
    if not used:
        return f"actions: this deployment's policy (version {policy.version}) has no rules"
    by_age: dict[float, list[str]] = {}
    for a in used:
        by_age.setdefault(policy.actions[a].max_age_s, []).append(a)
    out = [
        f"actions: this deployment's policy (version {policy.version}) sends "
        f"{', '.join(used)}, but only for segment changes recent by the wall clock; older "
        "ones are suppressed `stale`:"
    ]
    for age, ids in sorted(by_age.items()):
        cutoff = wall - age
        newer = sum(1 for t in times if t >= cutoff)
        when = iso(datetime.fromtimestamp(cutoff, UTC))
        out.append(
            f"  {', '.join(ids)} (max age {_age(age)}): changes dated before {when}; "
            f"{newer} of {len(times)} events to send are newer"
        )
    out.append("  (timers fire later than the events: at_risk comes 30 days after the last order)")
    out.append("  --no-actions: act on none of them")
    return "\n".join(out)


def deployment_policy(settings: Any) -> Policy | None:
    """The retention policy the target deployment's workers use (None: actions are off)."""
    from segmenters.policy import DEFAULT_POLICY, PolicyError, load_policy

    if not settings.actions_enabled:
        return None
    if settings.actions_file is None:
        return DEFAULT_POLICY
    try:
        return load_policy(Path(settings.actions_file).read_text())
    except (OSError, PolicyError) as exc:
        raise ReplayError(f"retention policy {settings.actions_file}: {exc}") from None


def replay(
    settings: Any,
    path: Path,
    fmt: str,
    *,
    mapping: MappingConfig | None = None,
    rate: float | None = None,
    limit: int | None = None,
    progress: bool = True,
    no_actions: bool = False,
    announce: Callable[[str], None] | None = None,
    wall: float | None = None,
) -> ReplayStats:
    """Read, map, sort and produce ``path``; ``rate`` events/s, or as fast as possible.

    ``limit`` sends only the first ``limit`` events in time order (so a later full replay
    sends the same ids again and then the rest). Ctrl-C stops early; what was sent is
    flushed and counted. ``announce`` (a ``print``-like callable) gets
    :func:`actions_notice` before the first event is sent; ``no_actions`` marks every
    record with the ``segstream-no-actions`` header; ``wall`` defaults to ``time.time()``.
    """
    from tqdm import tqdm

    from .pipeline import NO_ACTIONS_HEADER
    from .topics import finish, input_producer

    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ReplayError("--rate must be a positive number of events per second")
    t0 = time.monotonic()
    mapped = read_and_map(path, fmt, mapping=mapping, max_bytes=settings.max_event_bytes)
    stats = ReplayStats(
        file=str(path),
        format=fmt,
        rows=mapped.rows,
        skipped=dict(mapped.skipped),
        notes=dict(mapped.notes),
        read_s=time.monotonic() - t0,
    )
    events = mapped.events if limit is None else mapped.events[: max(0, limit)]
    stats.not_sent = len(mapped.events) - len(events)
    if announce is not None:
        times = [_time_key(e).timestamp() for e in events]
        now = float(int(time.time())) if wall is None else wall
        policy = None if no_actions else deployment_policy(settings)
        announce(actions_notice(policy, wall=now, no_actions=no_actions, times=times))
    headers = [(NO_ACTIONS_HEADER, b"1")] if no_actions else None

    producer, topics = input_producer(settings, "replay")
    failures: list[BaseException] = []
    by_type: Counter[str] = Counter()
    bar = tqdm(
        total=len(events),
        unit="ev",
        desc=f"replay {fmt}",
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    sent = 0
    t_send = time.monotonic()
    try:
        for event in events:
            if rate is not None:
                wait = sent / rate - (time.monotonic() - t_send)
                if wait > 0.001:
                    time.sleep(wait)
            future = producer.send(
                topics[event["type"]],
                key=str(event["customer_id"]).encode(),
                value=orjson.dumps(event),
                headers=headers,
            )
            future.add_errback(failures.append)
            by_type[event["type"]] += 1
            sent += 1
            bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
        stats.not_sent += len(events) - sent
    finally:
        bar.close()
        finish(producer)
    if events:
        stats.first_at = events[0]["occurred_at"]
        stats.last_at = events[max(0, sent - 1)]["occurred_at"]
    stats.failed = len(failures)
    stats.events = sent - stats.failed
    stats.by_type = dict(by_type)
    stats.elapsed_s = time.monotonic() - t0
    if failures:
        log.warning("%d events were not delivered; first error: %s", len(failures), failures[0])
    return stats


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
