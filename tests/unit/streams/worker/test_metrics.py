"""The worker's metrics: counters from batches, lag and stalls, flows, sizes (no servers)."""

import asyncio
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from streams.store.series import read_flows, read_sizes
from streams.worker.metrics import Metrics
from streams.worker.pipeline import BatchStats, Record


class FakeClocks:
    def __init__(self, clocks):
        self.watermarks = {0: 990.0}
        self.clocks = clocks


class FakePipe:
    def __init__(self, redis):
        self.redis = redis
        self.ops = []

    def hincrby(self, key, field, n):
        self.ops.append(("hincrby", key, field, n))

    def expire(self, key, ttl):
        self.ops.append(("expire", key, ttl))

    def hgetall(self, key):
        self.ops.append(("hgetall", key))

    async def execute(self):
        out = []
        for op in self.ops:
            if op[0] == "hincrby":
                h = self.redis.hashes.setdefault(op[1], {})
                h[op[2].encode()] = h.get(op[2].encode(), 0) + op[3]
                out.append(h[op[2].encode()])
            elif op[0] == "hgetall":
                out.append(dict(self.redis.hashes.get(op[1], {})))
            else:
                out.append(True)
        return out


class FakeRedis:
    def __init__(self):
        self.hashes = {}
        self.stream = []

    def pipeline(self, transaction=False):
        return FakePipe(self)

    async def xrevrange(self, key, count):
        return list(reversed(self.stream))[:count]


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def make(highwaters, wall=None, mono=None):
    wall = wall or Clock(1000.0)
    mono = mono or Clock(0.0)
    m = Metrics(
        FakeClocks(lambda parts: {p: 985.0 for p in parts}),  # type: ignore[arg-type]
        prefix="t",
        stall_after_s=30,
        assignment=lambda: [("in.cart", 0), ("in.cart", 1)],
        highwater=lambda topic, p: highwaters.get((topic, p)),
        wall=wall,
        monotonic=mono,
    )
    return m, wall, mono


def sample_values(m):
    out = {}
    for family in text_string_to_metric_families(m.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_a_batch_counts_events_and_moves_positions():
    m, wall, _ = make({("in.cart", 0): 10, ("in.cart", 1): 4})
    records = [Record("in.cart", 0, o, b"k", b"v") for o in range(5)]
    stats = BatchStats(events=5, applied=4, deadletters=1, by_type={"cart": 4}, seconds=0.01)
    m.batch_done(records, [998.0] * 5, stats)
    v = sample_values(m)
    assert v[("segstream_messages_total", ())] == 5
    assert v[("segstream_events_total", (("type", "cart"),))] == 4
    assert v[("segstream_deadletters_total", ())] == 1
    assert v[("segstream_broker_to_state_seconds_count", ())] == 5
    assert v[("segstream_broker_to_state_seconds_sum", ())] == 10.0
    # partition 0: applied up to offset 4, end 10 -> lag 5; partition 1: nothing applied yet
    assert v[("segstream_consumer_lag", (("partition", "0"), ("topic", "in.cart")))] == 5
    assert ("segstream_consumer_lag", (("partition", "1"), ("topic", "in.cart"))) not in v
    assert v[("segstream_partition_event_age_seconds", (("partition", "0"),))] == 10.0
    assert v[("segstream_partition_clock_seconds", (("partition", "1"),))] == 985.0


def test_a_partition_with_lag_and_no_progress_is_stalled():
    m, _, mono = make({("in.cart", 0): 10})
    m.batch_done([Record("in.cart", 0, 3, b"k", b"v")], [None], BatchStats(events=1))
    status = m.refresh()
    assert [p["stalled"] for p in status["partitions"]] == [False, False]
    mono.t = 31.0
    status = m.refresh()
    p0, p1 = status["partitions"]
    assert (p0["lag"], p0["stalled"]) == (6, True)
    assert (p1["lag"], p1["stalled"]) == (None, False)  # lag unknown: not called stalled
    m.batch_done([Record("in.cart", 0, 9, b"k", b"v")], [None], BatchStats(events=1))
    assert m.refresh()["partitions"][0] == {**p0, "lag": 0, "stalled": False, "progress_age_s": 0}


def test_flows_add_up_in_minute_and_hour_buckets_and_read_back_per_window():
    m, wall, _ = make({})
    redis = FakeRedis()

    def change(dim, prev, cur):
        return Counter({(dim, prev or "", cur): 1})

    m.changes_published(change("journey", None, "browsing"))
    m.changes_published(change("journey", None, "browsing"))
    m.changes_published(change("journey", "browsing", "cart"))
    assert asyncio.run(m.flush_flows(redis)) == 3
    assert asyncio.run(m.flush_flows(redis)) == 0
    wall.t = 1000.0 + 600
    m.changes_published(change("journey", "browsing", "cart"))
    asyncio.run(m.flush_flows(redis))
    v = sample_values(m)
    assert v[("segstream_segment_changes_total", (("dimension", "journey"),))] == 4

    recent = asyncio.run(read_flows(redis, "t", 300, 1600.0))
    assert recent["resolution"] == "minute"
    assert recent["flows"] == {"journey": [{"from": "browsing", "to": "cart", "count": 1}]}
    hour = asyncio.run(read_flows(redis, "t", 3600, 1600.0))["flows"]["journey"]
    assert hour == [
        {"from": None, "to": "browsing", "count": 2},
        {"from": "browsing", "to": "cart", "count": 2},
    ]
    week = asyncio.run(read_flows(redis, "t", 7 * 86400, 1600.0))
    assert week["resolution"] == "hour" and week["flows"]["journey"] == hour


def test_sizes_stream_becomes_series_per_dimension():
    redis = FakeRedis()
    redis.stream = [
        (b"1-0", {b"at": b"100.0", b"journey:browsing": b"3"}),
        (b"2-0", {b"at": b"160.0", b"journey:browsing": b"2", b"journey:cart": b"1"}),
        (b"3-0", {b"at": b"220.0", b"geographic:DE/Bavaria": b"4"}),
    ]
    sizes = asyncio.run(read_sizes(redis, "t", 10))
    assert sizes == {
        "at": [100.0, 160.0, 220.0],
        "dimensions": {
            "geographic": {"DE/Bavaria": [0, 0, 4]},
            "journey": {"browsing": [3, 2, 0], "cart": [0, 1, 0]},
        },
    }
    assert asyncio.run(read_sizes(redis, "t", 1))["at"] == [220.0]


def test_a_clock_ahead_of_wall_time_is_a_fault_in_the_gauge_and_the_status():
    wall = Clock(1000.0)
    ahead = {0: 985.0, 1: 1000.0 + 301}  # partition 1: just over SEGSTREAM_MAX_FUTURE_S
    m = Metrics(
        FakeClocks(lambda parts: {p: ahead[p] for p in parts}),  # type: ignore[arg-type]
        prefix="t",
        stall_after_s=30,
        assignment=lambda: [("in.cart", 0), ("in.cart", 1)],
        highwater=lambda topic, p: None,
        wall=wall,
        monotonic=Clock(0.0),
        max_future_s=300,
    )
    rows = {r["partition"]: r for r in m.refresh()["partitions"]}
    assert (rows[0]["clock_ahead_s"], rows[0]["clock_fault"]) == (0.0, False)
    assert (rows[1]["clock_ahead_s"], rows[1]["clock_fault"]) == (301.0, True)
    values = sample_values(m)
    gauge = "segstream_partition_clock_ahead_seconds"
    assert values[(gauge, (("partition", "0"),))] == 0.0
    assert values[(gauge, (("partition", "1"),))] == 301.0
    ahead[1] = 1000.0 + 300  # exactly the bound: no fault
    rows = {r["partition"]: r for r in m.refresh()["partitions"]}
    assert rows[1]["clock_fault"] is False


class ClusterUnreachable(FakeRedis):
    """A Redis Cluster client with no reachable node: its error is not a RedisError."""

    def pipeline(self, transaction=False):
        pipe = FakePipe(self)

        async def execute():
            from redis.exceptions import RedisClusterException

            raise RedisClusterException("Redis Cluster cannot be connected")

        pipe.execute = execute
        return pipe


def test_flows_are_kept_for_the_next_flush_when_a_redis_cluster_is_unreachable():
    m, _, _ = make({})
    m.changes_published(Counter({("journey", "", "loyal"): 1}))
    try:
        asyncio.run(m.flush_flows(ClusterUnreachable()))
    except Exception as exc:  # re-raised for the caller's log, after keeping the counts
        assert type(exc).__name__ == "RedisClusterException"
    else:
        raise AssertionError("the failed flush was not reported")
    assert sample_values(m)[("segstream_redis_errors_total", (("where", "flows"),))] == 1
    redis = FakeRedis()
    assert asyncio.run(m.flush_flows(redis)) == 1  # the kept flow goes out with the next one
