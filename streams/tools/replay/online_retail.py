"""The ``online-retail`` format (UCI Online Retail): invoice lines -> purchases, refunds
and one profile per customer with their country.

Times are UK local time. ``C`` invoices are refunds, ``A`` invoices (adjustments) and rows
without a customer are skipped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from streams.tools.replay.common import (
    MAX_QUANTITY,
    Mapped,
    _merge_lines,
    _money,
    _number,
    _quantity,
    _RowError,
    _text,
    event_id,
    iso,
)

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
