"""The key layout: every Lua call stays in one Redis Cluster slot, and a customer's
partition is the one Kafka's default partitioner sends its events to."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from segmenters.actions import ActionState, Decision
from segmenters.actions.document import ActionDoc
from segmenters.effects import uplift_records
from segmenters.events import InvalidEvent
from segmenters.state import CustomerState
from streams.kafka.partitioner import Homes, partition_for
from streams.store import StateStore, Write
from streams.store.erase import plan_erase
from streams.store.keys import (
    applied_key,
    assigned_key,
    customer_keys,
    customer_of,
    index_key,
    shard,
    split_index_key,
    state_key,
    suppressed_key,
)
from streams.worker.pipeline import Record, parse_record
from tests.unit.factories import Events

ids = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="{}"), min_size=1, max_size=40
)


class Recorder:
    """Stands in for a redis-py pipeline: records the EVAL calls queued on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def eval(self, script: str, numkeys: int, *args: Any) -> None:
        self.calls.append((numkeys, args))

    def keys(self) -> list[list[str]]:
        return [list(args[:n]) for n, args in self.calls]


def slots(keys: list[str]) -> set[int]:
    return {key_slot(k.encode()) for k in keys}


@given(cid=ids, partitions=st.integers(1, 64))
def test_a_customers_keys_share_its_partitions_slot(cid: str, partitions: int) -> None:
    p = partition_for(cid, partitions)
    assert 0 <= p < partitions
    keys = [*customer_keys("seg", p, cid), index_key("seg", p, "journey", "loyal")]
    assert slots(keys) == {key_slot(shard("seg", p).encode())}
    assert customer_of("seg", state_key("seg", p, cid)) == (p, cid)


@settings(max_examples=300)
@given(key=st.binary(min_size=1, max_size=40), partitions=st.integers(1, 64))
def test_partition_is_kafkas_default_partitioner(key: bytes, partitions: int) -> None:
    """aiokafka (the worker's and the collector's producer) puts a key where
    ``partition_for`` says (kafka-python, used by simulate and replay, shares its murmur2;
    the integration tests would dead-letter every event it put elsewhere)."""
    try:
        cid = key.decode()
    except UnicodeDecodeError:
        return
    every = list(range(partitions))
    assert partition_for(cid, partitions) == DefaultPartitioner()(key, every, every)


def test_homes_memo_agrees_and_stays_bounded() -> None:
    home = Homes(8, memo=10)
    for n in range(100):
        assert home(f"c-{n}") == partition_for(f"c-{n}", 8)
    assert len(home._known) <= 10


def test_index_names_round_trip() -> None:
    for dim, seg in [("custom:vip", "member"), ("geographic", "DE/Bavaria"), ("rfm", "a")]:
        assert split_index_key("seg", index_key("seg", 11, dim, seg)) == (dim, seg)


@given(cids=st.lists(ids, min_size=1, max_size=30, unique=True), partitions=st.integers(1, 16))
def test_a_batch_commit_is_one_lua_call_per_partition_each_in_one_slot(
    cids: list[str], partitions: int
) -> None:
    store = StateStore(None, prefix="seg", partitions=partitions, cache_size=0)  # type: ignore[arg-type]
    writes = []
    for cid in cids:
        w = Write(cid, 0, CustomerState(customer_id=cid))
        w.index_ops = [(True, "journey", "browser"), (False, "rfm", "new")]
        w.hist_ops = [("recency", 3, 1)]
        w.outbox, w.ids, w.new, w.due = [b"{}"], [7], True, 1.0
        writes.append(w)
    pipe = Recorder()
    by_partition: dict[int, list[Write]] = {}
    for w in writes:
        by_partition.setdefault(store.home(w.customer_id), []).append(w)
    for p, part in by_partition.items():
        applied = {f"events.cart:{p}": 5}
        store._queue_commit(pipe, p, part, applied, applied)
    assert len(pipe.calls) == len(by_partition)
    for (p, _part), keys in zip(by_partition.items(), pipe.keys(), strict=True):
        assert slots(keys) == {key_slot(shard("seg", p).encode())}, keys


@given(cid=ids, partitions=st.integers(1, 16))
def test_an_erase_and_an_actions_write_stay_in_one_slot(cid: str, partitions: int) -> None:
    p = partition_for(cid, partitions)
    doc = orjson.dumps(
        {"customer_id": cid, "state_version": 2, "segments": {"journey": ["browser", 1.0]}}
    )
    actions = orjson.dumps({"state": {"customer_id": cid}, "first": {"e": {"email/x": ["t", 1]}}})
    plan = plan_erase("seg", cid, "1", doc, [index_key("seg", p, "rfm", "new")], p, actions)
    assert len(slots(plan.keys)) == 1

    store = StateStore(None, prefix="seg", partitions=partitions, cache_size=0)  # type: ignore[arg-type]
    decisions = [
        Decision(
            outcome=outcome,
            reason=reason,
            customer_id=cid,
            action="email/x",
            idempotency_key="k",
            change_id="ch",
            decided_at=1.0,
            experiment="e",
        )
        for outcome, reason in (("suppressed", "cooldown"), ("control", "holdout"))
    ]
    pipe = Recorder()
    write = Write(cid, 0, CustomerState(customer_id=cid), due=2.0)
    write.actions, write.actions_changed = ActionDoc(ActionState(cid)), True
    write.assigned, write.suppressed = uplift_records(decisions)
    assert write.assigned and write.suppressed
    f = f"events.cart:{p}"
    store._queue_commit(pipe, p, [write], {f: 7}, {f: 5})  # with its progress record
    keys = pipe.keys()[0]
    assert len(slots(keys)) == 1
    assert applied_key("seg", p) in keys
    assert assigned_key("seg", p, "e", "email/x") in keys
    assert suppressed_key("seg", p, "e") in keys


def test_an_event_on_another_partition_than_its_customers_is_invalid() -> None:
    event = Events("c-42").browse(0)
    home = partition_for("c-42", 4)

    def record(partition: int) -> Record:
        return Record("events.browse", partition, 0, b"c-42", orjson.dumps(event))

    assert parse_record(record(home), topic_prefix="", max_bytes=10_000, partitions=4)
    with pytest.raises(InvalidEvent, match=f"belongs on partition {home} of 4"):
        parse_record(record((home + 1) % 4), topic_prefix="", max_bytes=10_000, partitions=4)
    # without the partition count (older callers), only the payload and key are checked
    assert parse_record(record((home + 1) % 4), topic_prefix="", max_bytes=10_000)
