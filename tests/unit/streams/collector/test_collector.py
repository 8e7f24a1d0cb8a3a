"""The collector's pure parts (streams/collector/intake.py and guards.py), and its answer
when Kafka does not acknowledge (with a fake producer)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenters.events import parse_event
from streams.collector.guards import RateLimiter, cors_decision, site_for_key
from streams.collector.intake import (
    MAX_ID,
    Outcome,
    Prepared,
    RequestError,
    merged_event_id,
    prepare,
    query_to_event,
    republished,
    skew_corrected,
    split_body,
)
from streams.collector.service import Collector
from streams.settings import Settings

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def ids() -> Any:
    n = iter(range(1000))
    return lambda: f"gen-{next(n)}"


def prep(item: Any, **kw: Any) -> Prepared | Outcome:
    return prepare(0, item, now=NOW, new_id=kw.pop("new_id", ids()), **kw)


# --- query strings -----------------------------------------------------------------------


def test_pixel_query_becomes_a_valid_event() -> None:
    event = query_to_event(
        {
            "writeKey": "k",
            "_": "1700000000",
            "type": "purchase",
            "customer_id": "c-1",
            "order_id": "o-1",
            "lines.0.sku": "A-7",
            "lines.0.quantity": "2",
            "lines.0.unit_price": "9.5",
            "lines.1.sku": "B-2",
            "total": "19",
            "currency": "EUR",
            "geo.country": "DE",
            "geo.city": "Munich",
        }
    )
    assert "writeKey" not in event and "_" not in event
    assert event["lines"] == [{"sku": "A-7", "quantity": 2, "unit_price": 9.5}, {"sku": "B-2"}]
    assert event["geo"] == {"country": "DE", "city": "Munich"} and event["total"] == 19.0
    p = prep(event)
    assert isinstance(p, Prepared) and p.topic == "events.purchase"


def test_query_types_and_bad_names() -> None:
    assert query_to_event(
        {"attributes.marketing_consent": "true", "attributes.birth_year": "1990"}
    )["attributes"] == {"marketing_consent": True, "birth_year": 1990}
    assert query_to_event({"price": "cheap"}) == {"price": "cheap"}  # the validator says why
    with pytest.raises(RequestError, match="unsupported"):
        query_to_event({"a.b.c": "1"})
    with pytest.raises(RequestError, match="index above"):
        query_to_event({"lines.100000.sku": "A"})
    with pytest.raises(RequestError, match="query parameters"):
        query_to_event({f"p{i}": "x" for i in range(101)})


# --- bodies and events ---------------------------------------------------------------------


def test_body_forms() -> None:
    one = split_body(b'{"type": "browse"}', max_events=5)
    assert one.single and one.items == [{"type": "browse"}] and one.sent_at is None
    batch = split_body(b'{"batch": [{"a": 1}], "sent_at": "2026-11-22T10:00:00Z"}', max_events=5)
    assert batch.items == [{"a": 1}] and batch.sent_at == "2026-11-22T10:00:00Z"
    assert split_body(b"[1, 2]", max_events=2).items == [1, 2]
    for raw, code, status in [
        (b"{oops", "invalid_json", 400),
        (b'"text"', "invalid_body", 400),
        (b'{"batch": {}}', "invalid_batch", 400),
        (b"[]", "empty_batch", 400),
        (b"[1, 2, 3]", "too_many_events", 413),
    ]:
        with pytest.raises(RequestError) as err:
            split_body(raw, max_events=2)
        assert (err.value.code, err.value.status) == (code, status)


def test_defaults_are_filled_and_the_result_is_contract_v1() -> None:
    p = prep({"type": "browse", "customer_id": "c-1", "page_type": "home", "extra": 1})
    assert isinstance(p, Prepared)
    assert p.event["schema_version"] == 1 and p.event_id == "gen-0"
    assert p.event["occurred_at"] == "2026-11-22T10:00:00Z" and p.event["extra"] == 1
    assert p.anonymous_id is None and p.topic == "events.browse"
    parsed = parse_event(orjson.dumps(p.event))
    assert parsed.customer_id == "c-1" and parsed.occurred_at == NOW


def test_given_fields_are_kept_and_skew_moves_client_times() -> None:
    e = {
        "type": "cart",
        "customer_id": "c-1",
        "action": "clear",
        "event_id": "mine",
        "occurred_at": "2026-11-22T09:00:00+01:00",
    }
    p = prep(e)
    assert isinstance(p, Prepared) and p.event_id == "mine"
    assert p.event["occurred_at"] == "2026-11-22T09:00:00+01:00"
    moved = prep(e, skew=timedelta(minutes=5))
    assert isinstance(moved, Prepared) and moved.event["occurred_at"] == "2026-11-22T09:05:00+01:00"


def test_skew_correction_never_moves_an_event_past_the_receive_time() -> None:
    e = {"type": "browse", "customer_id": "c-1", "page_type": "home"}
    # The client's clock is an hour behind; its event happened 10 minutes before sending.
    ten_before = {**e, "occurred_at": iso_z(NOW - timedelta(minutes=10))}
    p = prep(ten_before, skew=timedelta(hours=1))
    assert isinstance(p, Prepared) and p.event["occurred_at"] == "2026-11-22T10:00:00Z"
    # Moving back (a client clock ahead) is not clamped.
    p = prep(ten_before, skew=timedelta(hours=-1))
    assert isinstance(p, Prepared) and p.event["occurred_at"] == "2026-11-22T08:50:00Z"


@given(
    offset=st.integers(min_value=-10 * 86400, max_value=10 * 86400),
    skew=st.integers(min_value=-10 * 86400, max_value=10 * 86400),
)
def test_skew_correction_clamp_property(offset: int, skew: int) -> None:
    given_at, shift = NOW + timedelta(seconds=offset), timedelta(seconds=skew)
    out = skew_corrected(given_at, shift, NOW)
    if given_at + shift <= NOW or skew <= 0:
        assert out == given_at + shift  # the plain correction
    else:
        assert out == max(given_at, NOW)  # never pushed past the receive time by it
    assert out <= max(given_at, NOW) or skew <= 0


def test_an_event_dated_in_the_future_is_rejected_with_the_reason() -> None:
    e = {"type": "browse", "customer_id": "c-1", "page_type": "home"}
    out = prep({**e, "occurred_at": "2099-01-01T00:00:00Z"}, max_future_s=300)
    assert isinstance(out, Outcome) and out.status == "rejected"
    assert out.reason == (
        "occurred_at 2099-01-01T00:00:00Z is 26337 days ahead of its receive time "
        "2026-11-22T10:00:00Z; limit SEGSTREAM_MAX_FUTURE_S=300"
    )
    edge = prep({**e, "occurred_at": "2026-11-22T10:05:00Z"}, max_future_s=300)
    assert isinstance(edge, Prepared)  # exactly the bound: accepted
    late = prep({**e, "occurred_at": "2010-12-01T08:26:00Z"}, max_future_s=300)
    assert isinstance(late, Prepared)  # late data is normal
    # A client clock an hour ahead, corrected by its sent_at, is not refused.
    ahead = prep(
        {**e, "occurred_at": "2026-11-22T11:00:00Z"}, skew=-timedelta(hours=1), max_future_s=300
    )
    assert isinstance(ahead, Prepared) and ahead.event["occurred_at"] == "2026-11-22T10:00:00Z"


def iso_z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def test_anonymous_events() -> None:
    p = prep({"type": "browse", "anonymous_id": "a-1", "page_type": "home"})
    assert isinstance(p, Prepared)
    assert p.anonymous_id == "a-1" and p.event["customer_id"] == "anon:a-1"
    both = prep(
        {"type": "browse", "anonymous_id": "a-1", "customer_id": "c-1", "page_type": "home"}
    )
    assert isinstance(both, Prepared) and both.anonymous_id is None  # the customer wins
    for item, reason in [
        ({"type": "browse", "page_type": "home"}, "customer_id or anonymous_id is required"),
        ({"type": "browse", "page_type": "home", "anonymous_id": "x" * MAX_ID}, "anonymous_id"),
        ({"type": "browse", "page_type": "home", "anonymous_id": 7}, "anonymous_id"),
        ({"type": "browse", "page_type": "home", "customer_id": "anon:x"}, "anon:"),
    ]:
        out = prep(item)
        assert isinstance(out, Outcome) and out.status == "rejected"
        assert reason in (out.reason or ""), out


def test_rejects_carry_the_contract_reason_and_size_limit() -> None:
    out = prep({"type": "cart", "customer_id": "c-1", "action": "add"})
    assert isinstance(out, Outcome) and "sku is required" in (out.reason or "")
    assert out.event_id == "gen-0" and out.to_json()["status"] == "rejected"
    out = prep(
        {"type": "browse", "customer_id": "c-1", "page_type": "home", "pad": "x" * 500},
        max_event_bytes=256,
    )
    assert isinstance(out, Outcome) and "oversized" in (out.reason or "")
    out = prep(["not", "an", "object"])
    assert isinstance(out, Outcome) and out.event_id is None


def test_republished_ids_are_deterministic_and_valid() -> None:
    e = {
        "event_id": "e-1",
        "customer_id": "anon:a",
        "type": "browse",
        "page_type": "home",
        "schema_version": 1,
        "occurred_at": "2026-11-22T10:00:00Z",
    }
    moved = republished(e, "c-1")
    assert moved == republished(e, "c-1") and moved["event_id"] == "e-1@c-1"
    assert parse_event(orjson.dumps(moved)).customer_id == "c-1"
    long_id = merged_event_id("e" * 200, "c" * 200)
    assert len(long_id) <= MAX_ID and long_id == merged_event_id("e" * 200, "c" * 200)
    assert long_id != merged_event_id("e" * 200, "d" * 200)


# --- protection ----------------------------------------------------------------------------


def test_rate_limiter_token_bucket() -> None:
    rl = RateLimiter(rate=10, burst=50, max_clients=2)
    assert rl.take("a", 50, now=0.0) == 0.0
    assert rl.take("a", 10, now=0.0) == pytest.approx(1.0)  # refused: nothing taken
    assert rl.take("a", 10, now=1.0) == 0.0  # refilled 10
    assert rl.take("a", 1, now=1.0) == pytest.approx(0.1)
    assert rl.take("a", 50, now=100.0) == 0.0  # capped at the burst
    assert rl.take("a", 51, now=200.0) == 3600.0  # never fits
    rl.take("b", 1, now=0.0)
    rl.take("c", 1, now=0.0)
    assert len(rl) == 2  # least recently seen dropped
    assert RateLimiter(rate=0, burst=1).take("a", 10**6, now=0.0) == 0.0  # off


def test_cors_decisions() -> None:
    allowed = ["https://shop.example", "https://www.shop.example/"]
    assert cors_decision(None, allowed).allowed
    ok = cors_decision("https://www.shop.example", allowed)
    assert ok.allowed and ok.headers["Access-Control-Allow-Origin"] == "https://www.shop.example"
    assert "Access-Control-Allow-Methods" not in ok.headers
    pre = cors_decision("https://shop.example", allowed, preflight=True)
    assert pre.headers["Access-Control-Allow-Headers"] == "Content-Type, X-Write-Key"
    assert not cors_decision("http://shop.example", allowed).allowed  # scheme matters
    assert not cors_decision("https://shop.example.evil", allowed).allowed
    assert not cors_decision("null", allowed).allowed
    assert cors_decision("https://any.example", ["*"]).allowed
    assert not cors_decision("https://any.example", []).allowed
    same = cors_decision("http://127.0.0.1:8088", [], host="127.0.0.1:8088")
    assert same.allowed and same.headers == {}


def test_write_keys() -> None:
    keys = {"shop-de": "k1", "shop-fr": "k2"}
    assert site_for_key("k1", keys) == "shop-de"
    assert site_for_key("", keys) is None and site_for_key("k1x", keys) is None
    assert site_for_key("anything", {}) == "-"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_COLLECTOR__WRITE_KEYS", '{"shop-de": "k1"}')
    monkeypatch.setenv("SEGSTREAM_COLLECTOR__ALLOWED_ORIGINS", '["https://shop.example"]')
    monkeypatch.setenv("SEGSTREAM_COLLECTOR__RATE_PER_S", "5")
    c = Settings().collector
    assert c.write_keys["shop-de"].get_secret_value() == "k1"
    assert c.allowed_origins == ["https://shop.example"] and c.rate_per_s == 5
    assert "k1" not in repr(c)


# --- no 2xx before Kafka acknowledged -------------------------------------------------------


class FakeProducer:
    def __init__(self, fail_keys: set[bytes]) -> None:
        self.fail_keys = fail_keys
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: Any) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key))
        if key in self.fail_keys:
            fut.set_exception(TimeoutError("no ack"))
        else:
            fut.set_result(None)
        return fut


async def test_unacknowledged_events_fail_the_request() -> None:
    collector = Collector(Settings(topic_prefix="p."))
    producer = FakeProducer({b"c-2"})
    collector.producer = producer  # type: ignore[assignment]
    collector.redis = object()  # type: ignore[assignment]  # no anonymous events here
    items = [
        {"type": "browse", "customer_id": "c-1", "page_type": "home"},
        {"type": "browse", "customer_id": "c-2", "page_type": "home"},
        {"type": "browse", "customer_id": "c-3"},
    ]
    outcomes = await collector.ingest(items, site="s")
    assert [o.status for o in outcomes] == ["accepted", "failed", "rejected"]
    assert "retry" in (outcomes[1].reason or "")
    assert producer.sent == [("p.events.browse", b"c-1"), ("p.events.browse", b"c-2")]
    response = Collector._answer(outcomes)
    assert response.status == 503
    assert Collector._answer(outcomes[:1]).status == 200
    assert Collector._answer(outcomes[2:]).status == 400
