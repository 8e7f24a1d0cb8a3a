"""Time-driven segments: due timers, the rescoring sweep, and the periodic chores.

Every ``timer_interval_s`` the worker fires, for the partitions it owns, the timers due
by their clocks (``streams.worker.clocks``): one ``ZRANGEBYSCORE`` per partition, so a
scan costs what is due, never what is stored. The same tick has the clocks saved and
reset, the context (RFM quantiles, model, rule files: ``streams.worker.context``)
renewed, segment sizes recorded (wall time, one worker per slot), the worker's operating
figures recorded (each worker its own), and a slice of customers rescored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from streams.settings import Settings
from streams.store import StateStore
from streams.store.timers import oldest_due
from streams.worker.clocks import Clocks
from streams.worker.context import ContextRefresher
from streams.worker.pipeline import BatchProcessor, BatchStats

log = logging.getLogger(__name__)


class TimerObserver(Protocol):
    """Told of timers fired and their lateness (``streams.worker.metrics.Metrics``)."""

    def timers_fired(self, count: int, lateness: Iterable[float]) -> None: ...


class TimerService:
    """Called periodically by the worker; owns no state but the chores' deadlines and the
    sweep's cursors."""

    def __init__(
        self,
        settings: Settings,
        processor: BatchProcessor,
        *,
        store: StateStore,
        clocks: Clocks,
        context: ContextRefresher,
        assigned: Callable[[], Iterable[int]],
        observer: TimerObserver | None = None,
        wall: Callable[[], float] = time.time,
        history: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.processor = processor
        self.store = store
        self.clocks = clocks
        self.context = context
        self.assigned = assigned
        self.observer = observer
        self._next_rfm = 0.0
        self._next_save = 0.0
        self.fired = 0
        self.rescored = 0
        self._cursors: dict[int, int] = {}
        self.wall = wall
        self._sizes_slot: int | None = None
        #: Records the worker's operating figures (``Metrics.record_history``).
        self.history = history
        self._history_slot: int | None = None
        self._pass_started: dict[int, float] = {}

    async def run_once(self) -> BatchStats | None:
        self.context.reload_policy()
        await self.clocks.load()
        partitions = sorted(set(self.assigned()))
        clocks = self.clocks.clocks(partitions)
        now = time.monotonic()
        if now >= self._next_rfm:
            self._next_rfm = now + self.settings.rfm_refresh_s
            await self.context.refresh(max(clocks.values(), default=None))
        if now >= self._next_save:
            self._next_save = now + 1.0
            await self.clocks.save(partitions)
            clocks = self.clocks.clocks(partitions)
        await self.record_sizes()
        await self.record_history()
        if not clocks:
            return None
        lateness = await self.oldest_due_lateness(clocks) if self.observer is not None else []
        stats = await self.processor.fire_timers(clocks, self.settings.timer_batch)
        self.fired += stats.timers
        if self.observer is not None:
            self.observer.timers_fired(stats.timers, lateness)
        await self.sweep(clocks)
        return stats

    async def record_sizes(self) -> None:
        """Once per slot of ``sizes_every_s`` wall-clock seconds, offer to record the
        sizes: the store lets the first worker of the slot write (wall time, not the
        event clocks, so a record says when it was taken)."""
        wall = self.wall()
        slot = int(wall // self.settings.sizes_every_s)
        if slot != self._sizes_slot:
            self._sizes_slot = slot
            await self.store.record_sizes(
                wall, self.settings.sizes_keep, self.settings.sizes_every_s
            )

    async def record_history(self) -> None:
        """Once per slot of ``history_every_s`` wall-clock seconds, record the worker's
        operating figures: on wall-clock slots, so the workers' records line up with the
        history's buckets. A failure is logged and its counts wait for the next slot; it
        never stops the timers."""
        if self.history is None:
            return
        slot = int(self.wall() // self.settings.history_every_s)
        if slot == self._history_slot:
            return
        self._history_slot = slot
        try:
            await self.history()
        except Exception:
            log.exception("recording the operating figures failed")

    async def oldest_due_lateness(self, clocks: dict[int, float]) -> list[float]:
        """Per partition with a due timer: its clock minus the oldest due time (for the
        metrics)."""
        due = await oldest_due(self.store.client, self.settings.key_prefix, clocks)
        return [clocks[p] - at for p, at in due.items() if at <= clocks[p]]

    async def sweep(self, clocks: dict[int, float]) -> None:
        """Rescore the next few customers of each partition: a full pass over everyone
        at a bounded rate, so RFM scores and clusters follow the population and the model
        without a cost per event."""
        count = round(self.settings.rescore_per_s * self.settings.timer_interval_s)
        ctx = self.context.current()
        if count <= 0 or (ctx.rfm is None and ctx.clusters is None):
            return
        now = time.monotonic()
        for p, clock in clocks.items():
            cursor = self._cursors.get(p, 0)
            if cursor == 0:  # a new pass: not before the last one is rescore_pass_s old
                if now - self._pass_started.get(p, float("-inf")) < self.settings.rescore_pass_s:
                    continue
                self._pass_started[p] = now
            cursor, customers = await self.store.sweep(p, cursor, count)
            self._cursors[p] = cursor
            if customers:
                await self.processor.rescore(p, customers, clock)
                self.rescored += len(customers)
