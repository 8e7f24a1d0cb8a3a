"""Uplift: windows, intervals on synthetic data with a known effect, and the table."""

import random

import pytest

from segmenters.actions import ActionState, plan
from segmenters.changes import SegmentChange
from segmenters.policy import load_policy
from segmenters.stats import proportion_diff, t_ppf, welch_diff
from segmenters.uplift import Assignment, Purchase, render, uplift

DAY = 86400.0


def simulate(rng, n, p_treated, p_control, mean_treated, mean_control, *, share=0.5):
    """Customers assigned at 0; converters buy once at 1 h, an exponential amount."""
    assignments, purchases = [], []
    for i in range(n):
        treated = rng.random() >= share
        c = f"c{i}"
        assignments.append(Assignment(c, "email/x", "treated" if treated else "control", 0.0))
        if rng.random() < (p_treated if treated else p_control):
            mean = mean_treated if treated else mean_control
            purchases.append(Purchase(c, 3600.0, rng.expovariate(1 / mean)))
    return assignments, purchases


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (120, 1.980)]
)
def test_t_quantiles_match_the_table(df, expected):
    assert t_ppf(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_known_effect_has_the_right_sign_and_is_covered():
    rng = random.Random(7)
    a, p = simulate(rng, 40_000, 0.15, 0.10, 60.0, 50.0)
    (r,) = uplift(a, p, window_s=DAY)
    assert r.treated.customers + r.control.customers == 40_000
    assert r.conversion.low > 0 and r.conversion.covers(0.05)
    # revenue per customer: 0.15 * 60 - 0.10 * 50 = 4.0
    assert r.revenue.low > 0 and r.revenue.covers(4.0)


def test_no_effect_interval_covers_zero():
    rng = random.Random(3)
    a, p = simulate(rng, 20_000, 0.1, 0.1, 50.0, 50.0, share=0.1)
    (r,) = uplift(a, p, window_s=DAY)
    assert r.conversion.covers(0.0) and r.revenue.covers(0.0)


def test_intervals_cover_the_truth_about_95_percent_of_the_time():
    rng = random.Random(11)
    conv = rev = 0
    runs = 300
    for _ in range(runs):
        a, p = simulate(rng, 1_000, 0.3, 0.2, 40.0, 40.0, share=0.3)
        (r,) = uplift(a, p, window_s=DAY)
        conv += r.conversion.covers(0.1)
        rev += r.revenue.covers(0.3 * 40.0 - 0.2 * 40.0)
    assert 0.91 <= conv / runs <= 0.99
    assert 0.91 <= rev / runs <= 0.99


def test_conversion_window_bounds():
    a = [Assignment(c, "ads/x", "treated", 100.0) for c in ("at", "edge", "after", "none")]
    p = [
        Purchase("at", 100.0, 1.0),  # at the assignment: not caused by it
        Purchase("edge", 160.0, 2.0),  # exactly at the end of the window: counts
        Purchase("after", 160.5, 3.0),
        Purchase("edge", 50.0, 9.0),  # before the assignment
    ]
    (r,) = uplift(a, p, window_s=60.0)
    assert r.treated.converted == 1 and r.treated.revenue_mean == pytest.approx(0.5)


def test_first_assignment_counts_and_revenue_sums_within_the_window():
    a = [
        Assignment("c1", "ads/x", "control", 10.0),
        Assignment("c1", "ads/x", "treated", 0.0),
        Assignment("c2", "ads/x", "control", 0.0),
    ]
    p = [Purchase("c1", 5.0, 10.0), Purchase("c1", 8.0, 15.0), Purchase("c2", 1.0, 1.0)]
    (r,) = uplift(a, p, window_s=60.0)
    assert (r.treated.customers, r.control.customers) == (1, 1)
    assert r.treated.revenue_mean == 25.0 and r.control.converted == 1
    assert r.revenue is None  # fewer than two per group: no interval


def test_empty_control_has_no_interval_and_suppressions_are_counted():
    a = [Assignment("c1", "email/x", "treated", 0.0)]
    s = [("email/x", "cooldown"), ("email/x", "cooldown"), ("ads/y", "frequency_cap")]
    r = {u.action: u for u in uplift(a, [], window_s=1.0, suppressions=s)}
    assert r["email/x"].conversion is None and r["email/x"].suppressed == {"cooldown": 2}
    assert r["ads/y"].treated.customers == 0 and r["ads/y"].suppressed == {"frequency_cap": 1}
    table = render(r.values())
    assert "cooldown=2" in table and "frequency_cap=1" in table and "n/a" in table


def test_render_has_one_line_per_action_and_the_intervals():
    rng = random.Random(5)
    a, p = simulate(rng, 2_000, 0.2, 0.1, 50.0, 50.0)
    lines = render(uplift(a, p, window_s=DAY)).splitlines()
    assert lines[0].startswith("action") and "Δ conv (95% CI)" in lines[0]
    assert lines[1].startswith("email/x") and " pp [" in lines[1]


def test_interval_helpers_guard_small_groups():
    assert proportion_diff(1, 0, 1, 10) is None
    assert welch_diff(1.0, 0.0, 5, 1.0, 0.0, 5).low == 0.0  # no variance: a point


def test_decisions_feed_uplift():
    policy = load_policy(
        '[actions.email.x]\ntemplate = "t"\nholdout = 0.5\n'
        '[[rules]]\ndimension = "rfm"\ncurrent = "at_risk"\nactions = ["email/x"]\n'
    )
    assignments, purchases = [], []
    for i in range(400):
        change = SegmentChange.make(
            customer_id=f"c{i}",
            dimension="rfm",
            previous=None,
            current="at_risk",
            at=0.0,
            reason="t",
            cause="x",
        )
        _, ds = plan(policy, change, ActionState(f"c{i}"), now=0.0, consent=True)
        assignments += [d.assignment() for d in ds]
        purchases.append(Purchase(f"c{i}", 10.0, 1.0))
    (r,) = uplift(assignments, purchases, window_s=policy.conversion_window_s)
    assert r.treated.customers + r.control.customers == 400
    assert r.conversion.estimate == 0.0 and 150 < r.control.customers < 250
