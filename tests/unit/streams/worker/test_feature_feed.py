"""Which vectors reach the trainer: only those that moved (segments.features stays small)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from segmenters.clustering import Cluster, ClusterModel
from segmenters.features import FEATURES, as_row, feature_vector, moved_enough
from segmenters.state import CustomerState
from streams.worker.feature_feed import FeatureFeed

DAY = 86400.0
rows = st.lists(st.floats(-50, 50, allow_nan=False), min_size=len(FEATURES), max_size=len(FEATURES))


@given(rows)
def test_an_unchanged_vector_is_never_sent_again(row):
    assert moved_enough(None, row)
    assert not moved_enough(row, row)
    assert not moved_enough(row, list(row), [0.5] * len(row), 0.01)


@given(rows, rows, st.floats(0.01, 5))
def test_the_decision_is_the_scaled_distance(a, b, min_move):
    scale = [1.0 + i / 10 for i in range(len(a))]
    distance = math.dist(
        [x / s for x, s in zip(a, scale, strict=True)],
        [y / s for y, s in zip(b, scale, strict=True)],
    )
    if abs(distance - min_move) > 1e-9:
        assert moved_enough(a, b, scale, min_move) == (distance >= min_move)
    assert moved_enough(a, b, scale, min_move) == moved_enough(b, a, scale, min_move)


def test_scale_decides_what_a_small_move_is():
    last, new = (1.0, 2.0), (1.1, 2.0)
    assert not moved_enough(last, new, None, 0.25)  # 0.1 raw units
    assert moved_enough(last, new, (0.2, 1.0), 0.25)  # half a standard deviation
    assert moved_enough(last, (math.inf, 2.0))  # never hides a broken vector
    assert moved_enough((1.0,), new)  # another feature set: send


def model(std: float) -> ClusterModel:
    centroid = dict.fromkeys(FEATURES, 0.0)
    return ClusterModel(
        version=1,
        features=FEATURES,
        mean=dict.fromkeys(FEATURES, 0.0),
        std=dict.fromkeys(FEATURES, std),
        clusters=(Cluster(id=0, centroid=centroid, size=1, description="all"),),
    )


def test_the_feed_sends_a_customer_once_until_its_features_move():
    feed = FeatureFeed(min_move=0.25)
    m = model(1.0)
    state = CustomerState(
        "c-1", first_seen=0.0, last_seen=DAY, orders=1, revenue=50.0, last_order_at=DAY, items=1
    )
    v = feature_vector(state, DAY)
    assert feed.admit("c-1", v, m)
    for _ in range(100):  # an idle customer, rescored pass after pass
        assert not feed.admit("c-1", v, m)
    assert feed.admit("c-2", v, m)  # another customer is not held by c-1's vector
    state.orders, state.revenue = 5, 900.0
    assert feed.admit("c-1", feature_vector(state, DAY), m)
    assert (feed.sent, feed.held) == (3, 100)


def test_before_the_first_model_every_vector_goes_for_the_warm_up():
    feed = FeatureFeed(min_move=0.25)
    v = dict.fromkeys(FEATURES, 1.0)
    assert all(feed.admit("c", v, None) for _ in range(5))  # the trainer needs a sample
    assert not feed.admit("c", v, model(1.0))  # a model exists: the same vector is held


def test_the_feed_measures_in_the_models_scaled_space():
    feed = FeatureFeed(min_move=0.25)
    v = dict.fromkeys(FEATURES, 1.0)
    w = {**v, "tenure": 1.1}
    assert feed.admit("c", v, model(1.0))
    assert not feed.admit("c", w, model(1.0))  # 0.1 standard deviations
    assert feed.admit("c", w, model(0.1))  # 1 standard deviation of a narrower feature


def test_forgotten_and_evicted_customers_are_sent_again():
    feed = FeatureFeed(min_move=0.25, memory=2)
    v = dict.fromkeys(FEATURES, 0.0)
    m = model(1.0)
    for cid in ("a", "b"):
        assert feed.admit(cid, v, m)
    assert not feed.admit("a", v, m)  # a is now the most recently used
    assert feed.admit("c", v, m)  # evicts b
    assert len(feed) == 2 and not feed.admit("a", v, m)
    assert feed.admit("b", v, m)
    feed.forget(["a", "b", "c", "unknown"])
    assert len(feed) == 0 and feed.admit("a", v, m)


def test_as_row_follows_the_feature_order():
    v = feature_vector(CustomerState("c"), now=0.0)
    assert as_row(v) == tuple(v[f] for f in FEATURES)
    assert as_row({}) == (0.0,) * len(FEATURES)
