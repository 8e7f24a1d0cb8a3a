"""The customer look-up's shape: the state's keys as before, plus the value predictions."""

from __future__ import annotations

import asyncio
from typing import Any

from segmenters.clv import DAY_S, day_of
from segmenters.clv.model import ClvModel
from segmenters.config import StateConfig
from segmenters.state import CustomerState
from segmenters.update import apply_event
from streams.kafka.partitioner import partition_for
from streams.store.clv import summary_of
from streams.store.documents import encode_state
from streams.store.keys import clock_key, clv_model_key, state_key
from streams.store.queries import ReadModel, customer_view
from tests.unit.factories import T0, Events, ev

MODEL = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=3)
KEYS = {"customer_id", "segments", "state", "predictions"}
DAY_MIN = 24 * 60


class FakePipeline:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.calls: list[Any] = []

    def hget(self, key: str, field: str) -> None:
        self.calls.append(self.data.get(key, {}).get(field))

    def get(self, key: str) -> None:
        self.calls.append(self.data.get(key))

    def hgetall(self, key: str) -> None:
        self.calls.append(self.data.get(key, {}))

    async def execute(self) -> list[Any]:
        return self.calls


class FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.pipelines = 0

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        self.pipelines += 1
        return FakePipeline(self.data)


def buyer(customer_id: str, days: list[int]) -> CustomerState:
    e = Events(customer_id)
    state = CustomerState(customer_id)
    for i, d in enumerate(days):
        apply_event(
            state, ev(e.purchase(f"o-{i}", ["A"], d * DAY_MIN, price=20.0 + i)), StateConfig()
        )
    return state


def look_up(redis: FakeRedis, customer_id: str, **kw: Any) -> dict[str, Any] | None:
    reads = ReadModel(redis, "p", 4, **kw)  # type: ignore[arg-type]
    return asyncio.run(reads.customer(customer_id))


def put(redis: FakeRedis, state: CustomerState) -> int:
    p = partition_for(state.customer_id, 4)
    redis.data[state_key("p", p, state.customer_id)] = {"doc": encode_state(state)}
    return p


def test_the_view_keeps_its_keys_and_adds_predictions() -> None:
    state = buyer("c-v", [0, 3, 10])
    view = customer_view(state)
    assert set(view) == KEYS and view["predictions"] is None
    assert list(view)[:3] == ["customer_id", "segments", "state"]
    assert view["state"]["orders"] == 3


def test_a_buyer_is_scored_to_the_partition_clock_day() -> None:
    redis = FakeRedis()
    state = buyer("c-1", [0, 3, 10])
    p = put(redis, state)
    assert look_up(redis, "c-1")["predictions"] is None  # type: ignore[index]  # no model yet
    redis.data[clv_model_key("p")] = MODEL.model_dump_json()
    first = T0.timestamp()
    watermark = first + 40 * DAY_S
    redis.data[clock_key("p")] = {str(p).encode(): repr(watermark).encode()}
    view = look_up(redis, "c-1", lateness=2 * DAY_S, horizon_days=100.0)
    assert view is not None and redis.pipelines == 2  # one round trip a look-up
    today = day_of(watermark - 2 * DAY_S)
    summary = summary_of(state, today)
    assert summary is not None and summary.T == 38 and summary.x == 2
    assert view["predictions"] == MODEL.predict(summary, 100.0).as_dict()
    assert view["predictions"]["model_version"] == 3
    assert view == customer_view(state, view["predictions"])


def test_no_clock_of_its_own_counts_to_the_latest_and_none_at_all_gives_none() -> None:
    redis = FakeRedis()
    state = buyer("c-2", [0, 5])
    p = put(redis, state)
    redis.data[clv_model_key("p")] = MODEL.model_dump_json()
    assert look_up(redis, "c-2")["predictions"] is None  # type: ignore[index]
    other = (p + 1) % 4
    redis.data[clock_key("p")] = {str(other).encode(): repr(T0.timestamp() + 20 * DAY_S).encode()}
    predictions = look_up(redis, "c-2")["predictions"]  # type: ignore[index]
    summary = summary_of(state, day_of(T0.timestamp()) + 20)
    assert summary is not None
    assert predictions == MODEL.predict(summary, 365.0).as_dict()


def test_a_customer_who_never_bought_has_no_predictions() -> None:
    redis = FakeRedis()
    state = CustomerState("c-3")
    apply_event(state, ev(Events("c-3").browse(0)), StateConfig())
    p = put(redis, state)
    redis.data[clv_model_key("p")] = MODEL.model_dump_json()
    redis.data[clock_key("p")] = {str(p).encode(): repr(T0.timestamp()).encode()}
    view = look_up(redis, "c-3")
    assert view is not None and set(view) == KEYS and view["predictions"] is None
    assert look_up(redis, "nobody") is None
