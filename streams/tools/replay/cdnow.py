"""The ``cdnow`` format (the CDNOW sample of Fader and Hardie): one purchase per row.

Whitespace-separated columns: customer id in the full cohort, customer id in the sample,
date ``YYYYMMDD``, number of CDs, amount in USD. The file has no time of day, so each
purchase is dated 12:00 UTC, which keeps it on its own UTC day (the value models count
purchase days). Rows are transactions: two equal rows are two orders, so ``order_id`` is
the sample id and the row's place among that customer's rows, not the row's content.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from streams.tools.replay.common import (
    MAX_QUANTITY,
    Mapped,
    _money,
    _number,
    _quantity,
    _RowError,
    event_id,
    iso,
)

#: The one line of a CDNOW purchase: the file says how many CDs, not which.
CD_SKU = "cd"


def _cdnow_day(text: str) -> datetime:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)  # strptime would read 1997093 as 1997-09-03
        day = datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise _RowError("malformed date") from None
    if not 1990 <= day.year <= 2100:
        raise _RowError("date out of range")
    return day.replace(hour=12, tzinfo=UTC)


def map_cdnow(lines: Iterable[str]) -> Mapped:
    """CDNOW rows -> purchases: customer ``cdnow-<sample id>``, one line of ``quantity``
    CDs, the amount as ``total`` in USD. Blank lines are not rows.

    >>> out = map_cdnow(["00004 0001 19970101  2   29.33"])
    >>> e = out.events[0]
    >>> e["customer_id"], e["order_id"], e["occurred_at"], e["lines"], e["total"]
    ('cdnow-0001', 'cdnow-0001-1', '1997-01-01T12:00:00Z', [{'sku': 'cd', 'quantity': 2}], 29.33)
    """
    out = Mapped()
    per_customer: dict[str, int] = {}
    seen: set[tuple[str, ...]] = set()
    for raw in lines:
        fields = tuple(raw.split())
        if not fields:
            continue
        out.rows += 1
        try:
            if len(fields) != 5:
                raise _RowError("malformed row (not 5 columns)")
            _cohort_id, sample_id, ymd, cds_text, amount_text = fields
            moment = _cdnow_day(ymd)
            cds = _quantity(cds_text)
            if not 1 <= cds <= MAX_QUANTITY:
                raise _RowError("number of CDs not in 1..100000")
            amount = _number(amount_text, "amount")
            if amount < 0:
                raise _RowError("negative amount")
        except _RowError as exc:
            out.skipped[str(exc)] += 1
            continue
        if fields in seen:
            out.notes["rows equal to an earlier row (kept: another order)"] += 1
        seen.add(fields)
        customer = f"cdnow-{sample_id}"
        n = per_customer.get(customer, 0) + 1
        per_customer[customer] = n
        order_id = f"{customer}-{n}"
        event: dict[str, Any] = {
            "schema_version": 1,
            "event_id": event_id("cdnow", "order", order_id),
            "type": "purchase",
            "customer_id": customer,
            "occurred_at": iso(moment),
            "order_id": order_id,
            "lines": [{"sku": CD_SKU, "quantity": cds}],
            "total": _money(amount),
            "currency": "USD",
        }
        out.events.append(event)
    return out
