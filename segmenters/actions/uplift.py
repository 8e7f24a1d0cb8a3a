"""Uplift of each action: treated against control, conversion and revenue per customer.

A customer counts once per action, in the group and at the time of their first
assignment. They converted if they bought in ``(at, at + window_s]``; their revenue is
the sum of those purchases (zero if none). The differences (treated - control) come with
a confidence interval: Newcombe's hybrid score interval for the conversion rates,
Welch's t for the mean revenue per customer (:mod:`segmenters.actions.stats`, docs/actions.md).

An action with fewer than ``min_group`` customers in either group gets no interval: it
is reported as "too few", with its counts, because small groups are where an interval
(or a point estimate read without one) misleads the most.

>>> a = [Assignment("c1", "email/x", "treated", 0.0), Assignment("c2", "email/x", "control", 0.0)]
>>> (r,) = uplift(a, [Purchase("c1", 10.0, 5.0)], window_s=60.0)
>>> r.treated.converted, r.too_few, r.conversion
(1, True, None)
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from segmenters.actions.stats import Interval, newcombe_diff, welch_diff

#: Fewest customers per group for an interval to be shown (SEGSTREAM_UPLIFT_MIN_GROUP).
MIN_GROUP = 30

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
    #: Treated minus control conversion rate; None when :attr:`too_few`.
    conversion: Interval | None
    #: Treated minus control revenue per customer; None when :attr:`revenue_note` says why.
    revenue: Interval | None
    suppressed: dict[str, int] = field(default_factory=dict)
    #: The smallest group size for which intervals were computed.
    min_group: int = MIN_GROUP

    @property
    def too_few(self) -> bool:
        """Either group has fewer than ``min_group`` customers (or none): no interval."""
        return min(self.treated.customers, self.control.customers) < max(self.min_group, 1)

    @property
    def revenue_note(self) -> Literal["too_few", "no_variance"] | None:
        """Why there is no revenue interval: ``too_few`` customers (Welch needs two per
        group), or ``no_variance`` (every amount equal in both groups: usually nobody
        bought, and a zero-width interval would claim a certainty there is not)."""
        if self.revenue is not None:
            return None
        if self.too_few or min(self.treated.customers, self.control.customers) < 2:
            return "too_few"
        return "no_variance"


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
    min_group: int = MIN_GROUP,
    since: float | None = None,
    until: float | None = None,
) -> list[ActionUplift]:
    """Per action (sorted by id): both groups, the differences and suppressions by reason.

    ``suppressions`` are ``(action, reason)`` pairs, e.g. from suppressed decisions.
    Only first assignments with ``since <= at < until`` count (either bound may be None);
    their purchases count over the whole conversion window, even past ``until``.
    Suppressions carry no time and are not filtered.
    """
    first: dict[str, dict[str, Assignment]] = defaultdict(dict)
    for a in sorted(assignments, key=lambda a: a.at):
        first[a.action].setdefault(a.customer_id, a)
    for action in list(first):
        first[action] = {
            c: a
            for c, a in first[action].items()
            if (since is None or a.at >= since) and (until is None or a.at < until)
        }
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
        enough = min(t.customers, c.customers) >= max(min_group, 1)
        results.append(
            ActionUplift(
                action=action,
                treated=t,
                control=c,
                conversion=newcombe_diff(
                    t.converted, t.customers, c.converted, c.customers, level=level
                )
                if enough
                else None,
                revenue=welch_diff(
                    t.revenue_mean,
                    t.revenue_var,
                    t.customers,
                    c.revenue_mean,
                    c.revenue_var,
                    c.customers,
                    level=level,
                )
                if enough
                else None,
                suppressed=dict(sorted(suppressed[action].items())),
                min_group=min_group,
            )
        )
    return results


def parse_when(text: str, *, end: bool = False) -> float:
    """A window bound (``--since``/``--until``) as epoch seconds: an ISO-8601 date or
    datetime, UTC unless it names its offset. A date alone as the ``end`` of a window
    includes that whole day (the bound is the next midnight).

    >>> parse_when("2026-11-01"), parse_when("2026-11-01", end=True)
    (1793491200.0, 1793577600.0)
    >>> parse_when("2026-11-01T10:00:00+01:00") == parse_when("2026-11-01T09:00Z")
    True
    """
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1) if end else start).timestamp()
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or datetime (2026-11-01, 2026-11-01T09:30Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _interval_json(i: Interval | None, level: float, method: str) -> dict[str, Any] | None:
    if i is None:
        return None
    return {"estimate": i.estimate, "low": i.low, "high": i.high, "level": level, "method": method}


def to_json(r: ActionUplift, *, currency: str, level: float = 0.95) -> dict[str, Any]:
    """One action as numbers (no display strings): what ``/api/actions`` and
    ``actions report --json`` give. Rates are fractions, amounts are in ``currency``.

    >>> a = [Assignment(f"c{i}", "ads/x", g, 0.0) for i, g in enumerate(["treated"] * 3)]
    >>> row = to_json(uplift(a, [], window_s=1.0)[0], currency="EUR")
    >>> row["status"], row["control"]["customers"], row["conversion_diff"], row["revenue_note"]
    ('too_few', 0, None, 'too_few')
    """

    def arm(a: Arm) -> dict[str, Any]:
        return {
            "customers": a.customers,
            "converted": a.converted,
            "conversion_rate": a.conversion_rate if a.customers else None,
            "revenue_per_customer": _num(a.revenue_mean) if a.customers else None,
        }

    return {
        "action": r.action,
        "status": "too_few" if r.too_few else "ok",
        "min_group": r.min_group,
        "currency": currency,
        "treated": arm(r.treated),
        "control": arm(r.control),
        "conversion_diff": _interval_json(r.conversion, level, "newcombe-wilson"),
        "revenue_diff": _interval_json(r.revenue, level, "welch"),
        "revenue_note": r.revenue_note,
        "suppressed": dict(r.suppressed),
    }


def _ci(i: Interval | None, scale: float, unit: str) -> str:
    assert i is not None
    return f"{i.estimate * scale:+.2f}{unit} [{i.low * scale:+.2f}, {i.high * scale:+.2f}]"


def _too_few(r: ActionUplift) -> str:
    return (
        f"too few ({r.treated.customers} treated, {r.control.customers} control;"
        f" {max(r.min_group, 1)} each needed)"
    )


def render(results: Iterable[ActionUplift], *, currency: str, level: float = 0.95) -> str:
    """A plain-text table, one line per action (``pp``: percentage points).

    >>> r = uplift([Assignment("c1", "ads/x", "treated", 0.0)], [], window_s=1.0)
    >>> print(render(r, currency="EUR").splitlines()[1])
    ads/x  1  0  0.00%  -  too few (1 treated, 0 control; 30 each needed)  0.00  -  -  -
    """
    pct = f"{level * 100:g}%"
    head = [
        "action",
        "treated",
        "control",
        "conv T",
        "conv C",
        f"Δ conv ({pct} CI)",
        f"rev T ({currency})",
        f"rev C ({currency})",
        f"Δ rev/cust ({currency}, {pct} CI)",
        "suppressed",
    ]
    rows = [head]
    for r in results:
        if r.too_few:
            conv, rev = _too_few(r), "-"
        else:
            conv = _ci(r.conversion, 100.0, " pp")
            rev = _ci(r.revenue, 1.0, "") if r.revenue else "no variance (all amounts equal)"
        rows.append(
            [
                r.action,
                str(r.treated.customers),
                str(r.control.customers),
                f"{r.treated.conversion_rate:.2%}" if r.treated.customers else "-",
                f"{r.control.conversion_rate:.2%}" if r.control.customers else "-",
                conv,
                f"{r.treated.revenue_mean:.2f}" if r.treated.customers else "-",
                f"{r.control.revenue_mean:.2f}" if r.control.customers else "-",
                rev,
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
