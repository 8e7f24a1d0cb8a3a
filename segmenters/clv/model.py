"""The value model a deployment scores with: both fits, their sizes and a version.

:func:`fit_model` is the trainer's pure step (summaries in, model out); :meth:`ClvModel.predict`
is the scoring step, closed forms only, a few microseconds a buyer. Times are days.

>>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
>>> p = m.predict(Summary(x=2, t_x=213, T=272, monetary=40.0), horizon_days=365)
>>> round(p.p_alive, 3), round(p.expected_orders, 2), round(p.expected_order_value, 2)
(0.727, 1.56, 39.14)
>>> round(p.clv, 2) == round(p.expected_orders * p.expected_order_value, 2)
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from segmenters.clv.bgnbd import BgNbd
from segmenters.clv.bgnbd import fit as fit_bgnbd
from segmenters.clv.gamma_gamma import GammaGamma
from segmenters.clv.gamma_gamma import fit as fit_gamma_gamma
from segmenters.clv.summary import Summary

#: Fewer buyers than this, or no repeat buyer, or no buyer older than a day, and there is
#: nothing to learn a purchase rate or a drop-out rate from: no model is fitted.
MIN_BUYERS = 30
#: Fewer repeat buyers than this and no model is fitted: the drop-out and the spend
#: parameters would follow noise (7 repeat buyers gave r = 3.7e8).
MIN_REPEAT_BUYERS = 20


@dataclass(frozen=True)
class Prediction:
    """One buyer's predictions over ``horizon_days``."""

    p_alive: float
    expected_orders: float
    expected_order_value: float
    clv: float
    horizon_days: float
    model_version: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "p_alive": self.p_alive,
            "expected_orders": self.expected_orders,
            "expected_order_value": self.expected_order_value,
            "clv": self.clv,
            "horizon_days": self.horizon_days,
            "model_version": self.model_version,
        }


class NotEnoughData(ValueError):
    """Too few buyers, or too little history, to fit the models."""


class ClvModel(BaseModel):
    """A fitted BG/NBD + Gamma-Gamma model, as stored (``segstream clv --json`` prints it).

    ``alpha_days`` is BG/NBD's scale in days; ``p``, ``q``, ``v`` are None when there were
    too few repeat buyers to fit the spend model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: float
    alpha_days: float
    a: float
    b: float
    p: float | None = None
    q: float | None = None
    v: float | None = None
    customers: int = 0
    repeat_customers: int = 0
    log_likelihood: float = 0.0
    fitted_at: float = 0.0
    version: int = 0

    @property
    def bgnbd(self) -> BgNbd:
        return BgNbd(self.r, self.alpha_days, self.a, self.b)

    @property
    def spend(self) -> GammaGamma | None:
        if self.p is None or self.q is None or self.v is None:
            return None
        return GammaGamma(self.p, self.q, self.v)

    def predict(self, s: Summary, horizon_days: float) -> Prediction:
        """P(alive) now, expected orders and value over the horizon, and their product."""
        bg = self.bgnbd
        alive = bg.p_alive(s.x, s.t_x, s.T)
        orders = bg.expected_purchases(horizon_days, s.x, s.t_x, s.T)
        spend = self.spend
        if spend is not None:
            value = spend.expected_order_value(s.x, s.monetary)
        else:
            value = s.monetary
        return Prediction(alive, orders, value, orders * value, horizon_days, self.version)


def fit_model(
    summaries: Sequence[Summary], *, fitted_at: float, version: int, start: ClvModel | None = None
) -> ClvModel:
    """Fit both models to buyers' summaries (BG/NBD on all, Gamma-Gamma on repeat buyers
    with a positive mean). ``start`` (the previous model) speeds up a refit.

    Raises :class:`NotEnoughData` with fewer than :data:`MIN_BUYERS` buyers or
    :data:`MIN_REPEAT_BUYERS` repeat buyers, when no buyer's first purchase is a day old
    (every T is 0), or when the fit does not converge to finite parameters.
    """
    if len(summaries) < MIN_BUYERS:
        raise NotEnoughData(f"{len(summaries)} buyers, at least {MIN_BUYERS} are needed")
    repeat_buyers = sum(1 for s in summaries if s.x > 0)
    if repeat_buyers < MIN_REPEAT_BUYERS:
        raise NotEnoughData(
            f"{repeat_buyers} of the {len(summaries)} buyers bought on a second day, "
            f"at least {MIN_REPEAT_BUYERS} are needed"
        )
    if not any(s.T > 0 for s in summaries):
        raise NotEnoughData("every buyer's first purchase is from the clock's own day")
    first = None if start is None else start.bgnbd
    bg = fit_bgnbd(
        [s.x for s in summaries], [s.t_x for s in summaries], [s.T for s in summaries], start=first
    )
    repeat = [s for s in summaries if s.x > 0 and s.monetary > 0]
    p = q = v = None
    if len(repeat) >= MIN_REPEAT_BUYERS:
        gg = fit_gamma_gamma([s.x for s in repeat], [s.monetary for s in repeat]).model
        p, q, v = gg.p, gg.q, gg.v
    m = bg.model
    if not all(math.isfinite(v) for v in (m.r, m.alpha, m.a, m.b, bg.log_likelihood)):
        raise NotEnoughData(f"the BG/NBD fit did not converge ({m})")
    return ClvModel(
        r=m.r,
        alpha_days=m.alpha,
        a=m.a,
        b=m.b,
        p=p,
        q=q,
        v=v,
        customers=bg.customers,
        repeat_customers=len(repeat),
        log_likelihood=bg.log_likelihood,
        fitted_at=fitted_at,
        version=version,
    )
