"""The one cluster trainer: learns from sampled feature vectors, publishes snapshots.

It runs in whichever worker owns the single partition of ``segments.features``, so there
is exactly one trainer per deployment. Snapshots go to Redis with a version; every worker
picks up the latest one and scores with it (nearest centroid, no River on the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from segmenters.clustering import ClusterModel, DriftMonitor, Trainer
from streams.settings import Settings
from streams.store import StateStore

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

    async def learn(
        self, vectors: Sequence[tuple[str | None, dict[str, float]]]
    ) -> ClusterModel | None:
        """Learn a batch of ``(customer id, vector)``; publish a snapshot when one is due.

        Returns the snapshot if one was published. The trainer keeps the latest vector of
        each recent customer and refits the centers to them at every snapshot, so the
        model follows the current population rather than the first customers it saw. The
        refit runs in a thread, so the worker's other agents go on meanwhile.
        """
        if not self.loaded:
            doc = await self.store.load_model()
            if doc is not None:
                self.previous = ClusterModel.from_doc(doc["model"])
            self.loaded = True
        for customer_id, x in vectors:
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
            self.trainer.learn_one(x, customer_id)
            self.learned += 1
        if not self.trainer.started or time.monotonic() < self.next_snapshot:
            return None
        self.next_snapshot = time.monotonic() + self.settings.cluster_snapshot_s
        version = (self.previous.version if self.previous else 0) + 1
        model = await asyncio.to_thread(self.trainer.snapshot, self.previous, version)
        await self.store.save_model(self.document(model))
        self.previous = model
        log.info(
            "published behaviour model v%d (%d clusters, refitted to %d recent customers, "
            "%d vectors learned)",
            version,
            len(model.clusters),
            self.trainer.recent,
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
