"""Stable cluster ids across model versions: new centroids matched to the previous ones.

Separate so the id rule stands on its own: a cluster keeps its id while the model
moves, an unmatched centroid gets a fresh id, a retired id is never reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment  # type: ignore[import-untyped, unused-ignore]

from segmenters.clustering.model import ClusterModel


def _match(
    centroids: np.ndarray[Any, Any],
    mean: Mapping[str, float],
    std: Mapping[str, float],
    features: tuple[str, ...],
    previous: ClusterModel,
) -> tuple[list[int], int]:
    """Ids for ``centroids`` (rows, in scaled space) that keep ``previous``'s where they match."""
    if previous.features != features:
        raise ValueError("the previous model was built on other features")
    m = np.array([mean[f] for f in features])
    s = np.array([std[f] for f in features])
    # previous centroids: back to feature space with their scaler, then into ours
    old = (np.array(previous._centroids) * previous._std + previous._mean - m) / s
    cost = np.sqrt(((centroids[:, None, :] - old[None, :, :]) ** 2).sum(axis=2))
    rows, cols = linear_sum_assignment(cost)
    ids: list[int | None] = [None] * len(centroids)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        ids[r] = previous._ids[c]
    next_id = previous.next_id
    result = []
    for i in ids:
        if i is None:
            i, next_id = next_id, next_id + 1
        result.append(i)
    return result, next_id
