"""The value dimension: churn at its closed-form deadline, tiers by the shared CLV cuts."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.clv.model import ClvModel
from segmenters.clv.summary import day_of
from segmenters.config import EngineConfig, ValueConfig
from segmenters.core import Context, Source, advance, fold, next_deadline, tick
from segmenters.dimensions import rfm
from segmenters.dimensions.value import (
    CHURNED,
    NEVER_DAYS,
    ValueQuantiles,
    churn_day,
    histogram_bucket,
    score,
)
from segmenters.effects import histogram_buckets
from segmenters.state import CustomerState
from tests.unit.factories import Events, ev

DAY = 86_400.0
CDNOW = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=7)
CUTS = ValueQuantiles(cuts=(rfm.bucket(40.0), rfm.bucket(20.0), rfm.bucket(10.0)), buyers=100)
CTX = Context(clv=CDNOW, value=CUTS)
CFG = EngineConfig()
START = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def buyer(days: list[int], price: float = 25.0) -> list[tuple]:
    """One purchase on each of ``days`` (days after START), as fold input."""
    e = Events("c-1", START)
    docs = [e.purchase(f"o-{i}", ["A"], d * 1440, price=price) for i, d in enumerate(days)]
    return [(ev(d), Source("events.purchase", 0, i)) for i, d in enumerate(docs)]


def value_path(changes):
    return [
        (c.previous, c.current, c.changed_at.timestamp()) for c in changes if c.dimension == "value"
    ]


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 60), min_size=1, max_size=12),
    r=st.floats(0.1, 3.0),
    alpha=st.floats(1.0, 200.0),
    a=st.floats(0.1, 5.0),
    b=st.floats(0.1, 10.0),
    threshold=st.floats(0.05, 0.95),
)
def test_the_churn_day_is_the_first_day_p_alive_is_below_the_threshold(
    gaps: list[int], r: float, alpha: float, a: float, b: float, threshold: float
) -> None:
    days, d = [1000], 1000
    for g in gaps:
        d += g
        days.append(d)
    state = CustomerState("c", buy_days={str(x): 10.0 for x in days})
    model = ClvModel(r=r, alpha_days=alpha, a=a, b=b)
    found = churn_day(state, model, threshold)
    x, t_x = len(days) - 1, days[-1] - days[0]
    bg = model.bgnbd
    if found is None:  # not within a century of the last purchase
        assert bg.p_alive(x, t_x, t_x + NEVER_DAYS) >= threshold
        return
    assert bg.p_alive(x, t_x, found - days[0]) < threshold
    # the first such day on or after the last purchase day
    if found > days[-1]:
        assert bg.p_alive(x, t_x, found - 1 - days[0]) >= threshold


def test_a_buyer_without_a_repeat_day_never_churns() -> None:
    """BG/NBD's P(alive) is 1 for x = 0: no deadline, and docs/value.md says so."""
    state = fold(None, "c-1", buyer([0]), config=CFG, ctx=CTX).state
    assert churn_day(state, CDNOW, 0.3) is None
    later = value_path(advance(state, state.eval_at + 3650 * DAY, CFG, CTX))
    # tiers move as the expected value decays with time (at other timers), churn never
    assert CHURNED not in [current for _, current, _ in later]
    assert state.segment("value") != CHURNED


def test_churn_fires_at_its_deadline_with_the_figures_in_the_reason() -> None:
    r = fold(None, "c-1", buyer([0, 20, 41]), config=CFG, ctx=CTX)
    state = r.state
    assert state.segment("value") in ("top", "high", "medium", "low")
    day = churn_day(state, CDNOW, 0.3)
    assert day is not None
    deadline = day * DAY
    assert next_deadline(state, CFG, CTX) is not None
    before = tick(state, deadline - 1, config=CFG, ctx=CTX)
    assert CHURNED not in [current for _, current, _ in value_path(before.changes)]
    at = tick(before.state, deadline, config=CFG, ctx=CTX)
    (change,) = [c for c in at.changes if c.dimension == "value"]
    assert change.current == CHURNED and change.changed_at.timestamp() == deadline
    first = day_of(START.timestamp())
    assert change.reason.startswith("p_alive 0.2")
    assert f"(x=2, t_x=41 d, T={day - first} d; model v7)" in change.reason
    # a churned buyer leaves the shared CLV histogram (ranks are among alive buyers)
    assert at.state.clv is None and "value" not in histogram_buckets(at.state)
    assert "value" in histogram_buckets(state)


def test_ticking_at_any_moments_equals_one_replay() -> None:
    """The same changes, ids included, whether the timer fires late, early or often."""
    r = fold(None, "c-1", buyer([0, 5, 9, 30]), config=CFG, ctx=CTX)
    end = r.state.eval_at + 400 * DAY
    once = advance(r.state.copy(), end, CFG, CTX)
    state, many = r.state, []
    for step in range(1, 41):
        t = tick(state, r.state.eval_at + step * 10 * DAY, config=CFG, ctx=CTX)
        many += t.changes
        state = t.state
    assert [c.change_id for c in many] == [c.change_id for c in once]
    assert CHURNED in [c.current for c in once]


def test_a_purchase_after_churn_brings_the_buyer_back() -> None:
    items = buyer([0, 20, 41, 400])
    churned = fold(None, "c-1", items[:3], config=CFG, ctx=CTX).state
    back = fold(churned, "c-1", items[3:], config=CFG, ctx=CTX)
    path = [(previous, current) for previous, current, _ in value_path(back.changes)]
    assert (path[-2][1], path[-1][0]) == (CHURNED, CHURNED) and path[-1][1] != CHURNED
    assert back.state.clv is not None


def test_tiers_follow_the_cuts() -> None:
    q = ValueQuantiles(cuts=(rfm.bucket(100.0), rfm.bucket(50.0), rfm.bucket(10.0)), buyers=10)
    assert [q.tier(v) for v in (500.0, 60.0, 20.0, 5.0, 0.0)] == [
        "top",
        "high",
        "medium",
        "low",
        "low",
    ]
    assert ValueQuantiles.from_counts({}, ValueConfig()).buyers == 0


def test_without_cuts_only_churn_is_known() -> None:
    ctx = Context(clv=CDNOW)
    r = fold(None, "c-1", buyer([0, 20, 41]), config=CFG, ctx=ctx)
    assert r.state.segment("value") is None and r.state.clv is not None
    assert histogram_bucket(r.state) == rfm.bucket(r.state.clv)
    fired = advance(r.state, r.state.eval_at + 400 * DAY, CFG, ctx)
    assert [c.current for c in fired if c.dimension == "value"] == [CHURNED]


def test_without_a_model_there_is_no_value_segment() -> None:
    r = fold(None, "c-1", buyer([0, 20, 41]), config=CFG)
    assert r.state.segment("value") is None and r.state.clv is None


def test_a_refund_lowers_value_not_the_days() -> None:
    items = buyer([0, 20, 41], price=40.0)
    full = fold(None, "c-1", items, config=CFG, ctx=CTX).state
    e = Events("c-1", START)
    e.n = 100
    refund = ev(e.refund("o-2", 30.0, 41 * 1440 + 5))
    refunded = fold(full, "c-1", [(refund, Source("events.refund", 0, 0))], config=CFG, ctx=CTX)
    now = refunded.state.eval_at
    a, b = score(full, now, CDNOW, 365.0), score(refunded.state, now, CDNOW, 365.0)
    assert a is not None and b is not None
    assert a[0].x == b[0].x and a[1].p_alive == b[1].p_alive
    assert b[1].clv < a[1].clv
    assert churn_day(full, CDNOW, 0.3) == churn_day(refunded.state, CDNOW, 0.3)


def test_the_default_policy_wins_back_churned_top_and_high_buyers() -> None:
    def acts(previous: str) -> list[str]:
        return [
            a
            for rule in DEFAULT_POLICY.rules
            if rule.matches("value", previous, CHURNED)
            for a in rule.actions
        ]

    assert acts("top") == ["email/win_back", "ads/win_back"]
    assert acts("high") == ["email/win_back", "ads/win_back"]
    assert acts("medium") == [] and acts("low") == []
