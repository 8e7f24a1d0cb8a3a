"""Replay recorded shop data (CSV, JSON lines or CDNOW text) into segstream's input topics.

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
``cdnow``
    The CDNOW sample (Fader and Hardie): whitespace-separated cohort id, sample id,
    ``YYYYMMDD``, number of CDs, amount in USD. One purchase per row, customer
    ``cdnow-<sample id>``, dated 12:00 UTC, one line of that many CDs, the amount as total.
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

from streams.tools.replay.cdnow import map_cdnow
from streams.tools.replay.common import (
    MAX_LINES,
    MAX_QUANTITY,
    Mapped,
    ReplayError,
    envelope,
    event_id,
    events_until,
    iso,
    parse_until,
    sort_events,
)
from streams.tools.replay.jsonl import map_jsonl
from streams.tools.replay.mapped import (
    MappedColumns,
    MappingConfig,
    load_mapping,
    map_mapped,
    parse_mapping,
)
from streams.tools.replay.online_retail import (
    COUNTRY_CODES,
    ONLINE_RETAIL_COLUMNS,
    map_online_retail,
)
from streams.tools.replay.produce import deployment_policy, replay
from streams.tools.replay.read import FORMATS, open_text, read_and_map
from streams.tools.replay.rees46 import REES46_COLUMNS, map_rees46
from streams.tools.replay.report import ReplayStats, actions_notice, render

__all__ = [
    "COUNTRY_CODES",
    "FORMATS",
    "MAX_LINES",
    "MAX_QUANTITY",
    "ONLINE_RETAIL_COLUMNS",
    "REES46_COLUMNS",
    "Mapped",
    "MappedColumns",
    "MappingConfig",
    "ReplayError",
    "ReplayStats",
    "actions_notice",
    "deployment_policy",
    "envelope",
    "event_id",
    "events_until",
    "iso",
    "load_mapping",
    "map_cdnow",
    "map_jsonl",
    "map_mapped",
    "map_online_retail",
    "map_rees46",
    "open_text",
    "parse_mapping",
    "parse_until",
    "read_and_map",
    "render",
    "replay",
    "sort_events",
]
