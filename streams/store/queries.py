"""The read model: what the HTTP API, the CLI and the dashboard read from Redis.

One function per read, and one place for its public shape, so ``segstream customer ID
--json`` and ``GET /customers/{id}`` agree and ``segstream segments sizes`` and
``GET /segments`` count alike. :class:`ReadModel` binds an asyncio client to the key
prefix and the partition count; the time series the dashboard charts are read in
``series``, the uplift report's records in ``reports``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis

from segmenters.clv import day_of
from segmenters.clv.model import ClvModel
from segmenters.eventtime import partition_clock
from segmenters.reports import ReportRules, auto_every
from segmenters.reports import history as size_history
from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store.clients import async_redis_client
from streams.store.clocks import watermarks_of
from streams.store.clv import model_of, summary_of
from streams.store.documents import _decode, _text
from streams.store.keys import (
    clock_key,
    clv_model_key,
    index_key,
    index_registry_key,
    model_key,
    split_index_key,
    state_key,
)
from streams.store.segment_report import read_report
from streams.store.series import (
    ops_history,
    read_flows,
    read_sizes,
    sizes_history,
    sizes_records,
)

T = TypeVar("T")


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO-8601 (UTC), None stays None.

    >>> iso(0.0)
    '1970-01-01T00:00:00+00:00'
    """
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def customer_view(state: Any, predictions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The public look-up shape: segments, the headline state fields and the value
    model's predictions (None: no model yet, or not a buyer)."""
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
        "predictions": predictions,
    }


def lookup_clock(
    watermarks: Mapping[int, float], partition: int, *, lateness: float, mode: str, wall: float
) -> float | None:
    """A partition's clock from the saved watermarks, as the worker's
    (``segmenters.eventtime.partition_clock``); a partition without one yet counts to
    the latest of the others, as the value-model trainer does.

    >>> lookup_clock({0: 100.0, 1: 300.0}, 0, lateness=10, mode="event", wall=1e9)
    90.0
    >>> lookup_clock({1: 300.0}, 0, lateness=10, mode="event", wall=1e9)
    290.0
    >>> lookup_clock({}, 0, lateness=10, mode="event", wall=1e9) is None
    True
    >>> lookup_clock({}, 0, lateness=10, mode="live", wall=500.0)
    500.0
    """
    mark = watermarks.get(partition, max(watermarks.values(), default=None))
    return partition_clock(mark, lateness=lateness, mode=mode, wall=wall)


def predictions_of(
    state: Any, model: ClvModel | None, clock: float | None, horizon_days: float
) -> dict[str, Any] | None:
    """A buyer's predictions with T counted to the clock's day, or None without a
    model, a clock, or a purchase day on or before it."""
    if model is None or clock is None:
        return None
    summary = summary_of(state, day_of(clock))
    return None if summary is None else dict(model.predict(summary, horizon_days).as_dict())


#: Segment entries and actions the look-up's activity lists at most.
ACTIVITY_ROWS = 10
#: The ops history stops this long (at most one recording interval) before now: a worker
#: records a period just after it ends, so the last bucket is complete when shown.
OPS_GRACE_S = 5.0


def customer_activity(state: Any, act: Any) -> dict[str, Any]:
    """The customer's latest segment entries (per dimension, the segment now and when it
    was entered, newest first) and its actions (last sends, scheduled ones, experiment
    assignments), from the state and the action document (``act``: its stored JSON, or
    None before any action)."""
    entries = sorted(
        (
            {
                "dimension": dim,
                "segment": str(entry[0]),
                "at": iso(entry[1]) if len(entry) > 1 else None,
                "changes": int(state.positions.get(dim, 0)),
            }
            for dim, entry in state.segments.items()
        ),
        key=lambda row: row["at"] or "",
        reverse=True,
    )[:ACTIVITY_ROWS]
    doc = orjson.loads(act) if act else {}
    acts = doc.get("state") or {}
    last = sorted(
        ({"action": a, "at": iso(float(t))} for a, t in (acts.get("last") or {}).items()),
        key=lambda row: row["at"] or "",
        reverse=True,
    )[:ACTIVITY_ROWS]
    pending = [
        {"action": p["action"], "due_at": iso(float(p["due_at"]))}
        for p in (acts.get("pending") or [])[:ACTIVITY_ROWS]
    ]
    assigned = [
        {"experiment": exp, "action": a, "group": v[0], "at": iso(float(v[1]))}
        for exp, by_action in (doc.get("first") or {}).items()
        for a, v in by_action.items()
    ][:ACTIVITY_ROWS]
    return {"entries": entries, "actions": {"last": last, "pending": pending, "assigned": assigned}}


async def customer(
    client: aioredis.Redis,
    prefix: str,
    partitions: int,
    customer_id: str,
    *,
    lateness: float = 0.0,
    clock_mode: str = "event",
    horizon_days: float = 365.0,
    wall: Callable[[], float] = time.time,
    activity: bool = False,
) -> dict[str, Any] | None:
    """The customer look-up (:func:`customer_view` of the stored state), or None when the
    customer has no state: the document, the value model and the saved clocks in one
    round trip. With ``activity``, the view adds ``activity`` (:func:`customer_activity`:
    the action document is read in the same round trip)."""
    partition = partition_for(customer_id, partitions)
    key = state_key(prefix, partition, customer_id)
    pipe = client.pipeline(transaction=False)
    pipe.hget(key, "doc")
    pipe.get(clv_model_key(prefix))
    pipe.hgetall(clock_key(prefix))
    if activity:
        pipe.hget(key, "act")
    doc, model, marks, *act = await pipe.execute()
    state = _decode(doc)
    if state is None:
        return None
    clock = lookup_clock(
        watermarks_of(marks), partition, lateness=lateness, mode=clock_mode, wall=wall()
    )
    view = customer_view(state, predictions_of(state, model_of(model), clock, horizon_days))
    if activity:
        view["activity"] = customer_activity(state, act[0])
    return view


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
    #: The worker's clock settings and the predictions' horizon (customer look-ups).
    lateness: float = 0.0
    clock_mode: str = "event"
    horizon_days: float = 365.0
    #: The sizes' recording interval, and the segment report's thresholds.
    sizes_every_s: float = 60.0
    #: How often the workers record their operating figures (the ops history's finest step).
    history_every_s: float = 10.0
    over_broad_share: float = 0.5
    stale_days: float = 14.0

    @classmethod
    def of(cls, client: aioredis.Redis, settings: Settings) -> ReadModel:
        return cls(
            client,
            settings.key_prefix,
            settings.topic_partitions,
            lateness=settings.allowed_lateness_s,
            clock_mode=settings.clock,
            horizon_days=settings.clv_horizon_days,
            sizes_every_s=settings.sizes_every_s,
            history_every_s=settings.history_every_s,
            over_broad_share=settings.report_over_broad_share,
            stale_days=settings.report_stale_days,
        )

    async def ping(self) -> None:
        """Raises if Redis does not answer (the readiness probe)."""
        await self.client.ping()

    async def customer(self, customer_id: str, *, activity: bool = False) -> dict[str, Any] | None:
        return await customer(
            self.client,
            self.prefix,
            self.partitions,
            customer_id,
            lateness=self.lateness,
            clock_mode=self.clock_mode,
            horizon_days=self.horizon_days,
            activity=activity,
        )

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

    async def history(
        self,
        window_s: float,
        now: float,
        *,
        every: float | None = None,
        dimension: str | None = None,
        segment: str | None = None,
    ) -> dict[str, Any]:
        """Sizes over the last ``window_s`` seconds (wall time), one point per ``every``
        seconds (by default a step giving at most 200 points), and the change over them:
        ``{since, until, every, at, dimensions, change}`` (:func:`segmenters.reports.history`)."""
        step = every or auto_every(window_s, self.sizes_every_s)
        records = await sizes_history(self.client, self.prefix, now - window_s, now, step)
        return {
            "since": now - window_s,
            "until": now,
            "every": step,
            **size_history(records, dimension, segment),
        }

    async def ops(
        self, window_s: float, now: float, *, every: float | None = None
    ) -> dict[str, Any]:
        """The workers' operating figures over the last ``window_s`` seconds, one point per
        ``every`` seconds (at least the recording interval; by default at most 200 points),
        up to the last bucket every worker has recorded (:func:`ops_history`)."""
        step = max(every or auto_every(window_s, self.history_every_s), self.history_every_s)
        until = now - min(self.history_every_s, OPS_GRACE_S)
        return await ops_history(self.client, self.prefix, now - window_s, until, step)

    async def report(
        self, window_s: float, now: float, *, dimension: str | None = None, sample: int = 5000
    ) -> dict[str, Any]:
        """The segment report (``segmenters.reports.segment_report``) over the last
        ``window_s`` seconds, reading at most ``sample`` members per segment."""
        rules = ReportRules(
            window_s=window_s,
            over_broad_share=self.over_broad_share,
            stale_days=self.stale_days,
            horizon_days=self.horizon_days,
            sample=sample,
        )

        def clock_of(partition: int, marks: Mapping[int, float]) -> float | None:
            return lookup_clock(
                marks, partition, lateness=self.lateness, mode=self.clock_mode, wall=now
            )

        return await read_report(
            self.client,
            self.prefix,
            self.partitions,
            sizes=await self.segment_sizes(),
            rules=rules,
            now=now,
            clock_of=clock_of,
            dimension=dimension,
        )

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
