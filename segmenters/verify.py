"""Offline verification: what the engine stored against an exact recomputation.

``segstream verify`` reads every input event again, folds each customer's events from
scratch (the same rules, no shortcuts), fires the timers due by each partition's clock,
scores RFM against **exact** quantiles of the final population, and compares each
dimension and each state field with what is in Redis.

Erased customers (a tombstone on ``customers.erased``) are listed apart and not
compared: the input topics still hold their events from before the erase, which no
longer count in Redis, so a comparison would call every one of them a mismatch.

>>> exact_quantiles([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
(2.0, 4.0, 6.0, 8.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenters.clv.model import ClvModel, Prediction
from segmenters.clv.summary import day_of, summary_at
from segmenters.config import ValueConfig
from segmenters.dimensions.rfm import QUANTILES, RfmQuantiles, bucket, rfm
from segmenters.dimensions.value import DIMENSION as VALUE
from segmenters.dimensions.value import ValueQuantiles, ranked_clv, score, value_segment
from segmenters.state import CustomerState

DAY = 86400.0

#: State fields compared exactly: every count, sum and time (so no event lost or counted
#: twice), profile and location, and the purchase days the value models summarise.
FIELDS = (
    "events",
    "orders",
    "revenue",
    "items",
    "refunds",
    "refunded",
    "first_seen",
    "last_seen",
    "first_order_at",
    "last_order_at",
    "cart_at",
    "devices",
    "channels",
    "geo",
    "profile",
    "buy_days",
    "refund_days",
)
DIMENSIONS = ("journey", "rfm", "demographic", "geographic", "interest", "behaviour")


def exact_quantiles(values: Sequence[float], qs: Sequence[float] = QUANTILES) -> tuple[float, ...]:
    """Inverse-CDF quantiles: the smallest value with at least a share ``q`` at or below it."""
    ordered = sorted(values)
    if not ordered:
        return tuple(0.0 for _ in qs)
    return tuple(float(ordered[max(0, math.ceil(q * len(ordered)) - 1)]) for q in qs)


def exact_rfm_quantiles(states: Sequence[CustomerState], as_of: float) -> RfmQuantiles:
    buyers = [s for s in states if s.orders > 0 and s.last_order_at is not None]
    return RfmQuantiles(
        recency_days=exact_quantiles(
            [(as_of - s.last_order_at) / DAY for s in buyers if s.last_order_at is not None]
        ),
        frequency=exact_quantiles([s.orders for s in buyers]),
        monetary=exact_quantiles([s.revenue for s in buyers]),
        buyers=len(buyers),
        as_of=as_of,
    )


@dataclass
class DimensionAgreement:
    compared: int = 0
    agree: int = 0
    examples: list[tuple[str, Any, Any]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.agree / self.compared if self.compared else 1.0


@dataclass
class Report:
    customers_offline: int = 0
    customers_stored: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    #: Erased customers the input still names: listed, not compared.
    erased: list[str] = field(default_factory=list)
    dimensions: dict[str, DimensionAgreement] = field(default_factory=dict)
    field_mismatches: Counter[str] = field(default_factory=Counter)
    field_examples: dict[str, tuple[str, Any, Any]] = field(default_factory=dict)
    quantiles: RfmQuantiles | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        exact = ("journey", "demographic", "geographic")
        return (
            not self.missing
            and not self.field_mismatches
            and all(self.dimensions[d].share == 1.0 for d in exact if d in self.dimensions)
        )


def adjusted_rand_index(a: Sequence[Any], b: Sequence[Any]) -> float:
    """Agreement of two clusterings of the same items, 1.0 identical, ~0 random.

    >>> adjusted_rand_index([0, 0, 1, 1], ["x", "x", "y", "y"])
    1.0
    """
    n = len(a)
    if n < 2:
        return 1.0
    pairs = Counter(zip(a, b, strict=True))

    def comb2(x: int) -> float:
        return x * (x - 1) / 2

    index = sum(comb2(c) for c in pairs.values())
    sum_a = sum(comb2(c) for c in Counter(a).values())
    sum_b = sum(comb2(c) for c in Counter(b).values())
    expected = sum_a * sum_b / comb2(n)
    maximum = (sum_a + sum_b) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


def compare(
    stored: Mapping[str, CustomerState],
    offline: Mapping[str, CustomerState],
    clocks: Mapping[str, float],
    as_of: float,
    erased: Collection[str] = (),
) -> Report:
    """Compare stored states with offline ones; ``clocks`` is each customer's clock.

    ``erased`` customers are listed in ``report.erased`` (those the input or Redis
    names) and left out of every comparison, the exact RFM quantiles included (the
    erase took them out of the worker's histograms too).

    >>> a = CustomerState("c-1", events=1)
    >>> r = compare({}, {"c-1": a}, {"c-1": 0.0}, 0.0, erased={"c-1"})
    >>> r.erased, r.missing, r.ok
    (['c-1'], [], True)
    """
    gone = set(erased)
    report = Report(customers_offline=len(offline), customers_stored=len(stored))
    report.erased = sorted(gone & (set(offline) | set(stored)))
    offline = {cid: s for cid, s in offline.items() if cid not in gone}
    stored = {cid: s for cid, s in stored.items() if cid not in gone}
    report.missing = sorted(set(offline) - set(stored))
    report.unexpected = sorted(set(stored) - set(offline))
    q = exact_rfm_quantiles(list(offline.values()), as_of)
    report.quantiles = q
    dims = {d: DimensionAgreement() for d in DIMENSIONS}
    for cid, want in offline.items():
        got = stored.get(cid)
        if got is None:
            continue
        for name in FIELDS:
            a, b = getattr(got, name), getattr(want, name)
            if not _same(a, b):
                report.field_mismatches[name] += 1
                report.field_examples.setdefault(name, (cid, a, b))
        expected = {
            d: want.segment(d) for d in ("journey", "demographic", "geographic", "interest")
        }
        scored = rfm(want, clocks.get(cid, as_of), q)
        expected["rfm"] = None if scored is None else scored[0]
        for d, value in expected.items():
            if value is None and got.segment(d) is None:
                continue
            agreement = dims[d]
            agreement.compared += 1
            if got.segment(d) == value:
                agreement.agree += 1
            elif len(agreement.examples) < 5:
                agreement.examples.append((cid, got.segment(d), value))
    # behaviour before a first model, interest on data without categories: not shown
    report.dimensions = {
        d: a for d, a in dims.items() if d not in ("behaviour", "interest") or a.compared
    }
    return report


def cluster_agreement(
    stored: Mapping[str, CustomerState],
    offline: Mapping[str, CustomerState],
    clocks: Mapping[str, float],
    k: int,
    personas: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """ARI of the stored behaviour clusters against batch k-means on the final feature
    vectors (scaled as the model does: standardised), and against true personas if known."""
    from segmenters.clustering import batch_kmeans
    from segmenters.features import FEATURES, feature_vector

    cids = sorted(c for c in offline if c in stored and stored[c].segment("behaviour"))
    if len(cids) < 2:
        return {}
    vectors = [feature_vector(offline[c], clocks[c]) for c in cids]
    cols = list(zip(*[[v[f] for f in FEATURES] for v in vectors], strict=True))
    means = [sum(col) / len(col) for col in cols]
    stds = [
        max(0.05, (sum((x - m) ** 2 for x in col) / len(col)) ** 0.5)
        for col, m in zip(cols, means, strict=True)
    ]
    points = [
        [(v[f] - m) / s for f, m, s in zip(FEATURES, means, stds, strict=True)] for v in vectors
    ]
    online = [stored[c].segment("behaviour") for c in cids]
    out = {"vs batch k-means": adjusted_rand_index(online, batch_kmeans(points, k))}
    if personas:
        known = [i for i, c in enumerate(cids) if c in personas]
        out["vs true personas"] = adjusted_rand_index(
            [online[i] for i in known], [personas[cids[i]] for i in known]
        )
    out["customers"] = float(len(cids))
    return out


def prediction_agreement(
    stored: Mapping[str, CustomerState],
    offline: Mapping[str, CustomerState],
    clocks: Mapping[str, float],
    model: ClvModel,
    horizon_days: float,
) -> tuple[int, int, float]:
    """The value models' predictions from the stored and the recomputed state of each
    buyer, with the same snapshot and T at the customer's clock day: (buyers compared,
    buyers whose four figures agree to 1e-9 relative, the largest relative difference).

    >>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426)
    >>> s = CustomerState("c-1", buy_days={"1": 10.0, "5": 20.0})
    >>> prediction_agreement({"c-1": s}, {"c-1": s}, {"c-1": 9 * 86_400.0}, m, 365.0)
    (1, 1, 0.0)
    """
    compared = agree = 0
    worst = 0.0
    for cid, want in offline.items():
        got = stored.get(cid)
        if got is None or not (want.buy_days or got.buy_days):
            continue
        today = day_of(clocks.get(cid, 0.0))
        a, b = summary_at(got, today), summary_at(want, today)
        compared += 1
        if a is None or b is None:
            agree += a is b
            continue
        pa, pb = model.predict(a, horizon_days), model.predict(b, horizon_days)
        diffs = [
            abs(x - y) / max(abs(y), 1e-12)
            for x, y in (
                (pa.p_alive, pb.p_alive),
                (pa.expected_orders, pb.expected_orders),
                (pa.expected_order_value, pb.expected_order_value),
                (pa.clv, pb.clv),
            )
        ]
        worst = max(worst, *diffs)
        agree += all(d <= 1e-9 for d in diffs)
    return compared, agree, worst


def value_agreement(
    stored: Mapping[str, CustomerState],
    offline: Mapping[str, CustomerState],
    clocks: Mapping[str, float],
    model: ClvModel,
    horizon_days: float,
    cfg: ValueConfig,
) -> DimensionAgreement:
    """The value segments stored against the rule applied offline: each recomputed buyer
    scored with the snapshot at their clock day, ranked against cuts from the histogram
    of the recomputed alive buyers' CLV (built as the workers build the shared one).

    >>> m = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426)
    >>> s = CustomerState("c-1", buy_days={"1": 10.0, "5": 20.0}, segments={"value": ["low", 0]})
    >>> a = value_agreement({"c-1": s}, {"c-1": s}, {"c-1": 9 * DAY}, m, 365.0, ValueConfig())
    >>> a.compared, a.agree
    (1, 1)
    """
    scored: dict[str, Prediction] = {}
    counts: Counter[int] = Counter()
    for cid, want in offline.items():
        found = score(want, clocks.get(cid, 0.0), model, horizon_days)
        if found is None:
            continue
        scored[cid] = found[1]
        clv = ranked_clv(found[1], cfg)
        if clv:  # as ``value.histogram_bucket``: a CLV of 0 is not counted
            counts[bucket(clv)] += 1
    q = ValueQuantiles.from_counts(counts, cfg)
    out = DimensionAgreement()
    for cid, prediction in scored.items():
        got = stored.get(cid)
        if got is None:
            continue
        want_segment = value_segment(prediction, q, cfg)
        have = got.segment(VALUE)
        if want_segment is None and have is None:
            continue
        out.compared += 1
        if have == want_segment:
            out.agree += 1
        elif len(out.examples) < 5:
            out.examples.append((cid, have, want_segment))
    return out


def render(report: Report) -> str:
    """The human-readable report printed by ``segstream verify``."""
    lines = [
        f"customers: {report.customers_offline} recomputed, {report.customers_stored} stored,"
        f" {len(report.missing)} missing, {len(report.unexpected)} not in the input",
    ]
    if report.erased:
        shown = ", ".join(report.erased[:20]) + (" ..." if len(report.erased) > 20 else "")
        lines.append(f"erased (not compared): {len(report.erased)}: {shown}")
    if report.missing:
        shown = ", ".join(report.missing[:20]) + (" ..." if len(report.missing) > 20 else "")
        lines.append(f"missing from Redis: {shown}")
    lines += [
        "",
        f"{'dimension':<12} {'compared':>9} {'agree':>9} {'agreement':>10}",
    ]
    for name, a in report.dimensions.items():
        lines.append(f"{name:<12} {a.compared:>9} {a.agree:>9} {a.share:>10.2%}")
    for key, value in report.extra.items():
        lines.append(f"{key:<12} {value}")
    lines.append("")
    if report.field_mismatches:
        lines.append(
            "mismatching state fields (customers): "
            + ", ".join(f"{k} {v}" for k, v in report.field_mismatches.most_common())
        )
        for name, (cid, got, want) in report.field_examples.items():
            lines.append(f"  {name}: {cid} stored {got!r}, recomputed {want!r}")
    else:
        lines.append(
            f"state fields: all {len(FIELDS)} equal for every customer ({', '.join(FIELDS)})"
        )
    for name, a in report.dimensions.items():
        for cid, got, want in a.examples[:3]:
            lines.append(f"  {name}: {cid} stored {got}, recomputed {want}")
    if report.quantiles is not None:
        q = report.quantiles
        lines.append(
            f"exact RFM quantiles over {q.buyers} buyers: recency days "
            f"{[round(x, 1) for x in q.recency_days]}, orders {list(q.frequency)}, "
            f"revenue {[round(x, 2) for x in q.monetary]}"
        )
    lines.append("verdict: " + ("OK" if report.ok else "MISMATCH"))
    return "\n".join(lines)
