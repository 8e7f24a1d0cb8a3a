import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.events import (
    Browse,
    Cart,
    InvalidEvent,
    Profile,
    Purchase,
    Refund,
    check_routing,
    json_schema,
    parse_event,
)
from tests.unit.factories import Events

E = Events()
VALID = {
    "browse": (E.browse(sku="A", category="shoes", price=9.5, device="mobile"), Browse),
    "cart": (E.add("A"), Cart),
    "purchase": (E.purchase("o-1", ["A", "B"]), Purchase),
    "refund": (E.refund("o-1", 5.0), Refund),
    "profile": (E.profile(birth_year=1990, country="DE", marketing_consent=True), Profile),
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_each_type_parses_to_its_model(kind):
    doc, model = VALID[kind]
    event = parse_event(orjson.dumps(doc))
    assert isinstance(event, model)
    assert event.customer_id == "c-1"
    assert event.occurred_at.tzinfo is not None


def test_design_example_parses():
    raw = (
        b'{"schema_version": 1, "event_id": "e-1", "type": "cart", "customer_id": "c-42",'
        b' "occurred_at": "2026-11-22T10:00:00Z", "device": "mobile", "action": "add",'
        b' "sku": "A-7", "category": "shoes", "quantity": 1, "unit_price": 59.9}'
    )
    e = parse_event(raw)
    assert (e.sku, e.quantity, e.unit_price, e.device) == ("A-7", 1, 59.9, "mobile")


def test_unknown_extra_fields_are_ignored():
    doc = dict(E.browse(), shop_internal_flag=True, geo={"country": "FR", "planet": "Earth"})
    e = parse_event(orjson.dumps(doc))
    assert e.geo.country == "FR"
    assert not hasattr(e, "shop_internal_flag")


def test_cart_quantity_defaults_to_one():
    doc = E.add("A")
    del doc["quantity"]
    assert parse_event(orjson.dumps(doc)).quantity == 1


def _broken(doc, **changes):
    d = dict(doc)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


BAD = {
    "not json": (b"{nope", "invalid JSON"),
    "not an object": (b"[1, 2]", ""),
    "unknown type": (_broken(E.browse(), type="teleport"), "type"),
    "missing customer": (_broken(E.browse(), customer_id=...), "customer_id"),
    "empty customer": (_broken(E.browse(), customer_id=""), "customer_id"),
    "naive time": (_broken(E.browse(), occurred_at="2026-01-01T10:00:00"), "occurred_at"),
    "bad time": (_broken(E.browse(), occurred_at="yesterday"), "occurred_at"),
    "ancient time": (_broken(E.browse(), occurred_at="1970-01-01T00:00:00Z"), "between 1990"),
    "wrong version": (_broken(E.browse(), schema_version=2), "schema_version"),
    "negative price": (_broken(E.browse(), price=-1), "price"),
    "cart without sku": (_broken(E.add("A"), sku=...), "sku is required"),
    "zero quantity": (_broken(E.add("A"), quantity=0), "quantity"),
    "no lines": (_broken(E.purchase("o", ["A"]), lines=[]), "lines"),
    "bad currency": (_broken(E.purchase("o", ["A"]), currency="euro"), "currency"),
    "refund zero": (_broken(E.refund("o", 1.0), total=0), "total"),
    "bad country": (_broken(E.profile(), attributes={"country": "Germany"}), "country"),
    "string as number": (_broken(E.browse(), price="cheap"), "price"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_is_rejected_with_a_reason(name):
    raw, fragment = BAD[name]
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw)
    assert fragment in info.value.reason


@pytest.mark.parametrize("name", sorted(BAD))
def test_reasons_read_cleanly(name):
    """No doubled prefix, no pydantic prefixes, field paths without the event type."""
    with pytest.raises(InvalidEvent) as info:
        parse_event(BAD[name][0])
    reason = info.value.reason
    for noise in ("Invalid JSON", "Value error", "<root>", "Field required", "Input tag"):
        assert noise not in reason, reason
    assert not reason.startswith(("browse.", "cart.", "purchase.", "refund.", "profile.")), reason


def test_reasons_of_each_kind():
    assert BAD["not json"][0] == b"{nope"
    cases = {
        b"": "invalid JSON: EOF while parsing a value at line 1 column 0",
        b"[1, 2]": "not a JSON object",
        _broken(E.browse(), customer_id=...): "missing field customer_id",
        _broken(E.browse(), type=...): "missing field type",
        _broken(E.add("A"), sku=...): "sku is required for cart action 'add'",
        _broken(E.browse(), occurred_at="1970-01-01T00:00:00Z"): (
            "occurred_at: must be between 1990 and 2100"
        ),
        _broken(E.purchase("o", ["A"]), lines=[{"quantity": 1}]): "missing field lines.0.sku",
        _broken(E.browse(), type="x" * 50): "unknown type '" + "x" * 37 + "...' (expected "
        "'browse', 'cart', 'purchase', 'refund', 'profile')",
    }
    for raw, reason in cases.items():
        with pytest.raises(InvalidEvent) as info:
            parse_event(raw)
        assert info.value.reason == reason


def test_oversized_is_rejected_before_parsing():
    raw = orjson.dumps(E.browse(padding="x" * 1000))
    with pytest.raises(InvalidEvent, match="oversized"):
        parse_event(raw, max_bytes=500)


def test_routing_checks_topic_and_key():
    e = parse_event(orjson.dumps(E.add("A")))
    check_routing(e, topic="events.cart", key=b"c-1")
    with pytest.raises(InvalidEvent, match="does not belong"):
        check_routing(e, topic="events.browse", key=b"c-1")
    with pytest.raises(InvalidEvent, match="key does not match"):
        check_routing(e, topic="events.cart", key=b"c-2")
    with pytest.raises(InvalidEvent, match="no key"):
        check_routing(e, topic="events.cart", key=None)


def test_json_schema_names_every_type():
    text = orjson.dumps(json_schema()).decode()
    for kind in ("browse", "cart", "purchase", "refund", "profile"):
        assert f'"{kind}"' in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_invalid_event(raw):
    try:
        parse_event(raw)
    except InvalidEvent as exc:
        assert exc.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(VALID)),
    st.sampled_from(
        [
            "event_id",
            "customer_id",
            "occurred_at",
            "schema_version",
            "type",
            "sku",
            "total",
            "lines",
            "attributes",
            "action",
            "page_type",
            "quantity",
            "geo",
            "device",
        ]
    ),
    json_values,
)
def test_mutated_valid_events_parse_or_fail_cleanly(kind, field, value):
    doc = dict(VALID[kind][0])
    doc[field] = value
    try:
        event = parse_event(json.dumps(doc).encode())
    except InvalidEvent as exc:
        assert exc.reason
    else:
        assert event.type in VALID
