"""The value dimension: a buyer's predicted value, and whether they are still a customer.

``churned`` when P(alive) is below ``ValueConfig.churn_p_alive``; otherwise the buyer's
rank by predicted CLV among alive buyers: ``top`` (top 10 %), ``high`` (next 20 %),
``medium`` (next 30 %), ``low`` (the rest). The ranks come from a log-bucket histogram of
the alive buyers' CLV shared by all workers, as RFM's do (``rfm.bucket``, accuracy 1 %):
each buyer counts with the CLV of their latest evaluation (``CustomerState.clv``), which
events, timers and the rescoring sweep renew.

P(alive) falls as days pass without a purchase, so the day a buyer crosses into
``churned`` is known in advance, in closed form (:func:`churn_day`): it is the
customer's timer, and the change fires at that deadline, not at the next sweep.

>>> from segmenters.clv.model import ClvModel
>>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44,
...              version=3)
>>> s = CustomerState("c", buy_days={"0": 20.0, "20": 30.0, "41": 25.0})
>>> churn_day(s, m, 0.3)
171
>>> scored = score(s, 170 * DAY, m, 365.0)
>>> round(scored[1].p_alive, 3), value_segment(scored[1], None, ValueConfig())
(0.301, None)
>>> scored = score(s, 171 * DAY, m, 365.0)
>>> value_segment(scored[1], None, ValueConfig())
'churned'
>>> value_reason("churned", *scored, None, ValueConfig())
'p_alive 0.298 < 0.30 (x=2, t_x=41 d, T=171 d; model v3)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from segmenters.clv.model import ClvModel, Prediction
from segmenters.clv.summary import Summary, day_of, summary_at
from segmenters.config import ValueConfig
from segmenters.dimensions.rfm import bucket, bucket_value, quantiles
from segmenters.state import CustomerState

DIMENSION = "value"
CHURNED = "churned"
TIERS = ("top", "high", "medium", "low")
SEGMENTS = (*TIERS, CHURNED)
DAY = 86_400.0
#: The shared histogram of alive buyers' CLV (effects.HISTOGRAMS).
HISTOGRAM = "value"
#: A churn day further than this after the last purchase is no deadline (a century).
NEVER_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class ValueQuantiles:
    """The CLV histogram buckets a buyer must be above to be ``top``, ``high``, ``medium``.

    >>> q = ValueQuantiles.from_counts({bucket(10.0): 60, bucket(50.0): 30, bucket(200.0): 10},
    ...                                ValueConfig())
    >>> [round(v) for v in q.values], q.buyers
    ([50, 50, 10], 100)
    >>> q.tier(200.0), q.tier(50.0), q.tier(10.0)
    ('top', 'medium', 'low')
    """

    cuts: tuple[int, int, int]
    buyers: int

    @classmethod
    def from_counts(cls, counts: Mapping[int, int], cfg: ValueConfig) -> ValueQuantiles:
        """The cuts from the shared histogram (bucket -> alive buyers)."""
        top, high, medium = quantiles(counts, cfg.levels())
        return cls((top, high, medium), sum(c for c in counts.values() if c > 0))

    @property
    def values(self) -> tuple[float, ...]:
        """The cuts as CLV (each within 1 % of the bucket's values)."""
        return tuple(bucket_value(c) for c in self.cuts)

    def tier(self, clv: float) -> str:
        """``top`` above the first cut, ``high`` above the second, and so on."""
        b = bucket(clv)
        for name, cut in zip(TIERS, self.cuts, strict=False):
            if b > cut:
                return name
        return TIERS[-1]


def score(
    state: CustomerState, now: float, model: ClvModel, horizon_days: float
) -> tuple[Summary, Prediction] | None:
    """The buyer's summary on the UTC day of ``now`` and the model's predictions (None for
    a customer who has not bought, or predictions that are not finite numbers)."""
    if not state.buy_days:
        return None
    s = summary_at(state, day_of(now))
    if s is None:
        return None
    p = model.predict(s, horizon_days)
    if not (math.isfinite(p.p_alive) and math.isfinite(p.clv)):
        return None  # a model that cannot score this buyer places them nowhere
    return s, p


def ranked_clv(prediction: Prediction, cfg: ValueConfig) -> float | None:
    """What the buyer counts with in the shared histogram: the CLV to the cent, or None
    when churned (ranks are among alive buyers)."""
    if prediction.p_alive < cfg.churn_p_alive:
        return None
    return round(prediction.clv, 2)


def value_segment(prediction: Prediction, q: ValueQuantiles | None, cfg: ValueConfig) -> str | None:
    """``churned``, a tier, or None while no alive buyer is counted yet."""
    clv = ranked_clv(prediction, cfg)
    if clv is None:
        return CHURNED
    if q is None or q.buyers == 0:
        return None
    return q.tier(clv)


def value_reason(
    segment: str,
    s: Summary,
    p: Prediction,
    q: ValueQuantiles | None,
    cfg: ValueConfig,
) -> str:
    """The figures behind ``segment``: P(alive) and the summary, or the CLV and its cut."""
    history = f"x={s.x}, t_x={s.t_x} d, T={s.T} d; model v{p.model_version}"
    if segment == CHURNED:
        # floored: a buyer just past the crossing never reads as the threshold itself
        alive = math.floor(p.p_alive * 1000) / 1000
        return f"p_alive {alive:.3f} < {cfg.churn_p_alive:.2f} ({history})"
    assert q is not None
    clv = round(p.clv, 2)
    i = TIERS.index(segment)
    shares = (cfg.top_share, cfg.high_share, cfg.medium_share)
    if i < len(q.cuts):
        rank = f"above {q.values[i]:.2f}, the top {sum(shares[: i + 1]):.0%}"
    else:
        rank = f"at most {q.values[-1]:.2f}, below the top {sum(shares):.0%}"
    return (
        f"CLV {clv:.2f} over {p.horizon_days:g} d, {rank} of {q.buyers} alive buyers; "
        f"p_alive {p.p_alive:.2f} ({history})"
    )


def churn_day(state: CustomerState, model: ClvModel, threshold: float) -> int | None:
    """The first UTC day on which the buyer's P(alive) is below ``threshold`` if they buy
    nothing more (None: never, which BG/NBD says of a buyer without a repeat day, or not
    within :data:`NEVER_DAYS`).

    BG/NBD's P(alive) = 1 / (1 + odds), odds = a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x),
    grows with T, so the crossing is T* = (alpha+t_x) (k (b+x-1)/a)^(1/(r+x)) - alpha for
    odds k = 1/threshold - 1; the first whole day past it is checked against the model.
    """
    if len(state.buy_days) < 2:
        return None
    days = [int(d) for d in state.buy_days]
    first, last = min(days), max(days)
    x, t_x = len(days) - 1, last - first
    bg = model.bgnbd
    odds = 1.0 / threshold - 1.0
    try:
        growth = math.pow(odds * (bg.b + x - 1) / bg.a, 1.0 / (bg.r + x))
    except OverflowError:
        return None
    crossing = (bg.alpha + t_x) * growth - bg.alpha
    if crossing > t_x + NEVER_DAYS:
        return None  # a fit without drop-out (a -> 0): no churn in any useful time
    T = max(t_x, math.floor(crossing))
    # the closed form is exact up to rounding: settle the boundary with the model itself
    while bg.p_alive(x, t_x, T) >= threshold:
        T += 1
    while T > t_x and bg.p_alive(x, t_x, T - 1) < threshold:
        T -= 1
    return first + T


def next_deadline(
    state: CustomerState, after: float, model: ClvModel | None, cfg: ValueConfig
) -> float | None:
    """The start of the churn day (:func:`churn_day`) when it is later than ``after``."""
    if model is None or len(state.buy_days) < 2 or state.segment(DIMENSION) == CHURNED:
        return None
    day = churn_day(state, model, cfg.churn_p_alive)
    if day is None:
        return None
    at = day * DAY
    return at if at > after else None


def histogram_bucket(state: CustomerState) -> int | None:
    """The bucket of the shared value histogram this buyer counts in (None: not counted)."""
    return None if not state.clv else bucket(state.clv)
