"""What a round produces: batch counters, a customer's outcome, sends in flight, and the
encoded parts of a write (change JSON, outbox entries). What a write does to the shared
indexes is the core's (segmenters/effects.py)."""

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
from segmenters.events import (
    Event,
)


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


def _purchases(items: list[tuple[Event, Source]], result: FoldResult) -> list[Purchase]:
    """The purchases the fold applied (a redelivered one is not counted again)."""
    applied = set(result.applied_ids) if len(items) != result.applied else None
    return [
        Purchase(e.order_id, e.occurred_at.timestamp(), e.total)
        for e, _src in items
        if e.type == "purchase" and (applied is None or e.event_id in applied)
    ]


async def _done() -> None:
    return None


def change_json(change: SegmentChange) -> bytes:
    """The change's JSON, as ``model_dump(mode="json")`` would give it, a few times faster."""
    return orjson.dumps(change.__dict__, option=orjson.OPT_UTC_Z)


def outbox_entries(outcome: Outcome) -> list[bytes]:
    """A write's outbox entries (kept until delivered, sent again after a crash): each
    change with the source of the event that caused it ("timer" for none), then each
    action message with its topic."""
    entries = [
        b'{"source":"%s","change":%s}' % (str(src or "timer").encode(), body)
        for src, (_c, body) in zip(outcome.result.causes, outcome.encoded, strict=True)
    ]
    entries += [
        b'{"topic":"%s","value":%s}' % (topic.encode(), body) for topic, body in outcome.messages
    ]
    return entries
