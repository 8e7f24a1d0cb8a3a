"""Reads of the partitions' due indexes for the timer service's metrics.

The due scan that fires timers is ``StateStore.due_timers`` (it counts the store's round
trips with the batches'); this one only measures how late the oldest due timer is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.store.keys import timers_key


async def oldest_due(client: Any, prefix: str, partitions: Iterable[int]) -> dict[int, float]:
    """Per partition with a timer: the due time of its oldest (one pipelined
    ``ZRANGE 0 0 WITHSCORES``)."""
    pipe = client.pipeline(transaction=False)
    parts = sorted(partitions)
    for p in parts:
        pipe.zrange(timers_key(prefix, p), 0, 0, withscores=True)
    return {p: row[0][1] for p, row in zip(parts, await pipe.execute(), strict=True) if row}
