"""Reading the dead-letter topic: without a consumer group and committing nothing,
partitions are assigned and read from a start offset (found by time for a window, or the
last ``n`` of each) to the end offset seen when the read began.

Used by ``segstream deadletters`` (``streams.tools.deadletters``) and the worker's
``GET /api/deadletters``; the pure parts (reason kinds, the ranking) are
``segmenters.deadletters``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from segmenters.deadletters import Letter, SelectionError, newest_first, parse_letter
from streams.kafka.clients import kafka_consumer
from streams.kafka.topics import DEADLETTER
from streams.settings import Settings

#: The window's start is found by the records' Kafka timestamps, then filtered by
#: ``dead_lettered_at``; the two are the same worker's clock, read a moment apart.
SEEK_MARGIN_S = 60.0
#: A read that gets no record for this long while short of the end offsets gives up.
STALL_S = 30.0


class DeadLetterError(RuntimeError):
    """The command cannot do what was asked; the message says why."""


def consumer_for(settings: Settings) -> KafkaConsumer:
    return kafka_consumer(
        settings,
        client_id=f"{settings.app_id}-deadletters",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


def close_quietly(client: KafkaConsumer | KafkaProducer) -> None:
    """Close, without the error kafka-python logs when closing cancels a metadata
    refresh in flight ("Metadata refresh: failed Cancelled"): nothing failed."""
    logger = logging.getLogger("kafka.cluster")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        client.close()
    finally:
        logger.setLevel(level)


def deadletter_partitions(consumer: KafkaConsumer, settings: Settings) -> list[TopicPartition]:
    topic = settings.topic(DEADLETTER)
    parts = sorted(consumer.partitions_for_topic(topic) or [])
    if not parts:
        raise DeadLetterError(
            f"no topic {topic} on {settings.kafka_bootstrap} (check SEGSTREAM_TOPIC_PREFIX)"
        )
    return [TopicPartition(topic, p) for p in parts]


def scan(
    consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> Iterator[Letter]:
    """The dead letters from ``starts`` up to (not including) ``ends``, per partition."""
    parts = [tp for tp in starts if starts[tp] < ends[tp]]
    if not parts:
        return
    consumer.assign(parts)
    for tp in parts:
        consumer.seek(tp, starts[tp])
    remaining = set(parts)
    quiet_since = time.monotonic()
    while remaining:
        got = consumer.poll(timeout_ms=500)
        for tp, records in got.items():
            for r in records:
                if r.offset >= ends[tp] or r.value is None:
                    continue
                try:
                    yield parse_letter(tp.partition, r.offset, r.value)
                except SelectionError:
                    continue  # not a dead letter (written by something else): not ours
        if got:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > STALL_S:
            raise DeadLetterError(f"reading {sorted(remaining)} stalled for {STALL_S:.0f} s")
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}


def read_window(settings: Settings, since: float | None) -> list[Letter]:
    """Every dead letter dead-lettered at or after ``since`` (None: all there are)."""
    consumer = consumer_for(settings)
    try:
        parts = deadletter_partitions(consumer, settings)
        ends = consumer.end_offsets(parts)
        starts = consumer.beginning_offsets(parts)
        if since is not None:
            found = consumer.offsets_for_times(
                {tp: max(0, int((since - SEEK_MARGIN_S) * 1000)) for tp in parts}
            )
            starts = {tp: ends[tp] if found[tp] is None else found[tp].offset for tp in parts}
        return [x for x in scan(consumer, starts, ends) if since is None or x.at >= since]
    finally:
        close_quietly(consumer)


def read_newest(settings: Settings, n: int) -> list[Letter]:
    """The ``n`` most recent dead letters, newest first (the last ``n`` of each partition,
    merged by time)."""
    return newest_first(read_recent(settings, n))[:n]


def read_recent(settings: Settings, per_partition: int) -> list[Letter]:
    """At most the last ``per_partition`` dead letters of each partition (a bounded read,
    whatever the topic holds)."""
    consumer = consumer_for(settings)
    try:
        parts = deadletter_partitions(consumer, settings)
        ends = consumer.end_offsets(parts)
        begins = consumer.beginning_offsets(parts)
        starts = {tp: max(begins[tp], ends[tp] - per_partition) for tp in parts}
        return list(scan(consumer, starts, ends))
    finally:
        close_quietly(consumer)
