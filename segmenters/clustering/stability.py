"""Stable snapshots: whether a new cluster model may replace the one in force.

A marketer targets ``cluster_3`` by its id and its description. A snapshot that moves
customers whose behaviour did not change, or rewords a cluster, breaks that target, so
the trainer publishes a new snapshot only if :func:`review` passes it; otherwise it is
held back and the previous snapshot stays in force. :class:`HoldBack` says when the
shell should log the drift (once when it starts, once when it ends) and when a snapshot
held too long is published anyway (segments must not freeze for ever).

Pure: distances and times come in as arguments, no clock is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from segmenters.clustering.model import ClusterModel

#: Default share of the reference customers a snapshot may move (``SEGSTREAM_CLUSTER_MAX_MOVE``).
MAX_MOVE = 0.01
#: Default longest hold of a drifted snapshot, in seconds (``SEGSTREAM_CLUSTER_MAX_HOLD_S``).
MAX_HOLD_S = 6 * 3600.0
#: Growth of the population since the snapshot in force past which a snapshot passes.
GROWTH = 0.1


def _rows(
    model: ClusterModel, vectors: Iterable[Mapping[str, float] | Sequence[float]]
) -> Iterator[Sequence[float]]:
    for x in vectors:
        yield [float(x.get(f, 0.0)) for f in model.features] if isinstance(x, Mapping) else x


def moves(
    old: ClusterModel,
    new: ClusterModel,
    vectors: Iterable[Mapping[str, float] | Sequence[float]],
    margin: float = 0.1,
) -> tuple[int, int]:
    """(customers moved, customers seen): each vector's cluster under ``old`` (nearest
    centroid) against its cluster under ``new`` scored as the workers would, with ``old``'s
    cluster as the previous one and the hysteresis ``margin``. A vector is a mapping or a
    row in ``old.features`` order."""
    moved = seen = 0
    for row in _rows(old, vectors):
        before, _ = old.assign_row(row, None, 0.0)
        after, _ = new.assign_row(row, before, margin)
        moved += after != before
        seen += 1
    return moved, seen


def membership_churn(
    old: ClusterModel,
    new: ClusterModel,
    vectors: Iterable[Mapping[str, float] | Sequence[float]],
    margin: float = 0.1,
) -> float:
    """Share of ``vectors`` whose cluster changes from ``old`` to ``new`` (see :func:`moves`):
    with the same vectors scored against both, every change is churn without a change of
    behaviour. 0.0 for no vectors.

    >>> from segmenters.clustering.model import Cluster
    >>> def model(b: float) -> ClusterModel:
    ...     return ClusterModel(1, ("x",), {"x": 0.0}, {"x": 1.0},
    ...         (Cluster(0, {"x": 0.0}, 1, "a"), Cluster(1, {"x": b}, 1, "b")))
    >>> membership_churn(model(2.0), model(2.0), [{"x": 0.9}, {"x": 1.6}])
    0.0
    >>> membership_churn(model(2.0), model(1.6), [{"x": 0.9}, {"x": 1.6}])
    0.5
    """
    moved, seen = moves(old, new, vectors, margin)
    return moved / seen if seen else 0.0


def changed_descriptions(old: ClusterModel, new: ClusterModel) -> tuple[int, ...]:
    """Ids whose description differs between the models, or that only one of them has."""
    a = {c.id: c.description for c in old.clusters}
    b = {c.id: c.description for c in new.clusters}
    return tuple(sorted(i for i in a.keys() | b.keys() if a.get(i) != b.get(i)))


@dataclass(frozen=True, slots=True)
class Review:
    """Whether a candidate snapshot keeps the segmentation stable, and why not."""

    moved: float
    changed: tuple[int, ...]
    max_move: float
    #: The population grew enough since the snapshot in force to pass anyway.
    grew: bool = False

    @property
    def stable(self) -> bool:
        return self.grew or (self.moved <= self.max_move and not self.changed)

    @property
    def reason(self) -> str:
        parts = []
        if self.moved > self.max_move:
            parts.append(f"would move {self.moved:.1%} of customers (limit {self.max_move:.1%})")
        if self.changed:
            parts.append(
                "would change the description of " + ", ".join(f"cluster_{i}" for i in self.changed)
            )
        if self.grew:
            parts.append("follows a population that grew since the model in force")
        return "; ".join(parts) or f"moves {self.moved:.1%} of customers"


def review(
    old: ClusterModel | None,
    new: ClusterModel,
    vectors: Iterable[Mapping[str, float] | Sequence[float]],
    *,
    max_move: float = MAX_MOVE,
    margin: float = 0.1,
    growth: float = GROWTH,
) -> Review:
    """Review ``new`` against the snapshot in force (none: the first one always passes).

    A population that grew by more than ``growth`` since ``old`` was made (``old``'s sizes
    count the customers its window held) passes too: the new customers need clusters that
    fit them, and while a deployment fills up its early snapshots are not worth keeping.
    """
    if old is None:
        return Review(0.0, (), max_move)
    rows = list(vectors)
    if len(rows) > (1.0 + growth) * sum(c.size for c in old.clusters):
        return Review(0.0, (), max_move, grew=True)
    return Review(
        membership_churn(old, new, rows, margin), changed_descriptions(old, new), max_move
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a candidate: ``publish`` it or not, and what to log (``event``:
    ``"held"`` when a hold starts, ``"resolved"`` when a stable snapshot ends one,
    ``"forced"`` when one held too long is published anyway, else None)."""

    publish: bool
    event: str | None
    held_for: float = 0.0


class HoldBack:
    """The hold-back state machine: at most one log line when a drift starts and one when
    it ends, however many snapshots are held in between.

    >>> gate = HoldBack(max_hold_s=100.0)
    >>> stable, drifted = Review(0.0, (), 0.01), Review(0.2, (), 0.01)
    >>> [gate.decide(r, now).event for r, now in
    ...  [(stable, 0), (drifted, 10), (drifted, 20), (stable, 30), (drifted, 40), (drifted, 140)]]
    [None, 'held', None, 'resolved', 'held', 'forced']
    """

    def __init__(self, max_hold_s: float = MAX_HOLD_S) -> None:
        if max_hold_s < 0:
            raise ValueError("max_hold_s must not be negative")
        self.max_hold_s = max_hold_s
        #: When the current hold began (None: nothing held).
        self.held_since: float | None = None
        #: Candidates held back, and holds started, since start.
        self.held = 0
        self.holds = 0

    def decide(self, verdict: Review, now: float) -> Decision:
        """Publish ``verdict``'s candidate or hold it back, at time ``now`` (seconds).

        With ``max_hold_s`` 0 nothing is held: every candidate is published, and the
        drift is still logged once when it starts and once when it ends."""
        since = self.held_since
        if verdict.stable:
            self.held_since = None
            if since is None:
                return Decision(True, None)
            return Decision(True, "resolved", now - since)
        if since is None:
            self.held_since = now
            self.holds += 1
            if self.max_hold_s <= 0:
                return Decision(True, "held")
            self.held += 1
            return Decision(False, "held")
        if self.max_hold_s <= 0:
            return Decision(True, None, now - since)
        if now - since >= self.max_hold_s:
            self.held_since = None
            return Decision(True, "forced", now - since)
        self.held += 1
        return Decision(False, None, now - since)
