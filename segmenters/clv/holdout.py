"""Calibration against a holdout period: do the predictions match what buyers then did?

Fit on the purchase days before a split day, predict each buyer's purchase days from the
split to an end day, and compare with the days they really bought on, by decile of the
prediction (Fader, Hardie and Lee's check on CDNOW). The fit is the caller's; this module
only cuts the histories and counts.

>>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426)
>>> rows = deciles(m, [{0: 10.0, 30: 5.0, 70: 5.0}, {0: 10.0}], split_day=60, end_day=90)
>>> [(r.customers, r.actual) for r in rows]
[(1, 0.0), (1, 1.0)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segmenters.clv.model import ClvModel
from segmenters.clv.summary import Summary, summarize


@dataclass(frozen=True)
class Decile:
    """One group of buyers, ranked by predicted purchase days in the holdout."""

    decile: int
    customers: int
    predicted: float  # mean predicted purchase days in the holdout
    actual: float  # mean purchase days in the holdout


def calibration(days: Mapping[int, float], split_day: int) -> Summary | None:
    """A buyer's summary on the day before ``split_day`` (None if they first bought later)."""
    before = {d: v for d, v in days.items() if d < split_day}
    return summarize(before, split_day - 1) if before else None


def actual_days(days: Mapping[int, float], split_day: int, end_day: int) -> int:
    """Purchase days from ``split_day`` to ``end_day``, both included."""
    return sum(1 for d in days if split_day <= d <= end_day)


def deciles(
    model: ClvModel,
    buyers: Sequence[Mapping[int, float]],
    *,
    split_day: int,
    end_day: int,
    groups: int = 10,
) -> list[Decile]:
    """Predicted against actual purchase days in ``[split_day, end_day]``, by decile of
    the prediction (lowest first), over the buyers who bought before ``split_day``."""
    horizon = end_day - split_day + 1
    scored = []
    bg = model.bgnbd
    for days in buyers:
        s = calibration(days, split_day)
        if s is None:
            continue
        predicted = bg.expected_purchases(horizon, s.x, s.t_x, s.T)
        scored.append((predicted, actual_days(days, split_day, end_day)))
    scored.sort(key=lambda pa: pa[0])
    n = len(scored)
    out = []
    for g in range(groups):
        part = scored[g * n // groups : (g + 1) * n // groups]
        if part:
            out.append(
                Decile(
                    g + 1,
                    len(part),
                    sum(p for p, _ in part) / len(part),
                    sum(a for _, a in part) / len(part),
                )
            )
    return out
