"""A ``change_id`` names one change: id -> content is a function, whatever happens.

Events, timers and rescoring passes (at an idle clock, against RFM quantiles and cluster
models that change between passes), restarts from the stored document, a Redis loss
whose replay computes other changes at the same positions, and a replay from nothing:
no two different changes ever share an id, and a change computed again keeps its id.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.actions import ActionState, idempotency_key, plan
from segmenters.actions.policy import load_policy
from segmenters.changes import SegmentChange
from segmenters.clustering import Cluster, ClusterModel
from segmenters.config import EngineConfig
from segmenters.core import Context, Source, advance, fold, merge_by_time, rescore, tick
from segmenters.dimensions.rfm import RfmQuantiles
from segmenters.features import FEATURES
from segmenters.state import CustomerState
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()
T0S = T0.timestamp()
DAY = 86400.0
CUSTOMERS = ("c-1", "c-2", "c-3")


def model(seed: int, version: int) -> ClusterModel:
    """A cluster snapshot with 2-4 random centroids over the real feature vector."""
    rng = random.Random(seed)
    clusters = tuple(
        Cluster(i + 1, {f: rng.uniform(-1.0, 4.0) for f in FEATURES}, 10, f"group {i + 1}")
        for i in range(rng.randint(2, 4))
    )
    zeros = dict.fromkeys(FEATURES, 0.0)
    return ClusterModel(version, FEATURES, zeros, dict.fromkeys(FEATURES, 1.0), clusters)


def quantiles(seed: int, as_of: float) -> RfmQuantiles:
    rng = random.Random(seed)

    def four(hi: float) -> tuple[float, ...]:
        return tuple(sorted(round(rng.uniform(0.0, hi), 1) for _ in range(4)))

    return RfmQuantiles(four(60.0), four(4.0), four(60.0), buyers=20, as_of=as_of)


def contexts(seeds: list[int]) -> list[Context]:
    """Population contexts the sweep passes in turn; seeds may repeat (a model comes back)."""
    return [Context(rfm=quantiles(s, T0S), clusters=model(s, version=1 + s % 2)) for s in seeds]


def content(change: SegmentChange) -> dict[str, Any]:
    """Everything a change says but its id and the engine version."""
    return change.model_dump(exclude={"change_id", "engine_version"})


class Live:
    """One partition's worker, driven step by step: events, rescoring passes, timers."""

    def __init__(self, ctxs: list[Context]) -> None:
        self.ctxs = ctxs
        self.ctx = ctxs[0]
        self.clock = T0S
        self.offset = 0
        self.builders = {c: Events(c) for c in CUSTOMERS}
        self.states: dict[str, CustomerState] = {}
        self.items: dict[str, list[tuple[Any, Source]]] = {c: [] for c in CUSTOMERS}
        self.changes: list[SegmentChange] = []

    def step(self, op: tuple[Any, ...], *, restarts: bool = True) -> None:
        kind = op[0]
        if kind == "event":
            _, cid, what, gap_min = op
            self.clock += gap_min * 60.0
            self.event(cid, what)
        elif kind == "rescore":  # the sweep: every customer, at the partition's clock
            self.ctx = self.ctxs[op[1] % len(self.ctxs)]
            for cid in sorted(self.states):
                self.keep(cid, rescore(self.states[cid], self.clock, config=CFG, ctx=self.ctx))
        elif kind == "tick":  # another customer's event moved the clock; timers fire
            self.clock += op[1] * DAY
            for cid in sorted(self.states):
                self.keep(cid, tick(self.states[cid], self.clock, config=CFG, ctx=self.ctx))
        elif kind == "restart" and restarts:  # the state comes back from its stored form
            self.states = {
                c: CustomerState.from_doc(orjson.loads(orjson.dumps(s.to_doc())))
                for c, s in self.states.items()
            }
        elif kind == "redeliver" and self.items[op[1]]:
            cid = op[1]
            again = fold(self.states[cid], cid, self.items[cid][-2:], config=CFG, ctx=self.ctx)
            assert again.applied == 0 and again.changes == [], "a redelivery changed something"

    def event(self, cid: str, what: str) -> None:
        e, minutes = self.builders[cid], (self.clock - T0S) / 60.0
        n = e.n
        doc = {
            "browse": lambda: e.browse(minutes, device="mobile" if n % 2 else "desktop"),
            "add": lambda: e.add(f"S{n % 3}", minutes),
            "buy": lambda: e.purchase(f"{cid}-o{n}", [f"S{n % 3}"], minutes, price=5.0 + n),
            "clear": lambda: e.clear(minutes),
            "profile": lambda: e.profile(minutes, birth_year=1950 + n * 7 % 60),
        }[what]()
        item = (ev(doc), Source("events.x", 0, self.offset))
        self.offset += 1
        self.items[cid].append(item)
        state = self.states.get(cid)
        self.keep(cid, fold(state, cid, [item], config=CFG, ctx=self.ctx))

    def keep(self, cid: str, result: Any) -> None:
        self.states[cid] = result.state
        self.changes.extend(result.changes)


customer = st.sampled_from(CUSTOMERS)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("event"),
            customer,
            st.sampled_from(["browse", "add", "buy", "clear", "profile"]),
            st.sampled_from([0.0, 0.0, 0.5, 10.0, 45.0, 600.0, 5000.0, 50000.0]),
        ),
        st.tuples(st.just("rescore"), st.integers(0, 5)),  # the clock does not move: idle
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.01, 1.0, 31.0, 100.0])),
        st.just(("restart",)),
        st.tuples(st.just("redeliver"), customer),
    ),
    min_size=8,
    max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(ops, st.lists(st.integers(0, 5), min_size=2, max_size=4), st.data())
def test_an_id_names_one_change(steps, seeds, data):
    ctxs = contexts(seeds)
    live = Live(ctxs)
    for op in steps:
        live.step(op)
    # one history: every change has its own id, even two rescores at one idle clock
    ids = [c.change_id for c in live.changes]
    assert len(set(ids)) == len(ids)

    # restarting from the stored documents changes nothing, ids included
    unbroken = Live(ctxs)
    for op in steps:
        unbroken.step(op, restarts=False)
    assert unbroken.changes == live.changes

    # Redis lost everything after ``cut``: the replay goes on from there under other
    # population contexts, so it computes other changes at the same positions
    cut = data.draw(st.integers(0, len(steps)))
    lost = Live(ctxs)
    for op in steps[:cut]:
        lost.step(op)
    lost.ctxs = ctxs[1:] + ctxs[:1]
    for op in steps[cut:]:
        lost.step(op)

    # a replay of every event from nothing, then the timers due by the clock
    replayed: list[SegmentChange] = []
    for cid, items in live.items.items():
        if items:
            r = fold(None, cid, merge_by_time(items), config=CFG, ctx=live.ctx)
            replayed += r.changes + advance(r.state, live.clock, CFG, live.ctx)

    seen: dict[str, dict[str, Any]] = {}
    for change in live.changes + lost.changes + replayed:
        assert seen.setdefault(change.change_id, content(change)) == content(change)


def two_rescores_at_one_clock() -> tuple[CustomerState, list[SegmentChange]]:
    """The issue's case: an idle clock, and two passes that each move the customer."""
    e = Events("c-5-00146")
    items = [(ev(e.purchase("o-1", ["A"], 0)), Source("events.purchase", 0, 0))]
    state = fold(None, "c-5-00146", items, config=CFG).state
    clock = T0S + 3600.0
    changes: list[SegmentChange] = []
    for seed in (0, 1, 2, 1, 2):
        ctx = Context(clusters=model(seed, version=7))
        r = rescore(state, clock, config=CFG, ctx=ctx)
        state = r.state
        changes += r.changes
    return state, changes


def test_two_rescores_at_one_idle_clock_give_two_ids():
    state, changes = two_rescores_at_one_clock()
    moves = [(c.previous, c.current) for c in changes if c.dimension == "behaviour"]
    assert len(moves) >= 3, moves  # each pass moved the customer (the models disagree)
    assert len({c.changed_at for c in changes}) == 1
    assert len({c.change_id for c in changes}) == len(changes)
    assert state.positions["behaviour"] == len(moves)


def test_a_second_entry_into_a_segment_is_acted_on_again():
    """The same move twice (same segments, time and reason) is two changes, two keys."""
    state, changes = two_rescores_at_one_clock()
    behaviour = [c for c in changes if c.dimension == "behaviour"]
    firsts: dict[tuple[str | None, str, str], SegmentChange] = {}
    for c in behaviour:
        firsts.setdefault((c.previous, c.current, c.reason), c)
    again = [c for c in behaviour if firsts[(c.previous, c.current, c.reason)] is not c]
    assert again, [(c.previous, c.current) for c in behaviour]  # seeds 1, 2 come back
    repeat = again[0]
    first = firsts[(repeat.previous, repeat.current, repeat.reason)]
    assert content(first) == content(repeat) and first.change_id != repeat.change_id
    policy = load_policy(
        '[actions.email.hello]\ntemplate = "t"\n'
        f'[[rules]]\ndimension = "behaviour"\ncurrent = "{repeat.current}"\n'
        'actions = ["email/hello"]\n'
    )
    s = ActionState("c-5-00146")
    outcomes = []
    for c in behaviour:
        s, ds = plan(policy, c, s, now=c.changed_at.timestamp(), consent=True)
        outcomes += [d.outcome for d in ds]
    entries = [c for c in behaviour if c.current == repeat.current]
    assert outcomes == ["send"] * len(entries)  # never "duplicate"
    assert idempotency_key(first.change_id, "hello", "email") != idempotency_key(
        repeat.change_id, "hello", "email"
    )


def test_a_redelivered_change_keeps_its_id():
    """Computed again from the same state and context: the very same message."""
    e = Events()
    items = [(ev(e.add("A", 0)), Source("events.cart", 0, 0))]
    one = fold(None, "c-1", items, config=CFG)
    two = fold(None, "c-1", items, config=CFG)
    assert one.changes == two.changes and one.changes[0].change_id == two.changes[0].change_id
