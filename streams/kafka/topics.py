"""Topic names and their creation.

Input topics are keyed by ``customer_id`` and share one partition count, so Faust's
co-partitioning assignor gives one worker the same partition of every input topic:
all events of a customer meet in one place.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from segmenters.topics import (
    ACTION_TOPICS,
    BROWSE,
    CART,
    CHANGES,
    DEADLETTER,
    ERASED,
    FEATURES,
    INPUTS,
    PROFILE,
    PURCHASE,
    TOPIC_OF_TYPE,
)
from streams.kafka.clients import kafka_admin, kafka_python_kwargs
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The topic names are the contract's (segmenters/topics.py), re-exported for the shell.
__all__ = [
    "ACTION_TOPICS",
    "BROWSE",
    "CART",
    "CHANGES",
    "DEADLETTER",
    "ERASED",
    "FEATURES",
    "INPUTS",
    "PROFILE",
    "PURCHASE",
    "TOMBSTONED",
    "TOPIC_CONFIGS",
    "TOPIC_OF_TYPE",
    "all_topics",
    "delete_topics",
    "ensure_topics",
    "finish",
    "input_producer",
]

#: Topics that get a tombstone (key ``customer_id``, no value) when a customer is erased.
TOMBSTONED = (ERASED, FEATURES)

HOUR_MS = 3_600_000
#: Topic configs other than the broker's defaults. ``segments.features`` is internal and
#: only its latest vector per customer matters: compacted by customer (an erase tombstone
#: removes the customer's vectors), and what is older than 6 h is deleted anyway; its
#: segments roll hourly so both apply (the broker's default segment is a week).
TOPIC_CONFIGS = {
    # Tombstones stay a week (Kafka's default retention of the input topics), so
    # downstream services and ``segstream verify`` see every erase whose events remain.
    ERASED: {"cleanup.policy": "compact", "delete.retention.ms": str(7 * 24 * HOUR_MS)},
    FEATURES: {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(6 * HOUR_MS),
        "segment.ms": str(HOUR_MS),
        "delete.retention.ms": str(HOUR_MS),
    },
}


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic(t) for t in (*INPUTS, DEADLETTER, CHANGES, FEATURES, ERASED, *ACTION_TOPICS)
    ]


def ensure_topics(settings: Settings, *, timeout_ms: int = 30000) -> list[str]:
    """Create every segstream topic that does not exist yet; return the ones created."""
    admin = kafka_admin(
        settings, client_id=f"{settings.app_id}-admin", request_timeout_ms=timeout_ms
    )
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in all_topics(settings) if t not in existing]
        configs = {settings.topic(name): c for name, c in TOPIC_CONFIGS.items()}
        created = []
        for name in wanted:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name=name,
                            num_partitions=1
                            if name == settings.topic(FEATURES)
                            else settings.topic_partitions,
                            replication_factor=settings.topic_replication,
                            topic_configs=configs.get(name, {}),
                        )
                    ],
                    timeout_ms=timeout_ms,
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        if created:
            log.info("created topics %s", ", ".join(created))
            _wait_for_leaders(admin, created, timeout_ms / 1000)
        features = settings.topic(FEATURES)
        if features in existing:
            _bound_features(admin, features)
        return created
    finally:
        admin.close()


def _bound_features(admin: Any, topic: str) -> None:
    """Give a ``segments.features`` made by an older version (7-day retention, not
    compacted) its bounds. Internal topic, so segstream owns its config; a broker that
    refuses (no ALTER_CONFIGS right) only costs disk, hence a warning."""
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=TOPIC_CONFIGS[FEATURES])]
        )
    except Exception as exc:  # any refusal: keep going
        log.warning("could not bound %s (%s); it keeps its retention", topic, exc)


def delete_topics(settings: Settings, *, timeout_ms: int = 30000) -> list[str]:
    """Delete the deployment's topics that exist; return their names.

    For throw-away deployments (tests, benchmarks): every partition stays on the broker's
    disk until deleted, and a broker with thousands of leftover partitions takes minutes
    to start."""
    admin = kafka_admin(
        settings, client_id=f"{settings.app_id}-admin", request_timeout_ms=timeout_ms
    )
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in all_topics(settings) if t in existing]
        if doomed:
            try:
                admin.delete_topics(doomed, timeout_ms=timeout_ms)
            except UnknownTopicOrPartitionError:
                pass
        return doomed
    finally:
        admin.close()


def _wait_for_leaders(admin: Any, topics: list[str], timeout_s: float) -> None:
    """Until every partition of ``topics`` has a leader. A worker that joins its group
    before a new topic is in the metadata is assigned nothing of it ("Ignoring missing
    topic") until the next metadata refresh, minutes later; this wait closes that gap."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            described = admin.describe_topics(topics)
        except KafkaError:
            described = []
        ready = {
            str(t.get("name") or t.get("topic"))
            for t in described
            if not t.get("error_code")
            and t.get("partitions")
            and all(p.get("leader_id", p.get("leader", -1)) >= 0 for p in t["partitions"])
        }
        if ready >= set(topics):
            return
        if time.monotonic() > deadline:
            log.warning("topics without a leader after %.0f s: %s", timeout_s, set(topics) - ready)
            return
        time.sleep(0.1)


def input_producer(settings: Settings, role: str) -> tuple[KafkaProducer, dict[str, str]]:
    """A producer for event producers' tools (simulator, replay): creates missing topics,
    returns the producer and the topic of each event ``type``. Events are keyed by
    ``customer_id`` by the caller, so a customer's events share a partition."""
    ensure_topics(settings)
    producer = KafkaProducer(
        **kafka_python_kwargs(settings),
        client_id=f"{settings.app_id}-{role}",
        acks=1,
        enable_idempotence=False,  # it needs acks=all; saying so spares kafka-python's warning
        linger_ms=5,
        batch_size=64 * 1024,
        retries=5,
    )
    return producer, {t: settings.topic(name) for t, name in TOPIC_OF_TYPE.items()}


def finish(producer: KafkaProducer) -> None:
    """Deliver what is buffered, then close, even if the flush fails."""
    try:
        producer.flush()
    finally:
        producer.close()
