"""The BG/NBD model of repeat purchasing: how many orders a buyer will place, and P(alive).

Fader, Hardie and Lee (2005), "Counting your customers the easy way", Marketing Science
24(2). Each buyer is summarised by ``x`` (repeat purchase days), ``t_x`` (first to last
purchase day) and ``T`` (first purchase day to now), all in days here. While alive, a
buyer purchases as a Poisson process whose rate is Gamma(r, alpha) across buyers; after
each purchase they drop out with a probability that is Beta(a, b) across buyers.

The log-likelihood is the paper's closed form (equation 6), written with ``betaln`` and
``logaddexp`` so that it stays finite for large ``x``; the fit maximises it over the log
of the four parameters, which keeps them positive without bounds.

>>> m = BgNbd(r=0.243, alpha=30.895, a=0.793, b=2.426)
>>> round(m.p_alive(x=0, t_x=0.0, T=100.0), 3)
1.0
>>> round(m.p_alive(x=4, t_x=30.0, T=270.0), 3)  # bought often, long ago
0.008
>>> round(m.p_alive(x=4, t_x=250.0, T=270.0), 3)  # bought often, lately
0.836
>>> round(m.expected_purchases(365.0, x=4, t_x=250.0, T=270.0), 2)
3.31
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters; ``alpha`` in days."""

    r: float
    alpha: float
    a: float
    b: float

    def _odds_dead(self, x: int, t_x: float, T: float) -> float:
        """a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x): the odds that a buyer with x >= 1
        repeat days dropped out after the last one (0 for a buyer with none)."""
        if x <= 0:
            return 0.0
        return math.exp(
            math.log(self.a / (self.b + x - 1))
            + (self.r + x) * (math.log(self.alpha + T) - math.log(self.alpha + t_x))
        )

    def p_alive(self, x: int, t_x: float, T: float) -> float:
        """P(the buyer is still alive at T), given (x, t_x, T) (paper, equation 11)."""
        return 1.0 / (1.0 + self._odds_dead(x, t_x, T))

    def expected_purchases(self, t: float, x: int, t_x: float, T: float) -> float:
        """Expected purchase days in the next ``t`` days, given (x, t_x, T) (equation 10)."""
        if t <= 0:
            return 0.0
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        ratio = (alpha + T) / (alpha + T + t)
        tail: float = ratio ** (r + x) * float(
            hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        )
        if abs(a - 1.0) < 1e-9:
            a = 1.0 + 1e-9  # the 1/(a-1) singularity at a = 1 is removable
        front = (a + b + x - 1) / (a - 1)
        return front * (1.0 - tail) / (1.0 + self._odds_dead(x, t_x, T))


def log_likelihood(
    r: float, alpha: float, a: float, b: float, x: NDArray[Any], t_x: NDArray[Any], T: NDArray[Any]
) -> NDArray[Any]:
    """Each buyer's log-likelihood (paper, equation 6), vectorised over buyers."""
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha) + betaln(a, b + x) - betaln(a, b)
    stays = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    drops = np.where(
        repeat,
        np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    out: NDArray[Any] = common + np.logaddexp(stays, drops)
    return out


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted model, its total log-likelihood and how many buyers it saw."""

    model: BgNbd
    log_likelihood: float
    customers: int


def fit(x: ArrayLike, t_x: ArrayLike, T: ArrayLike, *, start: BgNbd | None = None) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for buyers (x, t_x, T), times in days.

    Raises ``ValueError`` without buyers or with inconsistent summaries.
    """
    xs = np.asarray(x, dtype=float)
    txs = np.asarray(t_x, dtype=float)
    Ts = np.asarray(T, dtype=float)
    if xs.size == 0:
        raise ValueError("no buyers to fit")
    if not (xs.shape == txs.shape == Ts.shape):
        raise ValueError("x, t_x and T must have the same length")
    if (xs < 0).any() or (txs < 0).any() or (Ts < txs).any():
        raise ValueError("need 0 <= x, 0 <= t_x <= T")
    s = start or BgNbd(r=1.0, alpha=max(float(Ts.mean()), 1.0), a=1.0, b=1.0)

    def negative(theta: NDArray[Any]) -> float:
        r, alpha, a, b = np.exp(theta)
        return -float(log_likelihood(r, alpha, a, b, xs, txs, Ts).sum())

    theta0 = np.log([s.r, s.alpha, s.a, s.b])
    options = {"xatol": 1e-9, "fatol": 1e-9, "maxiter": 20_000, "maxfev": 40_000}
    res = minimize(negative, theta0, method="Nelder-Mead", options=options)
    res = minimize(negative, res.x, method="L-BFGS-B")
    r, alpha, a, b = (float(v) for v in np.exp(res.x))
    return BgNbdFit(BgNbd(r, alpha, a, b), -float(res.fun), int(xs.size))
