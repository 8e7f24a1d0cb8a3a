"""Small helpers over kafka-python's admin client, across its 2.x and 3.x APIs."""

from __future__ import annotations

from kafka import KafkaAdminClient, TopicPartition


def committed_offsets(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed, per partition."""
    if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
        raw = admin.list_group_offsets({group: None}).get(group, {})
    else:  # pragma: no cover - kafka-python 2.x
        raw = admin.list_consumer_group_offsets(group)
    return {tp: meta.offset for tp, meta in raw.items() if meta.offset >= 0}
