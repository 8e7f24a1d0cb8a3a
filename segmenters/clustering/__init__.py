"""The behaviour dimension: online clustering of feature vectors, with stable cluster ids.

Learning and scoring are split (DESIGN.md section 5). A :class:`Trainer` learns online
with River and, now and then, publishes a :class:`ClusterModel`: a frozen, versioned
snapshot (a JSON-ready document, stored by the shell). Workers score every customer
with :meth:`ClusterModel.assign`, a nearest-centroid look-up in plain NumPy, with
hysteresis so a customer near a boundary does not flap between two clusters. A
:class:`DriftMonitor` watches the distance to the nearest centroid and says when the
segmentation has gone stale.

One idea a module: :mod:`.model` (the snapshot and scoring), :mod:`.describe`
(cluster words), :mod:`.kmeans` (batch k-means), :mod:`.trainer` (online learning),
:mod:`.matching` (stable ids across versions), :mod:`.drift` (staleness),
:mod:`.stability` (whether a new snapshot may replace the one in force, membership
churn), :mod:`.report` (centroids in the features' own units).

>>> model = ClusterModel(
...     version=1, features=("a", "b"), mean={"a": 0.0, "b": 0.0}, std={"a": 1.0, "b": 1.0},
...     clusters=(Cluster(0, {"a": 0.0, "b": 0.0}, 10, "near"),
...               Cluster(1, {"a": 2.0, "b": 0.0}, 10, "far")))
>>> model.assign({"a": 0.9, "b": 0.0}, previous=0).reason
'nearest centroid 0 (distance 0.90)'
>>> model.assign({"a": 1.05, "b": 0.0}, previous=0).reason
'nearest centroid 1 (distance 0.95), kept 0 (distance 1.05) within 10 % margin'
>>> model.assign({"a": 1.05, "b": 0.0}, previous=0, margin=0.0).cluster
1
"""

from __future__ import annotations

from segmenters.clustering.describe import DEFAULT_POPULATION, describe
from segmenters.clustering.drift import DriftMonitor
from segmenters.clustering.kmeans import batch_kmeans
from segmenters.clustering.model import (
    DIMENSION,
    MODEL_FORMAT,
    Assignment,
    Cluster,
    ClusterModel,
    assign_all,
)
from segmenters.clustering.trainer import Trainer

__all__ = [
    "DEFAULT_POPULATION",
    "DIMENSION",
    "MODEL_FORMAT",
    "Assignment",
    "Cluster",
    "ClusterModel",
    "DriftMonitor",
    "Trainer",
    "assign_all",
    "batch_kmeans",
    "describe",
]
