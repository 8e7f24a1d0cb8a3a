"""The output contract: each topic's JSON Schema accepts what the code really writes,
every field is described, and every time is ISO-8601 UTC."""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from segmenters.actions import ActionState, plan
from segmenters.actions.document import customer_features
from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.config import EngineConfig
from segmenters.contract import TOPICS, DeadLetter, Erasure, schema_for
from segmenters.core import Source, fold
from segmenters.events import parse_event
from segmenters.features import feature_vector
from streams.tools.simulate import generate
from streams.worker.pipeline import Record, change_json, deadletter_record

START = datetime(2026, 11, 2, tzinfo=UTC)
UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@functools.cache
def validator(topic: str) -> Draft202012Validator:
    schema = schema_for(topic)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(topic: str, value: Any) -> None:
    validator(topic).validate(value)


def times_are_utc(schema: dict[str, Any], value: Any) -> None:
    """Every value of a ``date-time`` property is ISO-8601 UTC with a Z."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], v: Any) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        if v is None:
            return
        if node.get("format") == "date-time":
            assert UTC_Z.match(v), v
        for option in node.get("anyOf", []):
            if option.get("format") == "date-time" and isinstance(v, str):
                assert UTC_Z.match(v), v
            elif "$ref" in option and isinstance(v, dict):
                walk(option, v)
        if isinstance(v, dict):
            for key, sub in node.get("properties", {}).items():
                if key in v:
                    walk(sub, v[key])
        if isinstance(v, list) and "items" in node:
            for item in v:
                walk(node["items"], item)

    walk(schema, value)


@pytest.fixture(scope="module")
def population() -> list[Any]:
    """Customers of the simulator folded by the engine: real states and changes."""
    events = list(generate(40, seed=5, start=START, duration_s=3 * 86400, rate=0.004))
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for i, e in enumerate(events):
        by_customer[e["customer_id"]].append((parse_event(orjson.dumps(e)), Source("t", 0, i)))
    return [
        fold(None, cid, items, config=EngineConfig()) for cid, items in by_customer.items()
    ], events


def test_every_topic_has_a_valid_schema_with_every_field_described():
    for topic in TOPICS:
        schema = schema_for(topic)
        Draft202012Validator.check_schema(schema)
        assert schema["description"] and schema["x-segstream-topic"] == topic
        for name, node in [("", schema), *schema.get("$defs", {}).items()]:
            for field, prop in node.get("properties", {}).items():
                assert prop.get("description"), f"{topic} {name}.{field} has no description"
                if prop.get("format") == "date-time" and topic != "events":
                    assert "UTC" in prop["description"], f"{topic} {name}.{field}"
    with pytest.raises(KeyError, match="unknown topic"):
        schema_for("segments.nope")


def test_segment_changes_as_published_match_their_schema(population):
    results, _ = population
    changes = [c for r in results for c in r.changes]
    assert len({c.dimension for c in changes}) >= 3
    for change in changes:
        doc = orjson.loads(change_json(change))  # the bytes the worker sends
        validate("segments.changes", doc)
        times_are_utc(schema_for("segments.changes"), doc)


def test_action_messages_match_their_channels_schema(population):
    results, _ = population
    seen: set[str] = set()
    for r in results:
        for change in r.changes:
            _, decisions = plan(
                DEFAULT_POLICY,
                change,
                ActionState(change.customer_id),
                now=change.changed_at.timestamp(),
                consent=True,
                features=customer_features(r.state, "EUR"),
                cart=r.state.cart,
            )
            for d in decisions:
                if d.message is None:
                    continue
                doc = orjson.loads(d.message.to_json())
                validate(d.message.topic, doc)
                times_are_utc(schema_for(d.message.topic), doc)
                assert doc["features"]["currency"] == "EUR"
                seen.add(d.message.topic)
                with pytest.raises(ValidationError):  # the channel is the topic's own
                    other = "actions.ads" if d.message.topic != "actions.ads" else "actions.email"
                    validate(other, doc)
    assert "actions.email" in seen


def test_dead_letters_match_their_schema_and_carry_iso_utc_times():
    record = Record("events.browse", 2, 1187, b"c-1", b"{not json")
    doc = orjson.loads(deadletter_record(record, "not JSON", at=1795410159.25))
    validate("events.deadletter", doc)
    assert doc["dead_lettered_at"] == "2026-11-23T05:02:39.250000Z"
    assert DeadLetter.model_validate(doc).offset == 1187
    empty = orjson.loads(deadletter_record(Record("t", 0, 0, None, None), "empty", at=0.0))
    validate("events.deadletter", empty)
    assert empty["key_b64"] is None and empty["dead_lettered_at"] == "1970-01-01T00:00:00Z"


def test_erase_tombstones_and_feature_vectors_match_their_schemas(population):
    results, _ = population
    assert Erasure(customer_id="c-1").key() == b"c-1"
    validate("customers.erased", None)  # a tombstone's value
    with pytest.raises(ValidationError):
        validate("customers.erased", {"customer_id": "c-1"})
    for r in results:
        vector = orjson.loads(orjson.dumps(feature_vector(r.state, r.state.eval_at or 0.0)))
        validate("segments.features", vector)
    validate("segments.features", None)  # the erase tombstone
    with pytest.raises(ValidationError):
        validate("segments.features", {"recency": 1.0})


def test_input_events_match_the_event_schema(population):
    _, events = population
    for e in events:
        validate("events", json.loads(json.dumps(e)))
    cart = next(e for e in events if e["type"] == "cart")
    validate("events.cart", cart)  # an input topic's name gives the event schema
    with pytest.raises(ValidationError):
        validate("events", {"schema_version": 1, "type": "browse"})


def test_action_messages_with_the_value_models_predictions_match_their_schema(population):
    from segmenters.clv.model import ClvModel

    model = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
    results, _ = population
    scored = 0
    for r in results:
        features = customer_features(r.state, "EUR", model)
        scored += "p_alive" in features
        for change in r.changes:
            _, decisions = plan(
                DEFAULT_POLICY,
                change,
                ActionState(change.customer_id),
                now=change.changed_at.timestamp(),
                consent=True,
                features=features,
                cart=r.state.cart,
            )
            for d in decisions:
                if d.message is not None:
                    validate(d.message.topic, orjson.loads(d.message.to_json()))
    assert scored == sum(1 for r in results if r.state.orders > 0) > 0
