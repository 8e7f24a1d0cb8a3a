"""Customer state in Redis: batched loads and optimistic, atomic writes.

A worker owns a customer's partition, so it keeps recently used states in memory and a
steady-state batch costs one Redis round trip: a pipeline of ``commit`` scripts. Each
script writes the new state only if the stored revision is still the one the worker
computed from (compare-and-set); otherwise it returns the stored state and the worker
recomputes. Misses cost one more round trip, a pipelined read, once per customer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from segmenters.state import CustomerState

from .keys import clock_key, index_key, outbox_key, rfm_key, state_key, timers_key

COMMIT_LUA = """
local rev = redis.call('HGET', KEYS[1], 'rev') or '0'
if rev ~= ARGV[1] then
  return {0, rev, redis.call('HGET', KEYS[1], 'doc') or ''}
end
local new = tonumber(rev) + 1
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'rev', new)
local n = tonumber(ARGV[3])
if n > 0 then
  for i = 1, n do redis.call('RPUSH', KEYS[2], ARGV[4 + i]) end
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]) - 16, -1)
  redis.call('EXPIRE', KEYS[2], 86400)
end
return {1, tostring(new), ''}
"""

OUTBOX_KEEP = 16


@dataclass(slots=True)
class Loaded:
    rev: int
    state: CustomerState | None
    #: Changes written but not yet confirmed delivered (only on a load from Redis).
    unsent: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Write:
    customer_id: str
    expected_rev: int
    state: CustomerState
    #: Outbox entries (JSON bytes): changes kept so a redelivered event can re-send them.
    outbox: list[bytes] = field(default_factory=list)
    #: Segment-index updates: (add?, dimension, segment).
    index_ops: list[tuple[bool, str, str]] = field(default_factory=list)
    #: Input partition of the customer (its timer lives in that partition's due index).
    partition: int | None = None
    #: Next timer deadline (event time), or None: no timer.
    due: float | None = None
    #: Shared RFM histogram moves: (histogram, bucket, delta).
    hist_ops: list[tuple[str, int, int]] = field(default_factory=list)


class StateStore:
    def __init__(self, client: aioredis.Redis, *, prefix: str, cache_size: int) -> None:
        self.client = client
        self.prefix = prefix
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._commit = client.register_script(COMMIT_LUA)
        self.round_trips = 0
        #: Customers whose outbox was delivered; emptied in the next write round trip.
        self._delivered: set[str] = set()

    def _remember(self, customer_id: str, loaded: Loaded) -> None:
        if self.cache_size <= 0:
            return
        self._cache[customer_id] = loaded
        self._cache.move_to_end(customer_id)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def forget(self, customer_ids: Iterable[str] | None = None) -> None:
        if customer_ids is None:
            self._cache.clear()
        else:
            for cid in customer_ids:
                self._cache.pop(cid, None)

    async def load(self, customer_ids: Iterable[str]) -> dict[str, Loaded]:
        """States of these customers: from memory, and the rest in one pipelined read."""
        found: dict[str, Loaded] = {}
        missing = []
        for cid in customer_ids:
            hit = self._cache.get(cid)
            if hit is None:
                missing.append(cid)
            else:
                found[cid] = hit
        if missing:
            pipe = self.client.pipeline(transaction=False)
            for cid in missing:
                pipe.hmget(state_key(self.prefix, cid), "rev", "doc")
                pipe.lrange(outbox_key(self.prefix, cid), 0, -1)
            rows = await pipe.execute()
            self.round_trips += 1
            for i, cid in enumerate(missing):
                rev, doc = rows[2 * i]
                loaded = Loaded(int(rev or 0), _decode(doc), unsent=list(rows[2 * i + 1]))
                found[cid] = loaded
                self._remember(cid, Loaded(loaded.rev, loaded.state))
        return found

    def delivered(self, customer_ids: Iterable[str]) -> None:
        """These customers' changes reached Kafka: their outboxes go with the next write."""
        self._delivered.update(customer_ids)

    async def commit(self, writes: list[Write]) -> dict[str, Loaded]:
        """Write in one round trip; return the fresh state of customers whose write lost."""
        if not writes and not self._delivered:
            return {}
        pipe = self.client.pipeline(transaction=False)
        cleared = len(self._delivered)
        for cid in self._delivered:  # before the new appends of this round trip
            pipe.delete(outbox_key(self.prefix, cid))
        self._delivered.clear()
        for w in writes:
            args: list[Any] = [w.expected_rev, _encode(w.state), len(w.outbox), OUTBOX_KEEP]
            args.extend(w.outbox)
            await self._commit(  # queues onto the pipeline; no round trip here
                keys=[
                    state_key(self.prefix, w.customer_id),
                    outbox_key(self.prefix, w.customer_id),
                ],
                args=args,
                client=pipe,
            )
            for add, dimension, segment in w.index_ops:
                key = index_key(self.prefix, dimension, segment)
                if add:
                    pipe.sadd(key, w.customer_id)
                else:
                    pipe.srem(key, w.customer_id)
            for histogram, bucket, delta in w.hist_ops:
                pipe.hincrby(rfm_key(self.prefix, histogram), str(bucket), delta)
            if w.partition is not None:
                timers = timers_key(self.prefix, w.partition)
                if w.due is None:
                    pipe.zrem(timers, w.customer_id)
                else:
                    pipe.zadd(timers, {w.customer_id: w.due})
        results = await pipe.execute()
        self.round_trips += 1
        conflicts: dict[str, Loaded] = {}
        i = cleared
        for w in writes:
            ok, rev, doc = results[i]
            i += 1 + len(w.index_ops) + len(w.hist_ops) + (w.partition is not None)
            if int(ok) == 1:
                self._remember(w.customer_id, Loaded(int(rev), w.state))
            else:
                fresh = Loaded(int(rev), _decode(doc))
                self._remember(w.customer_id, fresh)
                conflicts[w.customer_id] = fresh
        return conflicts

    async def due_timers(self, clocks: dict[int, float], limit: int) -> dict[int, list[str]]:
        """Customers whose timer is due, per partition: one round trip, cost ~ due ones."""
        if not clocks:
            return {}
        pipe = self.client.pipeline(transaction=False)
        parts = sorted(clocks)
        for p in parts:
            pipe.zrangebyscore(timers_key(self.prefix, p), "-inf", clocks[p], start=0, num=limit)
        rows = await pipe.execute()
        self.round_trips += 1
        return {p: [c.decode() for c in row] for p, row in zip(parts, rows, strict=True)}

    async def rfm_counts(self) -> dict[str, dict[int, int]]:
        """The three shared RFM histograms, bucket -> buyers."""
        pipe = self.client.pipeline(transaction=False)
        names = ("recency", "frequency", "monetary")
        for name in names:
            pipe.hgetall(rfm_key(self.prefix, name))
        rows = await pipe.execute()
        self.round_trips += 1
        return {
            n: {int(k): int(v) for k, v in row.items()} for n, row in zip(names, rows, strict=True)
        }

    async def load_clocks(self) -> dict[int, float]:
        raw = await self.client.hgetall(clock_key(self.prefix))
        return {int(k): float(v) for k, v in raw.items()}

    async def save_clocks(self, watermarks: dict[int, float]) -> None:
        if watermarks:
            await self.client.hset(
                clock_key(self.prefix), mapping={str(k): repr(v) for k, v in watermarks.items()}
            )

    async def get(self, customer_id: str) -> CustomerState | None:
        doc = await self.client.hget(state_key(self.prefix, customer_id), "doc")
        return _decode(doc)


def _encode(state: CustomerState) -> bytes:
    return orjson.dumps(state.to_doc())


def _decode(doc: bytes | str | None) -> CustomerState | None:
    if not doc:
        return None
    return CustomerState.from_doc(orjson.loads(doc))
