"""Reads over the shared indexes that the API, the CLI and tools use."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.store.documents import _text
from streams.store.keys import index_registry_key, split_index_key


async def segment_sizes(
    client: aioredis.Redis, prefix: str, partitions: int
) -> dict[tuple[str, str], int]:
    """(dimension, segment) -> customers in it, summed over the partitions' indexes: two
    round trips (the registries, then one SCARD per partition and segment)."""
    pipe = client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.smembers(index_registry_key(prefix, p))
    names = [_text(m) for row in await pipe.execute() for m in row]
    if not names:
        return {}
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.scard(name)
    sizes: dict[tuple[str, str], int] = {}
    for name, n in zip(names, await pipe.execute(), strict=True):
        seg = split_index_key(prefix, name)
        sizes[seg] = sizes.get(seg, 0) + int(n)
    return dict(sorted(sizes.items()))
