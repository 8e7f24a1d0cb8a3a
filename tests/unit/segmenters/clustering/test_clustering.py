"""Behaviour clustering: River-style estimator checks, stable ids, hysteresis, drift, quality."""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import orjson
import pytest
from river.metrics import AdjustedRand

from segmenters.clustering import (
    Assignment,
    Cluster,
    ClusterModel,
    DriftMonitor,
    Trainer,
    assign_all,
    describe,
)
from segmenters.clustering.kmeans import _lloyd
from segmenters.config import EngineConfig
from segmenters.core import recompute
from segmenters.events import parse_event
from segmenters.features import FEATURES, feature_vector
from streams.tools.simulate import generate

ABC = ("a", "b", "c")
BLOB_CENTERS = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])


def blobs(n: int, *, seed: int, shift: float = 0.0) -> list[dict[str, float]]:
    """``n`` points around each of four well-apart centers (moved by ``shift`` along a)."""
    rng = np.random.default_rng(seed)
    points = []
    for center in BLOB_CENTERS:
        for p in rng.normal(center + [shift, 0.0, 0.0], 0.4, size=(n, 3)):
            points.append(dict(zip(ABC, p.tolist(), strict=True)))
    random.Random(seed).shuffle(points)
    return points


def trained(points: list[dict[str, float]], *, seed: int = 0, k: int = 4) -> Trainer:
    trainer = Trainer(k, seed=seed, features=ABC, warmup=40)
    for x in points:
        trainer.learn_one(x)
    return trainer


def true_blob(x: dict[str, float]) -> int:
    p = np.array([x[f] for f in ABC])
    return int(((BLOB_CENTERS - p) ** 2).sum(axis=1).argmin())


def agreement(a: list[int], b: list[int]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def ari(truth: list[object], labels: list[int]) -> float:
    metric = AdjustedRand()
    for t, p in zip(truth, labels, strict=True):
        metric.update(t, p)
    return float(metric.get())


# --- River-style estimator checks (river/checks/common.py) --------------------------------


def test_learn_one_does_not_mutate_its_input():
    trainer = Trainer(4, seed=0, features=ABC, warmup=10)
    for x in blobs(20, seed=1):
        before = copy.deepcopy(x)
        trainer.learn_one(x)
        assert x == before
    extra = {"a": 1.0, "b": 2.0, "c": 3.0, "other": 4.0}
    trainer.learn_one(extra)
    assert extra == {"a": 1.0, "b": 2.0, "c": 3.0, "other": 4.0}


def test_pickles_and_continues_identically():
    points = blobs(100, seed=2)
    # once during the warm-up, once after it
    for cut in (20, 200):
        trainer = trained(points[:cut])
        clone = pickle.loads(pickle.dumps(trainer))
        for x in points[cut:]:
            trainer.learn_one(x)
            clone.learn_one(x)
        assert trainer.snapshot(None, 1) == clone.snapshot(None, 1)


def test_seeded_runs_repeat_exactly():
    points = blobs(100, seed=3)
    assert trained(points, seed=5).snapshot(None, 1) == trained(points, seed=5).snapshot(None, 1)


def test_model_round_trips_through_json():
    model = trained(blobs(100, seed=4)).snapshot(None, 7)
    doc = orjson.loads(orjson.dumps(model.to_doc()))
    back = ClusterModel.from_doc(doc)
    assert back == model
    assert back.to_doc() == model.to_doc()
    x = {"a": 1.0, "b": 2.5, "c": -0.5}
    assert back.assign(x, 1) == model.assign(x, 1)
    with pytest.raises(ValueError, match="format"):
        ClusterModel.from_doc({**doc, "format": 99})


def test_snapshot_needs_the_warm_up():
    trainer = Trainer(4, seed=0, features=ABC, warmup=40)
    for x in blobs(5, seed=1):  # 20 points
        trainer.learn_one(x)
    assert not trainer.started
    with pytest.raises(ValueError, match="warm-up"):
        trainer.snapshot(None, 1)


def test_learns_well_separated_blobs():
    points = blobs(150, seed=6)
    model = trained(points).snapshot(None, 1)
    assert ari([true_blob(x) for x in points], assign_all(model, points)) > 0.99
    assert sum(c.size for c in model.clusters) == len(points)
    assert [c.id for c in model.clusters] == [0, 1, 2, 3]


# --- following the current population ----------------------------------------------------


def early_life(n: int, *, seed: int) -> list[dict[str, float]]:
    """``n`` points of an unrepresentative start: everyone near one corner, as new
    customers all look alike (no orders, a few views) before they grow into personas."""
    rng = np.random.default_rng(seed)
    return [
        dict(zip(ABC, p.tolist(), strict=True))
        for p in rng.normal([-1.0, -1.0, -1.0], [0.6, 0.3, 0.3], size=(n, 3))
    ]


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clusters_follow_the_recent_window_not_the_warm_up(seed, keyed):
    """A warm-up on early-life points puts every center where few points end up; the
    snapshot still matches batch k-means on the recent window (customers' latest vectors,
    or the last ``window`` vectors without keys)."""
    ids = [f"c-{i}" for i in range(600)]
    early = early_life(600, seed=seed)
    late = blobs(150, seed=seed + 10)  # 600 points, one per customer
    trainer = Trainer(4, seed=seed, features=ABC, warmup=200, window=600)
    for i, x in enumerate(early):
        trainer.learn_one(x, ids[i] if keyed else None)
    for i, x in enumerate(late):
        trainer.learn_one(x, ids[i] if keyed else None)
    assert trainer.recent == 600
    model = trainer.snapshot(None, 1)
    online = assign_all(model, late)
    batch = batch_kmeans(np.array([model.scale(x) for x in late]), 4, seed=seed)
    assert ari(batch, online) >= 0.9
    assert ari([true_blob(x) for x in late], online) >= 0.9
    assert sorted(c.size for c in model.clusters) == sorted(Counter(online).values())


def test_the_window_keeps_the_latest_vector_of_each_key_and_is_bounded():
    trainer = Trainer(2, seed=0, features=("x",), warmup=2, window=3)
    for key, x in [("a", 0.0), ("b", 1.0), ("a", 2.0), (None, 3.0), ("c", 4.0)]:
        trainer.learn_one({"x": x}, key)
    assert trainer.recent == 3  # "b" fell out; "a" is there once, with 2.0
    model = trainer.snapshot(None, 1)
    assert model.mean == {"x": 3.0}  # the window's own mean: (2 + 3 + 4) / 3
    assert sorted(c.size for c in model.clusters) == [1, 2]
    with pytest.raises(ValueError, match="window"):
        Trainer(4, window=3)


def test_a_stranded_center_is_reassigned():
    """A center nowhere near any point (as a warm-up on early-life points leaves one) is
    moved onto the data instead of staying empty."""
    points = np.array([[0.0], [0.1], [5.0], [5.1], [10.0], [10.1]])
    stranded = np.array([[0.05], [5.05], [100.0]])
    inertia, centers, labels = _lloyd(points, stranded, 20)
    assert np.bincount(labels, minlength=3)[2] == 0 and inertia > 20
    inertia, centers, labels = _lloyd(points, stranded, 20, np.random.default_rng(0))
    assert sorted(np.bincount(labels, minlength=3).tolist()) == [2, 2, 2]
    assert inertia == pytest.approx(3 * 2 * 0.05**2)


def test_snapshots_of_a_steady_population_keep_their_ids_and_centers():
    trainer = trained(blobs(150, seed=13))
    v1 = trainer.snapshot(None, 1)
    for x in blobs(150, seed=14):
        trainer.learn_one(x)
    v2 = trainer.snapshot(v1, 2)
    probe = blobs(50, seed=15)
    assert agreement(assign_all(v1, probe), assign_all(v2, probe)) > 0.99


# --- stable ids ---------------------------------------------------------------------------


def test_ids_survive_a_slowly_moving_model():
    trainer = trained(blobs(150, seed=7))
    v1 = trainer.snapshot(None, 1)
    for x in blobs(300, seed=8, shift=0.3):  # every blob drifts a little along a
        trainer.learn_one(x)
    v2 = trainer.snapshot(v1, 2)
    assert {c.id for c in v2.clusters} == {c.id for c in v1.clusters}
    probe = blobs(50, seed=9, shift=0.15)
    assert agreement(assign_all(v1, probe), assign_all(v2, probe)) > 0.98
    assert v2.version == 2 and v2.next_id == v1.next_id


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_new_learning_order_keeps_the_ids(seed):
    points = blobs(150, seed=10)
    v1 = trained(points, seed=0).snapshot(None, 1)
    shuffled = points[:]
    random.Random(seed).shuffle(shuffled)
    again = trained(shuffled, seed=seed)
    raw = again.snapshot(None, 2)
    matched = again.snapshot(v1, 2)
    # the same clusters (plain nearest centroid agrees up to a relabelling) ...
    assert ari(assign_all(v1, points), assign_all(raw, points)) > 0.99
    # ... and with the previous model given, under the same ids
    assert agreement(assign_all(v1, points), assign_all(matched, points)) > 0.99


def test_ids_get_relabelled_by_matching_not_by_learning_order():
    """Without ``previous`` the ids follow River's center order, which is arbitrary."""
    points = blobs(150, seed=10)
    v1 = trained(points, seed=0).snapshot(None, 1)
    relabelled = 0
    for seed in range(1, 8):
        raw = trained(points, seed=seed).snapshot(None, 2)
        relabelled += agreement(assign_all(v1, points), assign_all(raw, points)) < 0.99
        matched = trained(points, seed=seed).snapshot(v1, 2)
        assert agreement(assign_all(v1, points), assign_all(matched, points)) > 0.99
    assert relabelled > 0  # so the matching above did some work


def test_unmatched_clusters_get_fresh_ids_and_retired_ids_are_not_reused():
    points = blobs(150, seed=11)
    v1 = trained(points, k=3).snapshot(None, 1)
    assert [c.id for c in v1.clusters] == [0, 1, 2] and v1.next_id == 3
    v2 = trained(points, k=4).snapshot(v1, 2)
    assert sorted(c.id for c in v2.clusters) == [0, 1, 2, 3] and v2.next_id == 4
    v3 = trained(points, k=2).snapshot(v2, 3)
    assert len(v3.clusters) == 2 and v3.next_id == 4
    v4 = trained(points, k=4).snapshot(v3, 4)
    ids = {c.id for c in v4.clusters}
    assert len(ids) == 4 and ids >= {c.id for c in v3.clusters}
    assert max(ids) >= 4  # the two new clusters got fresh ids, not retired ones
    assert v4.next_id == 6


def test_previous_model_on_other_features_is_refused():
    v1 = trained(blobs(100, seed=12)).snapshot(None, 1)
    other = Trainer(4, seed=0, features=("a", "b"), warmup=40)
    for x in blobs(100, seed=12):
        other.learn_one(x)
    with pytest.raises(ValueError, match="other features"):
        other.snapshot(v1, 2)


# --- hysteresis ---------------------------------------------------------------------------

LINE = ClusterModel(
    version=1,
    features=("a", "b"),
    mean={"a": 1.0, "b": 0.0},
    std={"a": 2.0, "b": 1.0},
    clusters=(
        Cluster(3, {"a": 1.0, "b": 0.0}, 5, "right"),
        Cluster(2, {"a": -1.0, "b": 0.0}, 5, "left"),
    ),
)


def raw(a: float) -> dict[str, float]:
    """A point at scaled position ``a`` on the line between the two centroids."""
    return {"a": 1.0 + 2.0 * a, "b": 0.0}


def test_near_the_boundary_the_previous_cluster_is_kept():
    got = LINE.assign(raw(0.04), previous=2)  # distances: 0.96 to 3, 1.04 to 2
    assert got.cluster == 2
    assert got.distance == pytest.approx(1.04)
    assert (
        got.reason
        == "nearest centroid 3 (distance 0.96), kept 2 (distance 1.04) within 10 % margin"
    )


def test_far_on_the_other_side_the_customer_moves():
    got = LINE.assign(raw(0.5), previous=2)  # 0.5 to 3, 1.5 to 2
    assert got == Assignment(
        3, 0.5, "nearest centroid 3 (distance 0.50), more than 10 % closer than 2 (distance 1.50)"
    )


def test_margin_zero_is_plain_nearest_centroid():
    for a in np.linspace(-2.0, 2.0, 81).tolist():
        if abs(a) < 1e-9:
            continue
        nearest = 3 if a > 0 else 2
        for previous in (None, 2, 3):
            assert LINE.assign(raw(a), previous, margin=0.0).cluster == nearest


def test_hysteresis_rule_exactly():
    for margin in (0.05, 0.1, 0.3):
        for a in np.linspace(0.01, 1.0, 100).tolist():
            d3, d2 = abs(a - 1.0), abs(a + 1.0)
            stays = not d3 < (1 - margin) * d2
            assert LINE.assign(raw(a), 2, margin).cluster == (2 if stays else 3)


def test_assign_without_or_with_an_unknown_previous():
    assert LINE.assign(raw(-0.2), None).reason == "nearest centroid 2 (distance 0.80)"
    gone = LINE.assign(raw(0.02), previous=9)
    assert gone.cluster == 3 and "previous cluster 9 is gone" in gone.reason
    with pytest.raises(ValueError, match="margin"):
        LINE.assign(raw(0.0), 2, margin=1.0)


def test_missing_or_non_finite_features_count_as_the_mean():
    assert LINE.distances({}) == {2: 1.0, 3: 1.0}
    assert LINE.distances({"a": math.nan, "b": 0.0}) == {2: 1.0, 3: 1.0}


def test_clusters_are_kept_in_id_order_and_ids_are_unique():
    assert [c.id for c in LINE.clusters] == [2, 3] and LINE.next_id == 4
    with pytest.raises(ValueError, match="unique"):
        ClusterModel(1, ("a",), {"a": 0.0}, {"a": 1.0}, (Cluster(1, {"a": 0.0}, 1, ""),) * 2)


def test_centroid_in_units_undoes_scaling_and_log():
    model = ClusterModel(
        version=1,
        features=("frequency", "cart_abandon"),
        mean={"frequency": math.log1p(3.0), "cart_abandon": 0.2},
        std={"frequency": 0.5, "cart_abandon": 0.1},
        clusters=(Cluster(0, {"frequency": 2.0, "cart_abandon": 3.0}, 1, ""),),
    )
    units = model.centroid_in_units(0)
    assert units["frequency"] == pytest.approx(math.expm1(math.log1p(3.0) + 1.0))
    assert units["cart_abandon"] == pytest.approx(0.5)
    assert model.centroid_in_units(model.clusters[0]) == units


# --- descriptions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "words"),
    [
        ({"frequency": 0, "cart_abandon": 1.0, "cart_intensity": 2}, "cart abandoners, no orders"),
        ({"frequency": 0, "browsing": 15}, "window shoppers, no orders, heavy browsing"),
        (
            {"frequency": 2, "recency": 45, "avg_order_value": 20},
            "at-risk repeat buyers, low basket",
        ),
        (
            {"frequency": 1, "recency": 200, "inactivity": 60},
            "lapsed one-time buyers, low basket, rarely visit",
        ),
        (
            {
                "frequency": 9,
                "mobile_share": 0.7,
                "avg_order_value": 60,
                "cart_abandon": 0.4,
                "browsing": 5,
            },
            "frequent mobile buyers, leave carts",
        ),
    ],
)
def test_describe(units, words):
    assert describe(units) == words


def test_describe_is_relative_to_the_population():
    basket = {"frequency": 3, "avg_order_value": 100}
    assert describe(basket, {"avg_order_value": 50}) == "repeat buyers, high basket"
    assert describe(basket, {"avg_order_value": 200}) == "repeat buyers, low basket"
    assert describe(basket, {"avg_order_value": 100}) == "repeat buyers"


# --- drift --------------------------------------------------------------------------------


def test_drift_monitor_counts_and_detects_a_shift():
    rng = np.random.default_rng(0)
    monitor = DriftMonitor()
    assert not any([monitor.update(d) for d in rng.normal(1.0, 0.2, 2000).tolist()])
    assert monitor.mean_distance == pytest.approx(1.0, abs=0.05)
    detected = [monitor.update(d) for d in rng.normal(2.0, 0.2, 500).tolist()]
    assert any(detected)
    assert monitor.points == 2500 and monitor.drifts == sum(detected) >= 1
    assert monitor.last_drift_at is not None and 2000 < monitor.last_drift_at < 2300
    with pytest.raises(ValueError):
        monitor.update(math.inf)


# --- quality on simulated personas --------------------------------------------------------

CUSTOMERS = 600
SIM_SEED = 7
DAYS = 90
EVENTS = 60_000
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def personas() -> tuple[list[dict[str, float]], list[str]]:
    """Feature vectors (at the end of the traffic) and true personas of 600 customers."""
    truth: dict[str, str] = {}
    duration = DAYS * 86400.0
    docs = generate(
        CUSTOMERS,
        seed=SIM_SEED,
        start=START,
        duration_s=duration,
        rate=EVENTS / duration,
        truth=truth,
    )
    results = recompute([(parse_event(orjson.dumps(d)), None) for d in docs], config=EngineConfig())
    end = START.timestamp() + duration
    ids = sorted(results)
    return [feature_vector(results[c].state, end) for c in ids], [truth[c] for c in ids]


def batch_kmeans(points: np.ndarray, k: int, *, seed: int, n_init: int = 10) -> list[int]:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` restarts."""
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        centers = [points[rng.integers(len(points))]]
        for _ in range(k - 1):
            d2 = ((points[:, None] - np.array(centers)[None]) ** 2).sum(-1).min(1)
            centers.append(points[rng.choice(len(points), p=d2 / d2.sum())])
        c = np.array(centers)
        for _ in range(100):
            labels = ((points[:, None] - c[None]) ** 2).sum(-1).argmin(1)
            moved = np.array(
                [points[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)]
            )
            if np.allclose(moved, c):
                break
            c = moved
        inertia = ((points - c[labels]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, labels.tolist())
    return best[1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clusters_recover_the_personas(personas, seed):
    vectors, truth = personas
    trainer = Trainer(6, seed=seed)
    order = list(range(len(vectors)))
    random.Random(seed).shuffle(order)
    for i in order:
        trainer.learn_one(vectors[i])
    model = trainer.snapshot(None, 1)
    online = assign_all(model, vectors)
    # batch k-means on the same vectors, in the same scaled space
    batch = batch_kmeans(np.array([model.scale(v) for v in vectors]), 6, seed=seed)
    vs_batch, vs_truth = ari(batch, online), ari(truth, online)
    print(
        f"seed {seed}: ARI online vs batch {vs_batch:.3f}, vs personas {vs_truth:.3f}, "
        f"batch vs personas {ari(truth, batch):.3f}"
    )
    assert vs_batch >= 0.8
    assert vs_truth >= 0.8

    # the descriptions name what the clusters hold
    main = {}
    for cluster in model.clusters:
        members = Counter(t for t, c in zip(truth, online, strict=True) if c == cluster.id)
        main[members.most_common(1)[0][0]] = cluster.description
    assert main["window_shopper"].startswith("window shoppers, no orders")
    assert main["cart_abandoner"].startswith("cart abandoners, no orders")
    assert "high basket" in main["loyal_big_spender"]
    assert "rarely visit" in main["lapsing_buyer"]


def test_feature_vectors_of_simulated_customers_are_finite(personas):
    vectors, _ = personas
    assert all(tuple(v) == FEATURES and all(map(math.isfinite, v.values())) for v in vectors)
