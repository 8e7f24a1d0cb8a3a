"""Two-sample intervals for uplift, with the standard library only.

The standard library has the normal distribution but not Student's t, which Welch's
interval needs for small groups: :func:`t_ppf` inverts the t distribution function,
computed from the regularised incomplete beta function (continued fraction, as in
Numerical Recipes), by bisection.

>>> round(t_ppf(0.975, 5), 3), round(t_ppf(0.975, 30), 3), round(t_ppf(0.975, 1e9), 3)
(2.571, 2.042, 1.96)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval."""

    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _inc_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    front = math.exp(ln + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    tail = 0.5 * _inc_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile (0.5 <= q < 1) of Student's t; normal beyond a million df."""
    if df > 1e6:
        return NormalDist().inv_cdf(q)
    lo, hi = 0.0, 2.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


def proportion_diff(x1: int, n1: int, x2: int, n2: int, *, level: float = 0.95) -> Interval | None:
    """Wald interval of p1 - p2 (normal approximation); None if a group is empty.

    >>> i = proportion_diff(150, 1000, 100, 1000)
    >>> round(i.estimate, 3), round(i.low, 4), round(i.high, 4)
    (0.05, 0.0211, 0.0789)
    """
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return Interval(p1 - p2, p1 - p2 - z * se, p1 - p2 + z * se)


def welch_diff(
    mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int, *, level: float = 0.95
) -> Interval | None:
    """Welch interval of mean1 - mean2 (unequal variances); None if a group has < 2.

    >>> i = welch_diff(10.0, 4.0, 10, 8.0, 9.0, 12)
    >>> round(i.low, 3), round(i.high, 3)
    (-0.243, 4.243)
    """
    if n1 < 2 or n2 < 2:
        return None
    a, b = var1 / n1, var2 / n2
    diff = mean1 - mean2
    se = math.sqrt(a + b)
    if se == 0.0:
        return Interval(diff, diff, diff)
    df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
    half = t_ppf(0.5 + level / 2, df) * se
    return Interval(diff, diff - half, diff + half)
