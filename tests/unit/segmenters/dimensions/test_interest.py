import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from segmenters.config import EngineConfig, InterestConfig, StateConfig
from segmenters.core import Source, evaluate, fold
from segmenters.dimensions.interest import (
    DIMENSION,
    MIXED,
    interest,
    interest_reason,
    interest_segment,
    segment_name,
)
from segmenters.state import CustomerState
from segmenters.update import apply_event
from segmenters.verify import compare, render
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()
DAY = 86400.0
T0S = T0.timestamp()


def state(counts, affinities):
    return CustomerState("c", categories=counts, interests=affinities, interests_at=T0S)


def browse(e, minutes, category):
    return e.browse(minutes, category=category)


def add(e, minutes, category):
    d = e.add("A", minutes)
    d["category"] = category
    return d


def buy(e, minutes, categories, order):
    d = e.purchase(order, [f"S{i}" for i in range(len(categories))], minutes)
    for line, category in zip(d["lines"], categories, strict=True):
        line["category"] = category
    return d


def run(docs, cfg=CFG):
    items = [(ev(d), Source("events.x", 0, i)) for i, d in enumerate(docs)]
    return fold(None, "c-1", items, config=cfg)


# --- the rules --------------------------------------------------------------------------


def test_no_segment_before_min_events_categorized_events():
    cfg = InterestConfig()
    assert interest_segment(CustomerState("c"), cfg) is None
    assert interest_segment(state({"shoes": 2}, {"shoes": 8.0}), cfg) is None
    assert interest_segment(state({"shoes": 3}, {"shoes": 9.0}), cfg) == "shoes"


def test_the_top_category_needs_the_share_and_the_count():
    cfg = InterestConfig(min_share=0.5, min_events=3)
    # 60 % and 3 events: the category
    assert interest_segment(state({"a": 3, "b": 2}, {"a": 6.0, "b": 4.0}), cfg) == "a"
    # exactly the share is enough
    assert interest_segment(state({"a": 3, "b": 3}, {"a": 5.0, "b": 5.0}), cfg) == "a"
    # 40 %: mixed
    assert interest_segment(state({"a": 3, "b": 3, "c": 3}, {"a": 4, "b": 3, "c": 3}), cfg) == MIXED
    # 90 % from one purchase (2 events): mixed, too little evidence of its own
    assert interest_segment(state({"a": 2, "b": 5}, {"a": 9.0, "b": 1.0}), cfg) == MIXED


def test_ties_go_to_the_smallest_name():
    s = state({"b": 3, "a": 3}, {"b": 5.0, "a": 5.0})
    assert interest_segment(s, InterestConfig()) == "a"


def test_reasons_name_the_figures():
    cfg = InterestConfig()
    s = state(
        {"electronics.smartphone": 8, "books": 4}, {"electronics.smartphone": 6.2, "books": 3.8}
    )
    assert interest(s, cfg, half_life_days=30.0) == (
        "electronics.smartphone",
        "electronics.smartphone: 62 % of decayed interest (8 events; half-life 30 d)",
    )
    s = state({"x": 4, "y": 4, "z": 4}, {"x": 3.1, "y": 3.5, "z": 3.4})
    assert interest(s, cfg, half_life_days=30.0) == (MIXED, "mixed: top y 35 % < 50 %")
    s = state({"x": 4, "y": 4, "z": 4}, {"x": 4.98, "y": 4.96, "z": 0.06})
    assert interest_reason(MIXED, s, cfg, half_life_days=30) == "mixed: top x 49.8 % < 50 %"
    s = state({"x": 4, "y": 4}, {"x": 4.98, "y": 5.02})
    assert interest_reason(MIXED, s, InterestConfig(min_share=0.505), half_life_days=30) == (
        "mixed: top y 50 % < 50.5 %"
    )
    s = state({"x": 2, "y": 4}, {"x": 8.0, "y": 2.0})
    assert interest(s, cfg, half_life_days=30.0) == (MIXED, "mixed: top x 80 % but 2 events < 3")


def test_a_category_with_control_characters_is_a_usable_segment():
    assert segment_name("electronics.audio.headphone") == "electronics.audio.headphone"
    assert segment_name("a\x1fb\nc") == "a_b_c"
    assert segment_name("books: sci-fi / fantasy") == "books: sci-fi / fantasy"
    s = state({"a\x1fb": 3}, {"a\x1fb": 9.0})
    assert interest_segment(s, InterestConfig()) == "a_b"


def test_config_bounds():
    with pytest.raises(ValueError):
        InterestConfig(min_share=0)
    with pytest.raises(ValueError):
        InterestConfig(min_share=1.1)
    with pytest.raises(ValueError):
        InterestConfig(min_events=0)
    assert InterestConfig(min_share=1.0).min_share == 1.0


# --- the state --------------------------------------------------------------------------


def test_views_cart_adds_and_purchase_lines_add_their_weights():
    e = Events()
    r = run([browse(e, 0, "shoes"), add(e, 0, "shoes"), buy(e, 0, ["shoes", "bags"], "o-1")])
    assert r.state.interests == {"shoes": 1.0 + 3.0 + 5.0, "bags": 5.0}
    assert r.state.interests_at == T0S
    assert r.state.categories == {"shoes": 3, "bags": 1}


def test_the_weights_are_configurable():
    e = Events()
    cfg = EngineConfig(state=StateConfig(interest_view_weight=2, interest_cart_weight=0))
    r = run([browse(e, 0, "shoes"), add(e, 0, "bags")], cfg)
    assert r.state.interests == {"shoes": 2.0, "bags": 0.0}


def test_affinities_decay_with_the_half_life_all_as_of_one_time():
    e = Events()
    r = run([browse(e, 0, "shoes"), browse(e, 30 * 24 * 60, "bags")])
    assert r.state.interests_at == T0S + 30 * DAY
    assert r.state.interests["shoes"] == pytest.approx(0.5)
    assert r.state.interests["bags"] == 1.0


def test_an_older_event_adds_its_weight_already_decayed():
    e = Events()
    r = run([browse(e, 30 * 24 * 60, "bags"), browse(e, 0, "shoes")])
    assert r.state.interests_at == T0S + 30 * DAY
    assert r.state.interests == {"bags": 1.0, "shoes": pytest.approx(0.5)}


def test_a_repeated_order_adds_nothing():
    e = Events()
    r = run([buy(e, 0, ["shoes"], "o-1"), buy(e, 1, ["shoes"], "o-1")])
    assert r.state.interests == {"shoes": 5.0}


def test_the_map_is_bounded_evicting_the_weakest():
    cfg = StateConfig(max_categories=2)
    s = CustomerState("c")
    e = Events()
    for minutes, category in ((0, "b"), (0, "a"), (0, "c")):
        apply_event(s, ev(browse(e, minutes, category)), cfg)
    assert s.interests == {"b": 1.0, "c": 1.0}  # a tie: "a" goes first
    apply_event(s, ev(add(e, 0, "a")), cfg)
    assert s.interests == {"c": 1.0, "a": 3.0}


def test_copy_keeps_the_interests_apart():
    s = state({"a": 1}, {"a": 1.0})
    c = s.copy()
    c.interests["a"] = 2.0
    assert s.interests == {"a": 1.0} and c.interests_at == s.interests_at


# --- the dimension in the fold ----------------------------------------------------------


def test_the_fold_emits_the_interest_change_with_its_reason():
    e = Events()
    r = run([browse(e, 0, "shoes"), browse(e, 1, "bags"), add(e, 2, "shoes"), add(e, 3, "shoes")])
    changes = [c for c in r.changes if c.dimension == DIMENSION]
    assert [(c.previous, c.current) for c in changes] == [(None, MIXED), (MIXED, "shoes")]
    # 4 of 5 by weight, but 2 events of its own; then 7 of 8 and 3 events
    assert changes[0].reason == "mixed: top shoes 80 % but 2 events < 3"
    assert changes[1].reason == "shoes: 88 % of decayed interest (3 events; half-life 30 d)"
    assert changes[0].changed_at < changes[1].changed_at
    assert evaluate(r.state, T0S, CFG)[DIMENSION][0] == "shoes"


def test_no_categories_no_interest():
    e = Events()
    r = run([e.browse(0), e.purchase("o-1", ["A"], 1), e.browse(2)])
    assert all(c.dimension != DIMENSION for c in r.changes)
    assert DIMENSION not in evaluate(r.state, T0S, CFG)


def test_verify_compares_interest_segments():
    e = Events()
    docs = [browse(e, i, "shoes") for i in range(3)]
    offline = {"c-1": run(docs).state}
    stored = {"c-1": run(docs).state}
    report = compare(stored, offline, {"c-1": T0S}, T0S)
    assert report.dimensions[DIMENSION].compared == 1 and report.dimensions[DIMENSION].agree == 1
    assert "interest" in render(report)
    stored["c-1"].segments[DIMENSION] = [MIXED, T0S]
    assert compare(stored, offline, {"c-1": T0S}, T0S).dimensions[DIMENSION].agree == 0


def test_verify_leaves_out_interest_when_no_customer_has_one():
    e = Events()
    offline = {"c-1": run([e.browse(0)]).state}
    assert DIMENSION not in compare(offline, offline, {"c-1": T0S}, T0S).dimensions


# --- order does not matter ----------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["view", "add", "buy"]),
        st.sampled_from(["shoes", "bags", "electronics.audio.headphone"]),
        st.integers(min_value=0, max_value=120 * 24 * 60),  # minutes over 4 months
    ),
    min_size=1,
    max_size=30,
)


def _docs(acts):
    e = Events()
    out = []
    for i, (kind, category, minutes) in enumerate(acts):
        if kind == "view":
            out.append(browse(e, minutes, category))
        elif kind == "add":
            out.append(add(e, minutes, category))
        else:
            out.append(buy(e, minutes, [category], f"o-{i}"))
    return out


def _near_tie(s: CustomerState, cfg: InterestConfig) -> bool:
    values = sorted(s.interests.values(), reverse=True)
    total = sum(values)
    if not values or total == 0:
        return False
    close = len(values) > 1 and math.isclose(values[0], values[1], rel_tol=1e-9)
    return close or math.isclose(values[0] / total, cfg.min_share, rel_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_the_same_events_in_any_order_give_the_same_segment(acts, rnd):
    docs = _docs(acts)
    shuffled = list(docs)
    rnd.shuffle(shuffled)
    a, b = run(docs).state, run(shuffled).state
    assume(not _near_tie(a, CFG.interest))
    assert a.categories == b.categories
    assert a.interests_at == b.interests_at
    assert a.interests.keys() == b.interests.keys()
    for k, v in a.interests.items():
        assert b.interests[k] == pytest.approx(v, rel=1e-9, abs=1e-12)
    assert a.segment(DIMENSION) == b.segment(DIMENSION)
