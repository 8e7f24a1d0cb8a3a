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

#: Above this c = a+b+x-1 (a fit with little drop-out: b large, as on a short history),
#: :meth:`BgNbd.expected_purchases` sums a series instead of the closed form, whose
#: cancellation error grows with c/(a-1) (1e-9 relative at 1e4, sign-wrong at 1e12). The
#: series' terms grow like (a-1)^n, so only while a is below ``SERIES_MAX_A``: a and b
#: both large is a near-constant drop-out rate, where c/(a-1) stays small and the closed
#: form is exact. Near a = 1 (the closed form's removable singularity) the series too.
SERIES_FROM = 1e3
SERIES_MAX_A = 50.0


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
        if (a + b + x - 1 > SERIES_FROM or abs(a - 1.0) < 1e-3) and a < SERIES_MAX_A:
            return self._unconditional_series(t, x, T) / (1.0 + self._odds_dead(x, t_x, T))
        ratio = (alpha + T) / (alpha + T + t)
        tail: float = ratio ** (r + x) * float(
            hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        )
        if abs(a - 1.0) < 1e-9:
            a = 1.0 + 1e-9  # the 1/(a-1) singularity at a = 1 is removable
        front = (a + b + x - 1) / (a - 1)
        return front * (1.0 - tail) / (1.0 + self._odds_dead(x, t_x, T))

    def _unconditional_series(self, t: float, x: int, T: float) -> float:
        """Equation 10's numerator, (c/(a-1)) (1 - A^(r+x) 2F1(r+x, b+x; c; z)) with
        c = a+b+x-1, A = (alpha+T)/(alpha+T+t), z = 1-A, without the cancellation.

        Euler's transformation turns the bracket into 1 - A^(a-1) 2F1(c-s, a-1; c; z) for
        s = r+x, and the binomial series of A^(1-a) takes its leading 1 out exactly:
        A^(a-1) sum_n (a-1)_n z^n / n! (R_n - 1), with R_n = prod_{k<n} (1 - s/(c+k))
        and R_n - 1 from ``expm1`` of a sum of ``log1p``, accurate however large c is.
        As c grows it tends to the NBD's s t / (alpha + T) (no drop-out).

        >>> m = BgNbd(r=0.7444, alpha=63.3, a=0.0002, b=1e12)
        >>> round(m._unconditional_series(365.0, 10, 200.0), 6), round(10.7444 * 365 / 263.3, 6)
        (14.89444, 14.89444)
        """
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        q = a - 1.0 if abs(a - 1.0) >= 1e-9 else 1e-9  # removable singularity at a = 1
        c, s = a + b + x - 1, r + x
        z = t / (alpha + T + t)
        total = 0.0
        coef = 1.0  # (q)_n z^n / n!
        log_r = 0.0  # log R_n, while every factor is positive
        product: float | None = None  # R_n itself once a factor is not (small c)
        for n in range(10_000):
            term = coef * (math.expm1(log_r) if product is None else product - 1.0)
            total += term
            if n > 5 and abs(term) <= 1e-17 * abs(total):
                break
            factor = 1.0 - s / (c + n)
            if product is None and factor > 0:
                log_r += math.log1p(-s / (c + n))
            else:
                product = (math.exp(log_r) if product is None else product) * factor
            coef *= (q + n) * z / (n + 1)
        return -c / q * math.pow((alpha + T) / (alpha + T + t), q) * total

    def purchases_pmf(self, t: float, k_max: int) -> list[float]:
        """P(X(t) = k) for k = 0..k_max: the chance that a random buyer makes k repeat
        purchase days in the ``t`` days after the first (paper, equation 8).

        Each term is the buyer still alive after k purchases, times the NBD probability
        of k, plus (k >= 1) the buyer dropping out after the k-th, times the NBD tail
        P(N >= k); logs keep large k finite. The classic calibration check compares
        the sum of these over buyers (t = each one's T) with the counts of each x.

        >>> pmf = BgNbd(r=0.243, alpha=30.895, a=0.793, b=2.426).purchases_pmf(273.0, 3)
        >>> [round(p, 4) for p in pmf]
        [0.5738, 0.1994, 0.0854, 0.0459]
        """
        if k_max < 0:
            return []
        if t <= 0:
            return [1.0] + [0.0] * k_max
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        log_p = math.log(alpha) - math.log(alpha + t)
        log_q = math.log(t) - math.log(alpha + t)
        log_beta = float(betaln(a, b))
        log_gamma_r = float(gammaln(r))
        out: list[float] = []
        below = 0.0  # P(N < k) of the NBD: sum of its terms for j < k
        for k in range(k_max + 1):
            nbd = math.exp(
                float(gammaln(r + k)) - log_gamma_r - float(gammaln(k + 1)) + r * log_p + k * log_q
            )
            alive = math.exp(float(betaln(a, b + k)) - log_beta) * nbd
            dead = 0.0
            if k > 0:
                dead = math.exp(float(betaln(a + 1, b + k - 1)) - log_beta) * max(0.0, 1.0 - below)
            out.append(alive + dead)
            below += nbd
        return out


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
