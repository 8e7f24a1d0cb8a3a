"""What a round produces and what a write needs: batch counters, a customer's outcome,
sends in flight, and the index, histogram, outbox and decision records of a write."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmenters.actions import Decision
from segmenters.actions.retention import Purchase
from segmenters.changes import SegmentChange
from segmenters.core import (
    FoldResult,
    Source,
)
from segmenters.dimensions.rfm import histogram_buckets
from segmenters.events import (
    Event,
)
from segmenters.state import CustomerState
from streams.store import Write


@dataclass(slots=True)
class BatchStats:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    deadletters: int = 0
    changes: int = 0
    resent: int = 0
    conflicts: int = 0
    customers: int = 0
    timers: int = 0
    round_trips: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Action messages sent; decisions by (action, outcome, reason).
    actions_sent: int = 0
    decided: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: Seconds per stage: ``parse`` (records to events, grouped by customer), ``fold``
    #: (segments: fold, tick or rescore), ``decide`` (retention actions and their
    #: messages), ``encode`` (what the write needs: change JSON, outbox, index and
    #: histogram moves, due time, id digests, the documents and script arguments),
    #: ``redis`` (the load and commit round trips), ``send`` (to the producer, and the
    #: broker's acknowledgements).
    stages: dict[str, float] = field(default_factory=dict)
    #: With deferred delivery: done when the broker acknowledged every send of the batch
    #: (its input offsets may be committed then); None when they were awaited.
    sent: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class InFlight:
    """Sends of the last batch not yet acknowledged, and the customers whose outbox
    they deliver (emptied by the next write once acknowledged)."""

    sent: asyncio.Future[Any]
    customers: list[str]


@dataclass(slots=True)
class Outcome:
    """One customer's part of a round: the fold's result, its changes' JSON (encoded once
    for the outbox and Kafka), and the actions decided with their messages."""

    result: FoldResult
    encoded: list[tuple[SegmentChange, bytes]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    #: (topic, message JSON) to send, in decision order.
    messages: list[tuple[str, bytes]] = field(default_factory=list)


#: Suppression reasons that are not a guard's verdict and stay out of the report.
UNCOUNTED = frozenset({"duplicate"})


def _record_decisions(write: Write, decisions: list[Decision]) -> None:
    """The uplift records of a write: every assignment (the script keeps the first) and
    the counted suppressions."""
    for d in decisions:
        a = d.assignment()
        if a is not None:
            write.assigned.append((d.experiment, d.action, a.group, a.at))
        elif d.outcome == "suppressed" and d.reason not in UNCOUNTED:
            write.suppressed.append((d.experiment, d.action, d.reason))


def _purchases(items: list[tuple[Event, Source]], result: FoldResult) -> list[Purchase]:
    """The purchases the fold applied (a redelivered one is not counted again)."""
    applied = set(result.applied_ids) if len(items) != result.applied else None
    return [
        Purchase(e.order_id, e.occurred_at.timestamp(), e.total)
        for e, _src in items
        if e.type == "purchase" and (applied is None or e.event_id in applied)
    ]


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


async def _done() -> None:
    return None


def change_json(change: SegmentChange) -> bytes:
    """The change's JSON, as ``model_dump(mode="json")`` would give it, a few times faster."""
    return orjson.dumps(change.__dict__, option=orjson.OPT_UTC_Z)


def _marks(state: CustomerState | None) -> tuple[dict[str, str], dict[str, int]]:
    """What the shared indexes hold of a state before it changes: segments, RFM buckets."""
    if state is None:
        return {}, {}
    return {d: str(v[0]) for d, v in state.segments.items()}, histogram_buckets(state)


def _index_ops(before: dict[str, str], after: CustomerState) -> list[tuple[bool, str, str]]:
    """Segment-index updates: remove from the old segment, add to the new one."""
    ops: list[tuple[bool, str, str]] = []
    for dimension, (segment, _since) in after.segments.items():
        old = before.get(dimension)
        if old != segment:
            if old is not None:
                ops.append((False, dimension, old))
            ops.append((True, dimension, segment))
    return ops


def _histogram_ops(old: dict[str, int], new: dict[str, int]) -> list[tuple[str, int, int]]:
    """Moves in the shared RFM histograms: (histogram, bucket, +1/-1)."""
    ops = []
    for hist in ("recency", "frequency", "monetary"):
        if old.get(hist) != new.get(hist):
            if hist in old:
                ops.append((hist, old[hist], -1))
            if hist in new:
                ops.append((hist, new[hist], 1))
    return ops
