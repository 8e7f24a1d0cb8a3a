import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.config import EngineConfig
from segmenters.core import Source, fold, recompute
from segmenters.dimensions.profile import demographic, demographic_segment
from segmenters.state import STATE_VERSION, CustomerState
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()
T0S = T0.timestamp()


def run(docs, state=None, start_offset=0, topic="events.x"):
    items = [(ev(d), Source(topic, 0, start_offset + i)) for i, d in enumerate(docs)]
    return fold(state, "c-1", items, config=CFG)


def journey_path(result):
    return [(c.previous, c.current) for c in result.changes if c.dimension == "journey"]


def test_scripted_journey():
    e = Events()
    r = run(
        [
            e.browse(0),
            e.add("A", 1),
            e.purchase("o-1", ["A"], 2),
            e.add("B", 10),
            e.purchase("o-2", ["B"], 11),
            e.purchase("o-3", ["C"], 12),
            e.purchase("o-4", ["D"], 13),
        ]
    )
    assert journey_path(r) == [
        (None, "browser"),
        ("browser", "active_cart"),
        ("active_cart", "first_time_buyer"),
        ("first_time_buyer", "active_cart"),
        ("active_cart", "repeat_buyer"),
        ("repeat_buyer", "loyal"),
    ]
    s = r.state
    assert (s.orders, s.revenue, s.items, s.cart) == (4, 40.0, 4, {})
    assert r.state.segment("journey") == "loyal"


def test_order_counts_once_whatever_its_events():
    e = Events()
    first = e.purchase("o-1", ["A", "B"])
    resent = dict(e.purchase("o-1", ["A", "B"], 1))  # same order, new event_id
    r = run([first, resent])
    assert (r.state.orders, r.state.revenue, r.state.items, r.applied) == (1, 20.0, 2, 2)


def test_purchase_removes_only_purchased_skus():
    e = Events()
    r = run([e.add("A"), e.add("B", price=5.0, qty=2), e.purchase("o", ["A"], 1)])
    assert r.state.cart == {"B": [2, 5.0, [[T0S, 2]]]}
    assert r.state.cart_items == 2 and r.state.cart_value == 10.0


def test_cart_remove_and_clear():
    e = Events()
    r = run([e.add("A", qty=3), e.remove("A", qty=2), e.add("B")])
    assert r.state.cart == {"A": [1, 10.0, [[T0S, 1]]], "B": [1, 10.0, [[T0S, 1]]]}
    r = run([e.clear(1)], state=r.state, start_offset=10)
    assert r.state.cart == {}
    assert journey_path(r) == [("active_cart", "browser")]


def test_purchase_that_arrives_before_its_cart_addition_still_empties_the_cart():
    e = Events()
    add, buy = e.add("A", 1), e.purchase("o", ["A"], 2)
    in_order = fold(
        None,
        "c-1",
        [(ev(add), Source("events.cart", 0, 0)), (ev(buy), Source("events.purchase", 0, 0))],
        config=CFG,
    )
    reversed_ = fold(
        None,
        "c-1",
        [(ev(buy), Source("events.purchase", 0, 0)), (ev(add), Source("events.cart", 0, 0))],
        config=CFG,
    )
    assert in_order.state.cart == reversed_.state.cart == {}
    assert (
        in_order.state.segment("journey")
        == reversed_.state.segment("journey")
        == "first_time_buyer"
    )


def test_adding_a_bought_sku_again_later_puts_it_back():
    e = Events()
    r = run([e.add("A", 1), e.purchase("o", ["A"], 2), e.add("A", 3)])
    assert list(r.state.cart) == ["A"]


def test_a_late_purchase_removes_only_the_units_added_before_it():
    e = Events()
    add1, buy, add2 = e.add("A", 1), e.purchase("o", ["A"], 2), e.add("A", 3)
    src = {"cart": "events.cart", "purchase": "events.purchase"}
    for order in ([add1, buy, add2], [add1, add2, buy], [buy, add1, add2], [add2, buy, add1]):
        offsets = {"events.cart": 0, "events.purchase": 0}
        items = []
        for d in order:
            t = src[d["type"]]
            items.append((ev(d), Source(t, 0, offsets[t])))
            offsets[t] += 1
        cart = fold(None, "c-1", items, config=CFG).state.cart
        assert cart == {"A": [1, 10.0, [[T0S + 180, 1]]]}, order


def test_latest_geo_wins_whatever_the_arrival_order():
    e = Events()
    old = e.browse(1, geo={"country": "FR", "city": "Lyon"})
    new = e.browse(2, geo={"country": "DE", "city": "Berlin"})
    a = run([old, new]).state.geo
    b = run([new, old]).state.geo
    assert a == b == {"country": "DE", "city": "Berlin"}


def test_refund_reduces_revenue_not_orders():
    e = Events()
    r = run([e.purchase("o", ["A", "B"]), e.refund("o", 7.5, 5)])
    assert (r.state.orders, r.state.revenue, r.state.refunds, r.state.refunded) == (1, 12.5, 1, 7.5)


def test_same_offset_again_changes_nothing():
    e = Events()
    docs = [e.browse(), e.add("A", 1)]
    first = run(docs)
    again = run(docs, state=first.state)
    assert again.applied == 0 and again.changes == []
    assert [why for _, why in again.skipped] == ["offset already applied"] * 2
    assert again.state.to_doc() == first.state.to_doc()


def test_same_event_id_at_a_new_offset_changes_nothing():
    e = Events()
    doc = e.add("A")
    first = run([doc])
    twice = run([doc, doc])  # offsets 0 and 1: the second is the same event produced again
    assert twice.applied == 1
    assert twice.skipped[0][1] == "event_id already applied"
    assert twice.applied_ids == [doc["event_id"]]
    assert twice.state.cart == first.state.cart


def test_ids_applied_in_earlier_folds_are_the_stores_to_check():
    """Across batches the store's id set refuses a repeated id (tests/integration)."""
    e = Events()
    doc = e.add("A")
    first = run([doc])
    again = run([doc], state=first.state, start_offset=100)
    assert again.applied_ids == [doc["event_id"]]


def test_fold_does_not_modify_its_input():
    e = Events()
    before = run([e.add("A")]).state
    snapshot = before.to_doc()
    run([e.add("B", 1), e.purchase("o", ["A"], 2)], state=before, start_offset=5)
    assert before.to_doc() == snapshot


def test_profile_and_geo():
    e = Events()
    r = run(
        [
            e.profile(birth_year=1990, country="DE", marketing_consent=False),
            e.browse(1, geo={"country": "DE", "city": "Munich"}, device="mobile"),
        ]
    )
    assert r.state.profile == {"birth_year": 1990, "country": "DE", "marketing_consent": False}
    assert r.state.geo == {"country": "DE", "city": "Munich"}
    assert r.state.devices == {"mobile": 1}


def test_change_ids_are_deterministic():
    e = Events()
    docs = [e.browse(), e.add("A", 1)]
    assert [c.change_id for c in run(docs).changes] == [c.change_id for c in run(docs).changes]


def test_state_doc_round_trips_and_is_small():
    e = Events()
    docs = (
        [e.profile(birth_year=1980, country="GB")]
        + [e.add(f"S{i}", i) for i in range(5)]
        + [e.purchase(f"o{i}", [f"S{i}"], 10 + i) for i in range(5)]
    )
    state = run(docs).state
    raw = orjson.dumps(state.to_doc())
    assert CustomerState.from_doc(orjson.loads(raw)) == state
    assert len(raw) < 1024


GOLDEN = (
    '{"customer_id":"c-1","state_version":5,"first_seen":1767261600.0,"last_seen":176'
    '7261660.0,"events":2,"orders":1,"revenue":10.0,"items":1,"first_order_at":176726'
    '1660.0,"last_order_at":1767261660.0,"cart_adds":[1.0,1767261600.0],"cart_at":176'
    '7261600.0,"bought":{"A":1767261660.0},"categories":{"shoes":1},"interests":{"sho'
    'es":3.0},"interests_at":1767261600.0,"segments":{"journey":["first_time_buyer",1'
    '767261660.0]},"positions":{"journey":2},"eval_at":1767261660.0,"offsets":{"event'
    's.x/0":1},"order_ids":["606fd39fbe"],"buy_days":{"20454":10.0}}'
)
#: The same customer as a version-4 engine stored it (before ``interests``).
GOLDEN_V4 = (
    '{"customer_id":"c-1","state_version":4,"first_seen":1767261600.0,"last_seen":176'
    '7261660.0,"events":2,"orders":1,"revenue":10.0,"items":1,"first_order_at":176726'
    '1660.0,"last_order_at":1767261660.0,"cart_adds":[1.0,1767261600.0],"cart_at":176'
    '7261600.0,"bought":{"A":1767261660.0},"categories":{"shoes":1},"segments":{"jour'
    'ney":["first_time_buyer",1767261660.0]},"positions":{"journey":2},"eval_at":1767'
    '261660.0,"offsets":{"events.x/0":1},"order_ids":["606fd39fbe"],"buy_days":{"2045'
    '4":10.0}}'
)
#: ``GOLDEN_V4`` migrated: its one sighting of a category weighs 1, as of its last event.
GOLDEN_V4_MIGRATED = GOLDEN.replace(
    '"interests":{"shoes":3.0},"interests_at":1767261600.0',
    '"interests":{"shoes":1.0},"interests_at":1767261660.0',
)
#: The same customer as a version-3 engine stored it (before ``buy_days``).
GOLDEN_V3 = (
    '{"customer_id":"c-1","state_version":3,"first_seen":1767261600.0,"last_seen":176'
    '7261660.0,"events":2,"orders":1,"revenue":10.0,"items":1,"first_order_at":176726'
    '1660.0,"last_order_at":1767261660.0,"cart_adds":[1.0,1767261600.0],"cart_at":176'
    '7261600.0,"bought":{"A":1767261660.0},"categories":{"shoes":1},"segments":{"jour'
    'ney":["first_time_buyer",1767261660.0]},"positions":{"journey":2},"eval_at":1767'
    '261660.0,"offsets":{"events.x/0":1},"order_ids":["606fd39fbe"]}'
)
#: The same customer as a version-2 engine stored it (before ``positions``).
GOLDEN_V2 = (
    '{"customer_id":"c-1","state_version":2,"first_seen":1767261600.0,"last_seen":176'
    '7261660.0,"events":2,"orders":1,"revenue":10.0,"items":1,"first_order_at":176726'
    '1660.0,"last_order_at":1767261660.0,"cart_adds":[1.0,1767261600.0],"cart_at":176'
    '7261600.0,"bought":{"A":1767261660.0},"categories":{"shoes":1},"segments":{"jour'
    'ney":["first_time_buyer",1767261660.0]},"eval_at":1767261660.0,"offsets":{"event'
    's.x/0":1},"order_ids":["606fd39fbe"]}'
)


def test_stored_format_is_pinned():
    """The stored layout is public API (docs/state_format.md): change it only with a migration."""
    e = Events()
    state = run([e.add("A"), e.purchase("o-1", ["A"], 1)]).state
    assert orjson.dumps(state.to_doc()).decode() == GOLDEN


def test_a_version_4_state_loads_with_its_category_counts_as_interests():
    old = CustomerState.from_doc(orjson.loads(GOLDEN_V4))
    assert old.state_version == STATE_VERSION
    assert orjson.dumps(old.to_doc()).decode() == GOLDEN_V4_MIGRATED


def test_a_version_3_state_loads_with_its_order_days_as_purchase_days():
    """A v3 document knows its first and latest order only: one day here, all revenue."""
    old = CustomerState.from_doc(orjson.loads(GOLDEN_V3))
    assert old.state_version == STATE_VERSION
    assert orjson.dumps(old.to_doc()).decode() == GOLDEN_V4_MIGRATED


def test_a_version_2_state_still_loads():
    """Its dimensions count their changes from 0 on: the next change is position 1."""
    old = CustomerState.from_doc(orjson.loads(GOLDEN_V2))
    assert old.state_version == STATE_VERSION and old.positions == {}
    assert old.segment("journey") == "first_time_buyer"
    e = Events()
    r = run([e.purchase("o-2", ["B"], 120)], state=old, start_offset=2)
    assert r.state.positions == {"journey": 1} and r.changes[0].current == "repeat_buyer"


# --- properties -------------------------------------------------------------------------


def _customer_events(cid, actions):
    e = Events(cid)
    out = []
    for i, (kind, sku) in enumerate(actions):
        if kind == "browse":
            out.append(e.browse(i))
        elif kind == "add":
            out.append(e.add(sku, i))
        elif kind == "remove":
            out.append(e.remove(sku, i))
        elif kind == "buy":
            out.append(e.purchase(f"{cid}-o{i % 3}", [sku], i))
        else:
            out.append(e.clear(i))
    return out


actions = st.lists(
    st.tuples(st.sampled_from(["browse", "add", "remove", "buy", "clear"]), st.sampled_from("ABC")),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(actions, st.integers(min_value=0, max_value=25))
def test_replaying_a_prefix_changes_nothing(acts, cut):
    docs = _customer_events("c-1", acts)
    items = [(ev(d), Source("events.x", 0, i)) for i, d in enumerate(docs)]
    full = fold(None, "c-1", items, config=CFG)
    again = fold(full.state, "c-1", items[: min(cut, len(items))], config=CFG)
    assert again.applied == 0 and again.changes == []
    assert again.state.to_doc() == full.state.to_doc()


@settings(max_examples=150, deadline=None)
@given(actions, st.integers(min_value=0, max_value=25))
def test_batching_does_not_change_the_result(acts, cut):
    docs = _customer_events("c-1", acts)
    items = [(ev(d), Source("events.x", 0, i)) for i, d in enumerate(docs)]
    whole = fold(None, "c-1", items, config=CFG)
    first = fold(None, "c-1", items[:cut], config=CFG)
    second = fold(first.state, "c-1", items[cut:], config=CFG)
    assert second.state.to_doc() == whole.state.to_doc()
    assert first.changes + second.changes == whole.changes


@settings(max_examples=60, deadline=None)
@given(st.lists(actions, min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_order_of_customers_does_not_matter(per_customer, rnd):
    streams = [_customer_events(f"c-{i}", a) for i, a in enumerate(per_customer)]
    items = [
        (ev(d), Source("events.x", i, j))
        for i, docs in enumerate(streams)
        for j, d in enumerate(docs)
    ]
    # interleave customers differently, keeping each customer's own order
    queues = [list(q) for q in streams]
    shuffled = []
    while any(queues):
        q = rnd.choice([q for q in queues if q])
        shuffled.append(q.pop(0))
    positions = {id(d): (i, j) for i, docs in enumerate(streams) for j, d in enumerate(docs)}
    items2 = [(ev(d), Source("events.x", *positions[id(d)])) for d in shuffled]
    a = {c: r.state.to_doc() for c, r in recompute(items, config=CFG).items()}
    b = {c: r.state.to_doc() for c, r in recompute(items2, config=CFG).items()}
    assert a == b


@given(
    born=st.none() | st.integers(1900, 2100) | st.sampled_from([True, 1990.0, "1990"]),
    gender=st.none() | st.sampled_from(["F", " f ", "a/b", "", 1, 1.0, True, ["x"]]),
    income=st.none() | st.sampled_from(["high", "High", 1, 1.0, True]),
)
def test_demographic_segment_is_the_demographic_of_any_profile(born, gender, income):
    # remembered segments must not mix up values that compare equal (1, 1.0, True)
    profile = {"birth_year": born, "gender": gender, "income_band": income}
    for now in (T0S, T0S + 400 * 86400.0):
        s = CustomerState("c", profile=profile)
        full = demographic(s, now)
        assert full is not None and demographic_segment(s, now) == full[0]


def _evict_per_line(bought: dict, skus: list, at: float, cap: int) -> None:
    """The recently-bought skus as a purchase kept them before: the oldest (ties: the
    smallest sku) evicted after each line."""
    for sku in skus:
        bought[sku] = max(at, bought.pop(sku, at))
        while len(bought) > cap:
            del bought[min(bought, key=lambda s: (bought[s], s))]


_SKUS = st.sampled_from("abcdefgh")


@settings(max_examples=500)
@given(
    st.dictionaries(_SKUS, st.integers(0, 6).map(float), max_size=8),
    st.lists(_SKUS, max_size=10),
    st.integers(0, 6).map(float),
    st.integers(1, 5),
)
def test_evicting_bought_skus_once_per_purchase_keeps_what_per_line_eviction_kept(
    bought, skus, at, cap
):
    """Out-of-order purchases and repeated skus included: same skus, times and order."""
    from segmenters.update import _keep_latest

    while len(bought) > cap:  # a state within the cap, as stored
        del bought[min(bought, key=lambda s: (bought[s], s))]
    expected, got = dict(bought), dict(bought)
    _evict_per_line(expected, skus, at, cap)
    for sku in skus:
        got[sku] = max(at, got.pop(sku, at))
    _keep_latest(got, cap)
    assert list(got.items()) == list(expected.items())
