"""Operating helpers without servers: erase plans, lag rows, the API's auth and probes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from redis.crc import key_slot

from segmenters.effects import histogram_buckets, histogram_moves
from segmenters.state import CustomerState
from streams.settings import Settings
from streams.store.erase import plan_erase
from streams.store.keys import (
    actions_due_key,
    assigned_key,
    customer_keys,
    index_key,
    members_key,
    rfm_key,
    timers_key,
)
from streams.worker.web import WebContext, readiness, register_web

DOC = {
    "customer_id": "c-1",
    "state_version": 1,
    "first_seen": 1767261600.0,
    "last_seen": 1767261660.0,
    "events": 2,
    "orders": 1,
    "revenue": 10.0,
    "items": 1,
    "first_order_at": 1767261660.0,
    "last_order_at": 1767261660.0,
    "segments": {"journey": ["first_time_buyer", 1767261660.0], "custom:vip": ["member", 1.0]},
    "offsets": {"events.x/6": 1},
}


def test_erase_buckets_are_the_ones_the_worker_counts() -> None:
    state = CustomerState.from_doc(DOC)
    added = {(h, b) for h, b, delta in histogram_moves({}, histogram_buckets(state)) if delta == 1}
    assert added == set(histogram_buckets(state).items())
    empty = CustomerState.from_doc({"customer_id": "c-2", "state_version": 1})
    assert histogram_buckets(empty) == {}


def test_erase_plan_covers_keys_indexes_the_partition_and_histograms() -> None:
    registry = [index_key("p", 3, "journey", "browser")]
    plan = plan_erase("p", "c-1", "3", orjson.dumps(DOC), registry, partition=3)
    rev, cid, raw = plan.args
    assert (rev, cid) == ("3", "c-1")
    body = orjson.loads(raw)
    keys = plan.keys

    def named(positions: list[int]) -> set[str]:
        return {keys[i - 1] for i in positions}

    assert named(body["del"]) == set(customer_keys("p", 3, "c-1"))
    assert named(body["srem"]) == {
        index_key("p", 3, "journey", "browser"),
        index_key("p", 3, "journey", "first_time_buyer"),
        index_key("p", 3, "custom:vip", "member"),
        members_key("p", 3),
    }
    assert named(body["zrem"]) == {timers_key("p", 3), actions_due_key("p", 3)}
    assert body["hdel"] == []
    buckets = histogram_buckets(CustomerState.from_doc(DOC))
    assert {(keys[i - 1], b) for i, b in body["hist"]} == {
        (rfm_key("p", 3, h), str(b)) for h, b in buckets.items()
    }
    assert len({key_slot(k.encode()) for k in keys}) == 1, "one Redis Cluster slot"


def test_erase_plan_removes_the_customers_uplift_records() -> None:
    actions = orjson.dumps(
        {"state": {"customer_id": "c-1"}, "first": {"e1": {"email/x": ["control", 1.0]}}}
    )
    plan = plan_erase("p", "c-1", "3", orjson.dumps(DOC), [], partition=0, actions_doc=actions)
    body = orjson.loads(plan.args[2])
    assert [plan.keys[i - 1] for i in body["hdel"]] == [assigned_key("p", 0, "e1", "email/x")]
    bad = plan_erase("p", "c-1", "3", None, [], partition=0, actions_doc=b"{oops")
    assert orjson.loads(bad.args[2])["hdel"] == []


def test_erase_plan_without_state_or_with_a_corrupt_one() -> None:
    for doc in (None, b"{not json"):
        plan = plan_erase("p", "c-1", "", doc, [], partition=1)
        body = orjson.loads(plan.args[2])
        assert body["hist"] == [] and len(body["del"]) == len(customer_keys("p", 1, "c-1"))


class FakeApp:
    """Collects the views register_web adds."""

    def __init__(self) -> None:
        self.pages: dict[str, Any] = {}

    def page(self, path: str, name: str | None = None) -> Any:
        def add(view: Any) -> Any:
            self.pages[path] = view
            return view

        return add


class FakeRedis:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def ping(self) -> bool:
        if self.fail:
            raise ConnectionError("refused")
        return True


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.client = FakeRedis(fail)


def context(settings: Settings, *, redis_down=False, kafka_down=False, parts=(0, 1)) -> Any:
    async def kafka() -> None:
        if kafka_down:
            raise OSError("no broker")

    async def tombstone(_: str) -> None:
        return None

    return WebContext(
        settings=settings,
        store=FakeStore(redis_down),  # type: ignore[arg-type]
        assigned=lambda: list(parts),
        kafka_probe=kafka,
        send_tombstone=tombstone,
    )


def test_views_and_the_warning_without_a_token(caplog: pytest.LogCaptureFixture) -> None:
    app = FakeApp()
    with caplog.at_level(logging.WARNING, logger="streams.worker.web"):
        register_web(app, context(Settings(web_enabled=True)))  # type: ignore[arg-type]
    assert "SEGSTREAM_API_TOKEN is not set" in caplog.text
    assert set(app.pages) == {
        "/health",
        "/ready",
        "/customers/{customer_id}",
        "/segments",
        "/segments/{dimension}/{segment:.+}/members",
        "/segments/{dimension}/{segment:.+}/members.csv",
        "/metrics",
        "/dashboard",
        "/static/{name}",
        "/api/status",
        "/api/sizes",
        "/api/history",
        "/api/flows",
        "/api/actions",
        "/api/value",
        "/api/report",
        "/api/deadletters",
        "/api/vocabulary",
    }
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streams.worker.web"):
        register_web(FakeApp(), context(Settings(api_token="t")))  # type: ignore[arg-type]
    assert "SEGSTREAM_API_TOKEN" not in caplog.text


def test_readiness_names_every_reason() -> None:
    settings = Settings()
    ok, body = asyncio.run(readiness(context(settings)))
    assert ok and body == {"ready": True, "partitions": [0, 1]}
    ok, body = asyncio.run(readiness(context(settings, redis_down=True, kafka_down=True, parts=())))
    assert not ok
    assert [r.split(":")[0] for r in body["reasons"]] == ["redis", "kafka", "partitions"]
    assert "refused" in body["reasons"][0] and "no broker" in body["reasons"][1]
