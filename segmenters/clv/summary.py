"""A buyer's purchase history as the models read it: (x, t_x, T) and the repeat-day mean.

Time is counted in whole UTC days: a purchase day is a UTC calendar day with at least
one purchase. ``x`` is the number of purchase days after the first, ``t_x`` the days from
the first purchase day to the last, ``T`` the days from the first purchase day to the
day of the clock, and ``monetary`` the mean value of the repeat purchase days (0 when
``x`` is 0), as in Fader, Hardie and Lee's CDNOW summaries.

A refund lowers the value of a purchase day, never the number of days: the purchase
occasion happened, and BG/NBD counts occasions. It lowers the latest purchase day on or
before the refund's own day (the first purchase day if it is dated earlier), down to 0.
So the summary depends on the set of events only, not on the order they arrive in.

>>> s = summarize({10: 20.0, 12: 5.0, 40: 15.0}, now_day=50)
>>> (s.x, s.t_x, s.T, s.monetary)
(2, 30, 40, 10.0)
>>> net_days({"10": 20.0, "12": 5.0, "40": 15.0}, {"13": 3.0, "2": 50.0})
{10: 0.0, 12: 2.0, 40: 15.0}
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

from segmenters.state import CustomerState

DAY_S = 86_400


def day_of(at: float) -> int:
    """The UTC day number (days since 1970-01-01) of a unix time.

    >>> day_of(0.0), day_of(86_399.9), day_of(86_400.0)
    (0, 0, 1)
    """
    return int(at // DAY_S)


@dataclass(frozen=True)
class Summary:
    """One buyer's (x, t_x, T) in days and the mean value of their repeat purchase days."""

    x: int
    t_x: int
    T: int
    monetary: float


def summarize(days: Mapping[int, float], now_day: int) -> Summary:
    """The summary of a buyer whose purchase days (day -> value of that day) are ``days``.

    Raises ``ValueError`` for a buyer without purchase days or a clock before the first.
    """
    if not days:
        raise ValueError("a buyer has at least one purchase day")
    ordered = sorted(days)
    first, last = ordered[0], ordered[-1]
    if now_day < last:
        raise ValueError(f"clock day {now_day} is before the last purchase day {last}")
    repeat = ordered[1:]
    monetary = sum(days[d] for d in repeat) / len(repeat) if repeat else 0.0
    return Summary(x=len(repeat), t_x=last - first, T=now_day - first, monetary=monetary)


def net_days(buys: Mapping[str, float], refunds: Mapping[str, float]) -> dict[int, float]:
    """Purchase days (day -> value) net of refunds, from a state's ``buy_days`` and
    ``refund_days`` (days as text, as JSON stores them)."""
    days = {int(d): v for d, v in buys.items()}
    if refunds and days:
        ordered = sorted(days)
        for d, amount in sorted((int(d), a) for d, a in refunds.items()):
            i = bisect.bisect_right(ordered, d) - 1
            day = ordered[max(i, 0)]
            days[day] = max(0.0, round(days[day] - amount, 2))
    return dict(sorted(days.items()))


def summary_at(state: CustomerState, today: int) -> Summary | None:
    """A customer's summary with T counted to ``today`` (None for one who never bought,
    or whose purchase days are all after ``today``)."""
    days = {d: v for d, v in net_days(state.buy_days, state.refund_days).items() if d <= today}
    return summarize(days, today) if days else None
