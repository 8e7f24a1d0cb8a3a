"""RFM: recency, frequency and monetary scores 1-5 against the population of buyers.

Quantiles come from a log-bucket histogram (the bucket mapping of DDSketch, relative
accuracy ``ALPHA``). Unlike a streaming estimator such as P² or River's ``Quantile``,
its counts support removal, which RFM needs: a customer's order count moves from one
bucket to another when they buy again. The counts are shared by all workers (kept in
Redis by the shell), so every worker scores against the same population.

Scores (DESIGN.md section 4): F and M = 1 + number of quantiles the value is strictly
above; R = 5 - number of recency quantiles the recency is above by more than the
histogram's resolution (``RECENCY_TOLERANCE_DAYS``, one hour).

>>> q = RfmQuantiles(recency_days=(10, 20, 30, 40), frequency=(1, 1, 2, 3),
...                  monetary=(20, 50, 90, 200), buyers=100, as_of=0.0)
>>> s = CustomerState("c", orders=3, revenue=120.0, last_order_at=0.0)
>>> scores(s, now=25 * 86400.0, q=q)
(3, 4, 4)
>>> rfm_segment(3, 4)
'loyal'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from segmenters.state import CustomerState

DIMENSION = "rfm"
DAY = 86400.0
QUANTILES = (0.2, 0.4, 0.6, 0.8)
ALPHA = 0.01
_GAMMA = (1 + ALPHA) / (1 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
#: Recency is counted in buckets of event time (last order time), one hour wide.
RECENCY_BUCKET_S = 3600.0
#: A recency-score timer fires this long after the boundary, when "strictly above" holds.
TIMER_EPSILON_S = 1.0
#: The histogram knows last-order times to the bucket (the hour), so a recency quantile
#: is known to within one bucket: a customer is older than a quantile only when older by
#: more than that. Without it, in a young population (most buyers in the current hour:
#: quantiles of 0 days) a customer who bought a second ago scored R1, "hibernating" or,
#: after a few orders, "at_risk": a win-back offer to someone who had just bought.
RECENCY_TOLERANCE_DAYS = RECENCY_BUCKET_S / DAY

SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "cant_lose",
    "at_risk",
    "hibernating",
)


#: Amounts below this share the zero bucket (nothing is counted at finer than a cent).
MIN_AMOUNT = 0.01
ZERO_BUCKET = -(10**6)


def bucket(value: float) -> int:
    """The histogram bucket of an amount: ``ceil(log_gamma(value))`` as in DDSketch.

    >>> bucket(0.0) == ZERO_BUCKET, bucket(100.0) > bucket(99.0) > bucket(0.5)
    (True, True)
    """
    if value < MIN_AMOUNT:
        return ZERO_BUCKET
    return math.ceil(math.log(value) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The representative value of a bucket: within ``ALPHA`` of every value in it."""
    if index == ZERO_BUCKET:
        return 0.0
    return 2 * _GAMMA**index / (_GAMMA + 1)


def order_bucket(orders: int) -> int:
    """Order counts are small integers: each count is its own bucket (exact)."""
    return orders


def recency_bucket(last_order_at: float) -> int:
    return math.floor(last_order_at / RECENCY_BUCKET_S)


def quantiles(counts: Mapping[int, int], qs: Iterable[float] = QUANTILES) -> list[int]:
    """Bucket index at each quantile: the smallest bucket whose cumulative share >= q.

    >>> quantiles({1: 5, 2: 3, 5: 2})
    [1, 1, 2, 2]
    """
    items = sorted((k, c) for k, c in counts.items() if c > 0)
    total = sum(c for _, c in items)
    out = []
    for q in qs:
        if total == 0:
            out.append(0)
            continue
        need = q * total
        seen = 0
        for k, c in items:
            seen += c
            if seen >= need - 1e-9:
                out.append(k)
                break
    return out


@dataclass(frozen=True, slots=True)
class RfmQuantiles:
    """The 20/40/60/80 % quantiles over buyers, at event time ``as_of``."""

    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    buyers: int
    as_of: float

    @classmethod
    def from_counts(
        cls,
        recency: Mapping[int, int],
        frequency: Mapping[int, int],
        monetary: Mapping[int, int],
        *,
        as_of: float,
    ) -> RfmQuantiles:
        """Quantiles from the three shared histograms (bucket -> customers)."""
        # recency is high when the last order is old: its 20 % quantile is the 80 % of times
        times = [(k + 0.5) * RECENCY_BUCKET_S for k in quantiles(recency, reversed(QUANTILES))]
        return cls(
            recency_days=tuple(max(0.0, (as_of - t) / DAY) for t in times),
            frequency=tuple(float(k) for k in quantiles(frequency)),
            monetary=tuple(bucket_value(k) for k in quantiles(monetary)),
            buyers=sum(c for c in frequency.values() if c > 0),
            as_of=as_of,
        )


def _above(value: float, bounds: tuple[float, ...]) -> int:
    """How many of ``bounds`` ``value`` is strictly above."""
    n = 0
    for x in bounds:
        if value > x:
            n += 1
    return n


def scores(state: CustomerState, now: float, q: RfmQuantiles) -> tuple[int, int, int]:
    assert state.last_order_at is not None
    recency = (now - state.last_order_at) / DAY - RECENCY_TOLERANCE_DAYS
    r = 5 - _above(recency, q.recency_days)
    f = 1 + _above(state.orders, q.frequency)
    m = 1 + _above(state.revenue, q.monetary)
    return r, f, m


def rfm_segment(r: int, f: int) -> str:
    """The named segment of an (R, F) pair (DESIGN.md section 4)."""
    if r <= 2:
        return "hibernating" if f <= 2 else ("at_risk" if f <= 4 else "cant_lose")
    if r == 3:
        if f <= 2:
            return "about_to_sleep"
        return "need_attention" if f == 3 else "loyal"
    if f == 1:
        return "promising" if r == 4 else "new"
    if f <= 3:
        return "potential_loyalist"
    return "loyal" if r == 4 else "champions"


def rfm(state: CustomerState, now: float, q: RfmQuantiles | None) -> tuple[str, str] | None:
    """The RFM segment and its reason, or None for a customer who has not bought."""
    if q is None or state.orders == 0 or state.last_order_at is None or q.buyers == 0:
        return None
    r, f, m = scores(state, now, q)
    return rfm_segment(r, f), rfm_reason(r, f, m, q)


def rfm_reason(r: int, f: int, m: int, q: RfmQuantiles) -> str:
    """The reason of :func:`rfm`: the scores and the population they are against."""
    return f"R{r} F{f} M{m} (quantiles over {q.buyers} buyers)"


def next_deadline(state: CustomerState, after: float, q: RfmQuantiles | None) -> float | None:
    """When the recency score next drops (its recency passes the next quantile by more
    than the tolerance)."""
    if q is None or state.orders == 0 or state.last_order_at is None:
        return None
    due = None
    for days in q.recency_days:
        at = state.last_order_at + days * DAY + RECENCY_BUCKET_S + TIMER_EPSILON_S
        if at > after and (due is None or at < due):
            due = at
    return due


def histogram_buckets(state: CustomerState | None) -> dict[str, int]:
    """The buckets of the shared RFM histograms this customer counts in (none before a
    first order): what the worker moves on each write and what an erase takes back."""
    if state is None or state.orders == 0 or state.last_order_at is None:
        return {}
    return {
        "recency": recency_bucket(state.last_order_at),
        "frequency": order_bucket(state.orders),
        "monetary": bucket(state.revenue),
    }
