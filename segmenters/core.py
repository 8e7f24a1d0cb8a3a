"""The pure core: ``fold(state, events) -> (state, changes)``.

Everything the core needs arrives as arguments: the current state, the events with
their source positions, the configuration. It reads no clock and does no I/O, so a
replay of the same events gives the same state and the same changes, byte for byte.

>>> from datetime import datetime, UTC
>>> from segmenters.events import parse_event
>>> e = parse_event('{"schema_version":1,"event_id":"e-1","type":"cart","customer_id":"c-1",'
...                 '"occurred_at":"2026-01-01T10:00:00Z","action":"add","sku":"A"}')
>>> r = fold(None, "c-1", [(e, Source("events.cart", 0, 7))], config=EngineConfig())
>>> [(c.previous, c.current) for c in r.changes]
[(None, 'active_cart')]
>>> fold(r.state, "c-1", [(e, Source("events.cart", 0, 7))], config=EngineConfig()).applied
0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from segmenters.changes import SegmentChange
from segmenters.clustering import ClusterModel
from segmenters.clv.model import ClvModel
from segmenters.config import EngineConfig
from segmenters.dimensions import interest as interest_rules
from segmenters.dimensions import journey as journey_rules
from segmenters.dimensions import profile as profile_rules
from segmenters.dimensions import rfm as rfm_rules
from segmenters.dimensions import value as value_rules
from segmenters.dimensions.custom import CustomSegments, custom_memberships, custom_reason
from segmenters.dimensions.rfm import RfmQuantiles
from segmenters.dimensions.value import ValueQuantiles
from segmenters.events import Event
from segmenters.features import FEATURES, feature_row, feature_vector
from segmenters.state import CustomerState
from segmenters.update import apply_event


@dataclass(frozen=True, slots=True)
class Context:
    """What the segments depend on beyond one customer: population statistics, models.

    The shell refreshes it (from Redis) and passes it in; the core never fetches it.
    """

    rfm: RfmQuantiles | None = None
    clusters: ClusterModel | None = None
    #: Hysteresis of the behaviour dimension (see ``ClusterModel.assign``).
    cluster_margin: float = 0.1
    custom: CustomSegments | None = None
    #: The value models (latest snapshot) and their horizon: action messages carry a
    #: buyer's predictions when there is a model.
    clv: ClvModel | None = None
    clv_horizon_days: float = 365.0
    #: The value dimension's CLV cuts over alive buyers (the shared histogram).
    value: ValueQuantiles | None = None


BEHAVIOUR = "behaviour"


def behaviour(state: CustomerState, now: float, ctx: Context) -> tuple[str, str] | None:
    """The customer's behavioural cluster under the latest model snapshot."""
    model = ctx.clusters
    if model is None:
        return None
    previous = state.segment(BEHAVIOUR)
    prev_id = int(previous.removeprefix("cluster_")) if previous else None
    a = model.assign(feature_vector(state, now), prev_id, ctx.cluster_margin)
    return (
        f"cluster_{a.cluster}",
        f"{model.cluster(a.cluster).description}; {a.reason}; model v{model.version}",
    )


NO_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class Source:
    """Where an event came from: a Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.topic}/{self.partition}"

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(slots=True)
class FoldResult:
    state: CustomerState
    changes: list[SegmentChange] = field(default_factory=list)
    #: The source of the event that caused each change (parallel to ``changes``).
    causes: list[Source | None] = field(default_factory=list)
    #: The source of the latest event applied before each change of ``fold`` (its own, for
    #: an event's change; None before the first event of the fold): a timer fired between
    #: two events follows from the one before it.
    after: list[Source | None] = field(default_factory=list)
    applied: int = 0
    #: Events skipped as already applied: (source or None, reason).
    skipped: list[tuple[Source | None, str]] = field(default_factory=list)
    #: ``event_id`` of every event applied, in order.
    applied_ids: list[str] = field(default_factory=list)


def evaluate(
    state: CustomerState, now: float, config: EngineConfig, ctx: Context = NO_CONTEXT
) -> dict[str, tuple[str, str]]:
    """Every dimension's segment for ``state`` at event time ``now``, with its reason.

    A dimension that does not apply yet (RFM before a first order, demographic before a
    profile) is left out.
    """
    out = {journey_rules.DIMENSION: journey_rules.journey(state, now, config.journey)}
    for dimension, value in (
        (rfm_rules.DIMENSION, rfm_rules.rfm(state, now, ctx.rfm)),
        (profile_rules.DEMOGRAPHIC, profile_rules.demographic(state, now)),
        (profile_rules.GEOGRAPHIC, profile_rules.geographic(state)),
        (
            interest_rules.DIMENSION,
            interest_rules.interest(
                state, config.interest, half_life_days=config.state.interest_half_life_days
            ),
        ),
        (BEHAVIOUR, behaviour(state, now, ctx)),
        (value_rules.DIMENSION, value_of(state, now, config, ctx)),
    ):
        if value is not None:
            out[dimension] = value
    return out


def value_of(
    state: CustomerState, now: float, config: EngineConfig, ctx: Context
) -> tuple[str, str] | None:
    """The value segment under the latest value model, and its reason (None without a
    model, before a first purchase, or while no alive buyer is ranked yet)."""
    if ctx.clv is None:
        return None
    scored = value_rules.score(state, now, ctx.clv, ctx.clv_horizon_days)
    if scored is None:
        return None
    segment = value_rules.value_segment(scored[1], ctx.value, config.value)
    if segment is None:
        return None
    return segment, value_rules.value_reason(segment, *scored, ctx.value, config.value)


def next_deadline(
    state: CustomerState, config: EngineConfig, ctx: Context = NO_CONTEXT
) -> float | None:
    """The next event time after ``state.eval_at`` at which a segment may change by itself.

    This is when the customer's timer is due.
    """
    if state.eval_at is None:
        return None
    after = state.eval_at
    due = journey_rules.next_deadline(state, after, config.journey)
    other = rfm_rules.next_deadline(state, after, ctx.rfm)
    if other is not None and (due is None or other < due):
        due = other
    other = profile_rules.next_deadline(state, after)
    if other is not None and (due is None or other < due):
        due = other
    if ctx.clv is not None and len(state.buy_days) > 1:
        other = value_rules.next_deadline(state, after, ctx.clv, config.value)
        if other is not None and (due is None or other < due):
            due = other
    return due


def advance(
    state: CustomerState, until: float, config: EngineConfig, ctx: Context = NO_CONTEXT
) -> list[SegmentChange]:
    """Fire, in order, every timer of ``state`` due up to event time ``until``.

    A change fired by a timer happens at its deadline (``changed_at``), so it is the same
    change, id included, whether the timer fired live, in a replay, or just before the
    customer's next event.
    """
    changes: list[SegmentChange] = []
    while True:
        due = next_deadline(state, config, ctx)
        if due is None or due > until:
            return changes
        changes.extend(segment_changes(state, due, config, ctx))
        state.eval_at = due


def _duplicate(
    event: Event, source: Source | None, key: str, state: CustomerState, seen: set[str]
) -> str | None:
    """Why ``event`` was applied already, or None; ``key`` is ``source.key``, built once."""
    if source is not None:
        last = state.offsets.get(key)
        if last is not None and source.offset <= last:
            return "offset already applied"
    if event.event_id in seen:
        return "event_id already applied"
    return None


def segment_changes(
    state: CustomerState,
    now: float,
    config: EngineConfig,
    ctx: Context = NO_CONTEXT,
    *,
    rescored: bool = False,
) -> list[SegmentChange]:
    """Re-evaluate every dimension; record and return the ones that changed.

    Each change takes the next position in its dimension's history (``state.positions``),
    so two changes never share an id: not even two rescoring passes at one event time.
    """
    # Built-in dimensions first, then custom rules, which may read this evaluation's
    # segments. The same segments as ``evaluate`` and ``evaluate_custom`` give, dimension
    # by dimension (none reads another built-in's segment, no rule a custom one), but a
    # reason is only written for a dimension that changed: most evaluations change nothing.
    changes: list[SegmentChange] = []
    segment = journey_rules.journey_segment(state, now, config.journey)
    if segment != state.segment(journey_rules.DIMENSION):
        reason = journey_rules.journey_reason(segment, state, now, config.journey)
        _change(changes, state, journey_rules.DIMENSION, segment, reason, now, rescored)
    q = ctx.rfm
    if q is not None and state.orders != 0 and state.last_order_at is not None and q.buyers:
        r, f, m = rfm_rules.scores(state, now, q)
        segment = rfm_rules.rfm_segment(r, f)
        if segment != state.segment(rfm_rules.DIMENSION):
            reason = rfm_rules.rfm_reason(r, f, m, q)
            _change(changes, state, rfm_rules.DIMENSION, segment, reason, now, rescored)
    if state.profile:
        demographic = profile_rules.demographic_segment(state, now)
        if demographic is not None and demographic != state.segment(profile_rules.DEMOGRAPHIC):
            full = profile_rules.demographic(state, now)
            assert full is not None and full[0] == demographic
            _change(changes, state, profile_rules.DEMOGRAPHIC, demographic, full[1], now, rescored)
    geographic = profile_rules.geographic_segment(state)
    if geographic is not None and geographic != state.segment(profile_rules.GEOGRAPHIC):
        full = profile_rules.geographic(state)
        assert full is not None and full[0] == geographic
        _change(changes, state, profile_rules.GEOGRAPHIC, geographic, full[1], now, rescored)
    if state.categories:
        interest = interest_rules.interest_segment(state, config.interest)
        if interest is not None and interest != state.segment(interest_rules.DIMENSION):
            reason = interest_rules.interest_reason(
                interest,
                state,
                config.interest,
                half_life_days=config.state.interest_half_life_days,
            )
            _change(changes, state, interest_rules.DIMENSION, interest, reason, now, rescored)
    if ctx.clusters is not None:
        _behaviour(changes, state, now, ctx, rescored)
    if ctx.clv is not None and state.buy_days:
        _value(changes, state, now, config, ctx, rescored)
    for rule, segment in custom_memberships(state, now, ctx.custom):
        if segment != state.segment(rule.dimension):
            assert ctx.custom is not None
            reason = custom_reason(ctx.custom, rule, segment)
            _change(changes, state, rule.dimension, segment, reason, now, rescored)
    return changes


def _behaviour(
    changes: list[SegmentChange], state: CustomerState, now: float, ctx: Context, rescored: bool
) -> None:
    """:func:`behaviour`, with the reason written only for a change."""
    model = ctx.clusters
    assert model is not None
    if model.features is not FEATURES and model.features != FEATURES:
        found = behaviour(state, now, ctx)
        assert found is not None
        if found[0] != state.segment(BEHAVIOUR):
            _change(changes, state, BEHAVIOUR, found[0], found[1], now, rescored)
        return
    previous = state.segment(BEHAVIOUR)
    prev_id = int(previous.removeprefix("cluster_")) if previous else None
    cluster, d = model.assign_row(feature_row(state, now), prev_id, ctx.cluster_margin)
    segment = f"cluster_{cluster}"
    if segment != previous:
        a = model.explain(d, prev_id, ctx.cluster_margin)
        reason = f"{model.cluster(a.cluster).description}; {a.reason}; model v{model.version}"
        _change(changes, state, BEHAVIOUR, segment, reason, now, rescored)


def _value(
    changes: list[SegmentChange],
    state: CustomerState,
    now: float,
    config: EngineConfig,
    ctx: Context,
    rescored: bool,
) -> None:
    """:func:`value_of`, keeping the CLV the buyer is ranked with (``state.clv``) current."""
    assert ctx.clv is not None
    scored = value_rules.score(state, now, ctx.clv, ctx.clv_horizon_days)
    if scored is None:
        state.clv = None
        return
    state.clv = value_rules.ranked_clv(scored[1], config.value)
    segment = value_rules.value_segment(scored[1], ctx.value, config.value)
    if segment is not None and segment != state.segment(value_rules.DIMENSION):
        reason = value_rules.value_reason(segment, *scored, ctx.value, config.value)
        _change(changes, state, value_rules.DIMENSION, segment, reason, now, rescored)


def _change(
    changes: list[SegmentChange],
    state: CustomerState,
    dimension: str,
    segment: str,
    reason: str,
    now: float,
    rescored: bool,
) -> None:
    previous = state.segment(dimension)
    position = state.enter(dimension, segment, now)
    changes.append(
        SegmentChange.make(
            customer_id=state.customer_id,
            dimension=dimension,
            previous=previous,
            current=segment,
            at=now,
            reason=reason,
            position=position,
            rescored=rescored,
        )
    )


def fold(
    state: CustomerState | None,
    customer_id: str,
    events: Iterable[tuple[Event, Source | None]],
    *,
    config: EngineConfig,
    ctx: Context = NO_CONTEXT,
    owned: bool = False,
) -> FoldResult:
    """Apply one customer's events, in order, to ``state`` (which is not modified, unless
    ``owned``: a caller that owns ``state`` and can drop it lets the fold change it in
    place, which saves a deep copy per customer per batch).

    An event whose source offset was already applied, or whose ``event_id`` came earlier
    in ``events``, is skipped, so redelivery changes nothing. (Ids applied in earlier
    folds are the store's to check: it keeps every applied id, see ``applied_ids``.)
    Before an event is applied, the customer's timers due by its time fire; then the
    segments are evaluated at the event's time (never earlier than the latest
    evaluation).
    """
    if state is None:
        work = CustomerState(customer_id)
    else:
        work = state if owned else state.copy()
    result = FoldResult(work)
    seen: set[str] = set()
    last: Source | None = None  # the latest event applied in this fold
    for event, source in events:
        key = "" if source is None else source.key
        reason = _duplicate(event, source, key, work, seen)
        if reason is not None:
            result.skipped.append((source, reason))
            continue
        at = event.occurred_at.timestamp()
        due = next_deadline(work, config, ctx)
        if due is not None and due <= at:  # most events come before any timer: no call
            fired = advance(work, at, config, ctx)
            result.changes.extend(fired)
            result.causes.extend([None] * len(fired))
            result.after.extend([last] * len(fired))
        apply_event(work, event, config.state, at=at)
        last = source
        seen.add(event.event_id)
        if source is not None:
            work.offsets[key] = source.offset
        result.applied += 1
        result.applied_ids.append(event.event_id)
        # ``max(at, eval_at)``: never evaluate before the latest evaluation
        eval_at = work.eval_at
        now = eval_at if eval_at is not None and eval_at > at else at
        changed = segment_changes(work, now, config, ctx)
        work.eval_at = now
        if changed:
            result.changes.extend(changed)
            result.causes.extend([source] * len(changed))
            result.after.extend([source] * len(changed))
    return result


def tick(
    state: CustomerState, until: float, *, config: EngineConfig, ctx: Context = NO_CONTEXT
) -> FoldResult:
    """The timer path: fire ``state``'s timers due by event time ``until``, no event."""
    work = state.copy()
    result = FoldResult(work)
    result.changes = advance(work, until, config, ctx)
    result.causes = [None] * len(result.changes)
    return result


def rescore(
    state: CustomerState, now: float, *, config: EngineConfig, ctx: Context = NO_CONTEXT
) -> FoldResult:
    """Re-evaluate ``state`` at event time ``now`` against the current population
    statistics and model (the sweep that keeps RFM and behaviour segments current)."""
    work = state.copy()
    result = FoldResult(work)
    result.changes = advance(work, now, config, ctx)
    at = max(now, work.eval_at if work.eval_at is not None else now)
    result.changes.extend(segment_changes(work, at, config, ctx, rescored=True))
    work.eval_at = at
    result.causes = [None] * len(result.changes)
    return result


def carry_no_actions(
    result: FoldResult, items: list[tuple[Event, Source]], marked: set[Source], was: bool
) -> None:
    """Mark ``no_actions`` the changes of events replayed with ``--no-actions`` and, while
    the customer's latest event was one of those, the changes of its timers and rescoring:
    they follow from replayed history, not from the customer now. "Latest" is as of each
    change: a timer fired between two events of the batch follows the event before it
    (``result.after``); one before the batch's first event, or with no event (a tick, a
    rescore), follows the state before (``was``). The state remembers whether its latest
    applied event was marked."""
    ids = {e.event_id for e, src in items if src in marked}
    if result.applied_ids:
        result.state.no_actions = result.applied_ids[-1] in ids
    after = result.after
    for i, (change, src) in enumerate(zip(result.changes, result.causes, strict=True)):
        if src is None:
            prior = after[i] if i < len(after) else None
            mark = (prior in marked) if prior is not None else was
        else:
            mark = src in marked
        if mark:
            result.changes[i] = change.model_copy(update={"no_actions": True})


def merge_by_time(
    items: Sequence[tuple[Event, Source | None]],
) -> list[tuple[Event, Source | None]]:
    """One customer's events in event-time order, each source partition kept in offset order.

    A customer's events come from several topics, which a consumer reads at different
    paces; merging by ``occurred_at`` undoes that within a batch. Events of one partition
    are never reordered among themselves: the offset de-duplication relies on it.

    >>> from segmenters.events import parse_event
    >>> def e(i, t): return parse_event('{"schema_version":1,"event_id":"%s","type":"browse",'
    ...     '"customer_id":"c","occurred_at":"2026-01-01T00:00:%02dZ","page_type":"home"}' % (i, t))
    >>> items = [(e("b1", 5), Source("b", 0, 1)), (e("c1", 3), Source("c", 0, 1)),
    ...          (e("b2", 1), Source("b", 0, 2))]
    >>> [ev.event_id for ev, _ in merge_by_time(items)]
    ['c1', 'b1', 'b2']
    """
    if len(items) < 2:
        return list(items)
    # keyed as ``Source.key`` would (one queue per topic partition), without formatting it
    queues: dict[tuple[str, int] | None, list[tuple[Event, Source | None]]] = {}
    for item in items:
        src = item[1]
        queues.setdefault(None if src is None else (src.topic, src.partition), []).append(item)
    if len(queues) == 1:
        return list(items)
    heads = {k: 0 for k in queues}
    out = []
    while heads:
        k = min(heads, key=lambda q: queues[q][heads[q]][0].occurred_at)
        out.append(queues[k][heads[k]])
        heads[k] += 1
        if heads[k] == len(queues[k]):
            del heads[k]
    return out


def recompute(
    events: Sequence[tuple[Event, Source | None]],
    *,
    config: EngineConfig,
    ctx: Context = NO_CONTEXT,
    until: float | None = None,
) -> dict[str, FoldResult]:
    """Offline recomputation: fold every customer's events from an empty state, then
    (with ``until``) fire the timers due by that event time."""
    by_customer: dict[str, list[tuple[Event, Source | None]]] = {}
    for event, source in events:
        by_customer.setdefault(event.customer_id, []).append((event, source))
    out = {}
    for cid, items in by_customer.items():
        result = fold(None, cid, merge_by_time(items), config=config, ctx=ctx)
        if until is not None:
            fired = advance(result.state, until, config, ctx)
            result.changes.extend(fired)
            result.causes.extend([None] * len(fired))
        out[cid] = result
    return out
