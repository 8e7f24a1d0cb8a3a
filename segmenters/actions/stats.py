"""Two-sample intervals for uplift, computed with scipy.

- A difference of two proportions gets Newcombe's hybrid score interval (his method 10,
  1998), built from the two groups' Wilson score intervals. Unlike the normal
  approximation (Wald), it keeps its coverage for small groups and for rates near 0 or 1,
  and it never has zero width: 0 of 3 converted still gives an upper bound above 0.
- A difference of two means gets Welch's interval (unequal variances), with the
  quantile of Student's t from ``scipy.stats.t`` at the Welch-Satterthwaite degrees of
  freedom, and no group's variance taken below the pooled variance (see
  :func:`welch_diff`). When both groups have no variance at all (every amount equal,
  typically no purchase in either group) the interval is undefined: :func:`welch_diff`
  gives None rather than a zero-width interval that would claim certainty.

>>> i = newcombe_diff(3, 19, 0, 2)      # 3 of 19 treated converted, 0 of 2 controls
>>> round(i.estimate, 3), round(i.low, 3), round(i.high, 3)
(0.158, -0.508, 0.376)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binomtest
from scipy.stats import t as student_t


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (scipy).

    >>> round(t_ppf(0.975, 5), 3), round(t_ppf(0.975, 30), 3), round(t_ppf(0.975, 1e9), 3)
    (2.571, 2.042, 1.96)
    """
    return float(student_t.ppf(q, df))


def wilson(x: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``x / n`` (n >= 1).

    >>> lo, hi = wilson(0, 5)
    >>> lo, round(hi, 4)
    (0.0, 0.4345)
    """
    ci = binomtest(x, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def newcombe_diff(x1: int, n1: int, x2: int, n2: int, *, level: float = 0.95) -> Interval | None:
    """Newcombe's hybrid score interval of p1 - p2; None if a group is empty.

    With (l_i, u_i) the Wilson interval of p_i and d = p1 - p2:
    low = d - sqrt((p1 - l1)² + (u2 - p2)²), high = d + sqrt((u1 - p1)² + (p2 - l2)²).

    Newcombe's own example (56/70 vs 48/80; his table II gives 0.0524 to 0.3339):

    >>> i = newcombe_diff(56, 70, 48, 80)
    >>> round(i.estimate, 2), round(i.low, 4), round(i.high, 4)
    (0.2, 0.0524, 0.3339)
    >>> newcombe_diff(0, 3, 0, 40).high > 0     # no conversions anywhere: still an interval
    True
    """
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, level=level)
    l2, u2 = wilson(x2, n2, level=level)
    d = p1 - p2
    return Interval(
        d,
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def welch_diff(
    mean1: float,
    var1: float,
    n1: int,
    mean2: float,
    var2: float,
    n2: int,
    *,
    level: float = 0.95,
    pooled_floor: bool = True,
) -> Interval | None:
    """Welch interval of mean1 - mean2 (``var`` are sample variances, ddof 1).

    With ``pooled_floor`` (the default), neither group's variance is taken below the
    pooled variance of the two: a small group that shows little or no spread by chance
    (two controls who both bought nothing) would otherwise count as knowing its mean
    exactly, and make a narrow interval around a false difference. The interval is then
    at least as wide as both Welch's and Student's (pooled) intervals; with large groups
    of similar spread it is Welch's. The degrees of freedom are Welch-Satterthwaite's
    over the variances used.

    None if a group has fewer than two values, or if neither group varies (every amount
    equal: the standard error is 0 and no interval can be given honestly).

    >>> i = welch_diff(10.0, 4.0, 10, 8.0, 9.0, 12, pooled_floor=False)
    >>> round(i.low, 3), round(i.high, 3)
    (-0.243, 4.243)
    >>> i = welch_diff(1736.8, 2.5e6, 19, 0.0, 0.0, 2)       # 2 controls, no purchase
    >>> i.low < 0 < i.high
    True
    >>> welch_diff(0.0, 0.0, 40, 0.0, 0.0, 40) is None
    True
    """
    if n1 < 2 or n2 < 2:
        return None
    if pooled_floor:
        pooled = ((n1 - 1) * var1 + (n2 - 1) * var2) / (n1 + n2 - 2)
        var1, var2 = max(var1, pooled), max(var2, pooled)
    a, b = var1 / n1, var2 / n2
    if a + b <= 0.0:
        return None
    diff = mean1 - mean2
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    half = t_ppf(0.5 + level / 2, df) * se
    return Interval(diff, diff - half, diff + half)
