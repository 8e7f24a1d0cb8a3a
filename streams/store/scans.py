"""Blocking reads and scans over a deployment's keys for the tools: the stored states
``segstream verify`` compares, what the bench measures and polls, and the removal of a
bench's keys. Apart from state_store, which is the worker's asyncio write path.
"""

from __future__ import annotations

import statistics
from typing import Any

from segmenters.state import CustomerState
from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store.clients import redis_client
from streams.store.clocks import read_watermarks
from streams.store.documents import load_doc
from streams.store.keys import (
    applied_key,
    customer_of,
    ids_key,
    outbox_key,
    state_key,
    timers_key,
)


def stored_states(settings: Settings, customers: list[str]) -> dict[str, CustomerState]:
    """The stored state of ``customers`` and of every other customer with a state key."""
    client = redis_client(settings)
    out: dict[str, CustomerState] = {}
    found = set(customers)
    for key in client.scan_iter(match=f"{settings.key_prefix}:{{p*}}:c:*:state", count=1000):
        owner = customer_of(settings.key_prefix, key.decode())
        if owner is not None:
            found.add(owner[1])
    ordered = sorted(found)
    n = settings.topic_partitions
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        pipe = client.pipeline(transaction=False)
        for cid in chunk:
            pipe.hget(state_key(settings.key_prefix, partition_for(cid, n), cid), "doc")
        for cid, doc in zip(chunk, pipe.execute(), strict=True):
            if doc is not None:
                out[cid] = CustomerState.from_doc(load_doc(doc) or {})
    return out


def delete_prefix(settings: Settings) -> None:
    """Delete every key under the deployment's key prefix."""
    client = redis_client(settings)
    for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=1000):
        client.delete(key)


async def drop_prefix(client: Any, prefix: str) -> None:
    """Delete every key under ``prefix`` with an asyncio client, 500 keys a command."""
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await client.delete(*keys[i : i + 500])


def has_state(client: Any, settings: Settings, customer_id: str) -> bool:
    """Whether a state is stored for the customer (the worker has applied an event)."""
    key = state_key(
        settings.key_prefix, partition_for(customer_id, settings.topic_partitions), customer_id
    )
    return bool(client.exists(key))


def applied_offsets(client: Any, prefix: str, partitions: list[int]) -> dict[str, int]:
    """``topic:partition`` -> the last offset applied, as the worker records it in the
    partitions' ``<p>:applied`` hashes with each batch's states."""
    pipe = client.pipeline(transaction=False)
    for p in partitions:
        pipe.hgetall(applied_key(prefix, p))
    applied: dict[str, int] = {}
    for row in pipe.execute():
        applied.update({k.decode(): int(v) for k, v in row.items()})
    return applied


def due_now(settings: Settings) -> int | None:
    """Timers due by the partition clocks the worker saved (watermark - lateness), summed
    over partitions; None while no clock is saved."""
    client = redis_client(settings)
    saved = read_watermarks(client, settings.key_prefix)
    if not saved:
        return None
    pipe = client.pipeline(transaction=False)
    for p, watermark in saved.items():
        clock = watermark - settings.allowed_lateness_s
        pipe.zcount(timers_key(settings.key_prefix, p), "-inf", clock)
    return sum(int(n) for n in pipe.execute())


def redis_memory(settings: Settings, *, sample: int) -> dict[str, float]:
    """``MEMORY USAGE`` of a sample of customers' keys (the state hash, which holds the
    action doc in its field ``act``; the applied-id set; the outbox), and of the shared
    keys per customer."""
    client = redis_client(settings)
    prefix = settings.key_prefix
    own: list[int] = []
    shared = 0
    customers = 0
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.decode()
        owner = customer_of(prefix, name)
        if owner is not None:
            if name.endswith(":state"):
                customers += 1
                if len(own) < sample:
                    p, cid = owner
                    total = 0
                    for k in (name, ids_key(prefix, p, cid), outbox_key(prefix, p, cid)):
                        total += int(client.memory_usage(k, samples=0) or 0)
                    own.append(total)
        else:
            shared += int(client.memory_usage(name, samples=0) or 0)
    if not own:
        return {}
    return {
        "customers": customers,
        "per_customer_mean": statistics.fmean(own),
        "per_customer_p95": sorted(own)[int(0.95 * (len(own) - 1))],
        "shared_per_customer": shared / max(1, customers),
    }


def server_version(settings: Settings) -> str:
    """The Redis server's version (``INFO``)."""
    return str(redis_client(settings).info()["redis_version"])
