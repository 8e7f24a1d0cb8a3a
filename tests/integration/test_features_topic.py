"""``segments.features`` stays small: no vector for an unchanged customer, a bounded topic,
and an erased customer leaves it (tombstone)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from segmenters.clustering import Cluster, ClusterModel
from segmenters.core import Context
from segmenters.features import FEATURES as VECTOR
from streams.kafka.admin import committed_offsets
from streams.kafka.clients import aiokafka_kwargs, kafka_admin
from streams.kafka.topics import CHANGES, DEADLETTER, ERASED, FEATURES, TOPIC_CONFIGS, ensure_topics
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.worker.pipeline import BatchProcessor, Record
from tests.integration.conftest import Deployment
from tests.integration.test_cli import segstream
from tests.unit.factories import Events

CUSTOMERS = [f"c-feat-{i:02d}" for i in range(12)]


def shop(deployment: Deployment) -> tuple[list[Record], float]:
    """A short busy phase: each customer browses, carts and buys."""
    events = []
    for i, cid in enumerate(CUSTOMERS):
        e = Events(cid)
        events += [e.browse(i), e.add("A-1", i + 1)]
        if i % 2:
            events.append(e.purchase(f"o-{cid}", ["A-1"], i + 2, price=10.0 + i))
    produced = deployment.produce(events)
    records = [
        Record(s.topic, s.partition, s.offset, e["customer_id"].encode(), _raw(e))
        for e, s in produced
    ]
    last = max(e["occurred_at"] for e in events)
    return records, datetime.fromisoformat(last).timestamp()


def _raw(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


def one_cluster() -> ClusterModel:
    zeros = dict.fromkeys(VECTOR, 0.0)
    return ClusterModel(
        version=1,
        features=VECTOR,
        mean=zeros,
        std=dict.fromkeys(VECTOR, 1.0),
        clusters=(Cluster(id=0, centroid=zeros, size=1, description="everyone"),),
    )


def test_rescoring_an_idle_population_sends_no_vectors(deployment: Deployment) -> None:
    settings = deployment.settings
    records, clock = shop(deployment)
    sent: list[bytes] = []

    async def run() -> tuple[list[int], int]:
        client = async_redis_client(settings)
        producer = AIOKafkaProducer(**aiokafka_kwargs(settings))
        await producer.start()

        def sender(name: str) -> Any:
            async def send(key: bytes, value: bytes) -> Any:
                if name == FEATURES:
                    sent.append(key)
                return await producer.send(settings.topic(name), value, key=key)

            return send

        # A published model: from then on, only vectors that moved go to the trainer.
        model = Context(clusters=one_cluster())
        try:
            processor = BatchProcessor(
                store=StateStore(client, prefix=settings.key_prefix, partitions=4, cache_size=1000),
                config=settings.engine,
                topic_prefix=settings.topic_prefix,
                max_event_bytes=settings.max_event_bytes,
                send_change=sender(CHANGES),
                send_deadletter=sender(DEADLETTER),
                send_features=sender(FEATURES),
                sample_percent=0,  # vectors from the sweep only
                context=lambda: model,
            )
            await processor.process(records)
            by_partition: dict[int, list[str]] = {}
            for cid in CUSTOMERS:
                by_partition.setdefault(deployment.home(cid), []).append(cid)

            async def sweep() -> int:
                before = len(sent)
                for p, customers in by_partition.items():
                    await processor.rescore(p, customers, clock)
                return len(sent) - before

            passes = [await sweep() for _ in range(5)]  # idle: the clock does not move
            later = Events(CUSTOMERS[0])
            later.n = 100
            event = later.purchase("o-late", ["B-1", "B-2"], 30, price=80.0)
            ((_, s),) = deployment.produce([event])
            await processor.process(
                [Record(s.topic, s.partition, s.offset, CUSTOMERS[0].encode(), _raw(event))]
            )
            moved = await sweep()
            await producer.flush()
            return passes, moved
        finally:
            await producer.stop()
            await client.aclose()

    passes, moved = asyncio.run(run())
    assert passes == [len(CUSTOMERS), 0, 0, 0, 0]
    assert moved == 1 and sent[-1] == CUSTOMERS[0].encode()
    on_topic = deployment.read_topic(FEATURES, expect=len(CUSTOMERS) + 1)
    assert [r.key for r in on_topic] == sent


def test_the_features_topic_is_bounded_and_erase_tombstones_it(deployment: Deployment) -> None:
    topic = deployment.settings.topic(FEATURES)
    admin = kafka_admin(deployment.settings, client_id="features-config")
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    try:
        # A topic as an older version made it: a week's retention, not compacted.
        old = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3_600_000)}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=old)])
        ensure_topics(deployment.settings)  # what every worker and tool runs at start
        described = admin.describe_configs([resource])["topic"][topic]
    finally:
        admin.close()
    assert {name: described[name]["value"] for name in TOPIC_CONFIGS[FEATURES]} == (
        TOPIC_CONFIGS[FEATURES]
    )
    assert TOPIC_CONFIGS[FEATURES]["cleanup.policy"] == "compact,delete"

    deployment.start_worker()
    e = Events("c-erase-me")
    deployment.produce([e.browse(0), e.add("A-1", 1)])
    deployment.wait_applied({"c-erase-me": 2})
    out = segstream(deployment, "erase", "c-erase-me")
    assert out.returncode == 0, out.stderr
    last: dict[str, Any] = {}
    for name in (FEATURES, ERASED):
        tombstones = [r for r in deployment.read_topic(name, expect=1) if r.key == b"c-erase-me"]
        assert tombstones and tombstones[-1].value is None, name
        last[name] = tombstones[-1]
    # The trainer reads the tombstone (the customer leaves its window) and goes on.
    trained_past(deployment, last[FEATURES].offset + 1)
    assert "cluster trainer failed" not in deployment.log()


def trained_past(deployment: Deployment, offset: int, timeout: float = 60) -> None:
    """Wait until the trainer committed ``offset`` on segments.features."""
    tp = TopicPartition(deployment.settings.topic(FEATURES), 0)
    admin = kafka_admin(deployment.settings, client_id="features-committed")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if committed_offsets(admin, deployment.settings.app_id).get(tp, 0) >= offset:
                return
            time.sleep(0.25)
    finally:
        admin.close()
    raise AssertionError(f"the trainer did not read past offset {offset} in {timeout}s")
