"""What one customer's write does to the structures its partition shares: the segment
indexes it joins and leaves, the RFM histogram buckets it moves, the member set, its next
due time, and the uplift records of its decisions.

Separate from the fold (``core``), which only sees one customer: these are computed from
the state before and after it, and the shell applies them with the state in one atomic
write, turning them into key names and script arguments (streams/store). Plain tuples
and lists: the shell computes them for every write of the hot path.

>>> from segmenters.state import CustomerState
>>> before = CustomerState(customer_id="c-1", segments={"journey": ["browser", 1.0]})
>>> seen = marks(before)  # before the fold, which may change ``before`` in place
>>> after = CustomerState(customer_id="c-1", segments={"journey": ["active_cart", 2.0]},
...                       orders=1, revenue=20.0, last_order_at=7200.0)
>>> index, histograms = moves(seen, after)
>>> index
[(False, 'journey', 'browser'), (True, 'journey', 'active_cart')]
>>> [(h, delta) for h, _bucket, delta in histograms]
[('recency', 1), ('frequency', 1), ('monetary', 1)]
>>> joins_members(before), moves(marks(after), after)
(False, ([], []))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from segmenters.actions import ActionState, Decision, next_due
from segmenters.config import EngineConfig
from segmenters.core import NO_CONTEXT, Context, next_deadline
from segmenters.dimensions import rfm, value
from segmenters.state import CustomerState

#: (add?, dimension, segment): the customer joins (True) or leaves a segment's index.
IndexMove = tuple[bool, str, str]
#: (histogram, bucket, delta): one buyer more (+1) or less (-1) in a histogram's bucket.
HistogramMove = tuple[str, int, int]
#: What the shared structures hold of a state: dimension -> segment (the indexes it is
#: in) and histogram -> bucket (the RFM histograms it counts in).
Marks = tuple[dict[str, str], dict[str, int]]
#: A first assignment to an experiment's group: (experiment, action, group, at).
Assigned = tuple[str, str, str, float]
#: A counted suppression: (experiment, action, reason).
Suppressed = tuple[str, str, str]

#: The shared histograms, in the order their moves are listed: RFM's three and the
#: alive buyers' CLV (the value dimension's ranks).
HISTOGRAMS = ("recency", "frequency", "monetary", value.HISTOGRAM)
#: Suppression reasons that are not a guard's verdict and stay out of the report.
UNCOUNTED = frozenset({"duplicate"})


def histogram_buckets(state: CustomerState | None) -> dict[str, int]:
    """The bucket of each shared histogram the customer counts in (histogram -> bucket):
    what the worker moves on each write, what an erase takes back, what a migration
    counts again."""
    buckets = rfm.histogram_buckets(state)
    if state is not None:
        b = value.histogram_bucket(state)
        if b is not None:
            buckets[value.HISTOGRAM] = b
    return buckets


def marks(state: CustomerState | None) -> Marks:
    """What the shared indexes hold of a state before it changes: segments, histogram
    buckets.

    Taken before the fold, which may change an owned state in place.
    """
    if state is None:
        return {}, {}
    return {d: str(v[0]) for d, v in state.segments.items()}, histogram_buckets(state)


def index_moves(before: Mapping[str, str], after: CustomerState) -> list[IndexMove]:
    """Segment-index updates: remove from the old segment, add to the new one."""
    ops: list[IndexMove] = []
    for dimension, (segment, _since) in after.segments.items():
        old = before.get(dimension)
        if old != segment:
            if old is not None:
                ops.append((False, dimension, old))
            ops.append((True, dimension, segment))
    return ops


def histogram_moves(old: Mapping[str, int], new: Mapping[str, int]) -> list[HistogramMove]:
    """Moves in the shared histograms: (histogram, bucket, +1/-1)."""
    ops: list[HistogramMove] = []
    for hist in HISTOGRAMS:
        if old.get(hist) != new.get(hist):
            if hist in old:
                ops.append((hist, old[hist], -1))
            if hist in new:
                ops.append((hist, new[hist], 1))
    return ops


def moves(before: Marks, after: CustomerState) -> tuple[list[IndexMove], list[HistogramMove]]:
    """The index and histogram moves from what ``before`` marked to the state ``after``."""
    return index_moves(before[0], after), histogram_moves(before[1], histogram_buckets(after))


def joins_members(before: CustomerState | None) -> bool:
    """A customer seen for the first time joins its partition's member set."""
    return before is None


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def next_timer(
    state: CustomerState,
    actions: ActionState | None,
    config: EngineConfig,
    ctx: Context = NO_CONTEXT,
) -> float | None:
    """The customer's entry in its partition's due index (event time), or None: the
    earliest of its next segment deadline and, with ``actions``, its next delayed action.
    """
    return _earliest(
        next_deadline(state, config, ctx), None if actions is None else next_due(actions)
    )


def uplift_records(decisions: Iterable[Decision]) -> tuple[list[Assigned], list[Suppressed]]:
    """The uplift records of a write: every assignment (the store keeps the first) and
    the counted suppressions."""
    assigned: list[Assigned] = []
    suppressed: list[Suppressed] = []
    for d in decisions:
        a = d.assignment()
        if a is not None:
            assigned.append((d.experiment, d.action, a.group, a.at))
        elif d.outcome == "suppressed" and d.reason not in UNCOUNTED:
            suppressed.append((d.experiment, d.action, d.reason))
    return assigned, suppressed
