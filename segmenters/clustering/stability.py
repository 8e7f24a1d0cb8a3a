"""Stable snapshots: whether a new cluster model may replace the one in force.

A marketer targets ``cluster_3`` by its id and its description. A snapshot that moves
customers whose behaviour did not change, or rewords a cluster, breaks that target, so
the trainer publishes a new snapshot only if :func:`review` passes it; otherwise it is
held back and the previous snapshot stays in force. :class:`HoldBack` says when the
shell should log the drift (once when it starts, once when it ends) and when a snapshot
held too long is released (segments must not freeze for ever): not at once, which
would move everything that built up during the hold, but in steps
(:func:`step_towards`), one per snapshot period, each moving fewer than the review's
share of customers, until a candidate passes the review on its own.

Pure: distances and times come in as arguments, no clock is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from segmenters.clustering.model import Cluster, ClusterModel

#: Default share of the reference customers a snapshot must move fewer than
#: (``SEGSTREAM_CLUSTER_MAX_MOVE``).
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


def within(moved: float, max_move: float) -> bool:
    """Whether moving the share ``moved`` of customers keeps to the limit ``max_move``:
    strictly fewer, so that the default 1 % means every published snapshot moves less
    than 1 %. A snapshot that moves nobody always keeps to it (0 means "move nobody",
    and a release still progresses by steps that move nobody), and 1 is no limit.

    >>> within(0.009, 0.01), within(0.01, 0.01), within(0.0, 0.0), within(1.0, 1.0)
    (True, False, True, True)
    """
    return moved < max_move or moved == 0.0 or max_move >= 1.0


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
        return self.grew or (within(self.moved, self.max_move) and not self.changed)

    @property
    def reason(self) -> str:
        parts = []
        if not within(self.moved, self.max_move):
            parts.append(
                f"would move {self.moved:.1%} of customers (limit: fewer than {self.max_move:.1%})"
            )
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
    ``"held"`` when a hold starts, ``"resolved"`` when a stable snapshot ends one, else
    None). With ``step`` the model to publish is not the candidate but a step from the
    model in force towards it (:func:`step_towards`): the hold timed out."""

    publish: bool
    event: str | None
    held_for: float = 0.0
    step: bool = False


class HoldBack:
    """The hold-back state machine: at most one log line when a drift starts and one when
    it ends, however many snapshots are held or released in steps in between.

    A drift held for ``max_hold_s`` is released: from then on every candidate that fails
    the review is published as a step towards it, until one passes the review on its own
    (the steps reached the population, and the drift ends). With ``max_hold_s`` 0 the
    steps start at once.

    >>> gate = HoldBack(max_hold_s=100.0)
    >>> stable, drifted = Review(0.0, (), 0.01), Review(0.2, (), 0.01)
    >>> [(d.event, d.publish, d.step) for d in (gate.decide(r, now) for r, now in
    ...  [(stable, 0), (drifted, 10), (drifted, 20), (stable, 30), (drifted, 40),
    ...   (drifted, 140), (drifted, 150), (stable, 160)])]  # doctest: +NORMALIZE_WHITESPACE
    [(None, True, False), ('held', False, False), (None, False, False),
     ('resolved', True, False), ('held', False, False), (None, True, True),
     (None, True, True), ('resolved', True, False)]
    """

    def __init__(self, max_hold_s: float = MAX_HOLD_S) -> None:
        if max_hold_s < 0:
            raise ValueError("max_hold_s must not be negative")
        self.max_hold_s = max_hold_s
        #: When the current hold began (None: nothing held).
        self.held_since: float | None = None
        #: The current hold timed out: candidates are released in steps.
        self.releasing = False
        #: Candidates held back, holds started, and steps published, since start.
        self.held = 0
        self.holds = 0
        self.steps = 0

    def decide(self, verdict: Review, now: float) -> Decision:
        """Publish ``verdict``'s candidate, hold it back, or publish a step towards it, at
        time ``now`` (seconds)."""
        since = self.held_since
        if verdict.stable:
            self.held_since = None
            self.releasing = False
            if since is None:
                return Decision(True, None)
            return Decision(True, "resolved", now - since)
        event = None
        if since is None:
            since = self.held_since = now
            self.holds += 1
            event = "held"
        if self.releasing or now - since >= self.max_hold_s:
            self.releasing = True
            self.steps += 1
            return Decision(True, event, now - since, step=True)
        self.held += 1
        return Decision(False, event, now - since)


def _scaled(model: ClusterModel, centroid: Sequence[float]) -> list[float]:
    """A centroid of ``model`` (scaled) back in feature space."""
    return [c * s + m for c, s, m in zip(centroid, model._std, model._mean, strict=True)]


def interpolate(current: ClusterModel, target: ClusterModel, w: float) -> ClusterModel:
    """The model ``w`` of the way from ``current`` (0) to ``target`` (1): scaler and
    centroids (in feature space) interpolated linearly, so every distance a worker takes
    moves continuously from one model to the other. Ids, version and ``next_id`` are
    ``target``'s, descriptions ``current``'s (see :func:`step_towards`); sizes are
    ``current``'s until :func:`step_towards` counts them. ``target`` must have
    ``current``'s features and cluster ids."""
    if w >= 1.0:
        return target
    if current.features != target.features or current._ids != target._ids:
        raise ValueError("only models with the same features and cluster ids interpolate")
    mean = [a + w * (b - a) for a, b in zip(current._mean, target._mean, strict=True)]
    std = [a + w * (b - a) for a, b in zip(current._std, target._std, strict=True)]
    clusters = []
    for old, new, a, b in zip(
        current.clusters, target.clusters, current._centroids, target._centroids, strict=True
    ):
        x = [p + w * (q - p) for p, q in zip(_scaled(current, a), _scaled(target, b), strict=True)]
        z = [(v - m) / s for v, m, s in zip(x, mean, std, strict=True)]
        clusters.append(
            Cluster(new.id, dict(zip(target.features, z, strict=True)), old.size, old.description)
        )
    return ClusterModel(
        version=target.version,
        features=target.features,
        mean=dict(zip(target.features, mean, strict=True)),
        std=dict(zip(target.features, std, strict=True)),
        clusters=tuple(clusters),
        next_id=target.next_id,
    )


#: Resolution of the bisection of :func:`step_towards`: a step goes at least this share
#: of the way whenever that moves few enough customers.
MIN_STEP = 1.0 / 64
#: Below this share of the way a step is not worth publishing.
MIN_WEIGHT = 2.0**-20


def step_towards(
    current: ClusterModel,
    target: ClusterModel,
    vectors: Iterable[Mapping[str, float] | Sequence[float]],
    max_move: float = MAX_MOVE,
    margin: float = 0.1,
    *,
    min_step: float = MIN_STEP,
) -> ClusterModel:
    """The next model of a release from ``current`` towards ``target``: ``target`` itself
    if it moves fewer than ``max_move`` of ``vectors`` (by :func:`membership_churn` and
    :func:`within`, as the review counts), else the interpolation (:func:`interpolate`)
    furthest towards it that still does, found by bisection of the weight down to
    ``min_step`` (and by halving below it, down to :data:`MIN_WEIGHT`, when even
    ``min_step`` moves too many). A step that moves exactly ``max_move`` is not taken.

    The move limit always holds; progress comes from the next step starting where this
    one stopped, and from the hysteresis ``margin``: a small enough step moves nobody
    (every vector stays in its nearest centroid's cluster until another is ``margin``
    closer), so some step always passes, and as the models near each other ``target``
    itself passes. ``current`` is returned, unchanged, if no step passes (with ``margin``
    0 and vectors exactly between two centroids). ``target`` is returned as it is if the
    clusters differ (ids added or retired, the number of clusters changed): there is
    nothing to interpolate, and the change must not wait for ever.

    An intermediate step keeps ``current``'s descriptions: they say nothing to the
    workers' scoring, so rewording is never needed to make progress, and words change
    only with the step that reaches ``target`` (whose words the trainer described with
    the hysteresis of the words in force). Sizes count the ``vectors`` nearest each
    centroid, as the trainer counts its window.
    """
    rows = list(_rows(current, vectors))
    if within(membership_churn(current, target, rows, margin), max_move):
        return target
    if current.features != target.features or current._ids != target._ids:
        return target

    def passes(w: float) -> bool:
        step = interpolate(current, target, w)
        return within(membership_churn(current, step, rows, margin), max_move)

    lo, hi = 0.0, 1.0
    while hi - lo > min_step:
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    w = lo
    while w == 0.0 and hi > MIN_WEIGHT:
        hi /= 2.0
        w = hi if passes(hi) else 0.0
    if w == 0.0:
        return current
    step = interpolate(current, target, w)
    sizes = dict.fromkeys(step._ids, 0)
    for row in rows:
        sizes[step.assign_row(row, None, 0.0)[0]] += 1
    return replace(step, clusters=tuple(replace(c, size=sizes[c.id]) for c in step.clusters))
