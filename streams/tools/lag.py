"""Consumer lag of the workers' group on the input topics.

For each input partition: the offset the group has committed, the log end offset, and
the difference. A partition the group never committed shows no committed offset and no
lag (as Kafka's own ``kafka-consumer-groups --describe`` leaves it out or shows ``-``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kafka import TopicPartition

from streams.kafka.admin import committed_offsets
from streams.kafka.clients import kafka_admin, kafka_consumer
from streams.kafka.topics import INPUTS
from streams.settings import Settings


@dataclass(frozen=True, order=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def lag_rows(
    partitions: list[TopicPartition],
    committed: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
) -> list[PartitionLag]:
    """Join committed and end offsets (pure).

    >>> tp = TopicPartition("events.cart", 0)
    >>> lag_rows([tp], {tp: 7}, {tp: 10})
    [PartitionLag(topic='events.cart', partition=0, committed=7, end=10, lag=3)]
    >>> lag_rows([tp], {}, {tp: 10})[0].lag is None
    True
    """
    rows = []
    for tp in sorted(partitions):
        end = int(ends.get(tp, 0))
        done = committed.get(tp)
        lag = None if done is None else max(end - done, 0)
        rows.append(PartitionLag(tp.topic, tp.partition, done, end, lag))
    return rows


def consumer_lag(
    settings: Settings, group: str | None = None, *, every_topic: bool = False
) -> list[PartitionLag]:
    """Lag of ``group`` (default: the workers' group, ``SEGSTREAM_APP_ID``) per input
    partition; with ``every_topic``, also on every other partition the group committed
    (the cluster trainer's ``segments.features``)."""
    group = group or settings.app_id
    admin = kafka_admin(settings, client_id=f"{settings.app_id}-lag")
    consumer = kafka_consumer(
        settings,
        client_id=f"{settings.app_id}-lag",
        enable_auto_commit=False,
    )
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (settings.topic(name) for name in INPUTS)
            for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        committed = committed_offsets(admin, group)
        if every_topic:
            partitions = sorted(set(partitions) | set(committed))
        ends = consumer.end_offsets(partitions) if partitions else {}
        return lag_rows(partitions, committed, ends)
    finally:
        consumer.close()
        admin.close()


def render(rows: list[PartitionLag], group: str) -> str:
    """A table like ``kafka-consumer-groups --describe``, and the total."""
    width = max([len(r.topic) for r in rows] + [5])
    lines = [f"group {group}", f"{'TOPIC':<{width}} PARTITION  COMMITTED        END        LAG"]
    for r in rows:
        done = "-" if r.committed is None else str(r.committed)
        lag = "-" if r.lag is None else str(r.lag)
        lines.append(f"{r.topic:<{width}} {r.partition:>9} {done:>10} {r.end:>10} {lag:>10}")
    total = sum(r.lag for r in rows if r.lag is not None)
    uncommitted = sum(1 for r in rows if r.committed is None)
    lines.append(
        f"total lag {total} over {len(rows)} partitions"
        + (f" ({uncommitted} never committed)" if uncommitted else "")
    )
    return "\n".join(lines)
