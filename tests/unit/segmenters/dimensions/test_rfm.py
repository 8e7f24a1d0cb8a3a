import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.dimensions.rfm import (
    ALPHA,
    QUANTILES,
    RfmQuantiles,
    bucket,
    bucket_value,
    next_deadline,
    quantiles,
    rfm,
    rfm_segment,
    scores,
)
from segmenters.state import CustomerState

DAY = 86400.0
Q = RfmQuantiles(
    recency_days=(10, 20, 30, 40),
    frequency=(1, 2, 3, 5),
    monetary=(50, 100, 200, 400),
    buyers=50,
    as_of=0.0,
)


def buyer(orders=1, revenue=10.0, last=0.0):
    return CustomerState("c", orders=orders, revenue=revenue, last_order_at=last)


@pytest.mark.parametrize(("orders", "f"), [(1, 1), (2, 2), (3, 3), (4, 4), (5, 4), (6, 5)])
def test_frequency_score_counts_quantiles_strictly_below(orders, f):
    assert scores(buyer(orders=orders), 0.0, Q)[1] == f


@pytest.mark.parametrize(("revenue", "m"), [(50, 1), (50.01, 2), (100, 2), (400, 4), (401, 5)])
def test_monetary_score_boundaries(revenue, m):
    assert scores(buyer(revenue=revenue), 0.0, Q)[2] == m


# a quantile is known to the histogram's hour: older by more than that counts
@pytest.mark.parametrize(
    ("days", "r"), [(0, 5), (10, 5), (10 + 1 / 24, 5), (10.042, 4), (30, 3), (30.05, 2), (41.5, 1)]
)
def test_recency_score_boundaries(days, r):
    assert scores(buyer(), days * DAY, Q)[0] == r


def test_a_buyer_of_a_second_ago_is_recent_when_most_buyers_bought_this_hour():
    """A young shop: the recency quantiles are all 0 days. A second's difference is no
    recency (R5, never "at_risk" right after an order); two hours are."""
    young = RfmQuantiles((0.0, 0.0, 0.0, 0.0), (1, 1, 2, 3), (20, 50, 90, 200), 20, as_of=0.0)
    loyal = buyer(orders=4, revenue=300.0, last=0.0)
    assert scores(loyal, 1.0, young)[0] == 5
    assert rfm_segment(*scores(loyal, 1.0, young)[:2]) == "champions"
    assert scores(loyal, 2 * 3600.0, young)[0] == 1


TABLE = {
    "hibernating": [(1, 1), (1, 2), (2, 1), (2, 2)],
    "at_risk": [(1, 3), (1, 4), (2, 3), (2, 4)],
    "cant_lose": [(1, 5), (2, 5)],
    "about_to_sleep": [(3, 1), (3, 2)],
    "need_attention": [(3, 3)],
    "loyal": [(3, 4), (3, 5), (4, 4), (4, 5)],
    "promising": [(4, 1)],
    "new": [(5, 1)],
    "potential_loyalist": [(4, 2), (4, 3), (5, 2), (5, 3)],
    "champions": [(5, 4), (5, 5)],
}


def test_segment_table_is_exactly_the_design():
    got = {(r, f): rfm_segment(r, f) for r in range(1, 6) for f in range(1, 6)}
    want = {rf: name for name, rfs in TABLE.items() for rf in rfs}
    assert got == want


def test_non_buyers_have_no_rfm_segment():
    assert rfm(CustomerState("c"), 0.0, Q) is None
    assert rfm(buyer(), 0.0, None) is None


def test_recency_timer_fires_just_after_each_quantile():
    s = buyer(last=0.0)
    assert next_deadline(s, 0.0, Q) == 10 * DAY + 3600.0 + 1.0
    assert next_deadline(s, 10 * DAY + 3601.0, Q) == 20 * DAY + 3600.0 + 1.0
    assert next_deadline(s, 41 * DAY, Q) is None


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e9))
def test_buckets_hold_values_within_the_relative_accuracy(value):
    assert abs(bucket_value(bucket(value)) - value) <= ALPHA * value * 1.0001


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=1e6), min_size=1, max_size=300))
def test_sketch_quantiles_match_exact_quantiles_within_accuracy(values):
    counts: dict[int, int] = {}
    for v in values:
        counts[bucket(v)] = counts.get(bucket(v), 0) + 1
    ordered = sorted(values)
    for q, k in zip(QUANTILES, quantiles(counts), strict=True):
        exact = ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # inverse CDF
        assert abs(bucket_value(k) - exact) <= ALPHA * exact * 1.0001


def test_quantiles_from_shared_histograms():
    hour = 3600.0
    recency = {int(10 * DAY / hour): 5, int(30 * DAY / hour): 5}  # last orders at day 10, 30
    q = RfmQuantiles.from_counts(recency, {1: 6, 3: 4}, {bucket(100.0): 10}, as_of=40 * DAY)
    assert q.buyers == 10
    assert q.frequency == (1.0, 1.0, 1.0, 3.0)
    assert q.recency_days[0] < q.recency_days[-1]
    assert round(q.recency_days[0]) == 10 and round(q.recency_days[-1]) == 30


def test_the_documented_rf_table_is_the_code():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[4] / "docs" / "segmentation.md").read_text()
    rows = [ln.strip() for ln in doc.splitlines() if ln.strip().startswith("| R") and "`" in ln]
    table = {int(r.split("|")[1].strip()[1:]): r.split("|")[2:7] for r in rows}
    assert sorted(table) == [1, 2, 3, 4, 5]
    for r, cells in table.items():
        assert [c.strip().strip("`") for c in cells] == [rfm_segment(r, f) for f in range(1, 6)]
