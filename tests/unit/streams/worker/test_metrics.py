"""The worker's metrics: counters from batches, lag and stalls, flows, sizes (no servers)."""

import asyncio
from collections import Counter

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from segmenters.config import EngineConfig
from streams.store.series import read_flows, read_sizes
from streams.worker.metrics import Metrics
from streams.worker.pipeline import BatchProcessor, BatchStats, Record
from streams.worker.reloads import ReloadStatus


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

    def hset(self, key, mapping):
        self.ops.append(("hset", key, mapping))

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


def make(highwaters, wall=None, mono=None, config=lambda: ()):
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
        config=config,
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


def test_action_decisions_and_deliveries_are_counted_per_action_and_channel():
    m, _, _ = make({})
    m.actions_decided(
        Counter(
            {
                ("email/win_back", "send", "sent"): 3,
                ("email/win_back", "control", "holdout"): 2,
                ("email/win_back", "suppressed", "cooldown"): 4,
                ("email/win_back", "suppressed", "no_consent"): 1,
                ("ads/win_back", "scheduled", "quiet_hours"): 1,
            }
        )
    )
    for confirmed in (True, True, False):
        m.action_delivery("email/win_back", "email", confirmed)
    v = sample_values(m)
    email = (("action", "email/win_back"), ("channel", "email"))
    assert v[("segstream_actions_decided_total", (*email, ("outcome", "send")))] == 3
    assert v[("segstream_actions_decided_total", (*email, ("outcome", "suppressed")))] == 5
    ads = (("action", "ads/win_back"), ("channel", "ads"))
    assert v[("segstream_actions_decided_total", (*ads, ("outcome", "scheduled")))] == 1
    assert v[("segstream_actions_suppressed_total", (*email, ("reason", "cooldown")))] == 4
    assert v[("segstream_actions_suppressed_total", (*email, ("reason", "no_consent")))] == 1
    assert v[("segstream_actions_sent_total", email)] == 2
    assert v[("segstream_actions_failed_total", email)] == 1
    # the existing series keeps its labels
    old = (("action", "email/win_back"), ("outcome", "control"), ("reason", "holdout"))
    assert v[("segstream_action_decisions_total", old)] == 2
    text = m.exposition().decode()
    assert "# TYPE segstream_actions_sent_total counter" in text
    assert "# HELP segstream_actions_suppressed_total " in text
    assert m.refresh()["actions"] == {
        "ads/win_back": {
            "channel": "ads",
            "decided": {"scheduled": 1},
            "suppressed": {},
            "sent": 0,
            "failed": 0,
        },
        "email/win_back": {
            "channel": "email",
            "decided": {"send": 3, "control": 2, "suppressed": 5},
            "suppressed": {"cooldown": 4, "no_consent": 1},
            "sent": 2,
            "failed": 1,
        },
    }


def test_config_reloads_show_the_success_time_the_errors_and_the_last_error(tmp_path):
    wall = Clock(1000.0)
    segments = ReloadStatus("segments", tmp_path / "segments.toml", wall)
    actions = ReloadStatus("actions", tmp_path / "actions.toml", wall)
    m, _, _ = make({}, config=lambda: [segments, actions])
    actions.loaded("v1")
    v = sample_values(m)
    ts = "segstream_config_reload_success_timestamp_seconds"
    path = str(tmp_path / "actions.toml")
    assert v[(ts, (("file", "actions"), ("path", path)))] == 1000.0
    assert (ts, (("file", "segments"), ("path", str(tmp_path / "segments.toml")))) not in v
    assert v[("segstream_config_reload_errors_total", (("file", "actions"),))] == 0
    assert not [k for k in v if k[0] == "segstream_config_last_error"]

    wall.t = 1060.0
    actions.failed(ValueError('line 5: rule 1 (journey -> lapsd):\n  unknown segment "lapsd"'))
    v = sample_values(m)
    error = 'line 5: rule 1 (journey -> lapsd): unknown segment "lapsd"'  # one line
    assert v[("segstream_config_last_error", (("error", error), ("file", "actions")))] == 1
    assert v[("segstream_config_reload_errors_total", (("file", "actions"),))] == 1
    assert v[(ts, (("file", "actions"), ("path", path)))] == 1000.0  # the last success stays
    assert m.refresh()["config"]["actions"] == {
        "path": path,
        "version": "v1",
        "loaded_at": 1000.0,
        "last_error": error,
        "last_error_at": 1060.0,
        "errors": 1,
        "failing": True,
    }
    assert m.refresh()["config"]["segments"]["loaded_at"] is None

    wall.t = 1120.0
    actions.loaded("v2")
    v = sample_values(m)
    assert v[(ts, (("file", "actions"), ("path", path)))] == 1120.0
    assert not [k for k in v if k[0] == "segstream_config_last_error"]  # fixed
    status = m.refresh()["config"]["actions"]
    assert (status["version"], status["failing"], status["last_error"]) == ("v2", False, error)


def _sender(outcomes):
    """An action sender whose acknowledgements follow ``outcomes``: "ok" and "fail" give a
    future (as the producer's), "raise" raises at the send, "later" gives a coroutine."""
    sent = []

    async def send(topic, key, value):
        how = outcomes.pop(0)
        sent.append((topic, key, value))
        if how == "raise":
            raise ConnectionError("broker away")
        if how == "later":

            async def ack():
                return None

            return ack()
        fut = asyncio.get_running_loop().create_future()
        if how == "ok":
            fut.set_result(None)
        else:
            fut.set_exception(ConnectionError("not acknowledged"))
        return fut

    return send, sent


def _pipeline(send, told):
    async def nothing(key, value):
        raise AssertionError("no change is sent")

    return BatchProcessor(
        store=None,  # type: ignore[arg-type]  # only the senders are used
        config=EngineConfig(),
        topic_prefix="t.",
        max_event_bytes=1000,
        send_change=nothing,
        send_deadletter=nothing,
        send_action=send,
        on_delivery=lambda action, channel, ok: told.append((action, channel, ok)),
    )


def test_each_action_message_is_told_once_confirmed_or_failed():
    entry = orjson.dumps(
        {"topic": "t.actions.email", "value": {"channel": "email", "action": "win_back"}}
    )

    async def run():
        told = []
        send, sent = _sender(["ok", "fail", "later", "raise"])
        pipeline = _pipeline(send, told)
        acks = [await pipeline._resend(b"c-1", entry, Counter()) for _ in range(3)]
        results = await asyncio.gather(*acks, return_exceptions=True)
        assert [isinstance(r, Exception) for r in results] == [False, True, False]
        with pytest.raises(ConnectionError):
            await pipeline._resend(b"c-1", entry, Counter())
        assert len(sent) == 4
        pipeline.send_action = None  # actions turned off since: the message is dropped
        await (await pipeline._resend(b"c-1", entry, Counter()))
        return told

    told = asyncio.run(run())
    ok, failed = ("email/win_back", "email", True), ("email/win_back", "email", False)
    assert told == [ok, failed, ok, failed, failed]


class OpsRedis:
    """The ops stream's XADD, failing while ``down``."""

    def __init__(self):
        self.added = []
        self.down = False

    async def xadd(self, key, fields, minid, approximate):
        if self.down:
            raise OSError("connection refused")
        self.added.append((key, fields, minid, approximate))


def test_each_ops_record_holds_the_counts_since_the_last_one_and_the_gauges_now():
    m, wall, _ = make({("in.cart", 0): 10, ("in.cart", 1): 4})
    redis = OpsRedis()
    records = [Record("in.cart", 0, o, b"k", b"v") for o in range(5)]
    stats = BatchStats(events=5, deadletters=1, by_type={"cart": 4}, seconds=0.01)
    m.batch_done(records, [998.0] * 5, stats)
    m.timers_fired(3, [])
    wall.t = 1010.0
    first = asyncio.run(m.record_history(redis, 3600.0))
    assert first is not None and first.seconds == 10.0
    assert first.counts == {
        "events": 4,
        "deadletters": 1,
        "changes": 0,
        "timers": 3,
        "sent": 0,
        "events:cart": 4,
    }
    # partition 0: lag 5 (partition 1 unknown); its newest event is 20 s old
    assert (first.lag, first.freshness) == (5, 20.0)
    key, fields, minid, approximate = redis.added[0]
    assert key == "t:ops" and fields["worker"] == m.worker_id and fields["timers"] == "3"
    assert (minid, approximate) == (0, True)  # nothing is an hour old yet
    # a failed write keeps the counts for the next record, which covers both periods
    m.timers_fired(2, [])
    wall.t = 1020.0
    redis.down = True
    with pytest.raises(OSError):
        asyncio.run(m.record_history(redis, 3600.0))
    assert sample_values(m)[("segstream_redis_errors_total", (("where", "history"),))] == 1
    redis.down = False
    wall.t = 1030.0
    again = asyncio.run(m.record_history(redis, 60.0))
    assert again is not None and (again.seconds, again.counts["timers"]) == (20.0, 2)
    assert again.counts["events"] == 0 and redis.added[-1][2] == (1030 - 60) * 1000
