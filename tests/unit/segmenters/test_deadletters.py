"""Dead letters for operators: reason kinds, the ranking, ids, payloads and fixes."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenters.contract import DeadLetter
from segmenters.deadletters import (
    Letter,
    SelectionError,
    letter_json,
    matches,
    message_digest,
    newest_first,
    parse_fix,
    parse_id,
    parse_since,
    payload_bytes,
    payload_json,
    payload_text,
    rank,
    reason_kind,
)
from segmenters.events import InvalidEvent, parse_event
from segmenters.eventtime import ahead_reason
from segmenters.topics import TOPIC_OF_TYPE
from tests.unit.factories import Events


def letter(
    reason: str,
    *,
    at: float = 1000.0,
    topic: str = "events.cart",
    partition: int = 0,
    offset: int = 0,
    value: bytes | None = b"{}",
    key: bytes | None = b"c-1",
) -> Letter:
    return Letter(
        partition,
        offset,
        DeadLetter.of(
            reason=reason, topic=topic, partition=1, offset=7, key=key, value=value, at=at
        ),
    )


def reason_of(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, max_bytes=4096)
    return info.value.reason


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_invalid_json_at_any_column_is_one_kind(line: int, column: int) -> None:
    reason = f"invalid JSON: expected value at line {line} column {column}"
    assert reason_kind(reason) == "invalid JSON: expected value at line <n> column <n>"


@given(st.floats(0, 1e9), st.floats(0, 1e9), st.sampled_from([300.0, 60.0]))
def test_event_time_reasons_are_one_kind_per_reference(occurred, reference, limit) -> None:
    reason = ahead_reason(reference + limit + 1 + occurred, reference, "the wall clock", limit)
    assert reason is not None
    assert reason_kind(reason) == (
        "occurred_at <time> is <duration> ahead of the wall clock <time>; "
        "limit SEGSTREAM_MAX_FUTURE_S=<n>"
    )


@given(st.text(min_size=1, max_size=60).filter(lambda t: t not in TOPIC_OF_TYPE))
def test_unknown_types_are_one_kind(name: str) -> None:
    reason = reason_of(orjson.dumps({**Events().browse(), "type": name}))
    assert reason_kind(reason) == (
        "unknown type <type> (expected 'browse', 'cart', 'purchase', 'refund', 'profile')"
    )


def test_kinds_of_real_reasons_keep_what_they_are_about() -> None:
    e = Events()
    cases = {
        b"{nope": "invalid JSON: key must be a string at line <n> column <n>",
        orjson.dumps({**e.browse(), "schema_version": 7}): "schema_version: Input should be <n>",
        orjson.dumps({**e.add("A"), "quantity": 0}): (
            "quantity: Input should be greater than or equal to <n>"
        ),
        orjson.dumps({**e.profile(), "attributes": {"country": "Germany"}}): (
            "attributes.country: String should match pattern '^[A-Z]{2}$'"
        ),
        b"x" * 5000: "oversized: <n> bytes > limit <n>",
    }
    for raw, kind in cases.items():
        assert reason_kind(reason_of(raw)) == kind


def test_rank_counts_by_kind_with_example_topics_and_times() -> None:
    letters = [
        letter("invalid JSON: x at line 1 column 3", at=10.0, offset=0),
        letter("invalid JSON: x at line 1 column 40", at=30.0, offset=1, topic="events.browse"),
        letter("missing field sku", at=20.0, offset=2),
        letter("invalid JSON: x at line 2 column 1", at=5.0, offset=3),
    ]
    rows = rank(letters, since=6.0)
    assert [(r.kind, r.count) for r in rows] == [
        ("invalid JSON: x at line <n> column <n>", 2),
        ("missing field sku", 1),
    ]
    first = rows[0]
    assert first.example == "invalid JSON: x at line 1 column 40" and first.example_id == "0:1"
    assert (first.first, first.last) == (10.0, 30.0)
    assert first.to_json()["topics"] == {"events.browse": 1, "events.cart": 1}
    assert sum(r.count for r in rank(letters)) == 4


def test_ties_rank_the_most_recent_first() -> None:
    rows = rank([letter("a", at=1.0), letter("b", at=2.0, offset=1)])
    assert [r.kind for r in rows] == ["b", "a"]


def test_newest_first_and_matches() -> None:
    old, new = letter("missing field sku", at=1.0), letter("x", at=2.0, partition=1)
    assert newest_first([old, new]) == [new, old]
    assert matches(old, "MISSING") and not matches(old, "json")


def test_since_spans_times_and_all() -> None:
    assert parse_since("90s", 1000.0) == 910.0
    assert parse_since("2d", 200000.0) == 200000.0 - 2 * 86400
    assert parse_since("all", 1.0) is None
    assert parse_since("2026-12-07T12:00:00+01:00", 0.0) == parse_since("2026-12-07T11:00Z", 0.0)
    for bad in ("yesterday", "2026-12-07T12:00", "-3h"):
        with pytest.raises(SelectionError):
            parse_since(bad, 0.0)


def test_ids() -> None:
    assert parse_id(" 12:345 ") == (12, 345)
    for bad in ("12", "a:1", "1:-2", ""):
        with pytest.raises(SelectionError):
            parse_id(bad)


@given(st.binary(max_size=200))
def test_payloads_survive_the_json_round_trip(value: bytes) -> None:
    payload, encoding = payload_json(value)
    again = payload_bytes(orjson.loads(orjson.dumps(payload)), encoding)
    if encoding == "json":  # compact JSON of the same value
        assert orjson.loads(again) == orjson.loads(value)
    else:
        assert again == value


def test_show_json_is_a_fixes_file_line() -> None:
    broken = letter("missing field customer_id", value=b'{"type": "browse"}', offset=4)
    doc = letter_json(broken)
    assert doc["deadletter"] == "0:4" and doc["topic"] == "events.cart" and doc["offset"] == 7
    doc["payload"]["customer_id"] = "c-1"
    fix = parse_fix(orjson.dumps(doc).decode())
    assert (fix.partition, fix.offset) == (0, 4)
    assert orjson.loads(fix.value) == {"type": "browse", "customer_id": "c-1"}
    assert fix.new_key and fix.key == b"c-1"


def test_fix_lines_that_do_not_parse() -> None:
    for line in ("{", "[1]", '{"payload": 1}', '{"deadletter": "0:1"}', '{"deadletter": "x"}'):
        with pytest.raises(SelectionError):
            parse_fix(line)
    with pytest.raises(SelectionError):
        parse_fix('{"deadletter": "0:1", "payload": "@@", "payload_encoding": "base64"}')
    with pytest.raises(SelectionError):
        parse_fix('{"deadletter": "0:1", "payload": {}, "key": 5}')
    no_key = parse_fix('{"deadletter": "0:1", "payload": {}, "key": null}')
    assert no_key.new_key and no_key.key is None


def test_payload_text_cuts_huge_payloads_with_a_note() -> None:
    text = payload_text(orjson.dumps({"padding": "x" * 10_000}), limit=100)
    assert text.endswith("(10014 bytes; the first 100 characters shown, --full for all)")
    assert "(not UTF-8; base64)" in payload_text(b"\xff\xfe", limit=None)


def test_message_digest_names_topic_key_and_value() -> None:
    d = message_digest("events.cart", b"c-1", b"{}")
    assert d != message_digest("events.browse", b"c-1", b"{}")
    assert d != message_digest("events.cart", b"c-2", b"{}")
    assert d != message_digest("events.cart", b"c-1", b"{ }")
    assert message_digest("a", b"bc", b"") != message_digest("ab", b"c", b"")
