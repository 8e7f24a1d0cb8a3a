"""The one cluster trainer: learns from sampled feature vectors, publishes snapshots.

It runs in whichever worker owns the single partition of ``segments.features``, so there
is exactly one trainer per deployment. Snapshots go to Redis with a version; every worker
picks up the latest one and scores with it (nearest centroid, no River on the hot path).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from segmenters.clustering import ClusterModel, DriftMonitor, Trainer

from .settings import Settings
from .store import StateStore

log = logging.getLogger(__name__)


class TrainerService:
    def __init__(self, settings: Settings, store: StateStore) -> None:
        self.settings = settings
        self.store = store
        self.trainer = Trainer(k=settings.clusters, seed=settings.cluster_seed)
        self.drift = DriftMonitor()
        self.previous: ClusterModel | None = None
        self.loaded = False
        self.learned = 0
        self.next_snapshot = time.monotonic() + settings.cluster_snapshot_s

    async def learn(self, vectors: list[dict[str, float]]) -> ClusterModel | None:
        """Learn a batch; publish a snapshot when one is due. Returns it if published."""
        if not self.loaded:
            doc = await self.store.load_model()
            if doc is not None:
                self.previous = ClusterModel.from_doc(doc["model"])
            self.loaded = True
        for x in vectors:
            if self.previous is not None:
                distance = self.previous.assign(x, None, 0.0).distance
                if self.drift.update(distance):
                    log.warning(
                        "behaviour clusters drifted: distance to the nearest centroid moved "
                        "(mean %.2f over %d points, drift #%d); the next snapshot follows it",
                        self.drift.mean_distance,
                        self.drift.points,
                        self.drift.drifts,
                    )
            self.trainer.learn_one(x)
            self.learned += 1
        if not self.trainer.started or time.monotonic() < self.next_snapshot:
            return None
        self.next_snapshot = time.monotonic() + self.settings.cluster_snapshot_s
        version = (self.previous.version if self.previous else 0) + 1
        model = self.trainer.snapshot(self.previous, version)
        await self.store.save_model(self.document(model))
        self.previous = model
        log.info(
            "published behaviour model v%d (%d clusters, %d vectors learned)",
            version,
            len(model.clusters),
            self.learned,
        )
        return model

    def document(self, model: ClusterModel) -> dict[str, Any]:
        return {
            "model": model.to_doc(),
            "learned": self.learned,
            "drift": {
                "points": self.drift.points,
                "drifts": self.drift.drifts,
                "mean_distance": self.drift.mean_distance,
            },
            "published_at": time.time(),
        }
