"""The behavioural feature vector: documented, finite for any state, decaying with time."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.config import EngineConfig
from segmenters.core import fold
from segmenters.features import (
    FEATURES,
    LOG_FEATURES,
    WEIGHTS,
    _log,
    feature_row,
    feature_vector,
)
from segmenters.state import CustomerState, decayed_value
from tests.unit.factories import T0, Events, ev

DAY = 86400.0
T0S = T0.timestamp()


def all_finite(v: dict[str, float]) -> bool:
    return all(isinstance(x, float) and math.isfinite(x) for x in v.values())


def test_names_and_order():
    v = feature_vector(CustomerState("c"), now=T0S)
    assert tuple(v) == FEATURES
    assert LOG_FEATURES <= set(FEATURES)
    assert set(WEIGHTS) <= set(FEATURES)


def test_every_feature_is_documented():
    import segmenters.features as module

    table = module.__doc__ or ""
    for name in FEATURES:
        assert f"\n{name} " in table, name


def test_brand_new_customer():
    v = feature_vector(CustomerState("c"), now=T0S)
    assert all_finite(v)
    assert v["recency"] == pytest.approx(math.log1p(365.0))
    assert {k: x for k, x in v.items() if k != "recency"} == dict.fromkeys(FEATURES[1:], 0.0)


def test_recency_cap_is_a_parameter():
    v = feature_vector(CustomerState("c"), now=T0S, recency_cap_days=30.0)
    assert v["recency"] == pytest.approx(math.log1p(30.0))
    old = CustomerState("c", orders=1, revenue=5.0, last_order_at=T0S - 1000 * DAY)
    assert feature_vector(old, now=T0S)["recency"] == pytest.approx(math.log1p(365.0))


def test_known_values_of_a_hand_built_state():
    s = CustomerState(
        "c",
        first_seen=T0S - 30 * DAY,
        last_seen=T0S - 2 * DAY,
        orders=3,
        revenue=299.0,
        items=3,
        last_order_at=T0S - 9 * DAY,
        views=[8.0, T0S],
        cart_adds=[2.0, T0S - 7 * DAY],
        cart={"A": [1, 10.0, [[T0S, 1]]]},
        categories={"shoes": 4, "books": 2, "toys": 1},
        devices={"mobile": 6, "desktop": 2, "tablet": 2},
    )
    v = feature_vector(s, now=T0S)
    expected = {
        "recency": math.log1p(9.0),
        "frequency": math.log1p(3.0),
        "monetary": math.log1p(299.0),
        "avg_order_value": math.log1p(299.0 / 3),
        "browsing": math.log1p(8.0),
        "cart_intensity": math.log1p(1.0),  # 2 adds, one half-life ago
        "cart_abandon": 0.25,  # 1 unit waiting in the cart, 3 bought
        "category_breadth": math.log1p(3.0),
        "mobile_share": 0.6,
        "inactivity": math.log1p(2.0),
        "tenure": math.log1p(30.0),
    }
    assert v == pytest.approx(expected)


def test_decays_with_now():
    s = CustomerState("c", views=[16.0, T0S], cart_adds=[4.0, T0S], first_seen=T0S)
    now, week_later = feature_vector(s, T0S), feature_vector(s, T0S + 7 * DAY)
    assert now["browsing"] == pytest.approx(math.log1p(16.0))
    assert week_later["browsing"] == pytest.approx(math.log1p(8.0))
    assert week_later["cart_intensity"] == pytest.approx(math.log1p(2.0))
    assert week_later["tenure"] > now["tenure"]
    # the half-life is a parameter
    slow = feature_vector(s, T0S + 7 * DAY, half_life_days=14.0)
    assert slow["browsing"] == pytest.approx(math.log1p(16.0 / math.sqrt(2)))
    assert feature_vector(s, T0S + 3650 * DAY)["browsing"] == pytest.approx(0.0, abs=1e-9)


def test_now_before_the_state_does_not_go_negative():
    s = CustomerState("c", first_seen=T0S, last_seen=T0S, views=[3.0, T0S])
    v = feature_vector(s, now=T0S - DAY)
    assert all_finite(v)
    assert v["tenure"] == v["inactivity"] == 0.0
    assert v["browsing"] == pytest.approx(math.log1p(3.0))


def test_huge_and_odd_states_stay_finite():
    s = CustomerState(
        "c",
        first_seen=-1e12,
        last_seen=1e12,
        orders=10**12,
        revenue=1e308,
        items=10**15,
        last_order_at=-1e15,
        views=[1e308, 0.0],
        cart_adds=[1e308, 1e12],
        cart={f"s{i}": [10**9, 1e9, []] for i in range(50)},
        categories={f"k{i}": 1 for i in range(1000)},
        devices={"mobile": 10**15},
    )
    assert all_finite(feature_vector(s, now=1e12))
    refunded = CustomerState("c", orders=1, revenue=-50.0, last_order_at=T0S)
    v = feature_vector(refunded, now=T0S)
    assert all_finite(v) and v["monetary"] == v["avg_order_value"] == 0.0
    assert all_finite(feature_vector(CustomerState("c", revenue=math.nan), now=T0S))


def test_folded_customer():
    e = Events()
    docs = [
        e.browse(0, category="shoes", device="mobile"),
        e.add("A", 1, price=50.0, qty=2),
        e.purchase("o-1", ["A"], 2),
        e.add("B", 3, price=10.0),
    ]
    state = fold(None, "c-1", [(ev(d), None) for d in docs], config=EngineConfig()).state
    v = feature_vector(state, now=T0S + 180)
    assert all_finite(v)
    assert v["frequency"] == pytest.approx(math.log1p(1.0))
    assert 0.0 < v["cart_abandon"] < 1.0
    assert v["recency"] == pytest.approx(math.log1p(60 / DAY))


@settings(max_examples=200, deadline=None)
@given(
    orders=st.integers(0, 10**9),
    revenue=st.floats(-1e9, 1e15),
    items=st.integers(0, 10**9),
    views=st.none() | st.tuples(st.floats(0, 1e300), st.floats(-1e10, 1e10)).map(list),
    last=st.none() | st.floats(-1e10, 1e10),
    now=st.floats(-1e10, 1e10),
    devices=st.dictionaries(st.sampled_from(["mobile", "desktop", "tablet"]), st.integers(0, 99)),
)
def test_always_finite(orders, revenue, items, views, last, now, devices):
    s = CustomerState(
        "c",
        orders=orders,
        revenue=revenue,
        items=items,
        views=views,
        last_order_at=last,
        first_seen=last,
        last_seen=last,
        devices=devices,
    )
    v = feature_vector(s, now=now)
    assert all_finite(v)
    assert 0.0 <= v["cart_abandon"] <= 1.0 and 0.0 <= v["mobile_share"] <= 1.0


def _reference_row(s: CustomerState, now: float, half_life_days: float, cap: float) -> list[float]:
    """The table of the module docstring, one ``_log`` call per log feature."""
    half_life_s = half_life_days * DAY
    orders = max(0, s.orders)
    revenue = max(0.0, s.revenue) if math.isfinite(s.revenue) else 0.0

    def days(since: float | None) -> float:
        return 0.0 if since is None else max(0.0, now - since) / DAY

    recency = min(cap, days(s.last_order_at)) if orders and s.last_order_at is not None else cap
    in_cart = max(0, s.cart_items) if s.cart else 0
    put_in_cart = in_cart + max(0, s.items)
    by_device = sum(s.devices.values()) if s.devices else 0
    return [
        _log(recency),
        _log(float(orders)),
        _log(revenue),
        _log(revenue / orders) if orders else 0.0,
        _log(decayed_value(s.views, now, half_life_s=half_life_s)),
        _log(decayed_value(s.cart_adds, now, half_life_s=half_life_s)),
        in_cart / put_in_cart if put_in_cart else 0.0,
        _log(float(len(s.categories))),
        s.devices.get("mobile", 0) / by_device if by_device > 0 else 0.0,
        _log(days(s.last_seen)),
        _log(days(s.first_seen)),
    ]


ANY = st.floats() | st.sampled_from([0.0, -0.0, 1e300, 2e300])


@settings(max_examples=300, deadline=None)
@given(
    orders=st.integers(-3, 50),
    revenue=ANY,
    times=st.tuples(*[st.none() | ANY] * 3),
    items=st.integers(-5, 50),
    views=st.none() | st.tuples(ANY, ANY).map(list),
    cart=st.dictionaries(st.sampled_from("AB"), st.integers(-3, 9).map(lambda q: [q, None, []])),
    devices=st.dictionaries(st.sampled_from(["mobile", "desktop"]), st.integers(0, 9)),
    categories=st.integers(0, 5),
    now=ANY,
    cap=st.floats(0, 1000) | st.integers(0, 400),
)
def test_feature_row_logs_every_value_as_log_does(
    orders, revenue, times, items, views, cart, devices, categories, now, cap
):
    s = CustomerState(
        "c",
        orders=orders,
        revenue=revenue,
        last_order_at=times[0],
        first_seen=times[1],
        last_seen=times[2],
        items=items,
        views=views,
        cart_adds=views,
        cart=cart,
        devices=devices,
        categories={str(i): 1 for i in range(categories)},
    )
    got = feature_row(s, now, half_life_days=3.0, recency_cap_days=cap)
    want = _reference_row(s, now, 3.0, cap)
    # bit for bit: 0.0 and -0.0 are told apart, a nan is never produced
    assert [math.copysign(1.0, x) for x in got] == [math.copysign(1.0, x) for x in want]
    assert got == want
