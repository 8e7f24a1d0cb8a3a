"""The state store: batched loads from memory and Redis, optimistic atomic writes (one
script call per partition per batch) and the progress each write records."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from segmenters.actions.document import ActionDoc
from segmenters.effects import HISTOGRAMS
from segmenters.reports import size_field
from segmenters.state import CustomerState
from streams.kafka.partitioner import Homes
from streams.store.documents import _decode, _encode, decode_actions
from streams.store.keys import (
    ScriptKeys,
    applied_key,
    assigned_key,
    customer_head,
    entered_key,
    experiment_actions_key,
    index_key,
    index_registry_key,
    members_key,
    model_key,
    outbox_key,
    rfm_key,
    sizes_key,
    sizes_slot_key,
    state_key,
    suppressed_key,
    timers_key,
)
from streams.store.queries import load_model, segment_sizes
from streams.store.scripts import COMMIT_LUA, LOAD_LUA, OUTBOX_KEEP


class ProgressLost(RuntimeError):
    """Redis holds less partition progress than this worker recorded: it lost writes."""


@dataclass(slots=True)
class Loaded:
    rev: int
    state: CustomerState | None
    #: Outbox entries (segment changes, action messages) written but not yet confirmed
    #: delivered (only on a load from Redis).
    unsent: list[bytes] = field(default_factory=list)
    #: The customer's action doc (action state, first assignments, purchases), if any.
    actions: ActionDoc | None = None


@dataclass(slots=True)
class Write:
    customer_id: str
    expected_rev: int
    state: CustomerState
    #: Outbox entries (JSON bytes): changes kept so a redelivered event can re-send them.
    outbox: list[bytes] = field(default_factory=list)
    #: Segment-index updates: (add?, dimension, segment).
    index_ops: list[tuple[bool, str, str]] = field(default_factory=list)
    #: Next timer deadline (event time), or None: no timer.
    due: float | None = None
    #: A customer seen for the first time (joins its partition's member set).
    new: bool = False
    #: Shared RFM histogram moves: (histogram, bucket, delta).
    hist_ops: list[tuple[str, int, int]] = field(default_factory=list)
    #: Digests (``state.id_number``) of the events applied by this write.
    ids: list[int] = field(default_factory=list)
    #: The action doc after this write; stored (field ``act`` of the same hash) only
    #: when ``actions_changed``.
    actions: ActionDoc | None = None
    actions_changed: bool = False
    #: Uplift records: first assignments (experiment, action, group, at) and counted
    #: suppressions (experiment, action, reason).
    assigned: list[tuple[str, str, str, float]] = field(default_factory=list)
    suppressed: list[tuple[str, str, str]] = field(default_factory=list)
    #: ``encode_state(state)`` when the caller has it already (encoded right after the
    #: fold, while the state is still in the CPU's caches); else encoded by the commit.
    doc: bytes | None = None


@dataclass(slots=True)
class Rejected:
    """A write that lost: the stored state now, and the ids of events it already has."""

    loaded: Loaded
    seen: set[int] = field(default_factory=set)


class StateStore:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        partitions: int,
        cache_size: int,
        dedupe_retention_s: float = 30 * 86400,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.partitions = partitions
        self.cache_size = cache_size
        self.dedupe_retention_s = max(1, int(dedupe_retention_s))
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self.home = Homes(partitions)
        self.round_trips = 0
        #: Seconds spent encoding writes (documents, script arguments), for the bench.
        self.encode_s = 0.0
        #: Customers whose outbox was delivered; emptied in the next write round trip.
        self._delivered: set[str] = set()
        #: "<topic>:<partition>" -> the offset this worker last recorded in ``<p>:applied``
        #: (or read there on assignment); every write checks Redis still has it.
        self.progress: dict[str, int] = {}

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
            # One script call per partition, not two commands per customer: a catch-up
            # over many new customers spent more in packing commands than in Redis.
            by_partition: dict[int, list[str]] = {}
            for cid in missing:
                by_partition.setdefault(self.home(cid), []).append(cid)
            pipe = self.client.pipeline(transaction=False)
            for p, cids in by_partition.items():
                keys = []
                for cid in cids:
                    keys += [state_key(self.prefix, p, cid), outbox_key(self.prefix, p, cid)]
                pipe.eval(LOAD_LUA, len(keys), *keys)
            rows = await pipe.execute()
            self.round_trips += 1
            for cids, replies in zip(by_partition.values(), rows, strict=True):
                for cid, (rev, doc, act, unsent) in zip(cids, replies, strict=True):
                    loaded = Loaded(
                        int(rev or 0), _decode(doc), list(unsent), decode_actions(act, cid)
                    )
                    found[cid] = loaded
                    self._remember(cid, Loaded(loaded.rev, loaded.state, actions=loaded.actions))
        return found

    def delivered(self, customer_ids: Iterable[str]) -> None:
        """These customers' changes reached Kafka: their outboxes go with the next write."""
        self._delivered.update(customer_ids)

    async def commit(
        self, writes: list[Write], applied: dict[str, int] | None = None
    ) -> dict[str, Rejected]:
        """Write in one round trip; return, for customers whose write lost, the stored
        state and the ids of events it had already applied. ``applied``: the input
        offsets the batch applied, recorded atomically with it (raises ProgressLost if
        Redis has less progress than this worker recorded before)."""
        if not writes and not self._delivered and not applied:
            return {}
        started = time.perf_counter()
        pipe = self.client.pipeline(transaction=False)
        # Delivered outboxes are deleted by the same script calls, before their appends.
        delivered, self._delivered = self._delivered, set()
        clear: dict[int, list[str]] = {}
        for cid in delivered:
            clear.setdefault(self.home(cid), []).append(cid)
        by_partition: dict[int, list[Write]] = {}
        for w in writes:
            by_partition.setdefault(self.home(w.customer_id), []).append(w)
        applied_by = by_partition_number(applied or {})
        expected_by = by_partition_number(self.progress)
        calls: list[list[Write]] = []  # the writes of each queued Lua call, in order
        for p in sorted({*by_partition, *applied_by, *expected_by, *clear}):
            part = by_partition.get(p, [])
            self._queue_commit(
                pipe, p, part, applied_by.get(p, {}), expected_by.get(p, {}), clear.get(p, [])
            )
            calls.append(part)
        self.encode_s += time.perf_counter() - started
        try:
            results = await pipe.execute()
        except ResponseError as exc:
            self._delivered |= delivered  # not deleted: the next write tries again
            if "SEGSTREAM_PROGRESS_LOST" in str(exc):
                raise ProgressLost(str(exc)) from exc
            raise
        except BaseException:
            self._delivered |= delivered
            raise
        self.round_trips += 1
        # A write that won replies its new revision (an integer), one that lost
        # [0 or 2, stored rev, doc, act(, ids seen)].
        conflicts: dict[str, Rejected] = {}
        remember = self._remember
        for part, call in zip(calls, results, strict=True):
            for w, reply in zip(part, call, strict=True):
                cid = w.customer_id
                if type(reply) is int:
                    remember(cid, Loaded(reply, w.state, actions=w.actions))
                    continue
                _ok, rev, doc, act, *seen = reply
                fresh = Loaded(int(rev), _decode(doc), actions=decode_actions(act, cid))
                remember(cid, fresh)
                ids = {int(i) for i in seen[0]} if seen else set()
                conflicts[cid] = Rejected(fresh, ids)
        if applied and not conflicts:
            for f, o in applied.items():
                self.progress[f] = max(o, self.progress.get(f, -1))
        return conflicts

    def _queue_commit(
        self,
        pipe: Any,
        partition: int,
        writes: list[Write],
        applied: dict[str, int],
        expected: dict[str, int],
        clear: Iterable[str] = (),
    ) -> None:
        """Queue one ``COMMIT_LUA`` call for a partition's writes and progress; ``clear``:
        customers whose outbox was delivered (deleted first)."""
        prefix, p = self.prefix, partition
        script_keys = ScriptKeys()
        keys, ref = script_keys.keys, script_keys.ref
        head = customer_head(prefix, p)
        index_refs: dict[tuple[str, str], int] = {}
        rfm_refs: dict[str, int] = {}
        joined = 0  # a write of a new customer: the call needs the member set
        batch = []
        # ARGV[5]: the documents and outbox entries, end to end (binary-safe, outside the
        # JSON, one argument: each one more costs its packing); ``at`` is the next byte,
        # 1-based as Lua's string.sub counts.
        blob: list[bytes] = []
        at = 1
        for w in writes:
            cid = w.customer_id
            base = head + cid
            doc = w.doc if w.doc is not None else _encode(w.state)
            blob.append(doc)
            item: dict[str, Any] = {
                "c": cid,
                "s": ref(base + ":state"),
                "r": str(w.expected_rev),
                "d": (at, at + len(doc) - 1),
            }
            at += len(doc)
            if w.ids:
                item["ek"] = ref(base + ":ids")
                item["e"] = [str(i) for i in w.ids]  # strings: cjson would round big ints
            if w.outbox:
                item["ok"] = ref(base + ":outbox")
                spans = []
                for entry in w.outbox:
                    blob.append(entry)
                    spans += (at, at + len(entry) - 1)
                    at += len(entry)
                item["o"] = spans
            if w.index_ops:
                ops = []
                for add, dim, seg in w.index_ops:
                    k = index_refs.get((dim, seg))
                    if k is None:
                        k = index_refs[(dim, seg)] = ref(index_key(prefix, p, dim, seg))
                    ops.append((1 if add else 0, k))
                item["x"] = ops
            if w.hist_ops:
                hops = []
                for hist, b, delta in w.hist_ops:
                    k = rfm_refs.get(hist)
                    if k is None:
                        k = rfm_refs[hist] = ref(rfm_key(prefix, p, hist))
                    hops.append((k, str(b), delta))
                item["h"] = hops
            if w.new:
                item["m"] = joined = 1
            if w.due is not None:
                item["due"] = repr(w.due)  # a string: Lua numbers would lose digits
            if w.actions is not None and w.actions_changed:
                act = orjson.dumps(w.actions.to_doc())
                blob.append(act)
                item["a"] = (at, at + len(act) - 1)
                at += len(act)
            if w.assigned:
                item["g"] = [
                    [
                        ref(assigned_key(prefix, p, exp, action)),
                        f"{group} {at_!r}",
                        ref(experiment_actions_key(prefix, p, exp)),
                        action,
                    ]
                    for exp, action, group, at_ in w.assigned
                ]
            if w.suppressed:
                item["u"] = [
                    [
                        ref(suppressed_key(prefix, p, exp)),
                        f"{action} {reason}",
                        ref(experiment_actions_key(prefix, p, exp)),
                        action,
                    ]
                    for exp, action, reason in w.suppressed
                ]
            batch.append(item)
        progress = progress_arg(lambda: ref(applied_key(prefix, p)), applied, expected)
        cleared = [ref(head + cid + ":outbox") for cid in clear]
        registry = ref(index_registry_key(prefix, p))
        arg: dict[str, Any] = {"w": batch, "d": cleared}
        if writes:
            arg["t"] = ref(timers_key(prefix, p))
        if joined:
            arg["m"] = ref(members_key(prefix, p))
        # EVAL, not EVALSHA: nothing to reload after a restart or a failover, and no
        # SCRIPT EXISTS round trip per pipeline (redis-py's registered scripts add one).
        pipe.eval(
            COMMIT_LUA,
            len(keys),
            *keys,
            orjson.dumps(arg),
            OUTBOX_KEEP,
            registry,
            self.dedupe_retention_s,
            b"".join(blob),
            progress,
        )

    async def applied_offsets(self) -> dict[str, int]:
        """``<p>:{p<n>}:applied`` of every partition: "<topic>:<partition>" -> last offset
        applied, as Redis has it."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hgetall(applied_key(self.prefix, p))
        rows = await pipe.execute()
        self.round_trips += 1
        return {k.decode(): int(v) for row in rows for k, v in row.items()}

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

    async def sweep(self, partition: int, cursor: int, count: int) -> tuple[int, list[str]]:
        """The next members of a partition for the rescoring sweep (``SSCAN``)."""
        cursor, members = await self.client.sscan(
            members_key(self.prefix, partition), cursor=cursor, count=count
        )
        self.round_trips += 1
        return int(cursor), [m.decode() for m in members]

    async def record_sizes(self, at: float, keep: int, every_s: float) -> dict[str, int]:
        """Append every segment's size to the sizes stream, stamped ``at`` (wall time),
        unless another worker recorded this slot of ``every_s`` seconds already: the
        first to take the slot's key (``SET NX``) records it, so a deployment writes one
        record per slot however many workers it runs."""
        slot = int(at // every_s)
        lease = max(1, math.ceil(2 * every_s))
        if not await self.client.set(sizes_slot_key(self.prefix, slot), b"1", nx=True, ex=lease):
            self.round_trips += 1
            return {}
        sizes = {
            size_field(dim, seg): n
            for (dim, seg), n in (
                await segment_sizes(self.client, self.prefix, self.partitions)
            ).items()
        }
        self.round_trips += 3
        if not sizes:
            return {}
        entry = {"at": repr(at), **{k: str(v) for k, v in sizes.items()}}
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(sizes_key(self.prefix), entry, maxlen=keep, approximate=True)
        pipe.hsetnx(entered_key(self.prefix), "since", repr(at))  # entries kept from here
        await pipe.execute()
        return sizes

    async def rfm_counts(self) -> dict[str, dict[int, int]]:
        """The population's shared histograms (the partitions' summed), bucket -> buyers:
        RFM's three and the alive buyers' CLV (``value``)."""
        pipe = self.client.pipeline(transaction=False)
        names = HISTOGRAMS
        for p in range(self.partitions):
            for name in names:
                pipe.hgetall(rfm_key(self.prefix, p, name))
        rows = await pipe.execute()
        self.round_trips += 1
        counts: dict[str, dict[int, int]] = {n: {} for n in names}
        for i, row in enumerate(rows):
            into = counts[names[i % len(names)]]
            for k, v in row.items():
                into[int(k)] = into.get(int(k), 0) + int(v)
        return counts

    async def load_model(self) -> dict[str, Any] | None:
        return await load_model(self.client, self.prefix)

    async def save_model(self, doc: dict[str, Any]) -> None:
        await self.client.set(model_key(self.prefix), orjson.dumps(doc))


def progress_arg(
    key: Callable[[], int], applied: dict[str, int], expected: dict[str, int]
) -> bytes:
    """The ``progress`` argument of a commit script (``PROGRESS_CHECK_LUA``); ``key`` adds the
    progress hash to the call's KEYS, only when there is progress to check or record.

    >>> progress_arg(lambda: 3, {"events.cart:1": 9}, {})
    b'{"k":3,"x":{},"a":{"events.cart:1":"9"}}'
    >>> progress_arg(lambda: 3, {}, {})
    b'{}'
    """
    if not applied and not expected:
        return b"{}"
    return orjson.dumps(
        {
            "k": key(),
            "x": {f: str(o) for f, o in expected.items()},  # strings: Lua numbers round
            "a": {f: str(o) for f, o in applied.items()},
        }
    )


def by_partition_number(offsets: dict[str, int]) -> dict[int, dict[str, int]]:
    """``{"<topic>:<partition>": offset}`` grouped by partition number.

    >>> by_partition_number({"events.cart:1": 5, "events.browse:1": 7, "events.cart:0": 2})
    {1: {'events.cart:1': 5, 'events.browse:1': 7}, 0: {'events.cart:0': 2}}
    """
    out: dict[int, dict[str, int]] = {}
    for f, o in offsets.items():
        out.setdefault(int(f.rpartition(":")[2]), {})[f] = o
    return out
