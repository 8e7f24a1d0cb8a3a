"""The timer service's own logic: clocks and the pacing of the rescoring sweep."""

import asyncio

from segmenters.core import Context
from segmenters.dimensions.rfm import RfmQuantiles
from streams.settings import Settings
from streams.worker.clocks import Clocks
from streams.worker.context import ContextRefresher
from streams.worker.timers import TimerService


class FakeStore:
    def __init__(self, members):
        self.members = members
        self.scans = 0

    async def sweep(self, partition, cursor, count):
        self.scans += 1
        chunk = self.members[cursor : cursor + count]
        nxt = cursor + count
        return (0 if nxt >= len(self.members) else nxt), chunk


class FakeContext:
    def current(self):
        return Context(rfm=RfmQuantiles((1,) * 4, (1,) * 4, (1,) * 4, 1, 0.0))


class FakeProcessor:
    def __init__(self, store):
        self.store = store
        self.rescored = []

    async def rescore(self, partition, customers, now):
        self.rescored.extend(customers)


def test_a_sweep_pass_covers_everyone_once_then_waits():
    store = FakeStore([f"c{i}" for i in range(250)])
    proc = FakeProcessor(store)
    settings = Settings(rescore_per_s=400, timer_interval_s=0.25, rescore_pass_s=30)
    svc = TimerService(
        settings,
        proc,  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        clocks=Clocks(),
        context=FakeContext(),  # type: ignore[arg-type]
        assigned=lambda: [0],
    )
    for _ in range(10):
        asyncio.run(svc.sweep({0: 1000.0}))
    assert proc.rescored == [f"c{i}" for i in range(250)]  # three scans of 100, then a pause
    assert store.scans == 3


def test_clocks_follow_watermarks_minus_lateness():
    clocks = Clocks.for_settings(Settings(allowed_lateness_s=5), client=None)
    clocks.advance({0: 1000.0})
    assert clocks.clocks([0, 1]) == {0: 995.0}


def test_custom_segments_hot_reload_and_a_bad_edit_keeps_the_old_rules(tmp_path):
    import os

    path = tmp_path / "segments.toml"
    path.write_text('version = "a"\n[segments.big]\nrule = "orders > 3"\n')
    svc = ContextRefresher(Settings(segments_file=path), FakeStore([]))  # type: ignore[arg-type]
    ctx = svc.reload_segments(Context())
    assert ctx.custom is not None and ctx.custom.version == "a"
    path.write_text('version = "b"\n[segments.big]\nrule = "ordrs > 3"\n')
    os.utime(path, (1, 1))
    kept = svc.reload_segments(ctx)
    assert kept.custom is ctx.custom  # the broken file is refused
    path.write_text('version = "c"\n[segments.big]\nrule = "orders > 5"\n')
    os.utime(path, (2, 2))
    assert svc.reload_segments(kept).custom.version == "c"


def test_sizes_are_offered_once_per_wall_clock_slot():
    class SizesStore(FakeStore):
        def __init__(self):
            super().__init__([])
            self.recorded = []

        async def record_sizes(self, at, keep, every_s):
            self.recorded.append((at, keep, every_s))
            return {}

    wall = iter([100.0, 110.0, 119.9, 120.0, 400.0])
    store = SizesStore()
    svc = TimerService(
        Settings(sizes_every_s=60, sizes_keep=50),
        FakeProcessor(store),  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        clocks=Clocks(),
        context=FakeContext(),  # type: ignore[arg-type]
        assigned=lambda: [],
        wall=lambda: next(wall),
    )
    for _ in range(5):
        asyncio.run(svc.record_sizes())
    assert store.recorded == [(100.0, 50, 60), (120.0, 50, 60), (400.0, 50, 60)]


def test_operating_figures_are_recorded_once_per_wall_clock_slot_and_a_failure_is_logged():
    calls = []

    async def history():
        calls.append(len(calls))
        if len(calls) == 2:
            raise OSError("redis down")

    wall = iter([100.0, 105.0, 110.0, 119.0, 121.0])
    store = FakeStore([])
    svc = TimerService(
        Settings(history_every_s=10),
        FakeProcessor(store),  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        clocks=Clocks(),
        context=FakeContext(),  # type: ignore[arg-type]
        assigned=lambda: [],
        wall=lambda: next(wall),
        history=history,
    )
    for _ in range(5):
        asyncio.run(svc.record_history())  # the failure (second call) does not raise
    assert calls == [0, 1, 2]
