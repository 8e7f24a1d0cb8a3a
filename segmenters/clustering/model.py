"""The frozen snapshot workers score with: :class:`ClusterModel`, its clusters, assignment.

Separate from learning (:mod:`.trainer`): scoring runs on every event, in plain Python,
and the model is all a worker loads (a JSON-ready document stored by the shell).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenters.features import LOG_FEATURES

DIMENSION = "behaviour"
#: Layout of :meth:`ClusterModel.to_doc`; bump it (and keep reading the old one) on a change.
MODEL_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster of a snapshot; ``centroid`` is in scaled space (mean 0, std 1)."""

    id: int
    centroid: dict[str, float]
    size: int
    description: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where a customer belongs, how far it is from there, and why."""

    cluster: int
    distance: float
    reason: str


@dataclass(frozen=True)
class ClusterModel:
    """A frozen snapshot of the clustering: scaler, centroids, stable ids, descriptions.

    ``features`` are the names of the vector (see :mod:`segmenters.features`); ``mean`` and
    ``std`` scale a vector as ``(x - mean) / std`` before distances are taken (``std`` is
    the feature's standard deviation divided by its weight, see
    :data:`segmenters.features.WEIGHTS`). ``next_id`` is the first id never handed out
    (computed if not given), so a retired id is never reused. Clusters are kept in id order.
    """

    version: int
    features: tuple[str, ...]
    mean: dict[str, float]
    std: dict[str, float]
    clusters: tuple[Cluster, ...]
    next_id: int = 0
    _ids: list[int] = field(init=False, repr=False, compare=False)
    #: Tuples: ``math.dist`` copies any other sequence into one on every call.
    _centroids: list[tuple[float, ...]] = field(init=False, repr=False, compare=False)
    _mean: list[float] = field(init=False, repr=False, compare=False)
    _std: list[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.clusters:
            raise ValueError("a cluster model needs at least one cluster")
        clusters = tuple(sorted(self.clusters, key=lambda c: c.id))
        ids = [c.id for c in clusters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cluster ids must be unique, got {ids}")
        std = [float(self.std[f]) for f in self.features]
        if not all(s > 0 and math.isfinite(s) for s in std):
            raise ValueError("every std must be positive and finite")
        set_ = object.__setattr__
        set_(self, "clusters", clusters)
        set_(self, "next_id", max(self.next_id, ids[-1] + 1))
        set_(self, "_ids", ids)
        set_(
            self,
            "_centroids",
            [tuple([float(c.centroid[f]) for f in self.features]) for c in clusters],
        )
        set_(self, "_mean", [float(self.mean[f]) for f in self.features])
        set_(self, "_std", std)

    def scale(self, x: Mapping[str, float]) -> list[float]:
        """``x`` in scaled space, in :attr:`features` order; a missing or non-finite value
        counts as the mean."""
        z = []
        for f, m, s in zip(self.features, self._mean, self._std, strict=True):
            v = x.get(f, m)
            z.append((v - m) / s if math.isfinite(v) else 0.0)
        return z

    def distances(self, x: Mapping[str, float]) -> dict[int, float]:
        """Euclidean distance, in scaled space, from ``x`` to every centroid (by cluster id)."""
        z = self.scale(x)
        return {i: math.dist(c, z) for i, c in zip(self._ids, self._centroids, strict=True)}

    def assign(
        self, x: Mapping[str, float], previous: int | None, margin: float = 0.1
    ) -> Assignment:
        """The nearest centroid, unless the customer's ``previous`` cluster is nearly as near.

        Hysteresis rule: the customer leaves ``previous`` only if the nearest centroid is
        closer than ``(1 - margin)`` times the distance to ``previous``'s centroid. With
        ``margin=0`` this is plain nearest centroid; an unknown ``previous`` (a cluster the
        model no longer has) is ignored. Ties go to the lowest id. Plain Python on purpose:
        for a handful of centroids ``math.dist`` beats NumPy's per-call overhead (~4 us).
        """
        _check_margin(margin)
        z = self.scale(x)
        return self.explain([math.dist(c, z) for c in self._centroids], previous, margin)

    def assign_row(
        self, row: Sequence[float], previous: int | None, margin: float = 0.1
    ) -> tuple[int, list[float]]:
        """What :meth:`assign` picks for ``row`` (every value of :attr:`features`, in order),
        and the distances it picked from, without the reason: scoring runs on every event
        and the reason is only needed when the cluster changes (:meth:`explain`)."""
        _check_margin(margin)
        if len(row) != len(self._mean):  # once, not by a strict zip per value
            raise ValueError(f"a row of {len(row)} values, the model has {len(self._mean)}")
        if math.isfinite(sum(row)):  # then every value is (an inf or a nan would show)
            z = tuple([(v - m) / s for v, m, s in zip(row, self._mean, self._std, strict=False)])
        else:
            z = tuple(
                [
                    (v - m) / s if math.isfinite(v) else 0.0
                    for v, m, s in zip(row, self._mean, self._std, strict=False)
                ]
            )
        dist = math.dist
        d = [dist(c, z) for c in self._centroids]
        return self._pick(d, previous, margin)[0], d

    def _pick(self, d: list[float], previous: int | None, margin: float) -> tuple[int, int]:
        """(cluster, index of the nearest centroid) under the hysteresis rule of :meth:`assign`."""
        dn = min(d)
        i = d.index(dn)
        nearest = self._ids[i]
        if previous is None or previous == nearest or previous not in self._ids:
            return nearest, i
        if dn < (1.0 - margin) * d[self._ids.index(previous)]:
            return nearest, i
        return previous, i

    def explain(self, d: list[float], previous: int | None, margin: float) -> Assignment:
        """The :class:`Assignment`, reason included, from the distances ``d`` to every
        centroid (in id order)."""
        cluster, i = self._pick(d, previous, margin)
        nearest, dn = self._ids[i], d[i]
        said = f"nearest centroid {nearest} (distance {dn:.2f})"
        if previous is None or previous == nearest:
            return Assignment(nearest, dn, said)
        if previous not in self._ids:
            return Assignment(nearest, dn, f"{said}; previous cluster {previous} is gone")
        dp = d[self._ids.index(previous)]
        pct = f"{margin * 100:g} %"
        if cluster == nearest:
            return Assignment(
                nearest, dn, f"{said}, more than {pct} closer than {previous} (distance {dp:.2f})"
            )
        return Assignment(
            previous, dp, f"{said}, kept {previous} (distance {dp:.2f}) within {pct} margin"
        )

    def cluster(self, cluster_id: int) -> Cluster:
        """The cluster with this id (``ValueError`` if there is none)."""
        return self.clusters[self._ids.index(cluster_id)]

    def centroid_in_units(self, cluster: Cluster | int) -> dict[str, float]:
        """A centroid in the features' original units: scaling and ``log1p`` undone.

        >>> m = ClusterModel(1, ("frequency", "mobile_share"), {"frequency": 1.0,
        ...     "mobile_share": 0.5}, {"frequency": 0.5, "mobile_share": 0.25},
        ...     (Cluster(0, {"frequency": 2.0, "mobile_share": -1.0}, 1, ""),))
        >>> {k: round(v, 2) for k, v in m.centroid_in_units(0).items()}
        {'frequency': 6.39, 'mobile_share': 0.25}
        """
        c = self.cluster(cluster) if isinstance(cluster, int) else cluster
        return {f: _to_units(f, c.centroid[f] * self.std[f] + self.mean[f]) for f in self.features}

    def to_doc(self) -> dict[str, Any]:
        """The stored form: plain JSON types only."""
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "features": list(self.features),
            "mean": dict(self.mean),
            "std": dict(self.std),
            "next_id": self.next_id,
            "clusters": [
                {
                    "id": c.id,
                    "centroid": dict(c.centroid),
                    "size": c.size,
                    "description": c.description,
                }
                for c in self.clusters
            ],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ClusterModel:
        if doc.get("format") != MODEL_FORMAT:
            raise ValueError(f"unknown cluster model format {doc.get('format')!r}")
        return cls(
            version=int(doc["version"]),
            features=tuple(doc["features"]),
            mean={k: float(v) for k, v in doc["mean"].items()},
            std={k: float(v) for k, v in doc["std"].items()},
            next_id=int(doc["next_id"]),
            clusters=tuple(
                Cluster(
                    id=int(c["id"]),
                    centroid={k: float(v) for k, v in c["centroid"].items()},
                    size=int(c["size"]),
                    description=str(c["description"]),
                )
                for c in doc["clusters"]
            ),
        )


def _check_margin(margin: float) -> None:
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1), got {margin}")


def _to_units(feature: str, value: float) -> float:
    if feature in LOG_FEATURES:
        return math.expm1(max(0.0, value))
    return value


def _from_units(feature: str, value: float) -> float:
    """The inverse of :func:`_to_units` (for a value of 0 or more in units)."""
    if feature in LOG_FEATURES:
        return math.log1p(max(0.0, value))
    return value


def assign_all(model: ClusterModel, vectors: Iterable[Mapping[str, float]]) -> list[int]:
    """Nearest cluster id of each vector, without hysteresis: for evaluation and reports."""
    return [model.assign(x, None).cluster for x in vectors]
