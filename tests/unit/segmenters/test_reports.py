"""Segment reports: sizes history (downsampling, naming, change) and the per-segment
aggregation."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenters.clv.model import ClvModel
from segmenters.clv.summary import DAY_S
from segmenters.reports import (
    OPS_COUNTS,
    OpsRecord,
    ReportInputs,
    ReportRules,
    SizeRecord,
    auto_every,
    bucket_bounds,
    downsample,
    history,
    ops_fields,
    ops_record,
    ops_series,
    segment_report,
    size_field,
    size_record,
    split_size_field,
)
from segmenters.state import CustomerState

MODEL = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=3)
NOW = 1_800_000_000.0


@given(st.lists(st.floats(0, 10_000, allow_nan=False), max_size=60), st.floats(1, 900))
def test_downsample_keeps_the_last_record_of_each_bucket(times: list[float], every: float) -> None:
    records = [SizeRecord(t, {("journey", "new"): i}) for i, t in enumerate(times)]
    out = downsample(records, 100.0, every)
    kept = [t for t in times if t >= 100.0]
    buckets = {math.floor(t / every) for t in kept}
    assert len(out) == len(buckets)
    assert [r.at for r in out] == sorted(r.at for r in out)
    for r in out:
        b = math.floor(r.at / every)
        assert r.at == max(t for t in kept if math.floor(t / every) == b)


def test_buckets_cover_the_window_and_auto_every_bounds_the_points() -> None:
    bounds = bucket_bounds(0.0, 7 * DAY_S, 3600.0)
    assert len(bounds) == 168 and bounds[0] == (0.0, 3600.0) and bounds[-1][1] == 7 * DAY_S
    assert bucket_bounds(10.0, 10.0, 60.0) == []
    cut = bucket_bounds(90.0, 200.0, 60.0)
    assert cut == [(90.0, 120.0), (120.0, 180.0), (180.0, 200.0)]
    for window in (60.0, 3600.0, DAY_S, 7 * DAY_S, 30 * DAY_S):
        step = auto_every(window, 60.0)
        assert step >= 60.0 and (window / step <= 200 or step == DAY_S)


def ops(
    at: float,
    worker: str,
    seconds: float = 10.0,
    lag: int | None = None,
    freshness: float | None = None,
    **counts: int,
) -> OpsRecord:
    return OpsRecord(at, worker, seconds, counts, lag, freshness)


def test_ops_records_round_trip_their_stream_entry() -> None:
    r = OpsRecord(
        NOW, "host:12", 10.25, {"events": 7, "events:cart": 7, "sent": 0}, lag=3, freshness=1.5
    )
    fields = ops_fields(r)
    assert fields["lag"] == "3" and fields["sent"] == "0" and "deadletters" not in fields
    assert ops_record(fields) == r
    bare = ops_fields(OpsRecord(NOW, "w", 10.0, {"events": 0, "events:browse": 0}))
    assert bare == {"at": repr(NOW), "worker": "w", "seconds": "10.0", "events": "0"}
    assert ops_record(bare) == OpsRecord(NOW, "w", 10.0, {"events": 0})
    assert ops_record({"at": "x", "worker": "w", "seconds": "1"}) is None
    assert ops_record({"at": "1.0", "seconds": "1"}) is None


def test_ops_series_sums_workers_per_bucket_as_rates_and_gauges() -> None:
    t0 = 1_000_200.0  # a multiple of 10 and of 60
    records = []
    for k in range(1, 13):  # two workers recording every 10 s, just after each slot starts
        at = t0 + 10 * k + 0.2
        records.append(ops(at, "a", events=50, **{"events:cart": 50}, lag=4, freshness=2.0))
        records.append(ops(at + 0.1, "b", deadletters=10, changes=20, lag=k, freshness=1.0 * k))
    s = ops_series(records, t0, t0 + 125.0, 10.0)
    # whole buckets only: [t0, t0 + 120); each bucket's end is its point
    assert s["at"] == [t0 + 10 * (k + 1) for k in range(12)]
    # the first bucket holds 98 % of the first records (the rest of them is before t0)
    assert s["rates"]["events"][0] == 4.9 and s["rates"]["events"][1] == 5.0
    assert s["events"] == {"cart": s["rates"]["events"]}
    assert s["rates"]["changes"][5] == 2.0 and s["rates"]["sent"][5] == 0.0
    # lag: each worker's figure at the bucket's end, summed; freshness: the worst
    assert s["lag"][4] == 4 + 5 and s["freshness"][4] == 5.0 and s["workers"][4] == 2
    # minutes: six records per worker each, rates over 60 s, gauges the last of the minute
    m = ops_series(records, t0, t0 + 125.0, 60.0)
    assert m["at"] == [t0 + 60, t0 + 120]
    assert m["rates"]["events"] == [round(299 / 60, 4), 5.0]
    assert m["lag"] == [4 + 6, 4 + 12] and m["freshness"] == [6.0, 12.0]


def test_ops_series_spreads_a_long_period_and_leaves_out_unknown_gauges() -> None:
    # a record kept back by a Redis failure covers 30 s: its counts go to the 3 buckets
    s = ops_series([ops(130.0, "a", 30.0, events=90)], 0.0, 200.0, 10.0)
    assert s["at"] == [110.0, 120.0, 130.0] and s["rates"]["events"] == [3.0, 3.0, 3.0]
    assert s["lag"] == [None, None, None] and s["workers"] == [0, 0, 1]
    assert ops_series([], 0.0, 100.0, 10.0)["at"] == []
    # a bucket the window ends in is not shown (its records may not all be written)
    assert ops_series([ops(130.0, "a", events=9)], 0.0, 129.0, 10.0)["at"] == []


@given(
    st.lists(
        st.tuples(st.floats(0, 5000, allow_nan=False), st.floats(0.5, 120), st.integers(0, 500)),
        max_size=40,
    ),
    st.sampled_from([1.0, 10.0, 60.0, 300.0]),
)
def test_ops_series_keeps_every_count_of_the_window(
    rows: list[tuple[float, float, int]], every: float
) -> None:
    records = [
        ops(200.0 + at, f"w{i % 3}", seconds, events=n) for i, (at, seconds, n) in enumerate(rows)
    ]
    s = ops_series(records, 0.0, 6000.0, every)
    rounding = 0.0001 * every * len(s["at"]) + 1e-6  # rates are rounded to 4 digits
    assert sum(s["rates"]["events"]) * every == pytest.approx(
        sum(n for _, _, n in rows), abs=rounding
    )
    assert s["at"] == sorted(s["at"]) and all(t % every == 0 for t in s["at"])
    assert set(s["rates"]) == set(OPS_COUNTS)


def test_custom_segments_are_named_as_the_segments_endpoint_names_them() -> None:
    for dimension, segment in [
        ("custom:vip", "member"),
        ("interest", "books:sci-fi"),
        ("geographic", "DE/Bavaria"),
        ("journey", "new"),
    ]:
        assert split_size_field(size_field(dimension, segment)) == (dimension, segment)
    assert size_record({"custom:vip:member": "2"}) is None  # no time, no record
    assert size_record({"at": "x"}) is None


def test_history_fills_missing_segments_with_zero_and_reports_the_change() -> None:
    records = [
        SizeRecord(0.0, {("journey", "new"): 4, ("custom:vip", "member"): 1}),
        SizeRecord(60.0, {("journey", "new"): 2, ("journey", "buyer"): 3}),
    ]
    everything = history(records)
    assert everything["dimensions"] == {
        "custom:vip": {"member": [1, 0]},
        "journey": {"buyer": [0, 3], "new": [4, 2]},
    }
    assert everything["change"]["journey"]["new"] == {"from": 4, "to": 2, "delta": -2, "pct": -50.0}
    one = history(records, "journey", "gone")
    assert one["dimensions"] == {"journey": {"gone": [0, 0]}} and one["at"] == [0.0, 60.0]
    assert history([], "journey", "new")["change"]["journey"]["new"]["delta"] is None


def state(cid: str, **kw: object) -> CustomerState:
    return CustomerState(cid, **kw)  # type: ignore[arg-type]


def inputs(**kw: object) -> ReportInputs:
    day = int(NOW // DAY_S)
    buyer = state(
        "b",
        first_seen=NOW - 28 * DAY_S,
        last_seen=NOW - DAY_S,
        events=40,
        revenue=90.0,
        last_order_at=NOW - 2 * DAY_S,
        buy_days={str(day - 20): 50.0, str(day - 2): 40.0},
    )
    old = state(
        "o",
        first_seen=NOW - 100 * DAY_S,
        last_seen=NOW - 60 * DAY_S,
        events=2,
        revenue=30.0,
        last_order_at=NOW - 60 * DAY_S,
        buy_days={str(day - 60): 30.0},
    )
    browser = state("w", first_seen=NOW - 3 * DAY_S, last_seen=NOW, events=9)
    base: dict[str, object] = {
        "now": NOW,
        "sizes": {
            ("journey", "loyal"): 1,
            ("journey", "lapsed"): 1,
            ("journey", "browsing"): 1,
            ("custom:big", "member"): 2,
            ("custom:big", "non_member"): 1,
        },
        "start": SizeRecord(NOW - 7 * DAY_S, {("journey", "loyal"): 2}),
        "flows": {"journey": [{"from": "loyal", "to": "lapsed", "count": 1}]},
        "flows_window_s": 7 * DAY_S,
        "last_entry": {("journey", "lapsed"): NOW - 3600.0, ("journey", "loyal"): NOW - 30 * DAY_S},
        "entries_since": NOW - 40 * DAY_S,
        "members": {
            ("journey", "loyal"): ["b"],
            ("journey", "lapsed"): ["o"],
            ("journey", "browsing"): ["w"],
            ("custom:big", "member"): ["b", "o"],
            ("custom:big", "non_member"): ["w"],
        },
        "states": {"b": buyer, "o": old, "w": browser},
        "clocks": {"b": NOW, "o": NOW, "w": NOW},
        "model": MODEL,
    }
    base.update(kw)
    return ReportInputs(**base)  # type: ignore[arg-type]


def rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(d["dimension"], r["segment"]): r for d in report["dimensions"] for r in d["segments"]}


def test_report_figures_per_segment() -> None:
    report = segment_report(inputs(), ReportRules(window_s=7 * DAY_S))
    by = rows(report)
    for d in report["dimensions"]:
        assert abs(sum(r["share"] for r in d["segments"]) - 1.0) < 1e-3
    loyal, lapsed, browsing = (
        by["journey", "loyal"],
        by["journey", "lapsed"],
        by["journey", "browsing"],
    )
    assert loyal["change"] == {"from": 2, "to": 1, "delta": -1, "pct": -50.0}
    assert lapsed["change"]["from"] == 0  # absent from the first record: no member then
    assert (loyal["entries"], loyal["exits"], lapsed["entries"], lapsed["exits"]) == (0, 1, 1, 0)
    assert loyal["conversion"] == 1.0 and lapsed["conversion"] == 0.0
    assert loyal["revenue_per_customer"] == 90.0
    assert abs(loyal["engagement"] - 40 / (27 / 7)) < 1e-3  # 40 events over 27 days
    assert browsing["engagement"] == 9.0  # under a week counts as one week
    assert browsing["clv"] is None and browsing["scored"] == 0  # never bought
    assert loyal["clv"] > 0 and 0 < loyal["p_alive"] <= 1
    assert lapsed["p_alive"] == 1.0  # BG/NBD: a one-time buyer has not dropped out yet
    big = by["custom:big", "member"]
    assert big["over_broad"] and not by["custom:big", "non_member"]["over_broad"]
    assert big["revenue_per_customer"] == 60.0 and big["conversion"] == 0.5
    assert not any(r["over_broad"] for (d, _), r in by.items() if d == "journey")
    assert loyal["stale"] is True and lapsed["stale"] is False
    assert not any(r["sampled"] for r in by.values())
    assert report["model_version"] == 3


def test_report_without_model_history_or_clock() -> None:
    report = segment_report(
        inputs(model=None, start=None, entries_since=None, last_entry={}, clocks={}),
        ReportRules(window_s=DAY_S, over_broad_share=0.9),
    )
    by = rows(report)
    loyal = by["journey", "loyal"]
    assert loyal["clv"] is None and loyal["p_alive"] is None and loyal["conversion"] is None
    assert loyal["change"]["from"] is None and loyal["stale"] is None
    assert not by["custom:big", "member"]["over_broad"]  # 2/3 is under 0.9
    assert report["history_from"] is None


def test_report_says_when_it_sampled() -> None:
    sizes = {("journey", "loyal"): 5000}
    report = segment_report(
        inputs(sizes=sizes, members={("journey", "loyal"): ["b"]}), ReportRules(window_s=DAY_S)
    )
    (row,) = report["dimensions"][0]["segments"]
    assert row["sampled"] and row["members_read"] == 1 and row["size"] == 5000
