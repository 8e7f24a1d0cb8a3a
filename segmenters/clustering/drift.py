"""Drift of the behaviour segmentation: when the latest model has gone stale.

Separate from the model and the trainer: the trainer service feeds it distances and
counts its detections in the stored model document. Whether a new snapshot replaces the
one in force is :mod:`.stability`'s to say.
"""

from __future__ import annotations

import math

from river import drift


class DriftMonitor:
    """Tells when the segmentation has gone stale: ADWIN on the distance to the nearest centroid.

    While the model fits, distances hover around a stable mean; when behaviour shifts
    (a new kind of customer, a season) they grow, ADWIN finds the change in the mean,
    and it is time for a fresh snapshot.

    >>> monitor = DriftMonitor()
    >>> sum([monitor.update(0.5 + 0.01 * (i % 7)) for i in range(1000)])
    0
    >>> sum([monitor.update(3.0 + 0.01 * (i % 7)) for i in range(200)])
    1
    >>> monitor.points, monitor.drifts, 1000 < monitor.last_drift_at < 1100
    (1200, 1, True)
    """

    def __init__(self, *, delta: float = 0.002, clock: int = 32) -> None:
        self._adwin = drift.ADWIN(delta=delta, clock=clock)  # type: ignore[no-untyped-call]
        self.points = 0
        self.drifts = 0
        #: ``points`` when the latest drift was detected.
        self.last_drift_at: int | None = None

    def update(self, distance: float) -> bool:
        """Add one distance; True if a drift is detected now."""
        if not math.isfinite(distance):
            raise ValueError(f"distance must be finite, got {distance}")
        self._adwin.update(distance)  # type: ignore[no-untyped-call]
        self.points += 1
        if self._adwin.drift_detected:
            self.drifts += 1
            self.last_drift_at = self.points
            return True
        return False

    @property
    def mean_distance(self) -> float:
        """ADWIN's estimate of the current mean distance."""
        return float(self._adwin.estimation)
