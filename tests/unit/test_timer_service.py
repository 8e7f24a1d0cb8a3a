"""The timer service's own logic: clocks and the pacing of the rescoring sweep."""

import asyncio

from segmenters.core import Context
from segmenters.rfm import RfmQuantiles
from streams.settings import Settings
from streams.timers import TimerService


class FakeStore:
    def __init__(self, members):
        self.members = members
        self.scans = 0

    async def sweep(self, partition, cursor, count):
        self.scans += 1
        chunk = self.members[cursor : cursor + count]
        nxt = cursor + count
        return (0 if nxt >= len(self.members) else nxt), chunk


class FakeProcessor:
    def __init__(self, store):
        self.store = store
        self.context = Context(rfm=RfmQuantiles((1,) * 4, (1,) * 4, (1,) * 4, 1, 0.0))
        self.watermarks = {0: 1000.0}
        self.rescored = []

    async def rescore(self, partition, customers, now):
        self.rescored.extend(customers)


def test_a_sweep_pass_covers_everyone_once_then_waits():
    store = FakeStore([f"c{i}" for i in range(250)])
    proc = FakeProcessor(store)
    settings = Settings(rescore_per_s=400, timer_interval_s=0.25, rescore_pass_s=30)
    svc = TimerService(settings, proc, assigned=lambda: [0])  # type: ignore[arg-type]
    for _ in range(10):
        asyncio.run(svc.sweep({0: 1000.0}))
    assert proc.rescored == [f"c{i}" for i in range(250)]  # three scans of 100, then a pause
    assert store.scans == 3


def test_clocks_follow_watermarks_minus_lateness():
    proc = FakeProcessor(FakeStore([]))
    svc = TimerService(Settings(allowed_lateness_s=5), proc, assigned=lambda: [0, 1])  # type: ignore[arg-type]
    assert svc.clocks([0, 1]) == {0: 995.0}
