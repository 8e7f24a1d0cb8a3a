"""The value-model trainer's schedule and steps, with fakes for Redis and the scan."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
import redis

from segmenters.clv import DAY_S, Summary
from segmenters.clv.model import ClvModel
from streams.settings import Settings
from streams.worker.clocks import Clocks
from streams.worker.clv import FIRST_FIT_DELAY_S, ClvTrainer
from streams.worker.context import ContextRefresher

REFIT_S = 600.0


def buyers(n: int = 200, seed: int = 1) -> list[Summary]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        T = rng.randint(30, 300)
        x = rng.choice([0, 0, 1, 2, 3, 5, 8])
        t_x = 0 if x == 0 else rng.randint(x, T)
        out.append(Summary(x=x, t_x=t_x, T=T, monetary=0.0 if x == 0 else rng.uniform(5, 80)))
    return out


class Fakes:
    """The trainer's world: a wall clock, ownership, the stored snapshot and the buyers."""

    def __init__(self, summaries: list[Summary] | None = None, partitions: int = 2) -> None:
        self.now = 1_000_000.0
        self.owner = True
        self.stored: ClvModel | None = None
        self.summaries = buyers() if summaries is None else summaries
        self.scans: list[dict[int, int]] = []
        self.fail: Exception | None = None
        self.settings = Settings(clv_refit_s=REFIT_S, topic_partitions=partitions, clv_sample=500)
        self.clocks = Clocks(lateness=DAY_S, mode="event", wall=lambda: self.now)

    async def load(self) -> ClvModel | None:
        return self.stored

    def scan(self, settings: Settings, today_of: Any, *, sample: int) -> list[Summary]:
        assert sample == settings.clv_sample
        if self.fail is not None:
            raise self.fail
        self.scans.append({p: today_of(p) for p in range(settings.topic_partitions)})
        return self.summaries

    def save(self, settings: Settings, model: ClvModel) -> ClvModel:
        self.stored = model
        return model

    def trainer(self) -> ClvTrainer:
        return ClvTrainer(
            self.settings,
            self.clocks,
            owner=lambda: self.owner,
            load=self.load,
            scan=self.scan,
            save=self.save,
            wall=lambda: self.now,
        )


def tick(t: ClvTrainer) -> ClvModel | None:
    return asyncio.run(t.tick())


def started(f: Fakes) -> ClvTrainer:
    """A trainer past its first tick and the delay after it."""
    t = f.trainer()
    assert tick(t) is None
    f.now += FIRST_FIT_DELAY_S
    return t


def test_first_fit_soon_after_start_then_every_period() -> None:
    f = Fakes()
    f.clocks.advance({0: 100 * DAY_S + 10, 1: 90 * DAY_S})
    t = f.trainer()
    assert tick(t) is None and f.scans == []  # just became the trainer: waits a little
    f.now += FIRST_FIT_DELAY_S
    first = tick(t)
    assert first is not None and f.stored == first
    assert (first.version, first.fitted_at, first.customers) == (1, f.now, 200)
    assert first.p is not None  # enough repeat buyers for the spend model
    # T to each partition's clock day: watermark minus the allowed lateness (one day)
    assert f.scans == [{0: 99, 1: 89}]
    f.now += REFIT_S - 1
    assert tick(t) is None and len(f.scans) == 1
    f.now += 1
    second = tick(t)
    assert second is not None and second.version == 2 and f.stored == second
    assert len(f.scans) == 2


def test_a_recent_snapshot_is_not_refitted_at_start() -> None:
    f = Fakes()
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    f.stored = ClvModel(r=0.2, alpha_days=30, a=0.8, b=2.4, version=7, fitted_at=f.now - 100)
    t = started(f)
    assert tick(t) is None and f.scans == []
    f.now = f.stored.fitted_at + REFIT_S
    model = tick(t)
    assert model is not None and model.version == 8


def test_only_the_owner_fits_and_a_new_owner_waits_a_little() -> None:
    f = Fakes()
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    f.owner = False
    t = f.trainer()
    f.now += 10 * REFIT_S
    assert tick(t) is None and f.scans == [] and t.not_before is None
    f.owner = True
    assert tick(t) is None
    f.now += FIRST_FIT_DELAY_S
    assert tick(t) is not None


def test_a_partition_without_a_clock_counts_to_the_latest(caplog: pytest.LogCaptureFixture) -> None:
    f = Fakes(partitions=3)
    f.clocks.advance({1: 40 * DAY_S + 5})
    t = started(f)
    with caplog.at_level(logging.INFO, logger="streams.worker.clv"):
        assert tick(t) is not None
    assert f.scans == [{0: 39, 1: 39, 2: 39}]
    assert "published value model v1: 200 customers" in caplog.text


def test_no_clock_retries_soon_and_no_buyers_publish_nothing() -> None:
    f = Fakes(summaries=[])
    t = started(f)
    assert tick(t) is None and f.scans == []  # no clock at all: nothing scanned
    f.clocks.advance({0: 10 * DAY_S})
    f.now += FIRST_FIT_DELAY_S
    assert tick(t) is None and len(f.scans) == 1 and f.stored is None
    f.now += REFIT_S / 2
    assert tick(t) is None and len(f.scans) == 1  # next attempt a period later
    f.now += REFIT_S / 2
    tick(t)
    assert len(f.scans) == 2


def test_a_failed_fit_is_logged_and_retried_next_period(caplog: pytest.LogCaptureFixture) -> None:
    f = Fakes()
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    f.fail = RuntimeError("scan failed")
    t = started(f)
    assert tick(t) is None and t.failures == 1
    assert "value model fit failed" in caplog.text and "Traceback" in caplog.text
    f.fail = None
    f.now += REFIT_S - 1
    assert tick(t) is None and f.stored is None
    f.now += 1
    model = tick(t)
    assert model is not None and model.version == 1


def test_a_fit_error_never_escapes() -> None:
    bad = Summary(x=1, t_x=10, T=5, monetary=1.0)  # T before the last purchase: refused
    f = Fakes(summaries=[*buyers(), bad])
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    t = started(f)
    assert tick(t) is None and f.stored is None and t.failures == 1


def test_too_little_history_publishes_nothing_and_is_no_failure() -> None:
    """A fresh deployment's first minutes: a few same-day buyers teach the model nothing."""
    f = Fakes(summaries=[Summary(x=0, t_x=0, T=0, monetary=0.0)] * 40)
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    t = started(f)
    assert tick(t) is None and f.stored is None and t.failures == 0


class RefresherStore:
    """What ``ContextRefresher.refresh`` reads: no RFM buyers, no behaviour model, and a
    client holding the value snapshot."""

    def __init__(self) -> None:
        self.client = self
        self.snapshot: bytes | None = None

    async def rfm_counts(self) -> dict[str, dict[int, int]]:
        return {"recency": {}, "frequency": {}, "monetary": {}, "value": {}}

    async def load_model(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        assert key == "segstream:model:{clv}"
        return self.snapshot


def test_every_worker_loads_the_latest_snapshot(caplog: pytest.LogCaptureFixture) -> None:
    store = RefresherStore()
    refresher = ContextRefresher(Settings(key_prefix="segstream"), store)  # type: ignore[arg-type]
    asyncio.run(refresher.refresh(1e9))
    assert refresher.clv is None
    model = ClvModel(r=0.2, alpha_days=30, a=0.8, b=2.4, version=4)
    store.snapshot = model.model_dump_json().encode()
    with caplog.at_level(logging.INFO, logger="streams.worker.context"):
        asyncio.run(refresher.refresh(1e9))
    assert refresher.clv == model and "value model v4 loaded" in caplog.text
    asyncio.run(refresher.refresh(None))  # no clock yet: nothing renewed
    assert refresher.clv == model


def test_redis_down_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    f = Fakes()
    f.clocks.advance({0: 50 * DAY_S, 1: 50 * DAY_S})
    f.fail = redis.ConnectionError("Connection refused")
    t = started(f)
    assert tick(t) is None and t.failures == 1
    assert "value model fit failed: Connection refused (retried in 600 s)" in caplog.text
    assert "Traceback" not in caplog.text
