"""No true effect: the 95 % intervals of the uplift report cover 0 in at least 93 % of runs.

Each run draws a treated and a control group from one and the same distribution (the
message does nothing), of independent sizes, so unbalanced pairs such as 5 vs 50 occur.
A run draws a conversion rate and whether buyers buy once or a few times; amounts are
log-normal (skewed, as order totals are). Coverage is counted where an interval is
given; "too few" and "no variance" rows are counted apart. The interval functions are
measured with ``min_group=0``, so small groups (5 to 50), where intervals are hardest,
are measured too.

``python tests/unit/segmenters/actions/test_uplift_coverage.py`` prints the figures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from segmenters.actions.uplift import MIN_GROUP, Assignment, Purchase, uplift

RUNS = 600
RATES = (0.03, 0.1, 0.3, 0.6, 0.9)


@dataclass
class Coverage:
    runs: int = 0
    conversion_given: int = 0
    conversion_covered: int = 0
    revenue_given: int = 0
    revenue_covered: int = 0
    too_few: int = 0
    no_variance: int = 0
    zero_width: int = 0
    rates: dict[str, float] = field(default_factory=dict)

    def conversion(self) -> float:
        return self.conversion_covered / self.conversion_given

    def revenue(self) -> float:
        return self.revenue_covered / self.revenue_given


Sizes = tuple[tuple[int, int], tuple[int, int]]


def one_run(rng: random.Random, sizes: Sizes) -> tuple[list[Assignment], list[Purchase]]:
    """One experiment: group sizes drawn from ``sizes`` (treated, control ranges)."""
    rate = rng.choice(RATES)
    repeat = rng.random() < 0.5  # half the runs: buyers may buy up to three times
    assignments, purchases = [], []
    for group, (lo, hi) in zip(("treated", "control"), sizes, strict=True):
        n = rng.randint(lo, hi)
        for i in range(n):
            c = f"{group[0]}{i}"
            assignments.append(Assignment(c, "email/x", group, 0.0))  # type: ignore[arg-type]
            if rng.random() < rate:
                for k in range(rng.randint(1, 3) if repeat else 1):
                    amount = round(rng.lognormvariate(3.5, 0.8), 2)
                    purchases.append(Purchase(c, 60.0 * (k + 1), amount))
    return assignments, purchases


def coverage(seed: int, sizes: Sizes, *, min_group: int, runs: int = RUNS) -> Coverage:
    """Runs seeded ``seed-0``, ``seed-1``, ...; each one's rows counted."""
    out = Coverage()
    for run in range(runs):
        a, p = one_run(random.Random(f"{seed}-{run}"), sizes)
        (r,) = uplift(a, p, window_s=86400.0, min_group=min_group)
        out.runs += 1
        if r.too_few:
            out.too_few += 1
            continue
        assert r.conversion is not None
        out.conversion_given += 1
        out.conversion_covered += r.conversion.covers(0.0)
        out.zero_width += r.conversion.high <= r.conversion.low
        if r.revenue is None:
            assert r.revenue_note is not None
            out.no_variance += r.revenue_note == "no_variance"
            continue
        out.revenue_given += 1
        out.revenue_covered += r.revenue.covers(0.0)
        out.zero_width += r.revenue.high <= r.revenue.low
    return out


def test_small_groups_5_to_50_cover_zero():
    c = coverage(1, ((5, 50), (5, 50)), min_group=0)
    assert c.too_few == 0 and c.zero_width == 0
    assert c.conversion_given == RUNS and c.revenue_given > 0.8 * RUNS
    assert c.conversion() >= 0.93, c
    assert c.revenue() >= 0.93, c


def test_large_groups_cover_zero():
    c = coverage(2, ((50, 400), (50, 400)), min_group=0, runs=400)
    assert c.conversion() >= 0.93, c
    assert c.revenue() >= 0.93, c


def test_the_report_says_too_few_below_min_group_and_covers_zero_above():
    c = coverage(3, ((5, 80), (5, 80)), min_group=MIN_GROUP)
    # P(both of two sizes drawn from 5..80 are >= 30) = (51/76)**2, about 0.45
    assert 0.45 * RUNS < c.too_few < 0.65 * RUNS
    assert c.conversion_given == RUNS - c.too_few
    assert c.conversion() >= 0.93, c
    assert c.revenue() >= 0.93, c


def test_a_ten_percent_holdout_of_small_groups_covers_zero():
    """50 treated against 5 control, as a 10 % holdout gives: the unbalanced case."""
    c = coverage(4, ((50, 50), (5, 5)), min_group=0)
    assert c.conversion() >= 0.93, c
    assert c.revenue() >= 0.93, c


def test_without_the_pooled_floor_two_zero_controls_make_a_false_win():
    """Why the floor: Welch alone takes a group with no spread as knowing its mean."""
    a = [Assignment(f"t{i}", "email/x", "treated", 0.0) for i in range(19)]
    a += [Assignment(f"c{i}", "email/x", "control", 0.0) for i in range(2)]
    p = [Purchase(f"t{i}", 60.0, 100.0 + 40 * i) for i in range(11)]
    (r,) = uplift(a, p, window_s=86400.0, min_group=0)
    assert r.revenue is not None and r.revenue.covers(0.0)

    from segmenters.actions.stats import welch_diff

    t = r.treated
    plain = welch_diff(t.revenue_mean, t.revenue_var, 19, 0.0, 0.0, 2, pooled_floor=False)
    assert plain is not None and not plain.covers(0.0)


if __name__ == "__main__":
    for name, seed, sizes, mg, runs in [
        ("groups 5-50, min_group=0", 1, ((5, 50), (5, 50)), 0, RUNS),
        ("groups 50-400, min_group=0", 2, ((50, 400), (50, 400)), 0, 400),
        (f"groups 5-80, min_group={MIN_GROUP}", 3, ((5, 80), (5, 80)), MIN_GROUP, RUNS),
        ("50 treated vs 5 control, min_group=0", 4, ((50, 50), (5, 5)), 0, RUNS),
    ]:
        c = coverage(seed, sizes, min_group=mg, runs=runs)
        print(
            f"{name}: {c.runs} runs, conversion covers 0 in {c.conversion_covered}/"
            f"{c.conversion_given} = {c.conversion():.1%}, revenue in {c.revenue_covered}/"
            f"{c.revenue_given} = {c.revenue():.1%}; too few {c.too_few}, "
            f"no variance {c.no_variance}, zero-width {c.zero_width}"
        )
