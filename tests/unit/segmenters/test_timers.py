"""Time-driven transitions: timers fire at their deadline, live or in a replay alike."""

from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.config import EngineConfig
from segmenters.core import Source, advance, fold, next_deadline, tick
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()
T0S = T0.timestamp()
MIN, DAY = 60.0, 86400.0


def items(docs, topic="events.x"):
    return [(ev(d), Source(topic, 0, i)) for i, d in enumerate(docs)]


def path(changes, dim="journey"):
    return [(c.previous, c.current) for c in changes if c.dimension == dim]


def test_cart_abandoner_fires_at_its_deadline():
    e = Events()
    r = fold(None, "c-1", items([e.add("A", 0)]), config=CFG)
    assert next_deadline(r.state, CFG) == T0S + 30 * MIN
    just_before = tick(r.state, T0S + 30 * MIN - 0.001, config=CFG)
    assert just_before.changes == []
    at = tick(r.state, T0S + 30 * MIN, config=CFG)
    assert path(at.changes) == [("active_cart", "cart_abandoner")]
    assert at.changes[0].changed_at.timestamp() == T0S + 30 * MIN
    after = tick(at.state, T0S + 40 * MIN, config=CFG)
    assert after.changes == []


def test_buyer_goes_at_risk_then_lapsed():
    e = Events()
    r = fold(None, "c-1", items([e.purchase("o", ["A"], 0)]), config=CFG)
    t = tick(r.state, T0S + 29.9 * DAY, config=CFG)
    assert path(t.changes) == []
    t = tick(r.state, T0S + 100 * DAY, config=CFG)
    assert path(t.changes) == [("first_time_buyer", "at_risk"), ("at_risk", "lapsed")]
    assert [c.changed_at.timestamp() for c in t.changes] == [T0S + 30 * DAY, T0S + 90 * DAY]


def test_a_due_timer_fires_before_the_next_event_with_the_same_id_as_live():
    e = Events()
    add, later = e.add("A", 0), e.browse(120)
    replay = fold(None, "c-1", items([add, later]), config=CFG)
    live = fold(None, "c-1", items([add]), config=CFG)
    fired = tick(live.state, T0S + 45 * MIN, config=CFG)
    rest = fold(fired.state, "c-1", items([add, later])[1:], config=CFG)
    live_changes = live.changes + fired.changes + rest.changes
    assert [c.change_id for c in replay.changes] == [c.change_id for c in live_changes]
    assert replay.state.to_doc() == rest.state.to_doc()
    assert path(replay.changes) == [(None, "active_cart"), ("active_cart", "cart_abandoner")]


def test_activity_moves_the_deadline():
    e = Events()
    r = fold(None, "c-1", items([e.add("A", 0), e.add("B", 20)]), config=CFG)
    assert next_deadline(r.state, CFG) == T0S + 50 * MIN


def test_a_purchase_cancels_the_abandonment_timer():
    e = Events()
    r = fold(None, "c-1", items([e.add("A", 0), e.purchase("o", ["A"], 5)]), config=CFG)
    assert next_deadline(r.state, CFG) == T0S + 5 * MIN + 30 * DAY  # only at_risk is left


def test_age_band_moves_on_new_year():
    e = Events()
    r = fold(None, "c-1", items([e.profile(0, birth_year=2001)]), config=CFG)
    assert r.state.segment("demographic") == "25-34/unknown/unknown"  # 2026 - 2001
    new_year_2036 = 2082758400.0  # 2036-01-01: age 35
    assert next_deadline(r.state, CFG) == new_year_2036
    assert path(tick(r.state, new_year_2036, config=CFG).changes, "demographic") == [
        ("25-34/unknown/unknown", "35-44/unknown/unknown")
    ]


actions = st.lists(
    st.tuples(
        st.sampled_from(["browse", "add", "buy", "clear"]), st.floats(min_value=0, max_value=5000)
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(actions, st.lists(st.floats(min_value=0, max_value=400000), max_size=4))
def test_ticking_at_any_moments_equals_a_replay(acts, ticks):
    """Living through the events (timers ticking whenever) gives what a replay gives."""
    e = Events()
    docs, t = [], 0.0
    for kind, gap in acts:
        t += gap
        minutes = t / 60
        docs.append(
            e.browse(minutes)
            if kind == "browse"
            else e.add("A", minutes)
            if kind == "add"
            else e.purchase(f"o{len(docs)}", ["A"], minutes)
            if kind == "buy"
            else e.clear(minutes)
        )
    all_items = items(docs)
    end = T0S + t + 200 * DAY
    replay = fold(None, "c-1", all_items, config=CFG)
    replay_changes = replay.changes + advance(replay.state, end, CFG)

    state, live_changes = None, []
    tick_times = sorted(T0S + x for x in ticks)
    for item in all_items:
        at = item[0].occurred_at.timestamp()
        while tick_times and tick_times[0] < at and state is not None:
            fired = tick(state, tick_times.pop(0), config=CFG)
            state, live_changes = fired.state, live_changes + fired.changes
        r = fold(state, "c-1", [item], config=CFG)
        state, live_changes = r.state, live_changes + r.changes
    if state is not None:
        final = tick(state, end, config=CFG)
        state, live_changes = final.state, live_changes + final.changes
        assert state.to_doc() == replay.state.to_doc()
    assert [c.change_id for c in live_changes] == [c.change_id for c in replay_changes]
