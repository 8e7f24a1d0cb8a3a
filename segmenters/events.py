"""Event contract v1: what shops send to segstream.

One JSON object per Kafka message, keyed by ``customer_id``. Field names are the public
contract with event producers (DESIGN.md section 2) and are fixed for v1. Unknown extra
fields are accepted and ignored, so producers may send more than segstream reads.

>>> e = parse_event(b'{"schema_version": 1, "event_id": "e-1", "type": "cart",'
...                 b' "customer_id": "c-42", "occurred_at": "2026-11-22T10:00:00Z",'
...                 b' "action": "add", "sku": "A-7", "unit_price": 59.9}')
>>> e.type, e.quantity, e.occurred_at.isoformat()
('cart', 1, '2026-11-22T10:00:00+00:00')
>>> parse_event(b'{"type": "cart"')
Traceback (most recent call last):
...
segmenters.events.InvalidEvent: invalid JSON: ...
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from segmenters.topics import TOPIC_OF_TYPE, TOPIC_TYPES

SCHEMA_VERSION = 1

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
Text = Annotated[str, StringConstraints(max_length=200)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[float, Field(ge=0, le=1e12)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Geo(_Model):
    country: Country | None = None
    region: Text | None = None
    city: Text | None = None


class _Envelope(_Model):
    schema_version: Literal[1]
    event_id: Id
    customer_id: Id
    occurred_at: AwareDatetime
    session_id: Id | None = None
    channel: Literal["web", "app", "store", "other"] | None = None
    device: Literal["desktop", "mobile", "tablet", "other"] | None = None
    geo: Geo | None = None

    @field_validator("occurred_at")
    @classmethod
    def _plausible_time(cls, value: datetime) -> datetime:
        if not 1990 <= value.year <= 2100:
            raise ValueError("must be between 1990 and 2100")
        return value


class Browse(_Envelope):
    type: Literal["browse"]
    page_type: Literal["product", "category", "search", "home", "other"]
    sku: Id | None = None
    category: Text | None = None
    price: Money | None = None


class Cart(_Envelope):
    type: Literal["cart"]
    action: Literal["add", "remove", "clear"]
    sku: Id | None = None
    category: Text | None = None
    quantity: int = Field(1, ge=1, le=10_000)
    unit_price: Money | None = None

    @model_validator(mode="after")
    def _sku_unless_clear(self) -> Cart:
        if self.action != "clear" and self.sku is None:
            raise ValueError(f"sku is required for cart action {self.action!r}")
        return self


class Line(_Model):
    sku: Id
    category: Text | None = None
    quantity: int = Field(1, ge=1, le=100_000)
    unit_price: Money | None = None


class Purchase(_Envelope):
    type: Literal["purchase"]
    order_id: Id
    lines: list[Line] = Field(min_length=1, max_length=500)
    total: Money
    currency: Currency
    discount: Money | None = None


class Refund(_Envelope):
    type: Literal["refund"]
    order_id: Id
    total: Annotated[float, Field(gt=0, le=1e12)]
    lines: list[Line] | None = Field(None, max_length=500)


class ProfileAttributes(_Model):
    birth_year: int | None = Field(None, ge=1900, le=2100)
    gender: Text | None = None
    income_band: Text | None = None
    education: Text | None = None
    occupation: Text | None = None
    marital_status: Text | None = None
    country: Country | None = None
    region: Text | None = None
    city: Text | None = None
    language: Text | None = None
    marketing_consent: bool | None = None


class Profile(_Envelope):
    type: Literal["profile"]
    attributes: ProfileAttributes


Event = Annotated[Browse | Cart | Purchase | Refund | Profile, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class InvalidEvent(ValueError):
    """A message that is not a valid v1 event; ``reason`` says why, for the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe(exc: ValidationError) -> str:
    """The reason: the JSON error, or up to five field errors, each once.

    >>> def reason(raw):
    ...     try:
    ...         EVENT_ADAPTER.validate_json(raw)
    ...     except ValidationError as exc:
    ...         return _describe(exc)
    >>> reason(b"{nope")
    'invalid JSON: key must be a string at line 1 column 2'
    >>> reason(b'{"type": "cart", "schema_version": 2, "event_id": "e", "action": "clear",'
    ...        b' "occurred_at": "2026-11-22T10:00:00Z"}')
    'schema_version: Input should be 1; missing field customer_id'
    >>> reason(b'{"type": "cart", "schema_version": 1, "event_id": "e", "action": "add",'
    ...        b' "customer_id": "c-1", "occurred_at": "2026-11-22T10:00:00Z"}')
    "sku is required for cart action 'add'"
    >>> reason(b'{"type": "teleport"}')
    "unknown type 'teleport' (expected 'browse', 'cart', 'purchase', 'refund', 'profile')"
    """
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "json_invalid":
            detail = (err.get("ctx") or {}).get("error") or err["msg"]
            return f"invalid JSON: {str(detail).removeprefix('Invalid JSON: ')}"
    parts = list(dict.fromkeys(_field_error(err) for err in errors))
    shown = parts[:5]
    more = len(parts) - len(shown)
    return "; ".join(shown) + (f" (+{more} more)" if more > 0 else "")


def _field_error(err: ErrorDetails) -> str:
    """``<field>: <what is wrong>``, or ``missing field <field>``. The path leaves out the
    event type pydantic puts first (the message's ``type`` says it), the message
    pydantic's ``Value error, ``."""
    loc = list(err["loc"])
    if loc and loc[0] in TOPIC_OF_TYPE:
        loc = loc[1:]
    path = ".".join(str(p) for p in loc)
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing" or kind == "union_tag_not_found":
        return f"missing field {path or 'type'}"
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag", ""))
        tag = tag if len(tag) <= 40 else tag[:37] + "..."
        return f"unknown type {tag!r} (expected {ctx.get('expected_tags', '')})"
    msg = err["msg"].removeprefix("Value error, ")
    if not path:
        return "not a JSON object" if kind in ("dict_type", "model_type") else msg
    return f"{path}: {msg}"


def parse_event(raw: bytes | str, *, max_bytes: int = 65536) -> Event:
    """Parse one message into an event, or raise :class:`InvalidEvent` with the reason."""
    if len(raw) > max_bytes:
        raise InvalidEvent(f"oversized: {len(raw)} bytes > limit {max_bytes}")
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None
    except (UnicodeDecodeError, ValueError) as exc:  # pragma: no cover - defensive
        raise InvalidEvent(f"undecodable: {exc}") from None


def check_routing(event: Event, *, topic: str, key: bytes | None) -> None:
    """Raise :class:`InvalidEvent` if the event is on the wrong topic or under the wrong key.

    The key must be the ``customer_id``: it decides the partition, and one partition
    owner per customer is what keeps state updates race-free.
    """
    allowed = TOPIC_TYPES.get(topic)
    if allowed is not None and event.type not in allowed:
        raise InvalidEvent(f"type {event.type!r} does not belong on topic {topic!r}")
    if key is None:
        raise InvalidEvent("message has no key (the key must be the customer_id)")
    if key != event.customer_id.encode():
        raise InvalidEvent("message key does not match customer_id")


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of contract v1 (``segstream schema``)."""
    schema = EVENT_ADAPTER.json_schema()
    schema["title"] = "segstream event v1"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
