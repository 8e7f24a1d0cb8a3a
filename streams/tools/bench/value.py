"""The value model's cost: scoring a customer, and fitting.

Scoring is what every evaluation of a buyer pays: the summary from the stored state
(``segmenters.clv.summary.summary_at``) and ``ClvModel.predict``, both in this process.
The buyers are drawn from the BG/NBD and Gamma-Gamma processes themselves with the
published CDNOW parameters, first purchases spread over a year, so their purchase days
are as many and as spread as a real shop's. Two passes over the same states: one timed
as a whole with ``time.process_time`` (CPU mean per customer), one timing each call with
``time.perf_counter_ns`` (p50 and p99). The collector is tuned as in a worker, with the
generated states frozen out of its sight: a worker holds a bounded cache of states, not
100,000 of them. Fitting is ``fit_model`` on the first 10,000 and 100,000 of their
summaries (CPU and wall seconds).
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from segmenters.clv.model import ClvModel, fit_model
from segmenters.clv.summary import Summary, summary_at
from segmenters.state import CustomerState
from streams.tools.bench.latency import percentiles
from streams.worker.app import tune_gc

#: Fader, Hardie and Lee's CDNOW fits (alpha in days).
CDNOW = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)
#: Days over which the synthetic buyers' first purchases are spread.
HISTORY_DAYS = 365
#: The scoring horizon, as the default ``SEGSTREAM_CLV_HORIZON_DAYS``.
HORIZON_DAYS = 365.0
#: Buyers per fit timed.
FITS = (10_000, 100_000)


@dataclass
class ValueCost:
    """Microseconds per customer of each scoring step, and seconds per fit."""

    customers: int = 0
    #: Mean purchase days per buyer (first included).
    purchase_days: float = 0.0
    #: step -> CPU microseconds per customer over the whole pass.
    cpu_us: dict[str, float] = field(default_factory=dict)
    #: step -> {n, p50, p95, p99} of each call's microseconds.
    call_us: dict[str, dict[str, float]] = field(default_factory=dict)
    #: buyers -> (CPU seconds, wall seconds) of one fit.
    fits: dict[int, tuple[float, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "purchase_days": self.purchase_days,
            "cpu_us": self.cpu_us,
            "call_us": self.call_us,
            "fits": {str(n): {"cpu_s": c, "wall_s": w} for n, (c, w) in self.fits.items()},
        }


def synthetic_buyers(
    n: int, *, seed: int = 13, model: ClvModel = CDNOW, days: int = HISTORY_DAYS
) -> tuple[list[CustomerState], int]:
    """``n`` buyers' states from the model's own processes, and the day they are scored
    on. Each buyer's first purchase is on a uniform day of ``days``; while alive they buy
    as a Poisson process (rate Gamma(r, alpha) per day) and drop out after each repeat
    purchase with a Beta(a, b) probability; a purchase day's value is Gamma(p, nu), nu Gamma(q, v)
    per buyer. Days are whole UTC days, as the states store them.

    >>> states, today = synthetic_buyers(3, seed=1)
    >>> today, [len(s.buy_days) >= 1 for s in states]
    (365, [True, True, True])
    """
    rng = random.Random(seed)
    p, q, v = model.p or 6.25, model.q or 3.74, model.v or 15.44
    states = []
    for i in range(n):
        rate = rng.gammavariate(model.r, 1.0 / model.alpha_days)
        drop = rng.betavariate(model.a, model.b)
        nu = rng.gammavariate(q, 1.0 / v)
        t = rng.uniform(0.0, days)
        buys = {str(int(t)): round(rng.gammavariate(p, 1.0 / nu), 2)}
        while rate > 0.0:
            t += rng.expovariate(rate)
            if t >= days:
                break
            day = str(int(t))
            buys[day] = round(buys.get(day, 0.0) + rng.gammavariate(p, 1.0 / nu), 2)
            if rng.random() < drop:  # drop-outs follow repeat purchases only
                break
        states.append(CustomerState(f"b{i}", buy_days=buys))
    return states, days


def scoring_cost(
    states: Sequence[CustomerState], today: int, model: ClvModel = CDNOW
) -> tuple[dict[str, float], dict[str, dict[str, float]], list[Summary]]:
    """CPU microseconds per customer of each step over a whole pass, the spread of each
    call's microseconds, and the summaries."""
    n = max(1, len(states))
    cpu = time.process_time()
    summaries = [s for s in (summary_at(state, today) for state in states) if s is not None]
    summary_cpu = time.process_time() - cpu
    cpu = time.process_time()
    for s in summaries:
        model.predict(s, HORIZON_DAYS)
    predict_cpu = time.process_time() - cpu
    clock = time.perf_counter_ns
    summary_ns: list[float] = []
    predict_ns: list[float] = []
    total_ns: list[float] = []
    for state in states:
        t0 = clock()
        summary = summary_at(state, today)
        t1 = clock()
        if summary is not None:
            model.predict(summary, HORIZON_DAYS)
        t2 = clock()
        summary_ns.append((t1 - t0) / 1e3)
        predict_ns.append((t2 - t1) / 1e3)
        total_ns.append((t2 - t0) / 1e3)
    cpu_us = {
        "summary": summary_cpu * 1e6 / n,
        "predict": predict_cpu * 1e6 / n,
        "total": (summary_cpu + predict_cpu) * 1e6 / n,
    }
    calls = {
        "summary": percentiles(summary_ns),
        "predict": percentiles(predict_ns),
        "total": percentiles(total_ns),
    }
    return cpu_us, calls, summaries


def fit_cost(summaries: Sequence[Summary], buyers: int) -> tuple[float, float]:
    """CPU and wall seconds of ``fit_model`` on the first ``buyers`` summaries."""
    cpu, wall = time.process_time(), time.perf_counter()
    fit_model(summaries[:buyers], fitted_at=0.0, version=1)
    return time.process_time() - cpu, time.perf_counter() - wall


def value_cost(
    customers: int = 100_000,
    *,
    fits: Sequence[int] = FITS,
    say: Callable[[str], None] = print,
) -> ValueCost:
    """Score ``customers`` synthetic buyers, then time a fit on each of ``fits`` buyers
    (those above ``customers`` are left out)."""
    say(f"value model: scoring {customers:,} synthetic buyers (CDNOW parameters) in process")
    states, today = synthetic_buyers(customers)
    res = ValueCost(customers=len(states))
    res.purchase_days = sum(len(s.buy_days) for s in states) / max(1, len(states))
    threshold = gc.get_threshold()
    tune_gc()
    try:
        res.cpu_us, res.call_us, summaries = scoring_cost(states, today)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    for n in fits:
        if n <= len(summaries):
            say(f"  fitting on {n:,} buyers")
            res.fits[n] = fit_cost(summaries, n)
    return res


def render_value(res: ValueCost) -> str:
    """The value-model table (markdown).

    >>> r = ValueCost(customers=10, purchase_days=1.5, fits={10_000: (2.0, 2.1)},
    ...     cpu_us={"summary": 3.0, "predict": 5.0, "total": 8.0},
    ...     call_us={k: {"n": 10, "p50": 2.0, "p95": 3.0, "p99": 4.0}
    ...              for k in ("summary", "predict", "total")})
    >>> print(render_value(r).splitlines()[4])
    | summary (`summary_at`) | 2.0 | 4.0 | 3.0 |
    """
    lines = [
        f"{res.customers:,} synthetic buyers, {res.purchase_days:.2f} purchase days each on "
        f"average; CDNOW parameters, {HORIZON_DAYS:.0f}-day horizon",
        "",
        "| step | p50 us/customer | p99 us/customer | mean CPU us/customer |",
        "|---|---|---|---|",
    ]
    names = {
        "summary": "summary (`summary_at`)",
        "predict": "predict (`ClvModel.predict`)",
        "total": "**scoring, total**",
    }
    for step, name in names.items():
        c = res.call_us.get(step, {})
        lines.append(
            f"| {name} | {c.get('p50', 0.0):.1f} | {c.get('p99', 0.0):.1f} | "
            f"{res.cpu_us.get(step, 0.0):.1f} |"
        )
    for n, (cpu, wall) in sorted(res.fits.items()):
        lines.append(f"| fit (`fit_model`) on {n:,} buyers | | | {cpu:.1f} CPU s ({wall:.1f} s) |")
    return "\n".join(lines)
