"""Partition clocks in Redis: the saved watermarks (``<prefix>:clock``, partition ->
largest event time applied) and the reset records (``<prefix>:clock:reset``).

The only module that reads or writes those two hashes: the worker's clocks
(``streams.worker.clocks``, asyncio client) and ``segstream clock`` show and reset
(``streams.worker.clock``, blocking client) share the formats kept here.
"""

from __future__ import annotations

from typing import Any

import orjson

from streams.store.keys import clock_key, clock_reset_key


def watermarks_of(raw: dict[Any, Any]) -> dict[int, float]:
    """The hash's fields as partition -> watermark.

    >>> watermarks_of({b"0": b"1000.5"})
    {0: 1000.5}
    """
    return {int(k): float(v) for k, v in raw.items()}


def resets_of(raw: dict[Any, Any]) -> dict[int, dict[str, Any]]:
    """The reset records as partition -> marker (``id``, ``watermark``, ``clock``, ``at``);
    a field that is not one is skipped.

    >>> resets_of({b"1": b'{"id": "a", "watermark": 5.0}', b"2": b"?"})
    {1: {'id': 'a', 'watermark': 5.0}}
    """
    out = {}
    for k, v in raw.items():
        try:
            out[int(k)] = dict(orjson.loads(v))
        except (ValueError, TypeError, orjson.JSONDecodeError):
            continue  # not ours: ignore rather than stop the timer loop
    return out


async def load_watermarks(client: Any, prefix: str) -> dict[int, float]:
    """Every partition's saved watermark (asyncio client)."""
    return watermarks_of(await client.hgetall(clock_key(prefix)))


async def save_watermarks(client: Any, prefix: str, watermarks: dict[int, float]) -> None:
    """Save these partitions' watermarks (asyncio client); the others' stay."""
    if watermarks:
        await client.hset(
            clock_key(prefix), mapping={str(k): repr(v) for k, v in watermarks.items()}
        )


async def load_resets(client: Any, prefix: str) -> dict[int, dict[str, Any]]:
    """The last reset record of each partition (asyncio client)."""
    return resets_of(await client.hgetall(clock_reset_key(prefix)))


def read_watermarks(client: Any, prefix: str) -> dict[int, float]:
    """Every partition's saved watermark (blocking client)."""
    return watermarks_of(client.hgetall(clock_key(prefix)))


def write_reset(client: Any, prefix: str, partition: int, marker: dict[str, Any]) -> float | None:
    """Record a reset (``marker``) and set the partition's watermark to its ``watermark``
    (blocking client). Returns the watermark saved before, if any."""
    field = str(partition)
    before = client.hget(clock_key(prefix), field)
    # The marker first: a worker that saves its old watermark in between adopts the
    # reset at its next save and writes the new one.
    client.hset(clock_reset_key(prefix), field, orjson.dumps(marker))
    client.hset(clock_key(prefix), field, repr(marker["watermark"]))
    return None if before is None else float(before)
