"""`segstream verify`: read the input topics again and compare with Redis."""

from __future__ import annotations

import time
from collections import defaultdict

from kafka import TopicPartition
from tqdm import tqdm

from segmenters.core import Source, recompute
from segmenters.events import Event, InvalidEvent
from segmenters.eventtime import partition_clock
from segmenters.state import CustomerState
from segmenters.verify import (
    Report,
    cluster_agreement,
    compare,
    prediction_agreement,
    value_agreement,
)
from streams.kafka.clients import kafka_consumer
from streams.kafka.topics import ERASED, INPUTS
from streams.settings import Settings
from streams.store.clv import read_clv_model
from streams.store.scans import stored_states
from streams.worker.pipeline import Record, parse_record


class VerifyError(RuntimeError):
    """Verification cannot run; the message says why."""


def read_inputs(
    settings: Settings, *, progress: bool = True
) -> tuple[list[tuple[Event, Source]], int]:
    """Every valid event of the input topics, from the beginning to the current end."""
    consumer = kafka_consumer(
        settings,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        parts = []
        for name in INPUTS:
            topic = settings.topic(name)
            for p in sorted(consumer.partitions_for_topic(topic) or []):
                parts.append(TopicPartition(topic, p))
        if not parts:
            raise VerifyError(
                f"no input topics {settings.topic('events.*')} on {settings.kafka_bootstrap}: "
                "nothing to verify (check SEGSTREAM_TOPIC_PREFIX)"
            )
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        starts = {tp: consumer.position(tp) for tp in parts}
        total = sum(ends[tp] - starts[tp] for tp in parts)
        events: list[tuple[Event, Source]] = []
        invalid = 0
        bar = tqdm(total=total, unit="ev", desc="reading input topics", disable=not progress)
        remaining = {tp for tp in parts if consumer.position(tp) < ends[tp]}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.offset >= ends[tp]:
                        continue
                    bar.update(1)
                    record = Record(
                        tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp / 1000
                    )
                    try:
                        event = parse_record(
                            record,
                            topic_prefix=settings.topic_prefix,
                            max_bytes=settings.max_event_bytes,
                            partitions=settings.topic_partitions,
                            max_future_s=settings.max_future_s,
                        )
                    except InvalidEvent:
                        invalid += 1
                        continue
                    events.append((event, Source(tp.topic, tp.partition, r.offset)))
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        bar.close()
        return events, invalid
    finally:
        consumer.close()


def erased_customers(settings: Settings) -> set[str]:
    """The customers with an erase tombstone (key, no value) on ``customers.erased``.

    Tombstones stay on that compacted topic for its ``delete.retention.ms`` (7 days, as
    long as the input topics keep events), so verify knows every erased customer whose
    old events it can still read."""
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    try:
        topic = settings.topic(ERASED)
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not parts:
            return set()
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        latest: dict[str, bool] = {}  # customer -> erased by its latest record
        remaining = {tp for tp in parts if consumer.position(tp) < ends[tp]}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    if r.key is not None and r.offset < ends[tp]:
                        latest[r.key.decode(errors="replace")] = r.value is None
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
        return {cid for cid, gone in latest.items() if gone}
    finally:
        consumer.close()


def verify(
    settings: Settings, *, progress: bool = True, personas: dict[str, str] | None = None
) -> Report:
    started = time.monotonic()
    events, invalid = read_inputs(settings, progress=progress)
    by_partition: dict[int, list[tuple[Event, Source]]] = defaultdict(list)
    watermark: dict[int, float] = {}
    for event, source in events:
        by_partition[source.partition].append((event, source))
        at = event.occurred_at.timestamp()
        watermark[source.partition] = max(watermark.get(source.partition, at), at)
    offline: dict[str, CustomerState] = {}
    clocks: dict[str, float] = {}
    for p, items in by_partition.items():
        clock = partition_clock(
            watermark[p],
            lateness=settings.allowed_lateness_s,
            mode=settings.clock,
            wall=time.time(),
        )
        for cid, result in recompute(items, config=settings.engine, until=clock).items():
            offline[cid] = result.state
            clocks[cid] = clock if clock is not None else 0.0
    stored = stored_states(settings, list(offline))
    as_of = max(clocks.values(), default=0.0)
    erased = erased_customers(settings)
    report = compare(stored, offline, clocks, as_of, erased=erased)
    kept = {cid: s for cid, s in offline.items() if cid not in erased}
    ari = cluster_agreement(stored, kept, clocks, settings.clusters, personas)
    for name, value in ari.items():
        if name != "customers":
            report.extra[f"clusters ARI {name}"] = (
                f"{value:.3f} over {int(ari['customers'])} customers"
            )
    model = read_clv_model(settings)
    if model is not None:
        n, same, worst = prediction_agreement(
            stored, kept, clocks, model, settings.clv_horizon_days
        )
        report.extra[f"predictions (value model v{model.version})"] = (
            f"{same} of {n} buyers equal to recomputation (largest relative difference {worst:.1e})"
        )
        if same < n:
            report.field_mismatches["predictions"] += n - same
        report.dimensions["value"] = value_agreement(
            stored, kept, clocks, model, settings.clv_horizon_days, settings.value
        )
    report.extra["events"] = f"{len(events)} valid, {invalid} invalid (dead-lettered)"
    report.extra["seconds"] = f"{time.monotonic() - started:.1f}"
    return report
