"""The traffic generator: valid, ordered, repeatable events with persona-shaped behaviour."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenters.events import check_routing, parse_event
from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.tools import simulate as sim

START = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def run(
    customers: int = 60,
    *,
    seed: int = 7,
    duration_s: float = 30,
    rate: float = 300,
    truth: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    return list(
        sim.generate(
            customers, seed=seed, start=START, duration_s=duration_s, rate=rate, truth=truth
        )
    )


@pytest.fixture(scope="module")
def traffic() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """9000 events from 60 customers: about 150 each, enough for every persona to show."""
    truth: dict[str, str] = {}
    return run(truth=truth), truth


def by_customer(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for e in events:
        out[e["customer_id"]].append(e)
    return out


def purchases_of(events: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(e["customer_id"] for e in events if e["type"] == "purchase")


def check_valid(events: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    previous = None
    for e in events:
        parsed = parse_event(orjson.dumps(e))
        check_routing(parsed, topic=TOPIC_OF_TYPE[e["type"]], key=e["customer_id"].encode())
        assert e["occurred_at"].endswith("Z")
        assert previous is None or parsed.occurred_at >= previous
        previous = parsed.occurred_at
        if parsed.customer_id not in seen:
            assert parsed.type == "profile", parsed
            seen.add(parsed.customer_id)
        else:
            assert parsed.type != "profile", parsed


def test_every_event_is_valid_v1_and_ordered(traffic):
    events, _ = traffic
    check_valid(events)
    assert len({e["event_id"] for e in events}) == len(events)


def test_each_customer_starts_with_its_one_profile(traffic):
    events, truth = traffic
    streams = by_customer(events)
    assert set(streams) == set(truth)
    for customer, evs in streams.items():
        assert evs[0]["type"] == "profile"
        assert sum(e["type"] == "profile" for e in evs) == 1
        attrs = evs[0]["attributes"]
        assert {
            "birth_year",
            "gender",
            "income_band",
            "country",
            "region",
            "city",
            "marketing_consent",
            "language",
        } <= set(attrs)
        geo = {"country": attrs["country"], "region": attrs["region"], "city": attrs["city"]}
        assert all(e["geo"] == geo for e in evs), customer


def test_same_seed_same_events_other_seed_other_events():
    a = run(20, seed=3, duration_s=5, rate=100)
    assert a == run(20, seed=3, duration_s=5, rate=100)
    b = run(20, seed=4, duration_s=5, rate=100)
    assert len(a) == len(b)
    assert a != b
    assert {e["customer_id"] for e in a}.isdisjoint(e["customer_id"] for e in b)


@pytest.mark.parametrize(
    ("rate", "duration_s"), [(100, 60), (300, 10), (1000, 3), (2.5, 40), (50, 0.5)]
)
def test_event_count_and_span_follow_rate_and_duration(rate, duration_s):
    events = run(30, rate=rate, duration_s=duration_s)
    assert abs(len(events) - rate * duration_s) <= 0.1 * rate * duration_s
    last = datetime.fromisoformat(events[-1]["occurred_at"])
    assert START <= last < START + timedelta(seconds=duration_s)


def test_persona_mix_over_2000_customers():
    truth: dict[str, str] = {}
    assert run(2000, duration_s=0, truth=truth) == []
    assert len(truth) == 2000
    counts = collections.Counter(truth.values())
    for persona, share in sim.PERSONA_MIX.items():
        assert abs(counts[persona] / 2000 - share) < 0.02, persona
    assert all(sim.persona_of(c, 2000, 7) == p for c, p in truth.items())
    assert sim.personas(2000, 7) != sim.personas(2000, 8)


def test_persona_never_leaks_into_events(traffic):
    events, _ = traffic
    blob = orjson.dumps(events)
    for persona in sim.PERSONAS:
        assert persona.encode() not in blob


def test_purchases_per_persona(traffic):
    events, truth = traffic
    orders = purchases_of(events)
    carts = collections.Counter(e["customer_id"] for e in events if e["type"] == "cart")
    of = collections.defaultdict(list)
    for customer, persona in truth.items():
        of[persona].append(customer)
    assert all(orders[c] == 1 for c in of["one_time_buyer"])
    assert all(orders[c] == 0 and carts[c] == 0 for c in of["window_shopper"])
    assert all(orders[c] == 0 and carts[c] > 0 for c in of["cart_abandoner"])
    assert all(orders[c] in (1, 2) for c in of["lapsing_buyer"])
    assert all(orders[c] >= 2 for c in of["loyal_big_spender"])
    assert sum(orders[c] >= 4 for c in of["loyal_big_spender"]) >= 3


def test_persona_shapes_baskets_and_devices(traffic):
    events, truth = traffic
    totals = collections.defaultdict(list)
    devices: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    discounted = collections.Counter()
    for e in events:
        persona = truth[e["customer_id"]]
        if e["type"] == "purchase":
            totals[persona].append(e["total"])
            discounted[persona] += "discount" in e
        if "device" in e:
            devices[persona][e["device"]] += 1

    def mean(xs):
        return sum(xs) / len(xs)

    assert mean(totals["loyal_big_spender"]) > 3 * mean(totals["bargain_hunter"])
    assert discounted["bargain_hunter"] > len(totals["bargain_hunter"]) / 2
    assert devices["bargain_hunter"].most_common(1)[0][0] == "mobile"
    assert devices["loyal_big_spender"].most_common(1)[0][0] == "desktop"


def test_purchases_are_consistent_with_the_cart(traffic):
    events, _ = traffic
    order_ids = [e["order_id"] for e in events if e["type"] == "purchase"]
    assert order_ids and len(set(order_ids)) == len(order_ids)
    cart: dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        customer = e["customer_id"]
        if e["type"] == "cart":
            if e["action"] == "add":
                cart[customer].add(e["sku"])
            else:
                assert e["sku"] in cart[customer]
                cart[customer].discard(e["sku"])
        elif e["type"] == "purchase":
            skus = {line["sku"] for line in e["lines"]}
            assert skus == cart[customer]
            cart[customer] = set()
            subtotal = sum(line["quantity"] * line["unit_price"] for line in e["lines"])
            assert e["currency"] == "EUR"
            assert e["total"] == pytest.approx(subtotal - e.get("discount", 0), abs=0.011)
            assert e["total"] > 0


def test_refunds_are_rare_and_refer_to_earlier_orders():
    events = run(200, seed=11, duration_s=120, rate=400)
    orders: dict[str, dict[str, Any]] = {}
    refunds = 0
    for e in events:
        if e["type"] == "purchase":
            orders[e["order_id"]] = e
        elif e["type"] == "refund":
            refunds += 1
            order = orders[e["order_id"]]
            assert order["customer_id"] == e["customer_id"]
            assert 0 < e["total"] <= order["total"]
    assert 0 < refunds <= 0.03 * len(orders)


def test_naive_start_is_utc_and_bad_arguments_are_refused():
    naive = list(sim.generate(3, seed=1, start=START.replace(tzinfo=None), duration_s=1, rate=5))
    assert naive == list(sim.generate(3, seed=1, start=START, duration_s=1, rate=5))
    for bad in ({"rate": 0}, {"rate": -1}, {"duration_s": -1}, {"rate": float("nan")}):
        kwargs: dict[str, Any] = {"seed": 1, "start": START, "duration_s": 1, "rate": 5, **bad}
        with pytest.raises(ValueError):
            list(sim.generate(3, **kwargs))
    with pytest.raises(ValueError):
        list(sim.generate(0, seed=1, start=START, duration_s=1, rate=5))
    with pytest.raises(ValueError):
        sim.persona_of("c-2-00001", 10, seed=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**31),
    customers=st.integers(min_value=1, max_value=25),
    rate=st.floats(min_value=0.5, max_value=500, allow_nan=False),
    duration_s=st.floats(min_value=0, max_value=3, allow_nan=False),
)
def test_any_seed_gives_only_valid_ordered_events(seed, customers, rate, duration_s):
    truth: dict[str, str] = {}
    events = list(
        sim.generate(
            customers, seed=seed, start=START, duration_s=duration_s, rate=rate, truth=truth
        )
    )
    assert len(events) == round(rate * duration_s)
    check_valid(events)
    assert {e["customer_id"] for e in events} <= set(truth)


# --- the producer, with a recording stand-in for Kafka -------------------------------------


class FakeFuture:
    def add_errback(self, fn):
        return self


class FakeProducer:
    def __init__(self, **config):
        self.config = config
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = self.closed = False

    def send(self, topic, *, key, value):
        self.sent.append((topic, key, value))
        return FakeFuture()

    def flush(self):
        self.flushed = True

    def close(self):
        self.closed = True


@pytest.fixture
def fake_kafka(monkeypatch):
    producers: list[FakeProducer] = []
    ensured: list[Settings] = []

    def make(**config):
        producers.append(FakeProducer(**config))
        return producers[-1]

    import streams.kafka.topics

    monkeypatch.setattr(streams.kafka.topics, "KafkaProducer", make)
    monkeypatch.setattr(streams.kafka.topics, "ensure_topics", ensured.append)
    return producers, ensured


@pytest.mark.parametrize("rate", [0, 400])
def test_simulate_sends_every_event_to_its_topic(fake_kafka, tmp_path: Path, rate):
    producers, ensured = fake_kafka
    settings_ = Settings(topic_prefix="t1.")
    truth_path = tmp_path / "out" / "truth.json"
    stats = sim.simulate(
        settings_,
        customers=20,
        rate=rate,
        duration=0.25,
        seed=5,
        progress=False,
        truth_path=truth_path,
    )
    assert ensured == [settings_]
    (producer,) = producers
    assert producer.flushed and producer.closed
    assert producer.config["linger_ms"] == 5
    expected = round((rate or sim.UNPACED_RATE) * 0.25)
    assert stats.events == len(producer.sent) == expected
    assert sum(stats.by_type.values()) == sum(stats.by_persona.values()) == expected
    assert sum(stats.customers_by_persona.values()) == 20
    if rate:
        assert stats.elapsed_s >= 0.2
    for topic, key, value in producer.sent:
        event = parse_event(value)
        assert topic == "t1." + TOPIC_OF_TYPE[event.type]
        assert key == event.customer_id.encode()
    # No event is dated after it was sent (bounded event time).
    latest = max(parse_event(value).occurred_at for _, _, value in producer.sent)
    assert latest <= datetime.now(UTC)
    truth = json.loads(truth_path.read_text())
    assert len(truth) == 20
    assert all(sim.persona_of(c, 20, 5) == p for c, p in truth.items())
