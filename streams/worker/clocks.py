"""The worker's partition clocks: one object owns the watermarks and what follows from them.

Each input partition has a clock: its watermark (the largest ``occurred_at`` applied)
minus the allowed lateness. In ``live`` mode an idle partition's clock also follows wall
time. The batch processor advances the watermarks, the timer service fires timers by the
clocks and has them saved and reset, the metrics and ``/ready`` read them: all through
one :class:`Clocks`, passed to each, so none reaches into another's attributes.
Persistence is ``streams.store.clocks``; ``segstream clock`` (``streams.worker.clock``)
shows and repairs the saved clocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from segmenters.eventtime import partition_clock
from streams.settings import Settings
from streams.store.clocks import load_resets, load_watermarks, save_watermarks

log = logging.getLogger(__name__)


class ClockResets:
    """A worker's view of ``<prefix>:clock:reset``: which resets it has applied.

    ``prime`` at start marks the resets already there as seen (the clocks the worker
    loads already carry them); ``adopt`` then applies each new one to the worker's
    in-memory watermarks, for every partition (one it does not own now may come back).
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.seen: dict[int, str] = {}

    async def prime(self) -> None:
        markers = await load_resets(self.client, self.prefix)
        self.seen = {p: str(m.get("id")) for p, m in markers.items()}

    async def adopt(self, watermarks: dict[int, float]) -> list[int]:
        """Apply unseen resets to ``watermarks`` (set each reset partition's watermark).
        Returns the partitions reset."""
        changed = []
        for p, marker in (await load_resets(self.client, self.prefix)).items():
            mid = str(marker.get("id"))
            if self.seen.get(p) == mid:
                continue
            self.seen[p] = mid
            watermarks[p] = float(marker["watermark"])
            changed.append(p)
        return changed


class Clocks:
    """This worker's partition clocks: the watermarks, the allowed lateness, the clock
    mode, and their saved copy in Redis (``client``; None: kept in memory only)."""

    def __init__(
        self,
        *,
        lateness: float = 0.0,
        mode: str = "event",
        wall: Callable[[], float] = time.time,
        client: Any = None,
        prefix: str = "",
    ) -> None:
        self.lateness = lateness
        self.mode = mode
        self.wall = wall
        self.client = client
        self.prefix = prefix
        #: Per partition, the largest event time seen (the clock before allowed lateness).
        self._watermarks: dict[int, float] = {}
        self.watermarks: Mapping[int, float] = MappingProxyType(self._watermarks)
        #: ``segstream clock reset``s this worker has applied (streams/worker/clock.py).
        self.resets: ClockResets | None = None

    @classmethod
    def for_settings(
        cls, settings: Settings, client: Any, wall: Callable[[], float] = time.time
    ) -> Clocks:
        return cls(
            lateness=settings.allowed_lateness_s,
            mode=settings.clock,
            wall=wall,
            client=client,
            prefix=settings.key_prefix,
        )

    def watermark(self, partition: int) -> float | None:
        return self._watermarks.get(partition)

    def advance(self, newest: Mapping[int, float]) -> None:
        """A batch's largest event time per partition: watermarks only ever grow."""
        watermarks = self._watermarks
        for p, at in newest.items():
            if at > watermarks.get(p, float("-inf")):
                watermarks[p] = at

    def clocks(self, partitions: Iterable[int]) -> dict[int, float]:
        """The clocks of these partitions (those with none yet are left out)."""
        wm = self._watermarks
        out = {}
        for p in partitions:
            c = partition_clock(wm.get(p), lateness=self.lateness, mode=self.mode, wall=self.wall())
            if c is not None:
                out[p] = c
        return out

    async def load(self) -> None:
        """Once, before the first scan: the saved watermarks (a partition's own, if
        newer, stays) and the resets already applied to them."""
        if self.resets is not None:
            return
        for p, w in (await load_watermarks(self.client, self.prefix)).items():
            self._watermarks.setdefault(p, w)
        resets = ClockResets(self.client, self.prefix)
        await resets.prime()
        self.resets = resets

    async def save(self, partitions: Iterable[int]) -> list[int]:
        """Adopt the resets not applied yet, then save the watermarks of ``partitions``
        (those this worker owns). Returns the partitions reset."""
        reset = [] if self.resets is None else await self.resets.adopt(self._watermarks)
        for p in reset:
            log.warning(
                "partition %d: clock reset to watermark %s by segstream clock reset",
                p,
                self._watermarks[p],
            )
        owned = set(partitions)
        await save_watermarks(
            self.client, self.prefix, {p: w for p, w in self._watermarks.items() if p in owned}
        )
        return reset
