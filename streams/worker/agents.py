"""The ingest agent: a thin loop from Kafka batches to the batch processor.

One agent reads all four input topics. They are co-partitioned (same key, same
partition count), so a customer's browse, cart, purchase and profile events reach the
same worker and are applied one batch at a time, in order, with no race on its state.
``concurrency=1``: higher values can commit offsets past batches still in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import faust
import orjson

from streams.kafka.topics import FEATURES, INPUTS
from streams.settings import Settings
from streams.worker.delivery import fetch_batches, taken_batches
from streams.worker.pipeline import BatchProcessor, BatchStats, Record, no_actions_of
from streams.worker.progress import ProgressGuard, process_until_done
from streams.worker.trainer import TrainerService

log = logging.getLogger(__name__)
REPORT_EVERY_S = 10.0


class BatchObserver(Protocol):
    """What the agent reports to (``streams.worker.metrics.Metrics``)."""

    def batch_done(
        self, records: Sequence[Record], timestamps: Sequence[float | None], stats: BatchStats
    ) -> None: ...

    def batch_failed(self, exc: BaseException) -> None: ...


class Throughput:
    """Totals since start, logged every few seconds (not per batch)."""

    def __init__(self) -> None:
        self.total = BatchStats()
        self.last_report = time.monotonic()
        self.last_events = 0
        self.batches = 0

    def add(self, s: BatchStats) -> None:
        t = self.total
        t.events += s.events
        t.applied += s.applied
        t.duplicates += s.duplicates
        t.deadletters += s.deadletters
        t.changes += s.changes
        t.resent += s.resent
        t.conflicts += s.conflicts
        t.round_trips += s.round_trips
        for stage, seconds in s.stages.items():
            t.stages[stage] = t.stages.get(stage, 0.0) + seconds
        t.seconds += s.seconds
        self.batches += 1
        now = time.monotonic()
        if now - self.last_report >= REPORT_EVERY_S:
            rate = (t.events - self.last_events) / (now - self.last_report)
            log.info(
                "events %d (%.0f/s) applied %d duplicates %d dead-lettered %d changes %d "
                "batches %d redis round trips %d; us/event %s",
                t.events,
                rate,
                t.applied,
                t.duplicates,
                t.deadletters,
                t.changes,
                self.batches,
                t.round_trips,
                stage_line(t),
            )
            self.last_report, self.last_events = now, t.events


def stage_line(t: BatchStats) -> str:
    """Microseconds per event of each pipeline stage so far, and of whole batches."""
    n = max(1, t.events)
    parts = [f"{k} {v * 1e6 / n:.0f}" for k, v in t.stages.items()]
    return " ".join([*parts, f"batch {t.seconds * 1e6 / n:.0f}"])


def register_trainer(app: faust.App, settings: Settings, trainer: TrainerService) -> None:
    """The cluster trainer's agent, on the one-partition feature topic."""
    topic = app.topic(
        settings.topic(FEATURES), key_serializer="raw", value_serializer="raw", partitions=1
    )

    @app.agent(topic, name=f"{settings.app_id}.trainer", concurrency=1)
    async def train(stream: faust.StreamT) -> None:
        async for events in stream.take_events(500, within=1.0):
            try:
                vectors: list[tuple[str | None, dict[str, float]]] = []
                for e in events:
                    key = e.message.key.decode(errors="replace") if e.message.key else None
                    if e.message.value is not None:
                        vectors.append((key, orjson.loads(e.message.value)))
                    elif key is not None:  # a tombstone: the customer was erased
                        await trainer.learn(vectors)  # what came before it, in order
                        vectors = []
                        await trainer.forget(key)
                await trainer.learn(vectors)
            except Exception:  # the model is a sample's summary: skip a bad batch, go on
                log.exception("cluster trainer failed on a batch of %d vectors", len(events))

    @app.timer(interval=settings.cluster_snapshot_s, name=f"{settings.app_id}.trainer_hold")
    async def end_holds() -> None:
        try:
            await trainer.tick()  # a no-op unless a drifted snapshot is held back
        except Exception:
            log.exception("cluster trainer failed to review a held-back snapshot")


def register_agents(
    app: faust.App,
    settings: Settings,
    processor: BatchProcessor,
    observer: BatchObserver | None = None,
    guard: ProgressGuard | None = None,
) -> None:
    source = app.topic(
        *(settings.topic(name) for name in INPUTS),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    throughput = Throughput()
    # Whole fetches, no hop per message (streams.worker.delivery); else Faust's own batches.
    fetches = fetch_batches(app, source, settings.batch_size)

    @app.agent(source, name=f"{settings.app_id}.ingest", concurrency=1)
    async def ingest(stream: faust.StreamT) -> None:
        batches = (
            fetches
            if fetches is not None
            else taken_batches(stream, settings.batch_size, settings.batch_window_s)
        )
        async for messages in batches:
            records = [
                Record(
                    m.topic,
                    m.partition,
                    m.offset,
                    m.key,
                    m.value,
                    m.timestamp,
                    no_actions=no_actions_of(m.headers),
                )
                for m in messages
            ]
            stats = await process_until_done(
                processor,
                records,
                None if observer is None else observer.batch_failed,
                guard,
                defer=fetches is not None,
            )
            if stats.sent is not None and fetches is not None:
                fetches.ack_after(stats.sent)
            throughput.add(stats)
            if observer is not None:
                try:
                    observer.batch_done(records, [m.timestamp for m in messages], stats)
                except Exception:  # metrics never stop the stream
                    log.exception("recording metrics of a batch failed")
