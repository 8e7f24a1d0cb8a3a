"""The deterministic generator: every customer's events, merged in event time."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.tools.simulate.catalog import PLACES
from streams.tools.simulate.customers import _Customer, _new_customer
from streams.tools.simulate.personas import LAPSED_ACTIVITY, customer_id, personas
from streams.tools.simulate.sessions import _Planner


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _stream(
    customers: int, *, seed: int, start: datetime, duration_s: float, rate: float
) -> Iterator[tuple[float, _Customer, dict[str, Any]]]:
    """(seconds after ``start``, customer, event) for :func:`generate` and :func:`simulate`."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of events per second")
    if not duration_s >= 0 or not math.isfinite(duration_s):
        raise ValueError("duration_s must be a non-negative number of seconds")
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)

    rng = random.Random(f"segstream-traffic-{seed}")
    mix = personas(customers, seed)
    population = [_new_customer(rng, i, seed, mix[i]) for i in range(customers)]
    cumulative: list[float] = []
    total_weight = 0.0
    for c in population:
        total_weight += c.behaviour.activity
        cumulative.append(total_weight)
    planner = _Planner(rng, seed)

    n_events = round(rate * duration_s)
    step_us = 1e6 / rate
    geo_of = {
        place: {"country": place[0], "region": place[1], "city": place[2]} for place in PLACES
    }
    for n in range(n_events):
        while True:
            i = bisect.bisect_right(cumulative, rng.random() * total_weight)
            c = population[min(i, customers - 1)]
            if c.plan or not c.lapsed or rng.random() < LAPSED_ACTIVITY:
                break
        if not c.started:
            c.started = True
            body: dict[str, Any] = {"type": "profile", "attributes": dict(c.profile)}
        else:
            if not c.plan:
                c.plan.extend(planner.session(c))
            body = c.plan.popleft()
        # Stratified jitter: event n falls in [n, n + 1) steps, so times never go back.
        offset_us = math.floor((n + rng.random()) * step_us)
        event = {
            "schema_version": 1,
            "event_id": f"sim-{seed}-{n}",
            "customer_id": c.id,
            "occurred_at": _iso(start + timedelta(microseconds=offset_us)),
            "geo": dict(geo_of[c.place]),
            **body,
        }
        yield offset_us / 1e6, c, event


def generate(
    customers: int,
    *,
    seed: int,
    start: datetime,
    duration_s: float,
    rate: float,
    truth: dict[str, str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield ``round(rate * duration_s)`` contract-v1 event dicts from ``customers`` customers.

    Events are spread over ``duration_s`` seconds of event time from ``start`` (a naive
    ``start`` is taken as UTC), in non-decreasing ``occurred_at`` order. Each customer's
    first event is its ``profile``. If ``truth`` is given, it is filled with the persona of
    every customer (``customer_id -> persona``) before the first event is yielded.
    """
    if truth is not None:
        truth.update((customer_id(i, seed), p) for i, p in enumerate(personas(customers, seed)))
    for _, _, event in _stream(customers, seed=seed, start=start, duration_s=duration_s, rate=rate):
        yield event
