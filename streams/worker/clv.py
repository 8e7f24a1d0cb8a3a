"""The one value-model trainer: refits BG/NBD and Gamma-Gamma to the buyers' stored
purchase days every ``SEGSTREAM_CLV_REFIT_S`` and publishes the snapshot.

Like the cluster trainer it runs in whichever worker owns the single partition of
``segments.features``, so there is one per deployment; unlike it, it learns from the
stored states, not from a stream, so a timer drives it. The scan and the fit take
seconds to minutes: they run in a thread, never on the event loop.

A buyer's T is counted to the event-time clock day of the buyer's partition. A
partition without a clock yet (its owner has not saved one) counts to the latest
clock of the others: producers write every partition over the same time range, so that
day is the best guess of its own, and its buyers stay in the fit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from segmenters.clv import Summary, day_of
from segmenters.clv.model import ClvModel, NotEnoughData, fit_model
from streams.settings import Settings
from streams.store.clients import REDIS_FAILURES
from streams.store.clocks import load_watermarks
from streams.store.clv import buyer_summaries, save_clv_model
from streams.store.queries import lookup_clock
from streams.worker.clocks import Clocks

log = logging.getLogger(__name__)

#: The first fit waits this long after the worker becomes the trainer (at most
#: ``SEGSTREAM_CLV_REFIT_S``): time for the saved clocks to load.
FIRST_FIT_DELAY_S = 10.0
#: The timer's period at most: a due fit starts within this many seconds.
TICK_S = 5.0

Scan = Callable[..., list[Summary]]


class ClvTrainer:
    """Fits and publishes the value model when one is due (:meth:`tick`, called by a
    timer on every worker; only the owner of ``segments.features`` fits).

    ``load`` reads the latest snapshot; ``scan`` and ``save`` are
    :func:`streams.store.clv.buyer_summaries` and :func:`save_clv_model` (blocking,
    called in a thread).
    """

    def __init__(
        self,
        settings: Settings,
        clocks: Clocks,
        *,
        owner: Callable[[], bool],
        load: Callable[[], Awaitable[ClvModel | None]],
        scan: Scan = buyer_summaries,
        save: Callable[[Settings, ClvModel], ClvModel] = save_clv_model,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clocks = clocks
        self.owner = owner
        self.load = load
        self.scan = scan
        self.save = save
        self.wall = wall
        #: Wall time before which no fit starts; None: not the trainer (now or yet).
        self.not_before: float | None = None
        self.fits = 0
        self.failures = 0

    @property
    def tick_s(self) -> float:
        return min(TICK_S, self.settings.clv_refit_s)

    async def tick(self) -> ClvModel | None:
        """Fit and publish if this worker is the trainer and a fit is due: the latest
        snapshot is ``SEGSTREAM_CLV_REFIT_S`` old (whoever wrote it), or there is none.
        Returns the snapshot published, if any. Never raises: a failed fit is retried
        a period later."""
        now = self.wall()
        refit = self.settings.clv_refit_s
        try:
            if not self.owner():
                self.not_before = None
                return None
            if self.not_before is None:
                self.not_before = now + min(FIRST_FIT_DELAY_S, refit)
            if now < self.not_before:
                return None
            previous = await self.load()
            if previous is not None and previous.fitted_at + refit > now:
                self.not_before = previous.fitted_at + refit
                return None
            days = await self.clock_days()
            if not days:
                self.not_before = now + min(FIRST_FIT_DELAY_S, refit)
                log.debug("value model: no partition has a clock yet, nothing to fit")
                return None
            self.not_before = now + refit
            return await self.fit(previous, days, now)
        except Exception as exc:  # Redis or the fit: the worker goes on, the next period retries
            self.failures += 1
            self.not_before = now + refit
            if isinstance(exc, REDIS_FAILURES):
                log.warning("value model fit failed: %s (retried in %.0f s)", exc, refit)
            else:
                log.exception("value model fit failed (retried in %.0f s)", refit)
            return None

    async def clock_days(self) -> dict[int, int]:
        """Each partition's clock day: the larger of its saved watermark and this
        worker's, minus the allowed lateness (as ``Clocks.clocks``); a partition without
        a watermark counts to the latest clock (``lookup_clock``, as the look-up does)."""
        clocks = self.clocks
        marks = {} if clocks.client is None else await load_watermarks(clocks.client, clocks.prefix)
        for p, w in clocks.watermarks.items():
            marks[p] = max(w, marks.get(p, w))
        wall = clocks.wall()
        out = {}
        for p in range(self.settings.topic_partitions):
            clock = lookup_clock(marks, p, lateness=clocks.lateness, mode=clocks.mode, wall=wall)
            if clock is not None:
                out[p] = day_of(clock)
        return out

    async def fit(
        self, previous: ClvModel | None, days: dict[int, int], now: float
    ) -> ClvModel | None:
        """Scan, fit and save in a thread; None when there are no buyers."""
        latest = max(days.values())
        version = (previous.version if previous is not None else 0) + 1
        settings = self.settings

        def run() -> tuple[ClvModel | None, float]:
            started = time.monotonic()
            summaries = self.scan(
                settings, lambda p: days.get(p, latest), sample=settings.clv_sample
            )
            if not summaries:
                return None, time.monotonic() - started
            try:
                model = fit_model(summaries, fitted_at=now, version=version, start=previous)
            except NotEnoughData as exc:
                log.info("value model: not fitted yet (%s)", exc)
                return None, time.monotonic() - started
            return self.save(settings, model), time.monotonic() - started

        model, seconds = await asyncio.to_thread(run)
        if model is None:
            log.debug("value model: no snapshot published")
            return None
        self.fits += 1
        log.info(
            "published value model v%d: %d customers (%d repeat), BG/NBD r=%.4g "
            "alpha=%.4g days a=%.4g b=%.4g, Gamma-Gamma p=%s q=%s v=%s, in %.1f s",
            model.version,
            model.customers,
            model.repeat_customers,
            model.r,
            model.alpha_days,
            model.a,
            model.b,
            _num(model.p),
            _num(model.q),
            _num(model.v),
            seconds,
        )
        return model


def _num(value: float | None) -> str:
    """A parameter for the log line ("-": not fitted).

    >>> _num(None), _num(6.25)
    ('-', '6.25')
    """
    return "-" if value is None else f"{value:.4g}"
