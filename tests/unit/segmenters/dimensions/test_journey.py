import pytest

from segmenters.config import JourneyConfig
from segmenters.dimensions.journey import journey, next_deadline
from segmenters.state import CustomerState

CFG = JourneyConfig()
MIN, DAY = 60.0, 86400.0


def seg(state, now):
    return journey(state, now, CFG)[0]


def cart_state(cart_at=0.0, last_order_at=None, orders=0):
    return CustomerState(
        "c", cart={"A": [1, 5.0]}, cart_at=cart_at, last_order_at=last_order_at, orders=orders
    )


@pytest.mark.parametrize(
    ("idle_min", "expected"),
    [(29.999, "active_cart"), (30.0, "cart_abandoner"), (30.001, "cart_abandoner")],
)
def test_cart_abandoner_boundary(idle_min, expected):
    assert seg(cart_state(), idle_min * MIN) == expected


def test_bought_since_cart_activity_is_not_abandonment():
    s = cart_state(cart_at=0.0, last_order_at=10.0, orders=1)
    assert seg(s, 3 * 3600) == "active_cart"


def test_purchase_before_cart_activity_does_not_protect():
    s = cart_state(cart_at=100.0, last_order_at=10.0, orders=1)
    assert seg(s, 100 + 31 * MIN) == "cart_abandoner"


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (29.99, "first_time_buyer"),
        (30, "at_risk"),
        (89.99, "at_risk"),
        (90, "lapsed"),
        (400, "lapsed"),
    ],
)
def test_recency_boundaries(days, expected):
    s = CustomerState("c", orders=1, last_order_at=0.0)
    assert seg(s, days * DAY) == expected


@pytest.mark.parametrize(
    ("orders", "expected"),
    [
        (0, "browser"),
        (1, "first_time_buyer"),
        (2, "repeat_buyer"),
        (3, "repeat_buyer"),
        (4, "loyal"),
        (40, "loyal"),
    ],
)
def test_order_count_rules(orders, expected):
    s = CustomerState("c", orders=orders, last_order_at=0.0 if orders else None)
    assert seg(s, 1.0) == expected


def test_rules_are_ordered_cart_first():
    s = cart_state(orders=10, last_order_at=-100 * DAY)
    s.cart_at = 0.0
    assert seg(s, 1.0) == "active_cart"
    assert seg(s, 31 * MIN) == "cart_abandoner"


def test_thresholds_come_from_config():
    cfg = JourneyConfig(cart_abandon_minutes=5, loyal_orders=10)
    assert journey(cart_state(), 5 * MIN, cfg)[0] == "cart_abandoner"
    assert journey(CustomerState("c", orders=4, last_order_at=0.0), 1.0, cfg)[0] == "repeat_buyer"


def test_config_rejects_inconsistent_thresholds():
    with pytest.raises(ValueError):
        JourneyConfig(at_risk_days=100, lapsed_days=90)


def test_reason_names_the_rule():
    _, reason = journey(cart_state(), 45 * MIN, CFG)
    assert "45.0 min" in reason and ">= 30" in reason


def test_next_deadline_is_the_first_future_transition():
    s = cart_state(cart_at=0.0)
    assert next_deadline(s, 0.0, CFG) == 30 * MIN
    assert next_deadline(s, 30 * MIN, CFG) is None
    buyer = CustomerState("c", orders=1, last_order_at=0.0)
    assert next_deadline(buyer, 0.0, CFG) == 30 * DAY
    assert next_deadline(buyer, 30 * DAY, CFG) == 90 * DAY
    assert next_deadline(CustomerState("c"), 0.0, CFG) is None
