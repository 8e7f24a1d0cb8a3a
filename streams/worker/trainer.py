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
from segmenters.clustering.stability import (
    Decision,
    HoldBack,
    Review,
    membership_churn,
    review,
    step_towards,
)
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
        self.hold = HoldBack(settings.cluster_max_hold_s)
        #: The latest candidate's review (for the stored document and logs).
        self.review: Review | None = None
        #: The agent and the hold timer both snapshot; one at a time, and never while
        #: the other learns (the snapshot runs in a thread).
        self._lock = asyncio.Lock()

    async def forget(self, customer_id: str) -> None:
        """Drop an erased customer from the trainer's window (not during a snapshot)."""
        async with self._lock:
            self.trainer.forget(customer_id)

    async def tick(self) -> ClusterModel | None:
        """While a snapshot is held back, review a fresh one when due even if no vector
        comes (an idle deployment sends none): a hold must end, by a stable snapshot or
        by the steps that follow ``SEGSTREAM_CLUSTER_MAX_HOLD_S``. Returns the snapshot if
        one was published."""
        if self.hold.held_since is None:
            return None
        return await self.learn([])

    async def learn(
        self, vectors: Sequence[tuple[str | None, dict[str, float]]]
    ) -> ClusterModel | None:
        """Learn a batch of ``(customer id, vector)``; publish a snapshot when one is due.

        Returns the snapshot if one was published. The trainer keeps the latest vector of
        each recent customer and refits the centers to them at every snapshot, so the
        model follows the current population rather than the first customers it saw. The
        refit runs in a thread, so the worker's other agents go on meanwhile.
        """
        async with self._lock:
            return await self._learn(vectors)

    async def _learn(
        self, vectors: Sequence[tuple[str | None, dict[str, float]]]
    ) -> ClusterModel | None:
        if not self.loaded:
            doc = await self.store.load_model()
            if doc is not None:
                self.previous = ClusterModel.from_doc(doc["model"])
            self.loaded = True
        for customer_id, x in vectors:
            if self.previous is not None:
                # Counted in the document; the drift a marketer sees is a held-back
                # snapshot (logged by ``_gate``), not every ADWIN detection.
                self.drift.update(self.previous.assign(x, None, 0.0).distance)
            self.trainer.learn_one(x, customer_id)
            self.learned += 1
        if not self.trainer.started or time.monotonic() < self.next_snapshot:
            return None
        self.next_snapshot = time.monotonic() + self.settings.cluster_snapshot_s
        version = (self.previous.version if self.previous else 0) + 1
        model, verdict = await asyncio.to_thread(self._candidate, version)
        decision = self._gate(verdict, time.monotonic())
        if not decision.publish:
            return None
        reason = verdict.reason
        if decision.step and self.previous is not None:
            target = model
            model, moved = await asyncio.to_thread(self._step, target)
            if model is self.previous:
                return None
            reason = (
                f"{'reaches' if model is target else 'is a step towards'} a snapshot that "
                f"{verdict.reason} (drift for {decision.held_for:.0f} s); it moves "
                f"{moved:.1%} of customers"
            )
        await self.store.save_model(self.document(model))
        self.previous = model
        log.info(
            "published behaviour model v%d (%d clusters, refitted to %d recent customers, "
            "%d vectors learned; it %s)",
            version,
            len(model.clusters),
            self.trainer.recent,
            self.learned,
            reason,
        )
        return model

    def _candidate(self, version: int) -> tuple[ClusterModel, Review]:
        """A snapshot, ids matched to the one in force, and its review on the trainer's
        recent customers (in a thread: both are NumPy and Python loops)."""
        model = self.trainer.snapshot(self.previous, version)
        verdict = review(
            self.previous,
            model,
            self.trainer.recent_rows(),
            max_move=self.settings.cluster_max_move,
            margin=self.settings.cluster_margin,
        )
        return model, verdict

    def _step(self, target: ClusterModel) -> tuple[ClusterModel, float]:
        """A step from the model in force towards ``target`` moving fewer than
        ``SEGSTREAM_CLUSTER_MAX_MOVE`` of the recent customers, and the share it moves (in
        a thread, as :meth:`_candidate`)."""
        assert self.previous is not None
        rows = self.trainer.recent_rows()
        margin = self.settings.cluster_margin
        step = step_towards(self.previous, target, rows, self.settings.cluster_max_move, margin)
        return step, membership_churn(self.previous, step, rows, margin)

    def _gate(self, verdict: Review, now: float) -> Decision:
        """Publish or hold back; log a drift once when it starts and once when it ends."""
        self.review = verdict
        decision = self.hold.decide(verdict, now)
        in_force = self.previous.version if self.previous else 0
        if decision.event == "held":
            log.warning(
                "behaviour clusters drifted: a new snapshot %s; %s, then released in steps "
                "that move fewer than %.1f%% of customers each",
                verdict.reason,
                "SEGSTREAM_CLUSTER_MAX_HOLD_S=0: no hold"
                if decision.publish
                else f"model v{in_force} stays in force while the trainer goes on learning "
                f"(up to {self.hold.max_hold_s:.0f} s)",
                100 * self.settings.cluster_max_move,
            )
        elif decision.event == "resolved":
            log.warning(
                "behaviour clusters stable again after %.0f s: a new snapshot %s",
                decision.held_for,
                verdict.reason,
            )
        return decision

    def document(self, model: ClusterModel) -> dict[str, Any]:
        return {
            "model": model.to_doc(),
            "learned": self.learned,
            "drift": {
                "points": self.drift.points,
                "drifts": self.drift.drifts,
                "mean_distance": self.drift.mean_distance,
                "held": self.hold.held,
                "holds": self.hold.holds,
            },
            "published_at": time.time(),
        }
