"""What the worker measures: Prometheus metrics, the dashboard's status and segment flows.

The ingest agent, the timer service and the change sender call the hooks here
(:meth:`Metrics.batch_done`, :meth:`Metrics.batch_failed`, :meth:`Metrics.timers_fired`,
:meth:`Metrics.change_sent`); ``/metrics`` and ``/api/status`` call :meth:`Metrics.refresh`,
which reads the consumer's positions and the partition clocks at that moment. Counters are
this worker's since it started; each worker of a group serves its own.

Flows (how many customers moved from one segment to another) are counted in memory as
changes are published and added to Redis every few seconds by :meth:`Metrics.flush_flows`:
per wall-clock minute and per hour, ``HINCRBY`` on ``flows_key`` (see ``keys.py``), so
every worker's flows add up and the dashboard reads any window of the last week.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from segmenters.eventtime import clock_ahead
from streams.store.clients import REDIS_FAILURES
from streams.store.keys import flows_key, sizes_key
from streams.worker.pipeline import BatchProcessor, BatchStats, Record

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "read_flows", "read_sizes", "flow_window"]

FLOW_MINUTE_TTL_S = 3 * 3600
FLOW_HOUR_TTL_S = 8 * 86400
#: Windows up to this many seconds are summed from minute buckets, longer ones from hours.
FLOW_MINUTES_UP_TO_S = 3 * 3600 - 120
MAX_FLOW_WINDOW_S = 7 * 86400
SEP = "\x1f"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
LATENESS_BUCKETS = (0, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


class Metrics:
    """One worker's metrics, in a registry of its own (no process-wide state)."""

    def __init__(
        self,
        processor: BatchProcessor,
        *,
        prefix: str,
        stall_after_s: float,
        assignment: Callable[[], Iterable[tuple[str, int]]],
        highwater: Callable[[str, int], int | None],
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        clocks: Callable[[Iterable[int]], dict[int, float]] | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_future_s: float = 300.0,
    ) -> None:
        self.processor = processor
        self.prefix = prefix
        self.stall_after_s = stall_after_s
        self.assignment = assignment
        self.highwater = highwater
        self.committed = committed
        self.clocks = clocks
        self.wall = wall
        self.monotonic = monotonic
        #: A partition clock further ahead of wall time than this is a fault.
        self.max_future_s = max_future_s
        self.started = wall()
        #: (topic, partition) -> next offset to apply (last applied + 1).
        self.positions: dict[tuple[str, int], int] = {}
        #: input partition -> monotonic time an offset of it was last applied (or first seen).
        self.progress_at: dict[int, float] = {}
        self.pending_flows: Counter[tuple[str, str, str]] = Counter()
        self.totals: dict[str, Any] = {
            "messages": 0,
            "deadletters": 0,
            "duplicates": 0,
            "batches": 0,
            "batch_failures": 0,
            "redis_errors": 0,
            "timers_fired": 0,
            "events": Counter(),
            "changes": Counter(),
        }
        self.last_batch: dict[str, float] = {}

        r = self.registry = CollectorRegistry(auto_describe=True)
        self.m_messages = PCounter(
            "segstream_messages", "Input messages consumed (valid or not).", registry=r
        )
        self.m_events = PCounter(
            "segstream_events", "Valid input events, by event type.", ["type"], registry=r
        )
        self.m_deadletters = PCounter(
            "segstream_deadletters", "Input messages sent to the dead-letter topic.", registry=r
        )
        self.m_duplicates = PCounter(
            "segstream_duplicates", "Redelivered events skipped as already applied.", registry=r
        )
        self.m_changes = PCounter(
            "segstream_segment_changes",
            "Segment changes published (re-sends after a failure included), by dimension.",
            ["dimension"],
            registry=r,
        )
        self.m_batch_size = Histogram(
            "segstream_batch_size", "Messages per ingest batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.m_batch_seconds = Histogram(
            "segstream_batch_seconds",
            "Time to process one ingest batch (parse, load, fold, write, publish).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.m_broker_to_state = Histogram(
            "segstream_broker_to_state_seconds",
            "Per message: from its Kafka timestamp (producer send time, or broker append time "
            "on LogAppendTime topics) to its batch's state written and changes acknowledged.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.m_event_time_lag = Histogram(
            "segstream_event_time_lag_seconds",
            "Per batch and input partition: wall time after the batch is written minus the "
            "partition's newest occurred_at.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.m_timers = PCounter("segstream_timers_fired", "Timers fired.", registry=r)
        self.m_actions = PCounter(
            "segstream_action_decisions",
            "Retention-action decisions, by action, outcome and reason (suppressed `stale`: "
            "the change was older than the action's max_age_s; `replay`: it followed events "
            "replayed with --no-actions).",
            ["action", "outcome", "reason"],
            registry=r,
        )
        self.m_timer_lateness = Histogram(
            "segstream_timer_lateness_seconds",
            "Per scan and partition with due timers: the partition clock minus the due time "
            "of its oldest due timer (event-time seconds).",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.m_failures = PCounter(
            "segstream_batch_failures",
            "Ingest batches that raised and were retried, by exception class.",
            ["error"],
            registry=r,
        )
        self.m_redis_errors = PCounter(
            "segstream_redis_errors",
            "Redis errors, by where they happened (batch, timers, flows).",
            ["where"],
            registry=r,
        )
        self.m_lag = Gauge(
            "segstream_consumer_lag",
            "Messages behind the log end offset (consumer's last fetch), per owned input "
            "partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.m_event_age = Gauge(
            "segstream_partition_event_age_seconds",
            "Freshness: wall time now minus the newest occurred_at applied, per owned partition.",
            ["partition"],
            registry=r,
        )
        self.m_clock = Gauge(
            "segstream_partition_clock_seconds",
            "Event-time clock of each owned partition (unix seconds) that fires timers.",
            ["partition"],
            registry=r,
        )
        self.m_ahead = Gauge(
            "segstream_partition_clock_ahead_seconds",
            "How far each owned partition's clock runs ahead of wall time (0 if not); above "
            "SEGSTREAM_MAX_FUTURE_S it is a fault: timers fire early (segstream clock reset).",
            ["partition"],
            registry=r,
        )
        self.m_idle = Gauge(
            "segstream_partition_progress_age_seconds",
            "Seconds since an offset of the partition was last applied (or since it was "
            "first seen).",
            ["partition"],
            registry=r,
        )
        self.m_stalled = Gauge(
            "segstream_partition_stalled",
            "1 if the partition has lag and applied nothing for SEGSTREAM_STALL_AFTER_S.",
            ["partition"],
            registry=r,
        )
        self.m_flows_pending = Gauge(
            "segstream_flows_unflushed",
            "Segment flows counted but not yet added to Redis.",
            registry=r,
        )

    # --- hooks -----------------------------------------------------------------------------
    def batch_done(
        self, records: Sequence[Record], timestamps: Sequence[float | None], stats: BatchStats
    ) -> None:
        """After a batch is written: counters, histograms and the applied positions."""
        now = self.wall()
        mono = self.monotonic()
        t = self.totals
        t["messages"] += stats.events
        t["deadletters"] += stats.deadletters
        t["duplicates"] += stats.duplicates
        t["batches"] += 1
        t["events"].update(stats.by_type)
        self.m_messages.inc(stats.events)
        if stats.deadletters:
            self.m_deadletters.inc(stats.deadletters)
        if stats.duplicates:
            self.m_duplicates.inc(stats.duplicates)
        for kind, n in stats.by_type.items():
            self.m_events.labels(kind).inc(n)
        self.m_batch_size.observe(len(records))
        self.m_batch_seconds.observe(stats.seconds)
        partitions: set[int] = set()
        positions = self.positions
        for r in records:
            key = (r.topic, r.partition)
            if r.offset >= positions.get(key, -1):
                positions[key] = r.offset + 1
            partitions.add(r.partition)
        for p in partitions:
            self.progress_at[p] = mono
        worst = 0.0
        for ts in timestamps:
            if ts:
                delay = max(now - ts, 0.0)
                worst = max(worst, delay)
                self.m_broker_to_state.observe(delay)
        watermarks = self.processor.watermarks
        for p in partitions:
            if p in watermarks:
                self.m_event_time_lag.observe(max(now - watermarks[p], 0.0))
        self.last_batch = {
            "at": now,
            "size": len(records),
            "seconds": stats.seconds,
            "broker_to_state_max_s": worst,
        }

    def batch_failed(self, exc: BaseException) -> None:
        self.totals["batch_failures"] += 1
        self.m_failures.labels(type(exc).__name__).inc()
        if isinstance(exc, REDIS_FAILURES):
            self.redis_error("batch")

    def actions_decided(self, decided: Mapping[tuple[str, str, str], int]) -> None:
        """Count decisions of the actions agent: (action, outcome, reason) -> how many."""
        for (action, outcome, reason), n in decided.items():
            self.m_actions.labels(action, outcome, reason).inc(n)

    def redis_error(self, where: str) -> None:
        self.totals["redis_errors"] += 1
        self.m_redis_errors.labels(where).inc()

    def timers_fired(self, count: int, lateness: Iterable[float]) -> None:
        self.totals["timers_fired"] += count
        if count:
            self.m_timers.inc(count)
        for late in lateness:
            self.m_timer_lateness.observe(max(late, 0.0))

    def change_sent(self, value: bytes) -> None:
        """A segment change (its JSON) went to ``segments.changes``."""
        try:
            change = orjson.loads(value)
            dimension = str(change["dimension"])
            previous = change.get("previous") or ""
            current = str(change["current"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        self.totals["changes"][dimension] += 1
        self.m_changes.labels(dimension).inc()
        self.pending_flows[(dimension, previous, current)] += 1

    async def flush_flows(self, client: Any) -> int:
        """Add the flows counted since the last flush to the minute and hour buckets."""
        if not self.pending_flows:
            return 0
        flows, self.pending_flows = self.pending_flows, Counter()
        now = self.wall()
        minute = flows_key(self.prefix, "m", int(now // 60))
        hour = flows_key(self.prefix, "h", int(now // 3600))
        pipe = client.pipeline(transaction=False)
        for (dimension, previous, current), n in flows.items():
            field = SEP.join((dimension, previous, current))
            pipe.hincrby(minute, field, n)
            pipe.hincrby(hour, field, n)
        pipe.expire(minute, FLOW_MINUTE_TTL_S)
        pipe.expire(hour, FLOW_HOUR_TTL_S)
        try:
            await pipe.execute()
        except REDIS_FAILURES:
            self.pending_flows.update(flows)  # kept for the next flush
            self.redis_error("flows")
            raise
        return sum(flows.values())

    # --- reading ---------------------------------------------------------------------------
    def refresh(self) -> dict[str, Any]:
        """Set the gauges from the consumer and the clocks now; the dashboard's status."""
        now = self.wall()
        mono = self.monotonic()
        owned = sorted({(str(t), int(p)) for t, p in self.assignment()})
        partitions = sorted({p for _, p in owned})
        lag_of: dict[int, int | None] = dict.fromkeys(partitions)
        self.m_lag.clear()
        for topic, p in owned:
            end = self.highwater(topic, p)
            done = self.positions.get((topic, p))
            if done is None:
                done = self.committed(topic, p)
            if end is None or done is None:
                continue
            lag = max(int(end) - int(done), 0)
            self.m_lag.labels(topic, str(p)).set(lag)
            lag_of[p] = (lag_of[p] or 0) + lag
        clocks = self.clocks(partitions) if self.clocks is not None else {}
        watermarks = self.processor.watermarks
        for gauge in (self.m_event_age, self.m_clock, self.m_ahead, self.m_idle, self.m_stalled):
            gauge.clear()
        rows = []
        for p in partitions:
            label = str(p)
            since = self.progress_at.setdefault(p, mono)
            idle = mono - since
            lag = lag_of[p]
            stalled = bool(lag) and idle >= self.stall_after_s
            wm = watermarks.get(p)
            age = None if wm is None else max(now - wm, 0.0)
            self.m_idle.labels(label).set(idle)
            self.m_stalled.labels(label).set(1 if stalled else 0)
            if age is not None:
                self.m_event_age.labels(label).set(age)
            if p in clocks:
                self.m_clock.labels(label).set(clocks[p])
            ahead = clock_ahead(clocks.get(p), now)
            self.m_ahead.labels(label).set(ahead)
            rows.append(
                {
                    "partition": p,
                    "lag": lag,
                    "event_age_s": _round(age),
                    "watermark": wm,
                    "clock": clocks.get(p),
                    "progress_age_s": _round(idle),
                    "stalled": stalled,
                    "clock_ahead_s": _round(ahead),
                    "clock_fault": ahead > self.max_future_s,
                }
            )
        self.m_flows_pending.set(sum(self.pending_flows.values()))
        t = self.totals
        return {
            "at": now,
            "worker": socket.gethostname(),
            "started": self.started,
            "stall_after_s": self.stall_after_s,
            "max_future_s": self.max_future_s,
            "totals": {
                **{k: v for k, v in t.items() if not isinstance(v, Counter)},
                "events": dict(t["events"]),
                "changes": dict(t["changes"]),
            },
            "last_batch": self.last_batch,
            "partitions": rows,
        }

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (gauges refreshed first)."""
        self.refresh()
        return generate_latest(self.registry)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def flow_window(window_s: float, now: float) -> tuple[str, list[int]]:
    """Resolution and buckets that cover the last ``window_s`` seconds.

    >>> flow_window(300, 600.0)
    ('m', [5, 6, 7, 8, 9, 10])
    >>> flow_window(86400, 7200.0)[0], len(flow_window(86400, 7200.0)[1])
    ('h', 25)
    """
    window_s = min(max(window_s, 60.0), MAX_FLOW_WINDOW_S)
    if window_s <= FLOW_MINUTES_UP_TO_S:
        last = int(now // 60)
        return "m", list(range(last - math.ceil(window_s / 60), last + 1))
    last = int(now // 3600)
    return "h", list(range(last - math.ceil(window_s / 3600), last + 1))


async def read_flows(client: Any, prefix: str, window_s: float, now: float) -> dict[str, Any]:
    """Flows per dimension over the window: ``{dimension: [{from, to, count}]}``.

    ``from`` is null for a customer's first segment of the dimension. The window is
    rounded out to whole buckets (minutes up to three hours, hours beyond).
    """
    resolution, buckets = flow_window(window_s, now)
    pipe = client.pipeline(transaction=False)
    for b in buckets:
        pipe.hgetall(flows_key(prefix, resolution, b))
    total: Counter[tuple[str, str, str]] = Counter()
    for row in await pipe.execute():
        for field, n in row.items():
            parts = _text(field).split(SEP)
            if len(parts) == 3:
                total[(parts[0], parts[1], parts[2])] += int(n)
    out: dict[str, list[dict[str, Any]]] = {}
    for (dimension, previous, current), n in sorted(total.items()):
        out.setdefault(dimension, []).append({"from": previous or None, "to": current, "count": n})
    step = 60 if resolution == "m" else 3600
    return {
        "window_s": window_s,
        "resolution": "minute" if resolution == "m" else "hour",
        "since": buckets[0] * step,
        "flows": out,
    }


async def read_sizes(client: Any, prefix: str, count: int) -> dict[str, Any]:
    """The last ``count`` records of the sizes stream, as series per dimension.

    ``at`` holds each record's time (the event-time clock of partition 0 when it was
    taken); ``dimensions[dim][segment][i]`` is the segment's size at ``at[i]`` (0 when the
    segment had no member then).
    """
    entries = await client.xrevrange(sizes_key(prefix), count=count)
    entries.reverse()
    at: list[float] = []
    rows: list[dict[str, int]] = []
    for _id, fields in entries:
        doc = {_text(k): _text(v) for k, v in fields.items()}
        try:
            at.append(float(doc.pop("at")))
        except (KeyError, ValueError):
            continue
        rows.append({k: int(v) for k, v in doc.items()})
    dimensions: dict[str, dict[str, list[int]]] = {}
    names = sorted({k for row in rows for k in row})
    for name in names:
        dimension, _, segment = name.partition(":")
        dimensions.setdefault(dimension, {})[segment] = [row.get(name, 0) for row in rows]
    return {"at": at, "dimensions": dimensions}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
