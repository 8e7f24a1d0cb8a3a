"""Time-driven segments: per-partition event-time clocks, due timers, RFM refresh.

Each input partition has a clock: its watermark (the largest ``occurred_at`` applied)
minus the allowed lateness. In ``live`` mode an idle partition's clock also follows wall
time. Every ``timer_interval_s`` the worker fires, for the partitions it owns, the timers
due by their clocks: one ``ZRANGEBYSCORE`` per partition, so a scan costs what is due,
never what is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from segmenters.clustering import ClusterModel
from segmenters.core import Context
from segmenters.dimensions.custom import SegmentConfigError, parse_segments
from segmenters.dimensions.rfm import RfmQuantiles
from streams.settings import Settings
from streams.store.keys import timers_key
from streams.worker.clock import ClockResets
from streams.worker.pipeline import BatchProcessor, BatchStats
from streams.worker.rules import segments_vocabulary

log = logging.getLogger(__name__)


def partition_clock(
    watermark: float | None, *, lateness: float, mode: str, wall: float
) -> float | None:
    """The event-time clock of one partition.

    >>> partition_clock(100.0, lateness=5, mode="event", wall=1e9)
    95.0
    >>> partition_clock(100.0, lateness=5, mode="live", wall=500.0)
    500.0
    >>> partition_clock(None, lateness=5, mode="event", wall=500.0) is None
    True
    """
    event_clock = None if watermark is None else watermark - lateness
    if mode == "live":
        return wall if event_clock is None else max(event_clock, wall)
    return event_clock


class TimerService:
    """Called periodically by the worker; owns no state but the refresh deadlines."""

    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        assigned: Callable[[], Iterable[int]],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.assigned = assigned
        self.wall = wall
        self._clocks_loaded = False
        #: ``segstream clock reset``s this worker has applied (streams/worker/clock.py).
        self.resets: ClockResets | None = None
        self._next_rfm = 0.0
        self._next_save = 0.0
        self.fired = 0
        self.rescored = 0
        self._cursors: dict[int, int] = {}
        self._segments_mtime: float | None = None
        self._next_sizes = 0.0
        self._pass_started: dict[int, float] = {}
        #: Told of timers fired and their lateness (``streams.worker.metrics.Metrics``), if set.
        self.metrics: Any = None

    def clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        wm = self.processor.watermarks
        out = {}
        for p in partitions:
            c = partition_clock(
                wm.get(p),
                lateness=self.settings.allowed_lateness_s,
                mode=self.settings.clock,
                wall=self.wall(),
            )
            if c is not None:
                out[p] = c
        return out

    async def run_once(self) -> BatchStats | None:
        store = self.processor.store
        if not self._clocks_loaded:
            for p, w in (await store.load_clocks()).items():
                self.processor.watermarks.setdefault(p, w)
            self.resets = ClockResets(store.client, self.settings.key_prefix)
            await self.resets.prime()
            self._clocks_loaded = True
        partitions = sorted(set(self.assigned()))
        clocks = self.clocks(partitions)
        now = time.monotonic()
        if now >= self._next_rfm:
            self._next_rfm = now + self.settings.rfm_refresh_s
            await self.refresh_rfm(max(clocks.values(), default=None))
        if now >= self._next_save:
            self._next_save = now + 1.0
            resets = (
                [] if self.resets is None else await self.resets.adopt(self.processor.watermarks)
            )
            for p in resets:
                log.warning(
                    "partition %d: clock reset to watermark %s by segstream clock reset",
                    p,
                    self.processor.watermarks[p],
                )
            clocks = self.clocks(partitions)
            await store.save_clocks(
                {p: w for p, w in self.processor.watermarks.items() if p in partitions}
            )
        if 0 in clocks and now >= self._next_sizes:  # one recorder: partition 0's owner
            self._next_sizes = now + self.settings.sizes_every_s
            await store.record_sizes(clocks[0], self.settings.sizes_keep)
        if not clocks:
            return None
        lateness = await self.oldest_due_lateness(clocks) if self.metrics is not None else []
        stats = await self.processor.fire_timers(clocks, self.settings.timer_batch)
        self.fired += stats.timers
        if self.metrics is not None:
            self.metrics.timers_fired(stats.timers, lateness)
        await self.sweep(clocks)
        return stats

    async def oldest_due_lateness(self, clocks: dict[int, float]) -> list[float]:
        """Per partition with a due timer: its clock minus the oldest due time (one
        pipelined ``ZRANGE 0 0 WITHSCORES``, for the metrics)."""
        pipe = self.processor.store.client.pipeline(transaction=False)
        parts = sorted(clocks)
        for p in parts:
            pipe.zrange(timers_key(self.settings.key_prefix, p), 0, 0, withscores=True)
        out = []
        for p, row in zip(parts, await pipe.execute(), strict=True):
            if row and row[0][1] <= clocks[p]:
                out.append(clocks[p] - row[0][1])
        return out

    def reload_segments(self, ctx: Context) -> Context:
        """Load the custom-segment file again if it changed; a bad file keeps the old one."""
        path = self.settings.segments_file
        if path is None:
            return ctx
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            log.error("custom segments file %s: %s (keeping the previous rules)", path, exc)
            return ctx
        if mtime == self._segments_mtime:
            return ctx
        self._segments_mtime = mtime
        try:
            custom = parse_segments(path.read_text(), segments_vocabulary(self.settings))
        except SegmentConfigError as exc:
            log.error("custom segments file %s: %s (keeping the previous rules)", path, exc)
            return ctx
        log.info(
            "custom segments %s loaded: version %s, %d rule(s)",
            path,
            custom.version,
            len(custom.rules),
        )
        return replace(ctx, custom=custom)

    async def sweep(self, clocks: dict[int, float]) -> None:
        """Rescore the next few customers of each partition: a full pass over everyone
        at a bounded rate, so RFM scores and clusters follow the population and the model
        without a cost per event."""
        count = round(self.settings.rescore_per_s * self.settings.timer_interval_s)
        if count <= 0 or (
            self.processor.context.rfm is None and self.processor.context.clusters is None
        ):
            return
        now = time.monotonic()
        for p, clock in clocks.items():
            cursor = self._cursors.get(p, 0)
            if cursor == 0:  # a new pass: not before the last one is rescore_pass_s old
                if now - self._pass_started.get(p, float("-inf")) < self.settings.rescore_pass_s:
                    continue
                self._pass_started[p] = now
            cursor, customers = await self.processor.store.sweep(p, cursor, count)
            self._cursors[p] = cursor
            if customers:
                await self.processor.rescore(p, customers, clock)
                self.rescored += len(customers)

    async def refresh_rfm(self, as_of: float | None) -> None:
        if as_of is None:
            return
        if self.processor.context.cluster_margin != self.settings.cluster_margin:
            self.processor.context = replace(
                self.processor.context, cluster_margin=self.settings.cluster_margin
            )
        store = self.processor.store
        counts = await store.rfm_counts()
        q = RfmQuantiles.from_counts(
            counts["recency"], counts["frequency"], counts["monetary"], as_of=as_of
        )
        ctx = replace(self.processor.context, rfm=q if q.buyers else None)
        ctx = self.reload_segments(ctx)
        doc = await store.load_model()
        if doc is not None and (
            ctx.clusters is None or ctx.clusters.version != doc["model"]["version"]
        ):
            ctx = replace(ctx, clusters=ClusterModel.from_doc(doc["model"]))
            log.info("scoring with behaviour model v%d", ctx.clusters.version)
        self.processor.context = ctx
