"""Batch k-means in NumPy: k-means++ seeding and Lloyd's iterations.

The trainer starts and refits its centers with these; :mod:`segmenters.verify` uses
:func:`batch_kmeans` as the offline reference. No River and no model types here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _kmeans_pp(points: np.ndarray[Any, Any], k: int, rng: np.random.Generator) -> list[int]:
    """k-means++ seeding (Arthur and Vassilvitskii, 2007): indices of spread-out points."""
    chosen = [int(rng.integers(len(points)))]
    d2 = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    while len(chosen) < k:
        total = float(d2.sum())
        if total > 0:
            i = int(rng.choice(len(points), p=d2 / total))
        else:
            i = int(rng.integers(len(points)))
        chosen.append(i)
        d2 = np.minimum(d2, ((points - points[i]) ** 2).sum(axis=1))
    return chosen


def _sq_distances(
    points: np.ndarray[Any, Any], centers: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Squared Euclidean distance of every point (rows) to every center (columns)."""
    d2: np.ndarray[Any, Any] = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return d2


def _lloyd(
    points: np.ndarray[Any, Any],
    centers: np.ndarray[Any, Any],
    iterations: int,
    rng: np.random.Generator | None = None,
    tiny: float = 0.0,
) -> tuple[float, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Lloyd's iterations from ``centers``: returns (inertia, centers, labels).

    With ``rng`` given, a center left empty, or holding fewer than ``tiny`` times the
    points of the largest cluster (scikit-learn's ``reassignment_ratio`` of mini-batch
    k-means), is moved to a point drawn with probability proportional to its squared
    distance to the nearest center (as in k-means++), so no center stays stranded where
    no customer is. Each center is reassigned at most once, then Lloyd goes on.
    """
    k = len(centers)
    centers = centers.copy()
    reassigned: set[int] = set()
    for _ in range(iterations):
        d2 = _sq_distances(points, centers)
        labels = d2.argmin(axis=1)
        counts = np.bincount(labels, minlength=k)
        if rng is not None:
            nearest = d2[np.arange(len(points)), labels]
            stranded = [
                j for j in range(k) if j not in reassigned and counts[j] <= tiny * counts.max()
            ]
            for j in stranded:
                total = float(nearest.sum())
                if total <= 0:
                    break
                i = int(rng.choice(len(points), p=nearest / total))
                centers[j] = points[i]
                nearest = np.minimum(nearest, ((points - points[i]) ** 2).sum(axis=1))
                reassigned.add(j)
            if stranded:
                d2 = _sq_distances(points, centers)
                labels = d2.argmin(axis=1)
                counts = np.bincount(labels, minlength=k)
        moved = np.array(
            [points[labels == j].mean(axis=0) if counts[j] else centers[j] for j in range(k)]
        )
        if np.allclose(moved, centers):
            break
        centers = moved
    d2 = _sq_distances(points, centers)
    labels = d2.argmin(axis=1)
    return float(d2.min(axis=1).sum()), centers, labels


def _initial_centers(
    points: np.ndarray[Any, Any], k: int, seed: int, n_init: int, iterations: int = 20
) -> tuple[np.ndarray[Any, Any], list[int]]:
    """The best of ``n_init`` seeded k-means++ starts refined by Lloyd on the warm-up points.

    Returns the centers and how many warm-up points each holds. "Best" is the lowest
    within-cluster sum of squares, as in batch k-means with restarts.
    """
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
    for _ in range(n_init):
        run = _lloyd(points, points[_kmeans_pp(points, k, rng)], iterations)
        if best is None or run[0] < best[0]:
            best = run
    assert best is not None
    return best[1], np.bincount(best[2], minlength=k).tolist()


def batch_kmeans(points: Sequence[Sequence[float]], k: int, seed: int = 0) -> list[int]:
    """Batch k-means (best of 20 k-means++ starts, Lloyd): the offline reference in verify."""
    arr = np.asarray(points, dtype=float)
    if len(arr) <= k:
        return list(range(len(arr)))
    centers, _ = _initial_centers(arr, k, seed, n_init=20, iterations=100)
    d2 = ((arr[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    return [int(x) for x in d2.argmin(axis=1)]
