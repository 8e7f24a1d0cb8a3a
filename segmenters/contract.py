"""The output contract: one JSON Schema per topic segstream writes (``segstream schema``).

Each schema is generated from the pydantic model the code writes the topic with, so a
field added to a model appears in its schema at once; only descriptions the model does
not carry itself are added here (:data:`DESCRIPTIONS`), and a test fails for a field
that has none. Conventions of the whole contract:

- times are ISO-8601 strings in UTC with a ``Z`` (``2026-11-22T10:00:00Z``);
- amounts are in the deployment's currency (``SEGSTREAM_CURRENCY``, ISO-4217), which an
  action message carries as ``features.currency``; purchase events carry their own;
- every message is keyed by ``customer_id`` (UTF-8), except dead letters, which keep the
  original key.

>>> sorted(TOPICS)[:3]
['actions.ads', 'actions.email', 'actions.push']
>>> schema_for("events.deadletter")["properties"]["dead_lettered_at"]["format"]
'date-time'
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from segmenters.actions import ActionMessage
from segmenters.changes import SegmentChange
from segmenters.events import json_schema as event_schema
from segmenters.features import FEATURES
from segmenters.topics import ACTION_TOPICS, CHANGES, DEADLETTER, ERASED, INPUTS
from segmenters.topics import FEATURES as FEATURES_TOPIC

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ISO = "ISO-8601 UTC time (e.g. 2026-11-22T10:00:00Z)"


class DeadLetter(BaseModel):
    """What goes to ``events.deadletter``: an input message the engine could not apply."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(1, description="Version of this message's layout (1).")
    reason: str = Field(description="Why the message was not applied, e.g. the field and error.")
    topic: str = Field(description="Topic the message was read from (with the topic prefix).")
    partition: int = Field(ge=0, description="Its partition.")
    offset: int = Field(ge=0, description="Its offset in that partition.")
    key_b64: str | None = Field(
        description="The message's key, base64 (standard alphabet); null if it had none."
    )
    value_b64: str | None = Field(
        description="The message's value, base64 (standard alphabet); null if it had none."
    )
    dead_lettered_at: datetime = Field(description=f"When it was dead-lettered: {ISO}.")

    @classmethod
    def of(
        cls,
        *,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        at: float,
    ) -> DeadLetter:
        """The dead letter of one consumed message; ``at`` is epoch seconds."""
        return cls(
            reason=reason,
            topic=topic,
            partition=partition,
            offset=offset,
            key_b64=None if key is None else base64.b64encode(key).decode(),
            value_b64=None if value is None else base64.b64encode(value).decode(),
            dead_lettered_at=datetime.fromtimestamp(at, UTC),
        )

    def to_json(self) -> bytes:
        """The message as the topic carries it (times with ``Z``).

        >>> letter = DeadLetter.of(reason="r", topic="t", partition=0, offset=1, key=b"c-1",
        ...                        value=None, at=0.0)
        >>> letter.to_json()[-59:]
        b'"value_b64":null,"dead_lettered_at":"1970-01-01T00:00:00Z"}'
        """
        return self.model_dump_json().encode()


class Erasure(BaseModel):
    """A customer's erase tombstone: key ``customer_id``, no value (``customers.erased``,
    and ``segments.features``, whose vectors of the customer it removes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str = Field(min_length=1, description="The erased customer (the record's key).")

    def key(self) -> bytes:
        """The record's key; its value is None (log compaction then drops the key's
        earlier records)."""
        return self.customer_id.encode()


#: Descriptions for fields whose model carries none (model descriptions win).
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "SegmentChange": {
        "schema_version": "Version of this message's layout (1).",
        "change_id": "Names this change: equal ids are the same change (redelivered or "
        "replayed), so subscribers de-duplicate on it.",
        "customer_id": "The customer (also the record's key).",
        "dimension": "journey, rfm, behaviour, demographic, geographic, value, interest or "
        "custom:<name>.",
        "previous": "The segment before; null for the customer's first in this dimension.",
        "current": "The segment now.",
        "changed_at": f"Event time of the change: {ISO}.",
        "reason": "Why, in words (the rule, score or distance that decided it).",
        "engine_version": "segstream version that computed it.",
        "no_actions": "True when it follows events replayed with --no-actions: the engine "
        "does not act on it, and subscribers should not.",
        "rescored": "True when the rescoring sweep made it (new population statistics or a "
        "new model), not an event or a deadline of the customer's own: it says nothing new "
        "about a customer who has been away, and the engine acts on it only if the customer's "
        "last event is recent.",
    },
    "ActionMessage": {
        "schema_version": "Version of this message's layout (1).",
        "idempotency_key": "Names this action: a repeat after a crash has the same key, so "
        "subscribers de-duplicate on it.",
        "customer_id": "The customer (also the record's key).",
        "channel": "email, ads, push or webhook (the topic is actions.<channel>).",
        "action": "Id of the policy's action (config/actions.toml).",
        "template": "Template (or campaign) to use, as the policy names it.",
        "audience": "Audience (ads) the customer should join, as the policy names it.",
        "priority": "The policy's priority of the action (higher first).",
        "decided_at": "When the engine decided to send it, in event time (the partition's "
        f"clock, not the wall clock): {ISO}.",
        "experiment": "The holdout experiment it was assigned in (treated group).",
        "change": "The segment change that caused it (as on segments.changes).",
        "features": "The customer's key figures when decided: counts, amounts in "
        "`currency` (ISO-4217), times in ISO-8601 UTC.",
        "expires_at": "Wall-clock time after which a sender should drop it: the policy's "
        f"max_age_s after the time it was meant to go out. {ISO}.",
        "consent": "The marketing consent the decision was made under; null if not given.",
        "cart": "The cart's lines, for actions caused by a cart journey segment; else null.",
    },
    "CartLine": {
        "sku": "The product.",
        "quantity": "Units in the cart.",
        "unit_price": "Price per unit in the deployment's currency (features.currency); "
        "null if the cart events carried none.",
    },
}


_TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
_MONEY = {"type": "number"}
#: The keys ``features`` of an action message carries (segmenters.actions.document).
ACTION_FEATURES: dict[str, dict[str, Any]] = {
    "orders": {"type": "integer", "description": "Orders placed (count)."},
    "revenue": {**_MONEY, "description": "Revenue net of refunds, in `currency`."},
    "refunded": {**_MONEY, "description": "Amount refunded, in `currency`."},
    "last_order_at": {**_TIME, "description": f"Last order: {ISO}; null if none."},
    "first_seen": {**_TIME, "description": f"First event: {ISO}."},
    "last_seen": {**_TIME, "description": f"Latest event: {ISO}."},
    "cart_items": {"type": "integer", "description": "Units in the open cart."},
    "cart_value": {**_MONEY, "description": "Value of the open cart, in `currency`."},
    "country": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": "ISO-3166 alpha-2 country; null if unknown.",
    },
    "language": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": "Language from the profile; null if unknown.",
    },
    "currency": {
        "type": "string",
        "pattern": "^[A-Z]{3}$",
        "description": "ISO-4217 code of every amount in the message (SEGSTREAM_CURRENCY).",
    },
    # The value models' predictions (docs/value.md): present for a buyer once the
    # deployment has a value model, counted to the decision's event time.
    "p_alive": {"type": "number", "description": "P(still a customer), BG/NBD (0 to 1)."},
    "expected_orders": {
        "type": "number",
        "description": "Expected purchase days over SEGSTREAM_CLV_HORIZON_DAYS (BG/NBD).",
    },
    "expected_order_value": {
        **_MONEY,
        "description": "Expected value of a future order (Gamma-Gamma), in `currency`.",
    },
    "clv": {
        **_MONEY,
        "description": "expected_orders x expected_order_value over the horizon, in `currency`.",
    },
    "value_model_version": {
        "type": "integer",
        "description": "Version of the value-model snapshot that scored it.",
    },
}


_EVENT = {
    "schema_version": "Version of the event contract (1).",
    "event_id": "Unique id of the event; a repeat with the same id counts once.",
    "customer_id": "The customer (also the record's key).",
    "occurred_at": "When it happened: ISO-8601 with a zone offset or Z.",
    "session_id": "The visit it belongs to, if known.",
    "channel": "web, app, store or other.",
    "device": "desktop, mobile, tablet or other.",
    "geo": "Where the customer was: country (ISO-3166 alpha-2), region, city.",
    "type": "The event type (decides its topic).",
}
_AMOUNT = "in the event's currency (the deployment's, SEGSTREAM_CURRENCY, for browse and cart)"
DESCRIPTIONS.update(
    {
        "Browse": {
            **_EVENT,
            "page_type": "product, category, search, home or other.",
            "sku": "The product viewed.",
            "category": "Its category.",
            "price": f"Its price, {_AMOUNT}.",
        },
        "Cart": {
            **_EVENT,
            "action": "add, remove or clear.",
            "sku": "The product (not for clear).",
            "category": "Its category.",
            "quantity": "Units added or removed (default 1).",
            "unit_price": f"Price per unit, {_AMOUNT}.",
        },
        "Purchase": {
            **_EVENT,
            "order_id": "The order's identity: an order counts once.",
            "lines": "What was bought.",
            "total": "Amount paid, in `currency`.",
            "currency": "ISO-4217 code of the amounts.",
            "discount": "Discount granted, in `currency`.",
        },
        "Refund": {
            **_EVENT,
            "order_id": "The order refunded.",
            "total": "Amount refunded (positive), in the order's currency.",
            "lines": "What was returned, if known.",
        },
        "Profile": {**_EVENT, "attributes": "Profile attributes to set."},
        "Line": {
            "sku": "The product.",
            "category": "Its category.",
            "quantity": "Units.",
            "unit_price": "Price per unit, in the purchase's currency.",
        },
        "Geo": {
            "country": "ISO-3166 alpha-2 country code.",
            "region": "Region or state.",
            "city": "City.",
        },
        "ProfileAttributes": {
            "birth_year": "Year of birth (e.g. 1991).",
            "gender": "Gender as the shop records it.",
            "income_band": "Income band as the shop records it (e.g. low, mid, high).",
            "education": "Education as the shop records it.",
            "occupation": "Occupation as the shop records it.",
            "marital_status": "Marital status as the shop records it.",
            "country": "ISO-3166 alpha-2 country code.",
            "region": "Region or state.",
            "city": "City.",
            "language": "Preferred language (e.g. de, en-GB).",
            "marketing_consent": "Whether the customer agreed to marketing messages.",
        },
    }
)


def _event_schema() -> dict[str, Any]:
    return _describe(event_schema(), utc=False)


def _action_schema(channel: str) -> dict[str, Any]:
    schema = _model_schema(ActionMessage)
    props = schema["properties"]
    props["channel"] = {"const": channel, "description": props["channel"].get("description")}
    props["features"]["properties"] = ACTION_FEATURES
    return schema


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return _describe(model.model_json_schema(mode="serialization"), utc=True, name=model.__name__)


def _describe(schema: dict[str, Any], *, utc: bool, name: str = "") -> dict[str, Any]:
    """Add :data:`DESCRIPTIONS` where the model has none; with ``utc``, say of every
    time that it is ISO-8601 UTC."""
    for model, definition in [(name, schema), *schema.get("$defs", {}).items()]:
        extra = DESCRIPTIONS.get(model, {})
        for field, prop in definition.get("properties", {}).items():
            if "description" not in prop and field in extra:
                prop["description"] = extra[field]
            if (
                utc
                and prop.get("format") == "date-time"
                and "UTC" not in prop.get("description", "")
            ):
                prop["description"] = f"{prop.get('description', '')} {ISO}.".strip()
    return schema


#: What each feature of a ``segments.features`` vector is (segmenters/features.py).
VECTOR_FEATURES = {
    "recency": "log1p(days since the last order), 365 days if none.",
    "frequency": "log1p(orders).",
    "monetary": "log1p(revenue net of refunds, in the deployment's currency).",
    "avg_order_value": "log1p(revenue / orders), 0 without orders.",
    "browsing": "log1p(browse events, decayed with a 7-day half-life).",
    "cart_intensity": "log1p(cart additions, decayed with a 7-day half-life).",
    "cart_abandon": "Share (0-1) of units put in a cart that are not bought.",
    "category_breadth": "log1p(distinct categories seen).",
    "mobile_share": "Share (0-1) of events from a mobile device.",
    "inactivity": "log1p(days since the last event).",
    "tenure": "log1p(days since the first event).",
}


def _features_schema() -> dict[str, Any]:
    return {
        "type": ["object", "null"],
        "description": "Internal: a customer's behavioural feature vector for the cluster "
        "trainer (segmenters/features.py documents each feature), sent only when it moved; "
        "a null value is an erase tombstone.",
        "properties": {f: {"type": "number", "description": VECTOR_FEATURES[f]} for f in FEATURES},
        "required": list(FEATURES),
        "additionalProperties": False,
    }


def _erased_schema() -> dict[str, Any]:
    return {
        "type": "null",
        "description": (Erasure.__doc__ or "").replace("\n    ", " ")
        + " The key is the erased customer_id (UTF-8); the value is always null.",
    }


_ACTION = (
    "A retention action for the {channel} channel, decided for a customer, keyed by customer_id."
)
#: topic (without prefix) -> (what it carries, how to build its value's schema)
TOPICS: dict[str, tuple[str, Any]] = {
    CHANGES: (
        "Every change of a customer's segment in one dimension, keyed by customer_id.",
        lambda: _model_schema(SegmentChange),
    ),
    **{
        f"actions.{channel}": (
            _ACTION.format(channel=channel),
            lambda channel=channel: _action_schema(channel),
        )
        for channel in (topic.removeprefix("actions.") for topic in ACTION_TOPICS)
    },
    DEADLETTER: (
        "Input messages the engine could not apply, with the reason and the original bytes, "
        "keyed by the original key.",
        lambda: _model_schema(DeadLetter),
    ),
    ERASED: (
        "Compacted: one tombstone per erased customer, for downstream services to erase "
        "their copies.",
        _erased_schema,
    ),
    FEATURES_TOPIC: (
        "Internal (one partition, compacted, 6 h retention): feature vectors for the "
        "cluster trainer, keyed by customer_id.",
        _features_schema,
    ),
    "events": (
        "Input: the events web shops and apps send (events.browse, events.cart, "
        "events.purchase, events.profile), keyed by customer_id: event contract v1.",
        _event_schema,
    ),
}


def schema_for(topic: str) -> dict[str, Any]:
    """The JSON Schema of the values on ``topic`` (a name of :data:`TOPICS`; the input
    topics ``events.browse`` etc. give the event schema)."""
    name = "events" if topic in INPUT_TOPICS else topic
    if name not in TOPICS:
        raise KeyError(f"unknown topic {topic!r}; known: {', '.join(sorted(TOPICS))}")
    what, build = TOPICS[name]
    body = dict(build())
    model_title = body.pop("title", name)
    title = model_title if name == "events" else f"segstream {name}"
    description = f"{what} {body.pop('description', '')}".strip()
    return {
        "$schema": DRAFT,
        "$id": f"urn:segstream:topic:{name}",
        "title": title,
        "description": description,
        "x-segstream-topic": name,
        "x-segstream-key": "the original key" if name == DEADLETTER else "customer_id",
        **{k: v for k, v in body.items() if k != "$schema"},
    }


INPUT_TOPICS = frozenset(INPUTS)
