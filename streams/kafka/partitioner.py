"""Which input partition a customer's events go to: Kafka's default partitioner.

The producer (any client keying by ``customer_id``) decides the partition; the worker
and the store must agree with it, since a partition's keys carry its hash tag.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2


def partition_for(customer_id: str, partitions: int) -> int:
    """The input partition of a customer: Kafka's default partitioner (murmur2 of the key,
    as the Java client, kafka-python and aiokafka compute it).

    >>> partition_for("c-42", 16)
    4
    """
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


class Homes:
    """``partition_for`` with a bounded memo: murmur2 in pure Python costs microseconds,
    and a batch asks for the same customers many times.

    >>> home = Homes(16)
    >>> home("c-42"), home.partitions
    (4, 16)
    """

    def __init__(self, partitions: int, memo: int = 100_000) -> None:
        self.partitions = partitions
        self.memo = memo
        self._known: dict[str, int] = {}

    def __call__(self, customer_id: str) -> int:
        p = self._known.get(customer_id)
        if p is None:
            if len(self._known) >= self.memo:
                self._known.clear()
            p = self._known[customer_id] = partition_for(customer_id, self.partitions)
        return p
