"""A buyer's purchase history as the models read it: (x, t_x, T) and the repeat-day mean.

Time is counted in whole UTC days: a purchase day is a UTC calendar day with at least
one purchase. ``x`` is the number of purchase days after the first, ``t_x`` the days from
the first purchase day to the last, ``T`` the days from the first purchase day to the
day of the clock, and ``monetary`` the mean value of the repeat purchase days (0 when
``x`` is 0), as in Fader, Hardie and Lee's CDNOW summaries.

>>> s = summarize({10: 20.0, 12: 5.0, 40: 15.0}, now_day=50)
>>> (s.x, s.t_x, s.T, s.monetary)
(2, 30, 40, 10.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
