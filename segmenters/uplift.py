"""Uplift of each action: treated against control, conversion and revenue per customer.

A customer counts once per action, in the group and at the time of their first
assignment. They converted if they bought in ``(at, at + window_s]``; their revenue is
the sum of those purchases (zero if none). The differences (treated - control) come with
a confidence interval: normal approximation for the conversion rates, Welch's t for the
mean revenue per customer (see docs/actions.md).

>>> a = [Assignment("c1", "email/x", "treated", 0.0), Assignment("c2", "email/x", "control", 0.0)]
>>> [r.treated.converted for r in uplift(a, [Purchase("c1", 10.0, 5.0)], window_s=60.0)]
[1]
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .stats import Interval, proportion_diff, welch_diff

Group = Literal["treated", "control"]


@dataclass(frozen=True)
class Assignment:
    """A customer put in a group of an action at a time (a ``send`` or ``control`` decision)."""

    customer_id: str
    action: str
    group: Group
    at: float


@dataclass(frozen=True)
class Purchase:
    customer_id: str
    at: float
    amount: float


@dataclass(frozen=True)
class Arm:
    """One group of one action: customers, how many converted, revenue per customer."""

    customers: int
    converted: int
    revenue_mean: float
    revenue_var: float

    @property
    def conversion_rate(self) -> float:
        return self.converted / self.customers if self.customers else 0.0


@dataclass(frozen=True)
class ActionUplift:
    action: str
    treated: Arm
    control: Arm
    #: Treated minus control conversion rate, None if a group is empty.
    conversion: Interval | None
    #: Treated minus control revenue per customer, None if a group has fewer than two.
    revenue: Interval | None
    suppressed: dict[str, int] = field(default_factory=dict)


def _arm(outcomes: list[tuple[bool, float]]) -> Arm:
    revenues = [r for _, r in outcomes]
    return Arm(
        customers=len(outcomes),
        converted=sum(1 for c, _ in outcomes if c),
        revenue_mean=statistics.fmean(revenues) if revenues else 0.0,
        revenue_var=statistics.variance(revenues) if len(revenues) > 1 else 0.0,
    )


def uplift(
    assignments: Iterable[Assignment],
    purchases: Iterable[Purchase],
    *,
    window_s: float,
    suppressions: Iterable[tuple[str, str]] = (),
    level: float = 0.95,
) -> list[ActionUplift]:
    """Per action (sorted by id): both groups, the differences and suppressions by reason.

    ``suppressions`` are ``(action, reason)`` pairs, e.g. from suppressed decisions.
    """
    first: dict[str, dict[str, Assignment]] = defaultdict(dict)
    for a in sorted(assignments, key=lambda a: a.at):
        first[a.action].setdefault(a.customer_id, a)
    bought: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in purchases:
        bought[p.customer_id].append((p.at, p.amount))
    for lst in bought.values():
        lst.sort()
    times = {c: [t for t, _ in lst] for c, lst in bought.items()}
    suppressed: dict[str, Counter[str]] = defaultdict(Counter)
    for action, reason in suppressions:
        suppressed[action][reason] += 1

    results = []
    for action in sorted(set(first) | set(suppressed)):
        groups: dict[str, list[tuple[bool, float]]] = {"treated": [], "control": []}
        for customer, a in first.get(action, {}).items():
            ts = times.get(customer, [])
            lo = bisect.bisect_right(ts, a.at)
            hi = bisect.bisect_right(ts, a.at + window_s)
            amounts = [amount for _, amount in bought[customer][lo:hi]] if hi > lo else []
            groups[a.group].append((bool(amounts), sum(amounts)))
        t, c = _arm(groups["treated"]), _arm(groups["control"])
        results.append(
            ActionUplift(
                action=action,
                treated=t,
                control=c,
                conversion=proportion_diff(
                    t.converted, t.customers, c.converted, c.customers, level=level
                ),
                revenue=welch_diff(
                    t.revenue_mean,
                    t.revenue_var,
                    t.customers,
                    c.revenue_mean,
                    c.revenue_var,
                    c.customers,
                    level=level,
                ),
                suppressed=dict(sorted(suppressed[action].items())),
            )
        )
    return results


def _ci(i: Interval | None, scale: float, unit: str) -> str:
    if i is None:
        return "n/a"
    return f"{i.estimate * scale:+.2f}{unit} [{i.low * scale:+.2f}, {i.high * scale:+.2f}]"


def render(results: Iterable[ActionUplift], *, level: float = 0.95) -> str:
    """A plain-text table, one line per action (``pp``: percentage points).

    >>> r = uplift([Assignment("c1", "ads/x", "treated", 0.0)], [], window_s=1.0)
    >>> print(render(r).splitlines()[1])
    ads/x  1  0  0.00%  0.00%  n/a  0.00  0.00  n/a  -
    """
    pct = f"{level * 100:g}%"
    head = [
        "action",
        "treated",
        "control",
        "conv T",
        "conv C",
        f"Δ conv ({pct} CI)",
        "rev T",
        "rev C",
        f"Δ rev/cust ({pct} CI)",
        "suppressed",
    ]
    rows = [head]
    for r in results:
        rows.append(
            [
                r.action,
                str(r.treated.customers),
                str(r.control.customers),
                f"{r.treated.conversion_rate:.2%}",
                f"{r.control.conversion_rate:.2%}",
                _ci(r.conversion, 100.0, " pp"),
                f"{r.treated.revenue_mean:.2f}",
                f"{r.control.revenue_mean:.2f}",
                _ci(r.revenue, 1.0, ""),
                " ".join(f"{k}={v}" for k, v in r.suppressed.items()) or "-",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    left = {0, 5, 8, 9}
    lines = [
        "  ".join(
            cell.ljust(w) if i in left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
