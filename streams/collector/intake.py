"""The collector's pure parts: request bodies and query strings to contract-v1 events,
per-event accept/reject decisions, the per-client rate limiter, CORS and write keys.

Nothing here does I/O or reads a clock: the time, new ids and the client are passed in.

>>> ev = query_to_event({"type": "cart", "action": "add", "sku": "A-7", "quantity": "2",
...                      "unit_price": "9.5", "anonymous_id": "a-1", "writeKey": "k"})
>>> ev == {"type": "cart", "action": "add", "sku": "A-7", "quantity": 2, "unit_price": 9.5,
...        "anonymous_id": "a-1"}
True
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from segmenters.events import InvalidEvent, parse_event
from segmenters.eventtime import ahead_reason
from streams.kafka.topics import TOPIC_OF_TYPE

#: Profiles of visitors known only by their anonymous id are keyed ``anon:<anonymous_id>``.
ANON_PREFIX = "anon:"
MAX_ID = 200
_ID_RE = re.compile(r"^[^\x00-\x1f]+$")
#: Query parameters that are not event fields.
RESERVED_PARAMS = frozenset({"writeKey", "_"})
FLOAT_FIELDS = frozenset({"price", "unit_price", "total", "discount"})
INT_FIELDS = frozenset({"quantity", "schema_version", "birth_year"})
BOOL_FIELDS = frozenset({"marketing_consent"})
MAX_QUERY_PARAMS = 100
MAX_QUERY_INDEX = 499


class RequestError(Exception):
    """A request refused as a whole: HTTP ``status``, a stable ``code`` and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_json(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


# --- bodies --------------------------------------------------------------------------


@dataclass
class Body:
    items: list[Any]
    #: The client's clock when it sent the request (``sent_at``), to correct its skew.
    sent_at: str | None = None
    #: True if the body was one event (not a batch).
    single: bool = False


def split_body(raw: bytes, *, max_events: int) -> Body:
    """The events of a request body: one event, ``{"batch": [...]}`` or a JSON array.

    >>> split_body(b'[{"type": "browse"}, {"type": "cart"}]', max_events=5).items
    [{'type': 'browse'}, {'type': 'cart'}]
    >>> split_body(b'{"batch": [], "sent_at": "x"}', max_events=5)
    Traceback (most recent call last):
    ...
    streams.collector.intake.RequestError: the batch is empty
    >>> split_body(b'[1, 2, 3]', max_events=2).items
    Traceback (most recent call last):
    ...
    streams.collector.intake.RequestError: 3 events in one request; at most 2
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the body is not JSON: {exc}") from None
    sent_at: str | None = None
    single = False
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and "batch" in doc:
        items = doc["batch"]
        if not isinstance(items, list):
            raise RequestError(400, "invalid_batch", "batch must be a JSON array of events")
        sent = doc.get("sent_at")
        sent_at = sent if isinstance(sent, str) else None
    elif isinstance(doc, dict):
        items, single = [doc], True
    else:
        raise RequestError(400, "invalid_body", "the body must be an event, a batch or an array")
    if not items:
        raise RequestError(400, "empty_batch", "the batch is empty")
    if len(items) > max_events:
        raise RequestError(
            413, "too_many_events", f"{len(items)} events in one request; at most {max_events}"
        )
    return Body(items, sent_at, single)


def _convert(name: str, value: str) -> Any:
    try:
        if name in FLOAT_FIELDS:
            return float(value)
        if name in INT_FIELDS:
            return int(value)
    except ValueError:
        return value  # the validator names the field
    if name in BOOL_FIELDS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value


def query_to_event(query: Mapping[str, str]) -> dict[str, Any]:
    """An event from query parameters (the pixel). Dotted names nest (``geo.country=DE``,
    ``attributes.birth_year=1990``, ``lines.0.sku=A-7``); ``lines`` may also be a JSON
    array. Known numeric and boolean fields are converted; ``writeKey`` and ``_`` are not
    event fields.

    >>> query_to_event({"type": "purchase", "lines.0.sku": "A", "lines.0.quantity": "2",
    ...                 "lines.1.sku": "B", "geo.country": "DE", "total": "3"})
    {'type': 'purchase', 'geo': {'country': 'DE'}, 'total': 3.0,
     'lines': [{'sku': 'A', 'quantity': 2}, {'sku': 'B'}]}
    >>> query_to_event({"lines": '[{"sku": "A"}]'})
    {'lines': [{'sku': 'A'}]}
    """
    if len(query) > MAX_QUERY_PARAMS:
        raise RequestError(400, "too_many_params", f"at most {MAX_QUERY_PARAMS} query parameters")
    event: dict[str, Any] = {}
    lists: dict[str, dict[int, dict[str, Any]]] = {}
    for name, value in query.items():
        if name in RESERVED_PARAMS:
            continue
        parts = name.split(".")
        if len(parts) == 1:
            if name == "lines" and value.lstrip().startswith("["):
                try:
                    event[name] = orjson.loads(value)
                except orjson.JSONDecodeError:
                    event[name] = value
            else:
                event[name] = _convert(name, value)
        elif len(parts) == 2:
            outer, inner = parts
            nested = event.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner] = _convert(inner, value)
        elif len(parts) == 3 and parts[1].isdigit():
            outer, index, inner = parts[0], int(parts[1]), parts[2]
            if index > MAX_QUERY_INDEX:
                raise RequestError(400, "invalid_param", f"{name}: index above {MAX_QUERY_INDEX}")
            lists.setdefault(outer, {}).setdefault(index, {})[inner] = _convert(inner, value)
        else:
            raise RequestError(400, "invalid_param", f"{name}: unsupported parameter name")
    for outer, rows in lists.items():
        event[outer] = [rows[i] for i in sorted(rows)]
    return event


# --- events --------------------------------------------------------------------------


@dataclass
class Prepared:
    """An accepted event before identity resolution: its unprefixed topic, and the
    anonymous id when it came without a ``customer_id``."""

    index: int
    event: dict[str, Any]
    topic: str
    anonymous_id: str | None

    @property
    def event_id(self) -> str:
        return str(self.event["event_id"])


@dataclass
class Outcome:
    index: int
    status: str  # accepted | rejected | failed
    event_id: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        if self.event_id is not None:
            out["event_id"] = self.event_id
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def valid_id(value: Any, *, limit: int = MAX_ID) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and bool(_ID_RE.match(value))


def anon_customer(anonymous_id: str) -> str:
    """>>> anon_customer("a-1")
    'anon:a-1'
    """
    return f"{ANON_PREFIX}{anonymous_id}"


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def clock_skew(sent_at: str | None, received: datetime) -> timedelta:
    """How far the client's clock is behind the server's (add it to the client's times).

    >>> from datetime import UTC
    >>> clock_skew("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 10, 5, tzinfo=UTC))
    datetime.timedelta(seconds=300)
    >>> clock_skew("yesterday", datetime(2026, 1, 1, tzinfo=UTC))
    datetime.timedelta(0)
    """
    if not sent_at:
        return timedelta(0)
    try:
        sent = datetime.fromisoformat(sent_at.replace("Z", "+00:00"))
    except ValueError:
        return timedelta(0)
    if sent.tzinfo is None:
        return timedelta(0)
    return received - sent


def skew_corrected(at: datetime, skew: timedelta, received: datetime) -> datetime:
    """``at`` moved by the client's clock error, but never past the receive time by it:
    a client whose clock is behind (``sent_at`` early) moves its events forward at most
    to ``received``, since nothing it sent can have happened after it arrived. A time
    that is already later than ``received`` stays as given (the bound judges it).

    >>> from datetime import UTC
    >>> got = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    >>> skew_corrected(got - timedelta(minutes=30), timedelta(hours=1), got) == got
    True
    >>> skew_corrected(got - timedelta(hours=2), timedelta(hours=1), got).hour
    9
    >>> skew_corrected(got, timedelta(hours=-1), got).hour
    9
    """
    moved = at + skew
    if skew > timedelta(0) and moved > received:
        return max(at, received)
    return moved


def prepare(
    index: int,
    item: Any,
    *,
    now: datetime,
    new_id: Callable[[], str],
    skew: timedelta = timedelta(0),
    max_event_bytes: int = 65536,
    max_future_s: float | None = None,
) -> Prepared | Outcome:
    """Fill the defaults of one event and validate it against contract v1.

    ``schema_version`` defaults to 1, ``event_id`` to ``new_id()``, ``occurred_at`` to
    ``now``; a given ``occurred_at`` is moved by ``skew`` (the client's clock error, never
    past ``now``: ``skew_corrected``). With ``max_future_s``, an event dated more than that
    ahead of ``now`` is rejected (bounded event time, segmenters/eventtime.py). An
    event needs a ``customer_id`` or an ``anonymous_id``; one with only the latter is
    validated as customer ``anon:<anonymous_id>`` (the collector may link it to a customer).
    """
    if not isinstance(item, dict):
        return Outcome(index, "rejected", reason="an event must be a JSON object")
    event = dict(item)
    event.setdefault("schema_version", 1)
    if event.get("event_id") is None:
        event["event_id"] = new_id()
    event_id = event["event_id"] if isinstance(event["event_id"], str) else None
    occurred = event.get("occurred_at")
    if occurred is None:
        event["occurred_at"] = iso(now)
    elif skew and isinstance(occurred, str):
        try:
            at = datetime.fromisoformat(occurred.replace("Z", "+00:00"))
        except ValueError:
            pass  # the validator names it
        else:
            if at.tzinfo is not None:
                event["occurred_at"] = iso(skew_corrected(at, skew, now))
    anonymous_id: str | None = None
    customer = event.get("customer_id")
    if customer is None or customer == "":
        anonymous = event.get("anonymous_id")
        if anonymous is None or anonymous == "":
            return Outcome(index, "rejected", event_id, "customer_id or anonymous_id is required")
        if not valid_id(anonymous, limit=MAX_ID - len(ANON_PREFIX)):
            return Outcome(
                index,
                "rejected",
                event_id,
                f"anonymous_id must be a string of 1 to {MAX_ID - len(ANON_PREFIX)} "
                "characters without control characters",
            )
        anonymous_id = anonymous
        event["customer_id"] = anon_customer(anonymous)
    elif isinstance(customer, str) and customer.startswith(ANON_PREFIX):
        return Outcome(
            index, "rejected", event_id, f"customer_id may not start with {ANON_PREFIX!r}"
        )
    raw = orjson.dumps(event)
    try:
        parsed = parse_event(raw, max_bytes=max_event_bytes)
    except InvalidEvent as exc:
        return Outcome(index, "rejected", event_id, exc.reason)
    if max_future_s is not None:
        ahead = ahead_reason(
            parsed.occurred_at.timestamp(), now.timestamp(), "its receive time", max_future_s
        )
        if ahead is not None:
            return Outcome(index, "rejected", event_id, ahead)
    return Prepared(index, event, TOPIC_OF_TYPE[parsed.type], anonymous_id)


def merged_event_id(event_id: str, customer_id: str) -> str:
    """The id of an anonymous event re-published onto a customer: derived from both, so
    a second identify re-publishes the same ids (and workers skip them).

    >>> merged_event_id("e-1", "c-42")
    'e-1@c-42'
    >>> len(merged_event_id("e" * 150, "c" * 100))
    35
    """
    merged = f"{event_id}@{customer_id}"
    if len(merged) <= MAX_ID:
        return merged
    return "m-" + hashlib.sha256(merged.encode()).hexdigest()[:33]


def republished(event: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """An anonymous profile's event, moved onto ``customer_id``.

    >>> republished({"event_id": "e-1", "customer_id": "anon:a-1", "type": "browse"}, "c-42")
    {'event_id': 'e-1@c-42', 'customer_id': 'c-42', 'type': 'browse', 'merged_from': 'anon:a-1'}
    """
    out = dict(event)
    out["event_id"] = merged_event_id(str(event["event_id"]), customer_id)
    out["customer_id"] = customer_id
    out["merged_from"] = event["customer_id"]
    return out
