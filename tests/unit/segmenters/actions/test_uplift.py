"""Uplift: windows, intervals on synthetic data with a known effect, and the table.

The coverage of the intervals when there is no effect:
tests/unit/segmenters/actions/test_uplift_coverage.py.
"""

import random
import statistics

import pytest

from segmenters.actions import ActionState, plan
from segmenters.actions.policy import load_policy
from segmenters.actions.stats import newcombe_diff, t_ppf, welch_diff, wilson
from segmenters.actions.uplift import Assignment, Purchase, parse_when, render, to_json, uplift
from segmenters.changes import SegmentChange

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
    assert r.too_few and r.conversion is None and r.revenue_note == "too_few"


def test_first_assignment_counts_and_revenue_sums_within_the_window():
    a = [
        Assignment("c1", "ads/x", "control", 10.0),
        Assignment("c1", "ads/x", "treated", 0.0),
        Assignment("c2", "ads/x", "control", 0.0),
    ]
    p = [Purchase("c1", 5.0, 10.0), Purchase("c1", 8.0, 15.0), Purchase("c2", 1.0, 1.0)]
    (r,) = uplift(a, p, window_s=60.0, min_group=0)
    assert (r.treated.customers, r.control.customers) == (1, 1)
    assert r.treated.revenue_mean == 25.0 and r.control.converted == 1
    assert r.conversion is not None  # Newcombe's interval exists from one per group
    assert r.revenue is None and r.revenue_note == "too_few"  # Welch needs two per group


def test_empty_control_has_no_interval_and_suppressions_are_counted():
    a = [Assignment("c1", "email/x", "treated", 0.0)]
    s = [("email/x", "cooldown"), ("email/x", "cooldown"), ("ads/y", "frequency_cap")]
    r = {u.action: u for u in uplift(a, [], window_s=1.0, suppressions=s)}
    assert r["email/x"].conversion is None and r["email/x"].suppressed == {"cooldown": 2}
    assert r["ads/y"].treated.customers == 0 and r["ads/y"].suppressed == {"frequency_cap": 1}
    table = render(r.values(), currency="EUR")
    assert "cooldown=2" in table and "frequency_cap=1" in table
    assert "too few (1 treated, 0 control; 30 each needed)" in table


def test_render_has_one_line_per_action_and_the_intervals():
    rng = random.Random(5)
    a, p = simulate(rng, 2_000, 0.2, 0.1, 50.0, 50.0)
    lines = render(uplift(a, p, window_s=DAY), currency="GBP").splitlines()
    assert lines[0].startswith("action") and "Δ conv (95% CI)" in lines[0]
    assert "rev T (GBP)" in lines[0] and "Δ rev/cust (GBP, 95% CI)" in lines[0]
    assert lines[1].startswith("email/x") and " pp [" in lines[1] and "too few" not in lines[1]


def test_interval_helpers_guard_small_groups():
    assert newcombe_diff(1, 0, 1, 10) is None
    assert welch_diff(1.0, 0.0, 5, 1.0, 0.0, 5) is None  # no variance: no interval at all
    assert welch_diff(1.0, 2.0, 1, 1.0, 2.0, 5) is None


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(0, 2, 0, 2), (3, 3, 0, 3), (1, 1, 1, 1)])
def test_newcombe_is_never_zero_width(x1, n1, x2, n2):
    i = newcombe_diff(x1, n1, x2, n2)
    assert i.low < i.estimate < i.high or (i.low < i.high and i.low <= i.estimate <= i.high)
    assert -1.0 <= i.low < i.high <= 1.0 and i.high - i.low > 0.3


def test_newcombe_matches_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17, table II, method 10
    for (x1, n1, x2, n2), (low, high) in {
        (56, 70, 48, 80): (0.0524, 0.3339),
        (9, 10, 3, 10): (0.1705, 0.8090),
    }.items():
        i = newcombe_diff(x1, n1, x2, n2)
        assert (round(i.low, 4), round(i.high, 4)) == (low, high)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))


def test_welch_matches_scipy_ttest():
    from scipy.stats import ttest_ind

    rng = random.Random(2)
    a = [rng.expovariate(0.1) for _ in range(12)]
    b = [rng.expovariate(0.2) for _ in range(7)]
    m = (statistics.fmean(a), statistics.variance(a), 12, statistics.fmean(b))
    i = welch_diff(*m, statistics.variance(b), 7, pooled_floor=False)
    ci = ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (i.low, i.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    # the floor makes it at least as wide as both Welch's and Student's (pooled) intervals
    floored = welch_diff(*m, statistics.variance(b), 7)
    student = ttest_ind(a, b, equal_var=True).confidence_interval(0.95)
    assert floored.low <= min(ci.low, student.low) + 1e-9
    assert floored.high >= max(ci.high, student.high) - 1e-9


def test_nineteen_treated_two_control_is_too_few_not_a_win():
    a = [Assignment(f"t{i}", "email/win_back", "treated", 0.0) for i in range(19)]
    a += [Assignment(f"c{i}", "email/win_back", "control", 0.0) for i in range(2)]
    p = [Purchase(f"t{i}", 60.0, 3000.0) for i in range(11)]
    (r,) = uplift(a, p, window_s=DAY)
    assert r.too_few and r.conversion is None and r.revenue is None
    row = to_json(r, currency="EUR")
    assert row["status"] == "too_few" and row["conversion_diff"] is None
    assert row["treated"] == {
        "customers": 19,
        "converted": 11,
        "conversion_rate": pytest.approx(11 / 19),
        "revenue_per_customer": pytest.approx(33000 / 19),
    }
    assert "too few (19 treated, 2 control; 30 each needed)" in render([r], currency="EUR")
    # without the minimum, the intervals are honest about how little two controls say
    (r,) = uplift(a, p, window_s=DAY, min_group=0)
    assert r.conversion.covers(0.0) and r.conversion.low < -0.1
    assert r.revenue is not None and r.revenue.covers(0.0)


def test_window_selects_first_assignments_by_decision_time():
    groups = ["treated" if i % 2 else "control" for i in range(10)]
    a = [Assignment(f"c{i}", "ads/x", g, float(i)) for i, g in enumerate(groups)]
    a.append(Assignment("c1", "ads/x", "control", 5.0))  # a later assignment: not the first
    p = [Purchase("c9", 100.0, 4.0)]  # after `until`, inside the conversion window: counts
    (r,) = uplift(a, p, window_s=DAY, since=1.0, until=9.5, min_group=0)
    assert (r.treated.customers, r.control.customers) == (5, 4)  # c1..c9
    assert r.treated.converted == 1
    (r,) = uplift(a, p, window_s=DAY, since=2.0, until=2.0)
    assert (r.treated.customers, r.control.customers) == (0, 0)


def test_no_variance_is_said_not_printed_as_a_point():
    a = [Assignment(f"c{i}", "ads/x", "treated" if i % 2 else "control", 0.0) for i in range(80)]
    (r,) = uplift(a, [], window_s=DAY)
    assert not r.too_few and r.conversion.high > 0 and r.revenue is None
    assert r.revenue_note == "no_variance"
    assert to_json(r, currency="EUR")["revenue_note"] == "no_variance"
    assert "no variance (all amounts equal)" in render([r], currency="EUR")


def test_json_rows_are_numbers():
    rng = random.Random(5)
    a, p = simulate(rng, 400, 0.3, 0.2, 50.0, 50.0)
    row = to_json(uplift(a, p, window_s=DAY)[0], currency="USD")
    assert row["currency"] == "USD" and row["status"] == "ok" and row["revenue_note"] is None
    for key in ("conversion_diff", "revenue_diff"):
        i = row[key]
        assert all(isinstance(i[k], float) for k in ("estimate", "low", "high"))
        assert i["low"] < i["estimate"] < i["high"] and i["level"] == 0.95
    assert isinstance(row["treated"]["conversion_rate"], float)


def test_window_bounds_parse_iso_dates_and_datetimes():
    assert parse_when("2026-11-01") == 1793491200.0
    assert parse_when("2026-11-01", end=True) == 1793491200.0 + DAY
    assert parse_when("2026-11-01T00:00:00") == parse_when("2026-11-01T01:00:00+01:00")
    with pytest.raises(ValueError, match="not an ISO-8601"):
        parse_when("last week")


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
            position=1,
        )
        _, ds = plan(policy, change, ActionState(f"c{i}"), now=0.0, consent=True)
        assignments += [d.assignment() for d in ds]
        purchases.append(Purchase(f"c{i}", 10.0, 1.0))
    (r,) = uplift(assignments, purchases, window_s=policy.conversion_window_s)
    assert r.treated.customers + r.control.customers == 400
    assert r.conversion.estimate == 0.0 and 150 < r.control.customers < 250
