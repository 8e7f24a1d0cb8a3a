"""``segstream clock``: the table, the reset record and how a worker adopts it (no servers)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from streams.settings import Settings
from streams.store.keys import clock_key, clock_reset_key
from streams.worker.clock import ClockError, clock_rows, reset, show
from streams.worker.clocks import ClockResets

WALL = 1_795_000_000.0


class SyncRedis:
    """The few hash commands the CLI uses, on dicts (values as bytes, as Redis gives them)."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[bytes, bytes]] = {}

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.hashes.get(key, {}))

    def hget(self, key: str, field: str) -> bytes | None:
        return self.hashes.get(key, {}).get(field.encode())

    def hset(self, key: str, field: str, value: str | bytes) -> None:
        raw = value if isinstance(value, bytes) else str(value).encode()
        self.hashes.setdefault(key, {})[field.encode()] = raw


class AsyncRedis:
    def __init__(self, sync: SyncRedis) -> None:
        self.sync = sync

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        return self.sync.hgetall(key)


def test_rows_flag_only_clocks_ahead_of_the_wall_beyond_the_bound() -> None:
    rows = clock_rows(
        {0: WALL - 60, 1: 4_070_908_800.0, 2: WALL + 300 + 5},
        partitions=range(4),
        lateness=5,
        mode="event",
        max_future_s=300,
        wall=WALL,
    )
    assert [r.fault for r in rows] == [False, True, False, False]
    assert rows[0].ahead_s == -65 and rows[2].ahead_s == 300 and rows[3].clock is None
    assert rows[1].to_json()["watermark"] == "2099-01-01T00:00:00Z"


def test_reset_sets_the_clock_and_records_the_reset() -> None:
    settings = Settings(key_prefix="k", allowed_lateness_s=5, max_future_s=300)
    redis = SyncRedis()
    redis.hset(clock_key("k"), "1", repr(4_070_908_800.0))
    old_actions_clock = "k:act:clock"  # written by versions before the one pipeline
    redis.hset(old_actions_clock, "1", repr(4_070_908_700.0))
    assert [r.fault for r in show(redis, settings, WALL)] == [False, True, False, False]
    assert "actions_clock" not in show(redis, settings, WALL)[1].to_json()

    done = reset(redis, settings, 1, WALL - 10, WALL)
    assert done["before"] == {"watermark": "2099-01-01T00:00:00Z"}
    assert done["after"] == {"watermark": "2026-11-18T11:06:35Z", "clock": "2026-11-18T11:06:30Z"}
    assert float(redis.hget(clock_key("k"), "1") or 0) == WALL - 5  # clock + lateness
    assert redis.hashes[old_actions_clock] == {b"1": repr(4_070_908_700.0).encode()}  # untouched
    marker = orjson.loads(redis.hget(clock_reset_key("k"), "1") or b"{}")
    assert marker["id"] == done["reset_id"] and marker["watermark"] == WALL - 5
    rows = show(redis, settings, WALL)
    assert [r.fault for r in rows] == [False, False, False, False]
    assert rows[1].clock == WALL - 10


@pytest.mark.parametrize(
    ("partition", "to", "message"),
    [(4, WALL, "partition 4 does not exist"), (0, WALL + 301, "ahead of the wall clock")],
)
def test_reset_refuses_a_missing_partition_and_a_clock_that_is_itself_ahead(
    partition: int, to: float, message: str
) -> None:
    redis = SyncRedis()
    with pytest.raises(ClockError, match=message):
        reset(redis, Settings(key_prefix="k"), partition, to, WALL)
    assert redis.hashes == {}  # nothing written


def test_a_worker_adopts_each_new_reset_once_and_not_those_from_before_it_started() -> None:
    settings = Settings(key_prefix="k")
    redis = SyncRedis()
    reset(redis, settings, 0, WALL - 1000, WALL)  # before the worker started
    resets = ClockResets(AsyncRedis(redis), "k")
    asyncio.run(resets.prime())
    watermarks = {0: WALL - 10, 1: 4_070_908_800.0}
    assert asyncio.run(resets.adopt(watermarks)) == []
    assert watermarks[0] == WALL - 10  # events since moved it on: kept

    reset(redis, settings, 1, WALL - 20, WALL)
    assert asyncio.run(resets.adopt(watermarks)) == [1]
    assert watermarks == {0: WALL - 10, 1: WALL - 20 + settings.allowed_lateness_s}
    watermarks[1] = WALL - 1  # a later event
    assert asyncio.run(resets.adopt(watermarks)) == []  # applied once
    assert watermarks[1] == WALL - 1
