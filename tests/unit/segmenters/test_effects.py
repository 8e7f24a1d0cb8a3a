"""What a write does to the partition's shared structures (segmenters/effects.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.actions import ActionState, Decision
from segmenters.actions.state import Pending
from segmenters.changes import SegmentChange
from segmenters.clv.model import ClvModel
from segmenters.config import EngineConfig
from segmenters.core import Context, Source, fold, next_deadline, rescore, tick
from segmenters.dimensions import rfm
from segmenters.dimensions.rfm import DAY, RfmQuantiles, histogram_buckets
from segmenters.dimensions.value import ValueQuantiles
from segmenters.effects import (
    HistogramMove,
    IndexMove,
    histogram_moves,
    index_moves,
    joins_members,
    marks,
    moves,
    next_timer,
    uplift_records,
)
from segmenters.state import CustomerState
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()
T0S = T0.timestamp()
CTX = Context(
    rfm=RfmQuantiles(
        recency_days=(1.0, 3.0, 10.0, 30.0),
        frequency=(1.0, 2.0, 3.0, 4.0),
        monetary=(10.0, 20.0, 40.0, 80.0),
        buyers=100,
        as_of=T0S,
    ),
    # the value dimension too: its histogram moves with each buyer's ranked CLV
    clv=ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44),
    value=ValueQuantiles(cuts=(rfm.bucket(40.0), rfm.bucket(20.0), rfm.bucket(10.0)), buyers=100),
)


class Shared:
    """The partition's shared structures as the commit script keeps them: segment
    indexes, RFM histograms and the member set."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], set[str]] = {}
        self.histograms: dict[tuple[str, int], int] = {}
        self.members: set[str] = set()

    def apply(self, cid: str, index: list[IndexMove], hist: list[HistogramMove], new: bool) -> None:
        for add, dimension, segment in index:
            members = self.index.setdefault((dimension, segment), set())
            # a move is never redundant: it adds a non-member or removes a member
            assert (cid in members) is not add, (cid, add, dimension, segment)
            (members.add if add else members.remove)(cid)
            if not members:
                del self.index[(dimension, segment)]
        for name, bucket, delta in hist:
            count = self.histograms.get((name, bucket), 0) + delta
            assert count >= 0, (name, bucket)
            if count:
                self.histograms[(name, bucket)] = count
            else:
                del self.histograms[(name, bucket)]
        if new:
            assert cid not in self.members
            self.members.add(cid)

    @classmethod
    def of(cls, states: dict[str, CustomerState]) -> Shared:
        """The structures computed from the states alone."""
        shared = cls()
        for cid, state in states.items():
            segments, buckets = marks(state)
            for dimension, segment in segments.items():
                shared.index.setdefault((dimension, segment), set()).add(cid)
            for name, bucket in buckets.items():
                shared.histograms[(name, bucket)] = shared.histograms.get((name, bucket), 0) + 1
            shared.members.add(cid)
        return shared


def _event(e: Events, kind: str, minutes: float, n: int) -> dict[str, Any]:
    if kind == "browse":
        return e.browse(minutes)
    if kind == "add":
        return e.add(f"S{n % 3}", minutes, price=5.0 + 7 * (n % 4))
    if kind == "remove":
        return e.remove(f"S{n % 3}", minutes)
    if kind == "clear":
        return e.clear(minutes)
    if kind == "purchase":
        return e.purchase(f"o-{n}", [f"S{n % 3}"], minutes, price=3.0 + 11 * (n % 5))
    if kind == "refund":
        return e.refund(f"o-{n - 1}", 3.0, minutes)
    return e.profile(minutes, country="DE", birth_year=1970 + n % 40)


KINDS = ["browse", "add", "remove", "clear", "purchase", "refund", "profile"]
#: One round: events (customer, kind, minutes after the one before) or a timer scan
#: (None, "tick"/"rescore", seconds after the last event or scan).
steps = st.lists(
    st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(KINDS), st.floats(0, 600)),
        min_size=1,
        max_size=8,
    )
    | st.tuples(st.none(), st.sampled_from(["tick", "rescore"]), st.floats(0, 40 * DAY)).map(
        lambda t: [t]
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(rounds=steps)
def test_the_moves_of_a_sequence_of_folds_build_the_structures_of_the_final_states(
    rounds: list[list[tuple[int | None, str, float]]],
) -> None:
    builders = {c: Events(f"c-{c}") for c in range(4)}
    states: dict[str, CustomerState] = {}
    shared = Shared()
    clock = T0S
    n = 0
    for batch in rounds:
        if batch[0][0] is None:  # a timer round over every customer known
            _, kind, seconds = batch[0]
            clock += seconds
            for cid, state in list(states.items()):
                seen = marks(state)
                step = rescore if kind == "rescore" else tick
                after = step(state, max(clock, state.eval_at or clock), config=CFG, ctx=CTX).state
                shared.apply(cid, *moves(seen, after), joins_members(state))
                states[cid] = after
            continue
        by_customer: dict[str, list[tuple[Any, Source]]] = {}
        for c, kind, minutes in batch:
            assert c is not None
            n += 1
            clock += minutes * 60
            e = builders[c]
            e.start = T0
            doc = _event(e, kind, (clock - T0S) / 60, n)
            by_customer.setdefault(e.customer_id, []).append((ev(doc), Source("x", 0, n)))
        for cid, items in by_customer.items():
            before = states.get(cid)
            seen = marks(before)  # the worker's fold changes an owned state in place
            result = fold(before, cid, items, config=CFG, ctx=CTX, owned=True)
            shared.apply(cid, *moves(seen, result.state), joins_members(before))
            states[cid] = result.state
    expected = Shared.of(states)
    assert shared.index == expected.index
    assert shared.histograms == expected.histograms
    assert shared.members == expected.members


def test_a_dimension_that_moves_leaves_its_old_segment_first() -> None:
    after = CustomerState("c-1", segments={"journey": ["loyal", 2.0], "rfm": ["new", 1.0]})
    assert index_moves({"journey": "browser", "rfm": "new"}, after) == [
        (False, "journey", "browser"),
        (True, "journey", "loyal"),
    ]
    assert index_moves({}, after) == [(True, "journey", "loyal"), (True, "rfm", "new")]


def test_histogram_moves_take_a_buyer_from_the_old_bucket_to_the_new_one() -> None:
    old = {"recency": 5, "frequency": 1, "monetary": 30}
    new = {"recency": 9, "frequency": 1, "monetary": 31}
    assert histogram_moves(old, new) == [
        ("recency", 5, -1),
        ("recency", 9, 1),
        ("monetary", 30, -1),
        ("monetary", 31, 1),
    ]
    assert histogram_moves({}, new) == [("recency", 9, 1), ("frequency", 1, 1), ("monetary", 31, 1)]
    assert histogram_moves(new, new) == []


def test_marks_are_a_snapshot_the_state_can_change_under() -> None:
    state = CustomerState("c-1", segments={"journey": ["browser", 1.0]})
    seen = marks(state)
    state.enter("journey", "active_cart", 2.0)
    assert seen == ({"journey": "browser"}, {})
    assert marks(None) == ({}, {})
    assert joins_members(None) and not joins_members(state)


def test_the_next_timer_is_the_earliest_of_a_segment_deadline_and_a_delayed_action() -> None:
    e = Events()
    state = fold(None, "c-1", [(ev(e.add("A")), None)], config=CFG, ctx=CTX).state
    deadline = next_deadline(state, CFG, CTX)
    assert deadline is not None
    assert next_timer(state, None, CFG, CTX) == deadline
    assert next_timer(state, ActionState("c-1"), CFG, CTX) == deadline
    change = SegmentChange.make(
        customer_id="c-1", dimension="journey", previous=None, current="browser", at=T0S,
        reason="r", position=1,
    )  # fmt: skip
    sooner = ActionState("c-1", pending=[Pending("k", "email/x", deadline - 1, change)])
    assert next_timer(state, sooner, CFG, CTX) == deadline - 1
    later = ActionState("c-1", pending=[Pending("k", "email/x", deadline + 1, change)])
    assert next_timer(state, later, CFG, CTX) == deadline
    idle = CustomerState("c-2")  # never evaluated: no segment deadline
    assert next_timer(idle, sooner, CFG, CTX) == deadline - 1
    assert next_timer(idle, None, CFG, CTX) is None


def _decision(outcome: str, reason: str, action: str = "email/x") -> Decision:
    return Decision(
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
        customer_id="c-1",
        action=action,
        idempotency_key="k",
        change_id="ch",
        decided_at=5.0,
        experiment="e",
    )


def test_uplift_records_count_assignments_and_guard_suppressions_only() -> None:
    decisions = [
        _decision("send", "sent"),
        _decision("control", "holdout", "push/y"),
        _decision("suppressed", "cooldown"),
        _decision("suppressed", "duplicate"),  # a redelivery, not a guard's verdict
        _decision("scheduled", "delay"),
    ]
    assert uplift_records(decisions) == (
        [("e", "email/x", "treated", 5.0), ("e", "push/y", "control", 5.0)],
        [("e", "email/x", "cooldown")],
    )
    assert uplift_records([]) == ([], [])


def test_the_buckets_a_write_adds_are_the_states_histogram_buckets() -> None:
    e = Events()
    state = fold(None, "c-1", [(ev(e.purchase("o-1", ["A"])), None)], config=CFG).state
    index, hist = moves(marks(None), state)
    assert {(h, b) for h, b, delta in hist if delta == 1} == set(histogram_buckets(state).items())
    assert all(add for add, _d, _s in index)
