"""Action messages carry a buyer's predictions when the deployment has a value model."""

from __future__ import annotations

import pytest

from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.actions.retention import decide
from segmenters.changes import SegmentChange
from segmenters.clv.model import ClvModel
from segmenters.clv.summary import day_of, summary_at
from segmenters.state import CustomerState

MODEL = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=7)
DAY = 86_400.0


def _lapsed_buyer() -> tuple[CustomerState, SegmentChange]:
    at = 200 * DAY
    customer = CustomerState(
        "c-1",
        orders=3,
        revenue=90.0,
        first_order_at=10 * DAY,
        last_order_at=60 * DAY,
        last_seen=60 * DAY,
        eval_at=at,
        profile={"marketing_consent": True},
        buy_days={"10": 30.0, "40": 20.0, "60": 40.0},
    )
    change = SegmentChange.make(
        customer_id="c-1",
        dimension="journey",
        previous="loyal",
        current="lapsed",
        at=at,
        reason="r",
        position=2,
    )
    return customer, change


def test_messages_carry_the_predictions_at_the_decisions_event_time():
    customer, change = _lapsed_buyer()
    out = decide(
        DEFAULT_POLICY,
        None,
        customer,
        [change],
        [],
        wall=change.changed_at.timestamp(),
        clv=MODEL,
        horizon_days=180.0,
    )
    assert out.messages, "the default policy acts on lapsed buyers"
    want = MODEL.predict(summary_at(customer, day_of(200 * DAY)), 180.0)
    for m in out.messages:
        f = m.features
        assert f["p_alive"] == pytest.approx(want.p_alive, rel=1e-12)
        assert f["expected_orders"] == pytest.approx(want.expected_orders, rel=1e-12)
        assert f["expected_order_value"] == pytest.approx(want.expected_order_value, rel=1e-12)
        assert f["clv"] == pytest.approx(want.clv, rel=1e-12)
        assert f["value_model_version"] == 7


def test_without_a_model_the_features_are_as_before():
    customer, change = _lapsed_buyer()
    out = decide(DEFAULT_POLICY, None, customer, [change], [], wall=change.changed_at.timestamp())
    assert out.messages
    assert all("p_alive" not in m.features for m in out.messages)
