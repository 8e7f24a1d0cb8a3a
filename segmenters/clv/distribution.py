"""What the dashboard's value panel shows of a sample of buyers under a model.

P(alive) as a histogram of ten bins of width 0.1 (1.0 falls in the last), CLV at the
deciles, and the classic BG/NBD calibration check (Fader, Hardie and Lee 2005, figure
1): for k = 0..6 and "7+", how many buyers have x = k repeat purchase days, against how
many the model expects, the sum over buyers of P(X(T_i) = k).

>>> from segmenters.clv.model import ClvModel
>>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
>>> buyers = [Summary(0, 0, 200, 0.0), Summary(2, 150, 200, 30.0), Summary(9, 190, 200, 50.0)]
>>> d = distribution(buyers, m, horizon_days=365.0)
>>> d.customers, d.p_alive
(3, [0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
>>> [(row.k, row.actual) for row in d.fit]
[('0', 1), ('1', 0), ('2', 1), ('3', 0), ('4', 0), ('5', 0), ('6', 0), ('7+', 1)]
>>> round(sum(row.expected for row in d.fit), 9)
3.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from segmenters.clv.model import ClvModel
from segmenters.clv.summary import Summary
from segmenters.dimensions.value import DIMENSION, SEGMENTS

#: Bins of the P(alive) histogram, each 1 / BINS wide.
BINS = 10
#: The fit table's rows: x = 0..LAST_K - 1, then x >= LAST_K.
LAST_K = 7
#: The CLV quantiles shown: 10 %, 20 %, ..., 90 %.
DECILES = tuple(i / 10 for i in range(1, 10))


@dataclass(frozen=True)
class FitRow:
    """Buyers with ``k`` repeat purchase days, counted and as the model expects them."""

    k: str
    actual: int
    expected: float


@dataclass(frozen=True)
class Distribution:
    """The panel's figures over ``customers`` sampled buyers."""

    customers: int
    horizon_days: float
    p_alive: list[int]
    clv_deciles: list[float]
    fit: list[FitRow]

    def as_dict(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "horizon_days": self.horizon_days,
            "p_alive": self.p_alive,
            "clv_deciles": self.clv_deciles,
            "fit": [{"k": r.k, "actual": r.actual, "expected": r.expected} for r in self.fit],
        }


def alive_bin(p: float) -> int:
    """The histogram bin of a P(alive): [0, 0.1) is 0, ..., [0.9, 1.0] is 9.

    >>> alive_bin(0.0), alive_bin(0.1), alive_bin(0.95), alive_bin(1.0)
    (0, 1, 9, 9)
    """
    return min(BINS - 1, max(0, int(p * BINS)))


def fit_rows(summaries: Sequence[Summary], model: ClvModel) -> list[FitRow]:
    """Actual and expected buyers per number of repeat purchase days ("7+": the rest).
    Buyers with the same T share one evaluation of the probabilities."""
    bg = model.bgnbd
    actual = [0] * (LAST_K + 1)
    expected = [0.0] * (LAST_K + 1)
    by_t: dict[int, list[float]] = {}
    for s in summaries:
        actual[min(s.x, LAST_K)] += 1
        pmf = by_t.get(s.T)
        if pmf is None:
            pmf = by_t[s.T] = bg.purchases_pmf(float(s.T), LAST_K - 1)
        for k, p in enumerate(pmf):
            expected[k] += p
        expected[LAST_K] += max(0.0, 1.0 - sum(pmf))
    labels = [str(k) for k in range(LAST_K)] + [f"{LAST_K}+"]
    return [FitRow(k, n, e) for k, n, e in zip(labels, actual, expected, strict=True)]


def distribution(
    summaries: Sequence[Summary], model: ClvModel, *, horizon_days: float
) -> Distribution:
    """The histogram, the deciles (none without buyers) and the fit table of
    ``summaries`` under ``model``, CLV over ``horizon_days``."""
    hist = [0] * BINS
    clvs = []
    for s in summaries:
        p = model.predict(s, horizon_days)
        hist[alive_bin(p.p_alive)] += 1
        clvs.append(p.clv)
    deciles = [float(v) for v in np.quantile(clvs, DECILES)] if clvs else []
    return Distribution(len(summaries), horizon_days, hist, deciles, fit_rows(summaries, model))


def value_sizes(sizes: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """The value dimension's segments and their sizes, 0 for one without members, from
    (dimension, segment) -> size.

    >>> value_sizes({("value", "top"): 4, ("journey", "new"): 9, ("value", "churned"): 2})
    {'top': 4, 'high': 0, 'medium': 0, 'low': 0, 'churned': 2}
    """
    return {segment: int(sizes.get((DIMENSION, segment), 0)) for segment in SEGMENTS}
