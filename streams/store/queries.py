"""The read model: what the HTTP API, the CLI and the dashboard read from Redis.

One function per read, and one place for its public shape, so ``segstream customer ID
--json`` and ``GET /customers/{id}`` agree and ``segstream segments sizes`` and
``GET /segments`` count alike. :class:`ReadModel` binds an asyncio client to the key
prefix and the partition count; the time series the dashboard charts are read in
``series``, the uplift report's records in ``reports``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store.clients import async_redis_client
from streams.store.documents import _decode, _text
from streams.store.keys import (
    index_key,
    index_registry_key,
    model_key,
    split_index_key,
    state_key,
)
from streams.store.series import read_flows, read_sizes, sizes_records

T = TypeVar("T")


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 (UTC), None stays None.

    >>> iso(0.0)
    '1970-01-01T00:00:00+00:00'
    """
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def customer_view(state: Any) -> dict[str, Any]:
    """The public look-up shape: segments plus the headline state fields."""
    return {
        "customer_id": state.customer_id,
        "segments": {dim: entry[0] for dim, entry in state.segments.items()},
        "state": {
            "orders": state.orders,
            "revenue": state.revenue,
            "items": state.items,
            "refunds": state.refunds,
            "first_seen": iso(state.first_seen),
            "last_seen": iso(state.last_seen),
            "last_order_at": iso(state.last_order_at),
            "cart_items": state.cart_items,
            "cart_value": state.cart_value,
            "events": state.events,
            "devices": state.devices,
            "geo": state.geo,
            "profile": state.profile,
        },
    }


async def customer(
    client: aioredis.Redis, prefix: str, partitions: int, customer_id: str
) -> dict[str, Any] | None:
    """The customer look-up (:func:`customer_view` of the stored state), or None when the
    customer has no state: one ``HGET`` of the document."""
    key = state_key(prefix, partition_for(customer_id, partitions), customer_id)
    state = _decode(await client.hget(key, "doc"))
    return None if state is None else customer_view(state)


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


async def segment_members(
    client: aioredis.Redis,
    prefix: str,
    partitions: int,
    dimension: str,
    segment: str,
    cursor: int,
    count: int,
) -> dict[str, Any] | None:
    """A page of a segment's members, ``{dimension, segment, members, next_cursor}``
    (``SSCAN``), or None when no partition's index registry names the segment."""
    n = partitions
    pipe = client.pipeline(transaction=False)
    for p in range(n):
        pipe.sismember(index_registry_key(prefix, p), index_key(prefix, p, dimension, segment))
    if not any(await pipe.execute()):
        return None
    # The cursor walks the partitions' indexes in turn: SSCAN cursor * n + partition.
    part, scan = cursor % n, cursor // n
    members: list[str] = []
    nxt: int | None = cursor
    while nxt is not None and len(members) < count:
        key = index_key(prefix, part, dimension, segment)
        scan, found = await client.sscan(key, cursor=scan, count=count - len(members))
        members.extend(_text(m) for m in found)
        scan = int(scan)
        if scan == 0:
            part += 1
        nxt = None if part >= n else scan * n + part
    return {
        "dimension": dimension,
        "segment": segment,
        "members": sorted(members),
        "next_cursor": None if nxt is None else str(nxt),
    }


async def load_model(client: aioredis.Redis, prefix: str) -> dict[str, Any] | None:
    """The behaviour-cluster model document the trainer published, or None before one."""
    raw = await client.get(model_key(prefix))
    return None if raw is None else dict(orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class ReadModel:
    """The reads above bound to a client and the deployment's key layout."""

    client: aioredis.Redis
    prefix: str
    partitions: int

    @classmethod
    def of(cls, client: aioredis.Redis, settings: Settings) -> ReadModel:
        return cls(client, settings.key_prefix, settings.topic_partitions)

    async def ping(self) -> None:
        """Raises if Redis does not answer (the readiness probe)."""
        await self.client.ping()

    async def customer(self, customer_id: str) -> dict[str, Any] | None:
        return await customer(self.client, self.prefix, self.partitions, customer_id)

    async def segment_sizes(self) -> dict[tuple[str, str], int]:
        return await segment_sizes(self.client, self.prefix, self.partitions)

    async def members(
        self, dimension: str, segment: str, cursor: int, count: int
    ) -> dict[str, Any] | None:
        return await segment_members(
            self.client, self.prefix, self.partitions, dimension, segment, cursor, count
        )

    async def sizes(self, count: int) -> dict[str, Any]:
        return await read_sizes(self.client, self.prefix, count)

    async def sizes_records(self, count: int) -> list[dict[str, str]]:
        return await sizes_records(self.client, self.prefix, count)

    async def flows(self, window_s: float, now: float) -> dict[str, Any]:
        return await read_flows(self.client, self.prefix, window_s, now)

    async def model(self) -> dict[str, Any] | None:
        return await load_model(self.client, self.prefix)


def read_once(settings: Settings, read: Callable[[ReadModel], Awaitable[T]]) -> T:
    """Run ``read`` on a read model of a client opened for it and closed after (for
    commands that read once and exit)."""

    async def run() -> T:
        client = async_redis_client(settings)
        try:
            return await read(ReadModel.of(client, settings))
        finally:
            await client.aclose()

    return asyncio.run(run())
