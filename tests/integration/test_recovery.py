"""Replaying what Redis lost, in-process, against the real broker and Redis.

The worker's processor, store and ``ProgressGuard`` run in this test's event loop, so a
batch can be raced against the replay on purpose: the fault test with a SIGKILLed Redis
hits that race only now and then.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from segmenters.actions.policy import load_policy
from segmenters.core import recompute
from streams.kafka.clients import aiokafka_kwargs
from streams.kafka.topics import CHANGES, DEADLETTER, FEATURES, INPUTS
from streams.store import ProgressLost, StateStore
from streams.store.clients import async_redis_client
from streams.store.keys import state_key
from streams.tools.simulate import generate
from streams.worker.pipeline import BatchProcessor, Record
from streams.worker.progress import ProgressGuard, process_until_done
from tests.integration.conftest import Deployment, parsed
from tests.integration.test_pipeline import canonical
from tests.unit.factories import Events

ACTIONS_POLICY = """
version = "test"
experiment = "exp-recovery"

[actions.email.abandoned_cart]
template = "abandoned_cart_v1"
holdout = 0
max_age_s = 315360000  # 10 years: the events are dated 2026-01-01 (T0)

[[rules]]
dimension = "journey"
current = "cart_abandoner"
actions = ["email/abandoned_cart"]
"""


def read_back(d: Deployment) -> list[Record]:
    """Every input record, in offset order per partition."""
    consumer = KafkaConsumer(bootstrap_servers=d.settings.kafka_bootstrap)
    try:
        tps = [
            TopicPartition(t, p)
            for t in (d.settings.topic(name) for name in INPUTS)
            for p in consumer.partitions_for_topic(t) or ()
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Record] = []
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(Record(m.topic, m.partition, m.offset, m.key, m.value) for m in batch)
        return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        consumer.close()


async def take_snapshot(client: Any, prefix: str) -> dict[bytes, bytes]:
    """Every key of the deployment, DUMPed: what an AOF would hold at this point."""
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    return {k: await client.dump(k) for k in keys}


async def restore_snapshot(client: Any, prefix: str, snapshot: dict[bytes, bytes]) -> None:
    """Redis restarts from the snapshot: everything written since is gone."""
    async for k in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(k)
    for k, v in snapshot.items():
        await client.restore(k, 0, v, replace=True)


def thirds(records: list[Record]) -> tuple[list[Record], list[Record], list[Record]]:
    """Each partition's records cut in three consecutive ranges (by position)."""
    parts: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        parts.setdefault((r.topic, r.partition), []).append(r)
    a: list[Record] = []
    b: list[Record] = []
    c: list[Record] = []
    for rs in parts.values():
        n = len(rs)
        a += rs[: n // 3]
        b += rs[n // 3 : 2 * n // 3]
        c += rs[2 * n // 3 :]
    return a, b, c


def test_a_batch_that_races_the_replay_waits_and_no_replayed_event_is_lost(
    deployment: Deployment,
) -> None:
    """Redis falls back to a snapshot taken after the first third of each partition
    while the worker had applied two thirds; the replay of the lost third and the batch
    of the last third start together. The batch must wait: had it gone first, customers
    would hold events later than the replayed ones and skip those as duplicates."""
    events = list(generate(40, seed=7, start=Events().start, duration_s=20, rate=30))
    produced = deployment.produce(events)
    a, b, c = thirds(read_back(deployment))
    assert a and b and c
    settings = deployment.settings
    prefix = settings.key_prefix

    async def run() -> tuple[int, Any]:
        client = async_redis_client(settings)
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings))
        await producer.start()
        try:
            return await race(client, producer)
        finally:
            await producer.stop()
            await client.aclose()

    async def race(client: Any, producer: AIOKafkaProducer) -> tuple[int, Any]:
        def sender(name: str) -> Any:
            async def send(key: bytes, value: bytes) -> Any:
                return await producer.send(settings.topic(name), value, key=key)

            return send

        store = StateStore(
            client, prefix=prefix, partitions=settings.topic_partitions, cache_size=10_000
        )
        processor = BatchProcessor(
            store=store,
            config=settings.engine,
            topic_prefix=settings.topic_prefix,
            max_event_bytes=settings.max_event_bytes,
            send_change=sender(CHANGES),
            send_deadletter=sender(DEADLETTER),
            send_features=sender(FEATURES),
            sample_percent=0,
        )
        guard = ProgressGuard(
            store=store,
            processor=processor,
            inputs={settings.topic(n) for n in INPUTS},
            kafka=aiokafka_kwargs(settings),
            batch_size=50,
        )
        await processor.process(a)
        snapshot = await take_snapshot(client, prefix)
        await processor.process(b)
        await restore_snapshot(client, prefix, snapshot)
        with pytest.raises(ProgressLost):  # a write on the lost progress is refused
            await processor.process(c[:1])

        replayed, _ = await asyncio.gather(
            guard.recover(), process_until_done(processor, c, None, guard)
        )
        return replayed, await store.applied_offsets()

    replayed, applied = asyncio.run(run())
    assert replayed == len(b)
    last = {f"{r.topic}:{r.partition}": r.offset for r in a + b + c}
    assert applied == last

    per_customer = Counter(e["customer_id"] for e in events)
    assert {cid: (deployment.state(cid) or {}).get("events") for cid in per_customer} == dict(
        per_customer
    )
    offline = recompute(parsed(produced), config=settings.engine)
    for cid, result in offline.items():
        assert canonical(deployment.state(cid)) == canonical(
            orjson.loads(orjson.dumps(result.state.to_doc()))
        ), cid


def test_actions_decided_in_a_lost_write_are_replayed_and_decided_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The same loss with retention actions: the actions decided in the lost third are
    decided again from the replayed events (Kafka's offsets already went past them), in
    the same write as the states. Each customer gets one message, under one key."""
    d = deployment
    customers = [f"a-{i}" for i in range(36)]
    produced = d.produce([Events(cid).add("A", i / 60) for i, cid in enumerate(customers)])
    assert len(produced) == len(customers)
    a, b, c = thirds(read_back(d))
    assert a and b and c
    settings = d.settings
    prefix = settings.key_prefix
    policy = load_policy(ACTIONS_POLICY.replace("cart_abandoner", "active_cart"))
    sent: list[tuple[str, bytes, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        sent.append((topic, key, value))
        return asyncio.sleep(0)

    async def ignore(key: bytes, value: bytes) -> Any:
        return asyncio.sleep(0)

    async def run() -> tuple[int, dict[str, int]]:
        client = async_redis_client(settings)
        try:
            store = StateStore(
                client, prefix=prefix, partitions=settings.topic_partitions, cache_size=1000
            )
            processor = BatchProcessor(
                store=store,
                config=settings.engine,
                topic_prefix=settings.topic_prefix,
                max_event_bytes=settings.max_event_bytes,
                send_change=ignore,
                send_deadletter=ignore,
                send_action=send,
                policy=lambda: policy,
            )
            guard = ProgressGuard(
                store=store,
                processor=processor,
                inputs={settings.topic(n) for n in INPUTS},
                kafka=aiokafka_kwargs(settings),
                batch_size=5,
            )
            await processor.process(a)
            snapshot = await take_snapshot(client, prefix)
            await processor.process(b)
            await restore_snapshot(client, prefix, snapshot)
            with pytest.raises(ProgressLost):
                await processor.process(c[:1])
            replayed, _ = await asyncio.gather(
                guard.recover(), process_until_done(processor, c, None, guard)
            )
            return replayed, await store.applied_offsets()
        finally:
            await client.aclose()

    replayed, applied = asyncio.run(run())
    assert replayed == len(b)
    assert applied == {f"{r.topic}:{r.partition}": r.offset for r in a + b + c}
    # Every customer's decision is in Redis, once; a decision re-made after the loss is
    # the very same message under the same idempotency key.
    by_key: dict[str, set[bytes]] = {}
    for _, _, value in sent:
        by_key.setdefault(orjson.loads(value)["idempotency_key"], set()).add(value)
    assert all(len(v) == 1 for v in by_key.values())
    assert {orjson.loads(next(iter(v)))["customer_id"] for v in by_key.values()} == set(customers)
    for cid in customers:
        raw = d.redis.hget(state_key(prefix, d.home(cid), cid), "act")
        assert raw is not None, cid
        assert orjson.loads(raw)["first"]["exp-recovery"]["email/abandoned_cart"][0] == "treated"
