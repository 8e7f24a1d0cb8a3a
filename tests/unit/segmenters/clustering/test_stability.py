"""Stable behaviour clusters: id alignment, the hold-back rule, drift logged once,
descriptions that do not flip, centroids in units, churn on a simulated workload."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.clustering import Cluster, ClusterModel, describe
from segmenters.clustering.matching import _match
from segmenters.clustering.model import _from_units, _to_units
from segmenters.clustering.report import centroid_rows, rounded, unit
from segmenters.clustering.stability import (
    HoldBack,
    Review,
    changed_descriptions,
    interpolate,
    membership_churn,
    moves,
    review,
    step_towards,
    within,
)
from segmenters.features import FEATURES, LOG_FEATURES
from tests.unit.segmenters.clustering.workload import Gated, publish_always, run

X = ("x", "y")


def model(
    centers: list[tuple[float, float]],
    *,
    ids: list[int] | None = None,
    words: list[str] | None = None,
    sizes: list[int] | None = None,
    version: int = 1,
) -> ClusterModel:
    ids = ids or list(range(len(centers)))
    words = words or [f"w{i}" for i in ids]
    sizes = sizes or [100] * len(centers)  # made from the 400 points of grid()
    return ClusterModel(
        version,
        X,
        {"x": 0.0, "y": 0.0},
        {"x": 1.0, "y": 1.0},
        tuple(
            Cluster(i, dict(zip(X, c, strict=True)), n, w)
            for i, c, n, w in zip(ids, centers, sizes, words, strict=True)
        ),
    )


CENTERS = [(0.0, 0.0), (4.0, 0.0), (0.0, 4.0), (4.0, 4.0)]


def grid(n: int = 20) -> list[dict[str, float]]:
    """Points spread evenly over the square the centers span."""
    return [{"x": 5.0 * i / n - 0.5, "y": 5.0 * j / n - 0.5} for i in range(n) for j in range(n)]


# --- id alignment -------------------------------------------------------------------------


@pytest.mark.parametrize("perm", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)])
def test_ids_follow_the_centroids_whatever_their_order(perm):
    previous = model(CENTERS, ids=[5, 7, 8, 9])
    rng = np.random.default_rng(sum(perm))
    moved = np.array([CENTERS[p] for p in perm]) + rng.normal(0, 0.2, size=(4, 2))
    ids, next_id = _match(moved, previous.mean, previous.std, X, previous)
    assert ids == [[5, 7, 8, 9][p] for p in perm]
    assert next_id == previous.next_id == 10


def test_aligned_ids_mean_no_churn():
    old = model(CENTERS)
    permuted = [3, 1, 0, 2]
    rows = np.array([CENTERS[p] for p in permuted])
    ids, _ = _match(rows, old.mean, old.std, X, old)
    new = model([CENTERS[p] for p in permuted], ids=ids)
    assert membership_churn(old, new, grid()) == 0.0
    # without the alignment the same centroids would move most customers
    assert membership_churn(old, model([CENTERS[p] for p in permuted]), grid()) > 0.5


# --- the hold-back rule -------------------------------------------------------------------


def test_churn_counts_customers_that_change_cluster_under_hysteresis():
    old = model(CENTERS)
    points = grid()
    assert moves(old, old, points) == (0, len(points))
    shifted = model([(0.0, 0.0), (3.0, 0.0), (0.0, 4.0), (4.0, 4.0)])
    moved, seen = moves(old, shifted, points)
    assert 0 < moved < seen
    # a wider margin keeps more customers where they were
    assert moves(old, shifted, points, margin=0.3)[0] < moved
    assert membership_churn(old, shifted, []) == 0.0


def test_a_snapshot_that_moves_more_than_the_share_is_held():
    old = model(CENTERS)
    far = model([(0.0, 0.0), (2.5, 0.0), (0.0, 4.0), (4.0, 4.0)])
    verdict = review(old, far, grid(), max_move=0.01)
    assert verdict.moved > 0.01 and not verdict.stable
    assert "would move" in verdict.reason


def test_a_snapshot_that_moves_less_than_the_share_is_published():
    old = model(CENTERS)
    near = model([(0.0, 0.0), (4.05, 0.0), (0.0, 3.98), (4.0, 4.02)])
    verdict = review(old, near, grid(), max_move=0.01)
    assert verdict.moved < 0.01 and verdict.stable


#: A snapshot that moves exactly one of the 100 customers of grid(10) to another cluster.
EDGE = model([(0.0, 0.0), (3.8, 0.0), (0.0, 4.0), (4.0, 4.0)])


def test_a_snapshot_that_moves_exactly_the_share_is_held():
    old, points = model(CENTERS), grid(10)
    assert moves(old, EDGE, points) == (1, 100)
    verdict = review(old, EDGE, points, max_move=0.01)
    assert verdict.moved == 0.01 and not verdict.stable
    assert "would move 1.0% of customers (limit: fewer than 1.0%)" in verdict.reason
    assert not HoldBack().decide(verdict, 0.0).publish
    assert review(old, EDGE, points, max_move=0.011).stable


def test_a_step_that_moves_exactly_the_share_is_not_taken():
    old, points = model(CENTERS), grid(10)
    step = step_towards(old, EDGE, points, 0.01)
    assert step is not EDGE and moves(old, step, points)[0] == 0
    # part of the way: as far as the bisection finds that moves nobody
    assert 3.8 < step.clusters[1].centroid["x"] < 4.0
    assert step_towards(old, EDGE, points, 0.011) is EDGE


def test_max_move_zero_passes_only_moving_nobody_and_one_is_no_limit():
    old, points = model(CENTERS), grid(10)
    assert review(old, model(CENTERS), points, max_move=0.0).stable
    assert not review(old, EDGE, points, max_move=0.0).stable
    far = model(DRIFTED_CENTERS)
    assert membership_churn(old, far, points) > 0.1
    assert review(old, far, points, max_move=1.0).stable
    assert [within(m, 0.01) for m in (0.0, 0.0099, 0.01, 0.5)] == [True, True, False, False]


def test_a_changed_description_is_held_even_without_moves():
    old = model(CENTERS)
    reworded = model(CENTERS, words=["w0", "w1", "other words", "w3"])
    verdict = review(old, reworded, grid())
    assert verdict.moved == 0.0 and verdict.changed == (2,) and not verdict.stable
    assert "cluster_2" in verdict.reason
    # an id that appears or disappears counts as a change too
    assert changed_descriptions(
        old, model(CENTERS, ids=[0, 1, 2, 4], words=["w0", "w1", "w2", "w3"])
    ) == (3, 4)


def test_the_first_snapshot_and_a_grown_population_pass():
    assert review(None, model(CENTERS), grid()).stable
    small = model(CENTERS, sizes=[10, 10, 10, 10])  # made from 40 customers
    reworded = model(CENTERS, words=["a", "b", "c", "d"])
    assert review(small, reworded, grid()[:44]).stable is False  # 10 % more: not yet
    grown = review(small, reworded, grid()[:45])
    assert grown.stable and grown.grew and "grew" in grown.reason


# --- drift logged once ---------------------------------------------------------------------

STABLE, DRIFTED = Review(0.0, (), 0.01), Review(0.05, (), 0.01)


def test_a_drift_is_logged_once_when_it_starts_and_once_when_it_ends():
    gate = HoldBack(max_hold_s=3600.0)
    decisions = [gate.decide(STABLE, 0.0)]
    decisions += [gate.decide(DRIFTED, 10.0 * i) for i in range(1, 300)]  # 50 min drifted
    decisions.append(gate.decide(STABLE, 3000.0))
    events = [d.event for d in decisions if d.event]
    assert events == ["held", "resolved"]
    assert [d.publish for d in decisions] == [True] + [False] * 299 + [True]
    assert decisions[-1].held_for == 2990.0
    assert gate.held == 299 and gate.holds == 1 and gate.held_since is None


def test_a_snapshot_held_too_long_is_released_in_steps_until_one_passes():
    gate = HoldBack(max_hold_s=100.0)
    times = (0.0, 50.0, 99.0, 100.0, 110.0, 150.0)
    out = [gate.decide(DRIFTED, t) for t in times] + [gate.decide(STABLE, 160.0)]
    assert [(d.publish, d.step, d.event) for d in out] == [
        (False, False, "held"),
        (False, False, None),
        (False, False, None),
        (True, True, None),  # timed out: a step towards the candidate
        (True, True, None),  # and towards every newer one, without a new hold
        (True, True, None),
        (True, False, "resolved"),  # a candidate that passes ends the drift
    ]
    assert out[3].held_for == 100.0 and out[-1].held_for == 160.0
    assert gate.holds == 1 and gate.steps == 3 and gate.held == 3
    assert not gate.releasing and gate.held_since is None
    # the next drift is held again
    assert (gate.decide(DRIFTED, 170.0).publish, gate.held_since) == (False, 170.0)


def test_max_hold_zero_releases_in_steps_at_once_and_still_logs_once():
    gate = HoldBack(max_hold_s=0.0)
    out = [gate.decide(r, t) for t, r in enumerate([DRIFTED, DRIFTED, DRIFTED, STABLE, STABLE])]
    assert all(d.publish for d in out)
    assert [d.step for d in out] == [True, True, True, False, False]
    assert [d.event for d in out] == ["held", None, None, "resolved", None]
    with pytest.raises(ValueError):
        HoldBack(-1.0)


# --- release in steps ------------------------------------------------------------------------

#: The centres after a drift: every cluster moved, together far more than 1 % of grid().
DRIFTED_CENTERS = [(1.5, -0.5), (2.0, 1.0), (-0.5, 2.5), (3.0, 2.0)]


def scaled_model(centers, mean, std, version=2, words=None):
    """A model with its own scaler (``centers`` in feature space), as each snapshot has."""
    return ClusterModel(
        version,
        X,
        dict(zip(X, mean, strict=True)),
        dict(zip(X, std, strict=True)),
        tuple(
            Cluster(
                i,
                {f: (v - m) / s for f, v, m, s in zip(X, c, mean, std, strict=True)},
                100,
                (words or [f"w{i}" for i in range(len(centers))])[i],
            )
            for i, c in enumerate(centers)
        ),
    )


def release(current, targets, points, max_move, margin=0.1, limit=200):
    """Step from ``current`` towards each of ``targets`` in turn (a new one each step
    until the last), as the worker does; returns the models published, in order."""
    published = []
    for i in range(limit):
        target = targets[min(i, len(targets) - 1)]
        step = step_towards(current, target, points, max_move, margin)
        assert within(membership_churn(current, step, points, margin), max_move)
        published.append(step)
        if step is target and i >= len(targets) - 1:
            return published
        current = step
    raise AssertionError(f"no target reached in {limit} steps")


def test_interpolation_runs_from_the_model_in_force_to_the_target():
    old = model(CENTERS)
    new = scaled_model(DRIFTED_CENTERS, (0.5, -0.2), (1.3, 0.8), words=list("abcd"))
    assert interpolate(old, new, 1.0) is new
    for w, expected in ((0.0, CENTERS), (0.5, None)):
        mid = interpolate(old, new, w)
        assert mid.version == new.version and [c.description for c in mid.clusters] == [
            c.description for c in old.clusters
        ]
        for i, c in enumerate(mid.clusters):
            x = [c.centroid[f] * mid.std[f] + mid.mean[f] for f in X]
            a, b = CENTERS[i], DRIFTED_CENTERS[i]
            want = expected[i] if expected else [(p + q) / 2 for p, q in zip(a, b, strict=True)]
            assert x == pytest.approx(want)
    with pytest.raises(ValueError):
        interpolate(old, model(CENTERS, ids=[0, 1, 2, 7]), 0.5)


@given(
    st.lists(
        st.tuples(st.floats(-1.0, 5.0), st.floats(-1.0, 5.0)), min_size=4, max_size=4, unique=True
    ),
    st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),
    st.tuples(st.floats(0.5, 2.0), st.floats(0.5, 2.0)),
    st.sampled_from([0.0, 0.01, 0.05]),
)
@settings(max_examples=25, deadline=None)
def test_a_step_moves_fewer_than_max_move_and_steps_reach_the_target(centers, mean, std, max_move):
    points = grid(10)
    target = scaled_model(centers, mean, std)
    published = release(model(CENTERS), [target], points, max_move)
    assert published[-1] is target
    # intermediate steps keep the words in force; only reaching the target rewords
    assert all(c.description == f"w{c.id}" for m in published[:-1] for c in m.clusters)
    assert all(sum(c.size for c in m.clusters) == len(points) for m in published[:-1])


def test_a_release_moves_the_customers_in_steps_of_fewer_than_max_move():
    old, points = model(CENTERS), grid()
    target = scaled_model(DRIFTED_CENTERS, (0.2, 0.1), (1.2, 0.9))
    assert membership_churn(old, target, points) > 0.1  # at once: more than a tenth
    published = release(old, [target], points, 0.01)
    churn = [
        membership_churn(a, b, points)
        for a, b in zip([old, *published[:-1]], published, strict=True)
    ]
    assert 5 <= len(published) <= 60 and max(churn) < 0.01
    assert published[-1] is target


def test_a_new_target_mid_way_is_followed():
    old, points = model(CENTERS), grid()
    first = scaled_model(DRIFTED_CENTERS, (0.0, 0.0), (1.0, 1.0))
    second = scaled_model(
        [(0.5, 0.5), (5.0, -1.0), (-1.0, 5.0), (5.0, 5.0)], (0.0, 0.0), (1.0, 1.0)
    )
    published = release(old, [first] * 3 + [second], points, 0.01)
    assert published[-1] is second
    assert all(m is not first for m in published)  # the first target was never reached
    assert all(m.version == 2 for m in published)


def test_a_step_between_other_clusters_is_the_target():
    old, points = model(CENTERS), grid()
    # an id retired and a new one made (the number of clusters changed): nothing to
    # interpolate, and the change must not wait for ever
    retired = model(DRIFTED_CENTERS, ids=[0, 1, 2, 7])
    assert step_towards(old, retired, points, 0.01) is retired
    far = scaled_model(DRIFTED_CENTERS, (0.0, 0.0), (1.0, 1.0))
    assert step_towards(old, far, [], 0.01) is far  # nothing to move


# --- descriptions that do not flip ----------------------------------------------------------


@pytest.mark.parametrize(
    ("feature", "low", "high"),
    [
        ("frequency", 3.3, 3.7),  # repeat / frequent at 3.5 orders
        ("recency", 28.0, 32.0),  # - / at-risk at 30 days
        ("avg_order_value", 85.0, 95.0),  # - / high basket at 1.5 x 60
        ("mobile_share", 0.58, 0.62),  # - / mobile at 60 %
        ("cart_abandon", 0.28, 0.32),  # - / leave carts at 30 %
        ("browsing", 9.5, 10.5),  # - / heavy browsing at 2 x 5
    ],
)
def test_a_centroid_wobbling_around_a_threshold_keeps_its_words(feature, low, high):
    base = {"frequency": 2.0, "avg_order_value": 60.0, "browsing": 5.0, "recency": 10.0}
    first = describe({**base, feature: low})
    assert describe({**base, feature: high}) != first  # the threshold lies between
    words = first
    for value in [high, low, high, low, high]:
        words = describe({**base, feature: value}, previous=words)
        assert words == first
    # a clear move past the threshold does change them
    assert describe({**base, feature: high * 1.5}, previous=first) != first


def test_without_a_previous_description_the_words_are_the_plain_thresholds():
    assert describe({"frequency": 3.7, "avg_order_value": 60, "browsing": 5}) == "frequent buyers"
    assert (
        describe(
            {"frequency": 3.7, "avg_order_value": 60, "browsing": 5},
            band=0.0,
            previous="repeat buyers",
        )
        == "frequent buyers"
    )
    # a buyer's previous words do not carry over to a cluster that stopped buying
    assert describe({"frequency": 0.2, "browsing": 5}, previous="repeat buyers") == (
        "window shoppers, no orders"
    )


# --- centroids in units ---------------------------------------------------------------------

FINITE = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@given(st.dictionaries(st.sampled_from(FEATURES), FINITE, min_size=len(FEATURES)))
def test_units_round_trip(values):
    for f, v in values.items():
        v = min(v, 1.0) if f not in LOG_FEATURES else v
        assert _to_units(f, _from_units(f, v)) == pytest.approx(v, rel=1e-9, abs=1e-9)


@given(
    st.lists(
        st.floats(min_value=-3.0, max_value=3.0), min_size=len(FEATURES), max_size=len(FEATURES)
    )
)
def test_a_centroid_in_units_scales_back_to_itself(z):
    mean = {f: 3.0 for f in FEATURES}
    std = {f: 0.9 for f in FEATURES}
    m = ClusterModel(
        1, FEATURES, mean, std, (Cluster(0, dict(zip(FEATURES, z, strict=True)), 1, ""),)
    )
    units = m.centroid_in_units(0)
    back = m.scale({f: _from_units(f, v) for f, v in units.items()})
    assert back == pytest.approx(z, abs=1e-9)


def test_rows_are_rounded_with_units_and_no_floating_point_dust():
    m = ClusterModel(
        1,
        FEATURES,
        {f: 0.0 for f in FEATURES},
        {f: 1.0 for f in FEATURES},
        (
            Cluster(3, {f: 4.44e-16 for f in FEATURES}, 17, "window shoppers, no orders"),
            Cluster(4, {**{f: 0.0 for f in FEATURES}, "monetary": math.log1p(118.6)}, 5, "buyers"),
        ),
    )
    rows = centroid_rows(m, {3: 120}, "EUR")
    assert [(r["segment"], r["members"], r["window"]) for r in rows] == [
        ("cluster_3", 120, 17),
        ("cluster_4", 0, 5),
    ]
    assert rows[0]["centroid"]["monetary"] == {"value": 0, "unit": "EUR"}
    assert rows[1]["centroid"]["monetary"]["value"] == 119
    assert rows[0]["centroid"]["mobile_share"] == {"value": 0, "unit": "%"}
    assert all(r["centroid"][f]["unit"] == unit(f, "EUR") != "" for r in rows for f in FEATURES)
    assert rounded("recency", 365.2) == 365 and rounded("tenure", 0.04) == 0
    assert centroid_rows(m)[0]["members"] is None


# --- churn on a simulated workload ------------------------------------------------------------

#: 300 customers over 90 days of event time, a snapshot every 2 days; churn from day 30,
#: when every customer has arrived (before, new customers make every snapshot pass).
WORKLOAD = {
    "customers": 300,
    "days": 90.0,
    "events": 30_000,
    "step_days": 2.0,
    "measure_from_day": 30.0,
}
DAY = 86400.0


@pytest.fixture(scope="module")
def always():
    return run(publish_always, **WORKLOAD)


def test_publishing_every_snapshot_churns_customers_whose_vectors_did_not_change(always):
    # customers keep buying and ageing, the centroids follow them, and customers whose
    # vector is the same on both sides of a snapshot change cluster
    assert max(always.churn) > 0.01
    assert sum(c > 0.01 for c in always.churn) >= 3


def test_held_back_snapshots_keep_churn_under_one_percent_per_snapshot(always):
    gated = Gated(max_move=0.01, max_hold_s=6 * DAY)
    r = run(gated, **WORKLOAD)
    event = dict(gated.decisions)
    steps = [c for c, t in zip(r.churn, r.times, strict=True) if event[t].step]
    assert sum(r.changed) >= 10  # the model does follow the population
    assert steps  # and holds time out, then are released in steps
    # every snapshot, published on its merits or as a step of a release, moves fewer
    # than 1 % of customers whose vector did not change: the requirement as written. The
    # review bounds the trainer's last-sent vectors strictly, this check counts the
    # current ones; on this seeded workload the largest is 2 of 300
    assert max(r.churn) < 0.01
    assert sum(r.churn) / len(r.churn) < 0.005
    # one log line when a drift starts, one when it ends, not one a snapshot or a step
    assert gated.log_lines <= 2 * gated.hold.holds
