"""A seeded simulated workload for the cluster trainer, in process: no Kafka, no Redis.

The simulator's events are folded in event-time steps; after each step every customer's
vector goes to the trainer if it moved enough since the last one sent (as the workers'
feature feed does), then the trainer makes a candidate snapshot, which the given policy
publishes or holds back. Each step, the population's current vectors are scored against
the snapshot in force before and after the step: the same vectors against both, so every
cluster change counted is churn without a change of behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from segmenters.clustering import ClusterModel, DriftMonitor, Trainer
from segmenters.clustering.stability import (
    Decision,
    HoldBack,
    membership_churn,
    review,
    step_towards,
)
from segmenters.config import EngineConfig
from segmenters.core import fold
from segmenters.events import parse_event
from segmenters.features import FEATURES, as_row, feature_vector, moved_enough
from segmenters.state import CustomerState
from streams.tools.simulate import generate

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86400.0

#: (trainer, candidate, model in force, the population's current vectors, event time)
#: -> the model in force after the step.
Policy = Callable[
    [Trainer, ClusterModel, ClusterModel | None, list[tuple[float, ...]], float], ClusterModel
]


def publish_always(
    trainer: Trainer, candidate: ClusterModel, current: ClusterModel | None, rows: list, now: float
) -> ClusterModel:
    return candidate


@dataclass
class Gated:
    """The trainer service's rule as a policy: review the candidate on the trainer's
    recent vectors, publish it, hold it back, or publish a step towards it once the hold
    timed out; ``now`` is event time (seconds)."""

    max_move: float = 0.01
    max_hold_s: float = 6 * 3600.0
    margin: float = 0.1
    hold: HoldBack = field(init=False)
    #: (event time, decision) of every candidate.
    decisions: list[tuple[float, Decision]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hold = HoldBack(self.max_hold_s)

    def __call__(
        self,
        trainer: Trainer,
        candidate: ClusterModel,
        current: ClusterModel | None,
        rows: list[tuple[float, ...]],
        now: float,
    ) -> ClusterModel:
        verdict = review(
            current, candidate, trainer.recent_rows(), max_move=self.max_move, margin=self.margin
        )
        decision = self.hold.decide(verdict, now)
        self.decisions.append((now, decision))
        if current is None:
            return candidate
        if decision.step:
            return step_towards(
                current, candidate, trainer.recent_rows(), self.max_move, self.margin
            )
        return candidate if decision.publish else current

    @property
    def log_lines(self) -> int:
        """Drift lines the trainer service would log."""
        return sum(d.event is not None for _, d in self.decisions)


@dataclass
class Run:
    #: Membership churn of each step (from ``measure_from_day``), and whether the model
    #: in force changed at that step.
    churn: list[float] = field(default_factory=list)
    changed: list[bool] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    published: int = 0
    snapshots: int = 0
    drifts: int = 0
    descriptions: list[dict[int, str]] = field(default_factory=list)

    @property
    def mean_churn(self) -> float:
        return sum(self.churn) / len(self.churn) if self.churn else 0.0


def steps(
    customers: int, seed: int, days: float, events: int, step_days: float
) -> Iterator[tuple[float, dict[str, CustomerState]]]:
    """(event time, every customer's state then) after each step of ``step_days``."""
    duration = days * DAY
    config = EngineConfig()
    states: dict[str, CustomerState] = {}
    pending: dict[str, list] = {}
    end = START.timestamp() + step_days * DAY
    for doc in generate(
        customers, seed=seed, start=START, duration_s=duration, rate=events / duration
    ):
        event = parse_event(orjson.dumps(doc))
        at = event.occurred_at.timestamp()
        while at >= end:
            yield end, _fold(states, pending, config)
            end += step_days * DAY
        pending.setdefault(event.customer_id, []).append((event, None))
    yield end, _fold(states, pending, config)


def _fold(states: dict, pending: dict, config: EngineConfig) -> dict[str, CustomerState]:
    for cid, items in pending.items():
        states[cid] = fold(states.get(cid), cid, items, config=config, owned=True).state
    pending.clear()
    return states


def run(
    policy: Policy = publish_always,
    *,
    customers: int = 600,
    seed: int = 7,
    days: float = 90.0,
    events: int = 60_000,
    step_days: float = 1.0,
    measure_from_day: float = 30.0,
    margin: float = 0.1,
) -> Run:
    """Feed the trainer step by step; churn is measured from ``measure_from_day`` on."""
    trainer = Trainer(6, seed=0)
    monitor = DriftMonitor()
    current: ClusterModel | None = None
    sent: dict[str, tuple[float, ...]] = {}
    out = Run()
    t0 = START.timestamp()
    for now, states in steps(customers, seed, days, events, step_days):
        rows = []
        scale = None if current is None else [current.std[f] for f in FEATURES]
        for cid, state in states.items():
            x = feature_vector(state, now)
            row = as_row(x)
            rows.append(row)
            if current is not None:
                out.drifts += monitor.update(current.assign(x, None, 0.0).distance)
            if moved_enough(None if current is None else sent.get(cid), row, scale):
                sent[cid] = row
                trainer.learn_one(x, cid)
        if not trainer.started:
            continue
        version = (current.version if current else 0) + 1
        candidate = trainer.snapshot(current, version)
        out.snapshots += 1
        after = policy(trainer, candidate, current, rows, now)
        if after is not current:
            out.published += 1
        if current is not None and now - t0 >= measure_from_day * DAY:
            out.churn.append(membership_churn(current, after, rows, margin))
            out.changed.append(after is not current)
            out.times.append(now)
            out.descriptions.append({c.id: c.description for c in after.clusters})
        current = after
    return out
