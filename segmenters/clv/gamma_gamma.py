"""The Gamma-Gamma model of spend: what a buyer's future orders are worth on average.

Fader, Hardie and Lee (2005), "RFM and CLV: using iso-value curves", Journal of
Marketing Research 42(4). A buyer's order values are Gamma(p, nu) around their own mean,
and nu is Gamma(q, v) across buyers. Fitted on repeat buyers only: ``x`` repeat purchase
days and ``m`` the mean value of those days. The expected value of a buyer's next order
shrinks their own mean towards the population's, the more so the fewer orders they had.

>>> g = GammaGamma(p=6.25, q=3.74, v=15.44)
>>> round(g.population_mean, 2)
35.22
>>> round(g.expected_order_value(x=1, m=100.0), 2)
80.26
>>> round(g.expected_order_value(x=0, m=0.0), 2)
35.22
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import gammaln


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma parameters (``v`` in the currency of the amounts)."""

    p: float
    q: float
    v: float

    @property
    def population_mean(self) -> float:
        """The mean order value of a buyer chosen at random: p v / (q - 1) (q > 1)."""
        return self.p * self.v / (self.q - 1) if self.q > 1 else math.inf

    def expected_order_value(self, x: int, m: float) -> float:
        """E[order value | x repeat days of mean m]: p (v + x m) / (p x + q - 1).

        A buyer without repeat days gets the population mean.
        """
        if x <= 0:
            return self.population_mean
        return self.p * (self.v + x * m) / (self.p * x + self.q - 1)


def log_likelihood(p: float, q: float, v: float, x: NDArray[Any], m: NDArray[Any]) -> NDArray[Any]:
    """Each repeat buyer's log-likelihood of their mean order value, vectorised."""
    px = p * x
    out: NDArray[Any] = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * math.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    return out


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted model, its total log-likelihood and how many repeat buyers it saw."""

    model: GammaGamma
    log_likelihood: float
    customers: int


def fit(x: ArrayLike, m: ArrayLike) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters for repeat buyers (x >= 1, m > 0).

    Raises ``ValueError`` without repeat buyers or with a non-positive amount.
    """
    xs = np.asarray(x, dtype=float)
    ms = np.asarray(m, dtype=float)
    if xs.size == 0:
        raise ValueError("no repeat buyers to fit")
    if xs.shape != ms.shape:
        raise ValueError("x and m must have the same length")
    if (xs < 1).any() or (ms <= 0).any():
        raise ValueError("need x >= 1 and m > 0 for every repeat buyer")

    def negative(theta: NDArray[Any]) -> float:
        p, q, v = np.exp(theta)
        return -float(log_likelihood(p, q, v, xs, ms).sum())

    theta0 = np.log([1.0, 1.0, max(float(ms.mean()), 1.0)])
    options = {"xatol": 1e-9, "fatol": 1e-9, "maxiter": 20_000, "maxfev": 40_000}
    res = minimize(negative, theta0, method="Nelder-Mead", options=options)
    res = minimize(negative, res.x, method="L-BFGS-B")
    p, q, v = (float(val) for val in np.exp(res.x))
    return GammaGammaFit(GammaGamma(p, q, v), -float(res.fun), int(xs.size))
