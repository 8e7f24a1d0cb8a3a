"""What the worker measures: Prometheus metrics, the dashboard's status and segment flows.

The ingest agent, the timer service and the batch processor call the hooks here with
what they counted (:meth:`Metrics.batch_done`, :meth:`Metrics.batch_failed`,
:meth:`Metrics.timers_fired`, :meth:`Metrics.changes_published`,
:meth:`Metrics.actions_decided`, :meth:`Metrics.action_delivery`); ``/metrics`` and
``/api/status`` call
:meth:`Metrics.refresh`, which reads the consumer's positions and the partition clocks
(``streams.worker.clocks.Clocks``) at that moment, and the config files' reload outcomes
(``streams.worker.reloads.ReloadStatus``). Counters are this worker's since it started;
each worker of a group serves its own.

Flows (how many customers moved from one segment to another) are counted in memory as
changes are published and added to Redis every few seconds by :meth:`Metrics.flush_flows`
(``streams.store.series.add_flows``: per wall-clock minute and per hour, so every
worker's flows add up and the dashboard reads any window of the last week).

The operating figures (counts, lag, freshness) are appended to the ops stream every
``SEGSTREAM_HISTORY_EVERY_S`` by :meth:`Metrics.record_history` (called by the timer
service), one entry per worker, so the dashboard's charts outlive a page and a worker.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from segmenters.eventtime import clock_ahead
from segmenters.reports import OPS_EVENTS, OpsRecord
from streams.store.clients import REDIS_FAILURES
from streams.store.series import add_flows, add_ops
from streams.worker.clocks import Clocks
from streams.worker.pipeline.outcomes import BatchStats
from streams.worker.pipeline.records import Record
from streams.worker.reloads import ReloadStatus

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
LATENESS_BUCKETS = (0, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)


class Metrics:
    """One worker's metrics, in a registry of its own (no process-wide state)."""

    def __init__(
        self,
        clocks: Clocks,
        *,
        prefix: str,
        stall_after_s: float,
        assignment: Callable[[], Iterable[tuple[str, int]]],
        highwater: Callable[[str, int], int | None],
        committed: Callable[[str, int], int | None] = lambda topic, partition: None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_future_s: float = 300.0,
        config: Callable[[], Iterable[ReloadStatus]] = lambda: (),
    ) -> None:
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
        #: Config files whose reloads are reported (the segments file, the policy file).
        self.config = config
        #: Per action id: its channel, and decided by outcome, suppressed by reason, sent
        #: and failed (``/api/status``).
        self.action_totals: dict[str, dict[str, Any]] = {}
        #: This worker in the ops stream, and its counts and time at its last record there.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._recorded: dict[str, int] = {}
        self._recorded_at = self.started

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
        self.m_decided = PCounter(
            "segstream_actions_decided",
            "Retention-action decisions, by action id, channel and outcome (send, control, "
            "scheduled, suppressed).",
            ["action", "channel", "outcome"],
            registry=r,
        )
        self.m_suppressed = PCounter(
            "segstream_actions_suppressed",
            "Retention actions suppressed, by action id, channel and the guard's reason.",
            ["action", "channel", "reason"],
            registry=r,
        )
        self.m_sent = PCounter(
            "segstream_actions_sent",
            "Action messages the broker acknowledged (outbox re-sends included).",
            ["action", "channel"],
            registry=r,
        )
        self.m_failed = PCounter(
            "segstream_actions_failed",
            "Action message sends that failed (kept in the outbox and sent again) or were "
            "dropped (actions turned off).",
            ["action", "channel"],
            registry=r,
        )
        r.register(_ConfigCollector(lambda: self.config()))
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
            "Redis errors, by where they happened (batch, timers, flows, history).",
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
        watermarks = self.clocks.watermarks
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
        """Count a round's decisions: (action id, outcome, reason) -> how many."""
        for (action, outcome, reason), n in decided.items():
            self.m_actions.labels(action, outcome, reason).inc(n)
            totals = self._action(action)
            channel = totals["channel"]
            self.m_decided.labels(action, channel, outcome).inc(n)
            totals["decided"][outcome] = totals["decided"].get(outcome, 0) + n
            if outcome == "suppressed":
                self.m_suppressed.labels(action, channel, reason).inc(n)
                totals["suppressed"][reason] = totals["suppressed"].get(reason, 0) + n

    def action_delivery(self, action: str, channel: str, confirmed: bool) -> None:
        """One action message: acknowledged by the broker, or its send failed."""
        totals = self._action(action, channel)
        if confirmed:
            self.m_sent.labels(action, channel).inc()
            totals["sent"] += 1
        else:
            self.m_failed.labels(action, channel).inc()
            totals["failed"] += 1

    def _action(self, action: str, channel: str | None = None) -> dict[str, Any]:
        totals = self.action_totals.get(action)
        if totals is None:
            totals = self.action_totals[action] = {
                "channel": channel or action.partition("/")[0],  # ids are channel/name
                "decided": {},
                "suppressed": {},
                "sent": 0,
                "failed": 0,
            }
        return totals

    def redis_error(self, where: str) -> None:
        self.totals["redis_errors"] += 1
        self.m_redis_errors.labels(where).inc()

    def timers_fired(self, count: int, lateness: Iterable[float]) -> None:
        self.totals["timers_fired"] += count
        if count:
            self.m_timers.inc(count)
        for late in lateness:
            self.m_timer_lateness.observe(max(late, 0.0))

    def changes_published(self, flows: Mapping[tuple[str, str, str], int]) -> None:
        """Segment changes sent to ``segments.changes``: (dimension, previous segment or
        "", current segment) -> how many."""
        changes = self.totals["changes"]
        pending = self.pending_flows
        for flow, n in flows.items():
            dimension = flow[0]
            changes[dimension] += n
            self.m_changes.labels(dimension).inc(n)
            pending[flow] += n

    async def flush_flows(self, client: Any) -> int:
        """Add the flows counted since the last flush to the minute and hour buckets."""
        if not self.pending_flows:
            return 0
        flows, self.pending_flows = self.pending_flows, Counter()
        try:
            await add_flows(client, self.prefix, flows, self.wall())
        except REDIS_FAILURES:
            self.pending_flows.update(flows)  # kept for the next flush
            self.redis_error("flows")
            raise
        return sum(flows.values())

    async def record_history(self, client: Any, keep_s: float) -> OpsRecord | None:
        """Append to the ops stream this worker's counts since its last record there, and
        its lag and freshness now (as ``/api/status`` shows them). After a Redis failure
        the counts are kept for the next record."""
        status = self.refresh()
        now = status["at"]
        seconds = now - self._recorded_at
        if seconds <= 0:  # the wall clock stepped back: the next record covers this one
            return None
        counts = self.history_counts()
        lags = [r["lag"] for r in status["partitions"] if r["lag"] is not None]
        ages = [r["event_age_s"] for r in status["partitions"] if r["event_age_s"] is not None]
        record = OpsRecord(
            at=now,
            worker=self.worker_id,
            seconds=seconds,
            counts={k: n - self._recorded.get(k, 0) for k, n in counts.items()},
            lag=sum(lags) if lags else None,
            freshness=max(ages) if ages else None,
        )
        try:
            await add_ops(client, self.prefix, record, keep_s)
        except REDIS_FAILURES:
            self.redis_error("history")
            raise
        self._recorded, self._recorded_at = counts, now
        return record

    def history_counts(self) -> dict[str, int]:
        """The counters the ops stream records (``segmenters.reports.OPS_COUNTS`` and
        events by type), totals since the worker started."""
        t = self.totals
        counts = {
            "events": sum(t["events"].values()),
            "deadletters": t["deadletters"],
            "changes": sum(t["changes"].values()),
            "timers": t["timers_fired"],
            "sent": sum(a["sent"] for a in self.action_totals.values()),
        }
        counts.update({OPS_EVENTS + kind: n for kind, n in t["events"].items()})
        return counts

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
        clocks = self.clocks.clocks(partitions)
        watermarks = self.clocks.watermarks
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
            "actions": {
                action: {**t, "decided": dict(t["decided"]), "suppressed": dict(t["suppressed"])}
                for action, t in sorted(self.action_totals.items())
            },
            "config": {s.file: s.to_json() for s in self.config()},
        }

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (gauges refreshed first)."""
        self.refresh()
        return generate_latest(self.registry)


class _ConfigCollector(Collector):
    """The config files' reload outcomes, read when ``/metrics`` is rendered."""

    def __init__(self, statuses: Callable[[], Iterable[ReloadStatus]]) -> None:
        self.statuses = statuses

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(self.statuses()))

    @staticmethod
    def _families(statuses: Iterable[ReloadStatus] = ()) -> list[Metric]:
        loaded = GaugeMetricFamily(
            "segstream_config_reload_success_timestamp_seconds",
            "When the config file's version in force was loaded (unix seconds), per file "
            "(segments, actions) and path.",
            labels=["file", "path"],
        )
        errors = CounterMetricFamily(
            "segstream_config_reload_errors",
            "Loads of the config file that failed (the previous version stays in force).",
            labels=["file"],
        )
        failing = GaugeMetricFamily(
            "segstream_config_last_error",
            "1 while the latest load of the config file failed, with its error; absent once "
            "a load succeeds.",
            labels=["file", "error"],
        )
        for s in statuses:
            if s.loaded_at is not None:
                loaded.add_metric([s.file, str(s.path)], s.loaded_at)
            errors.add_metric([s.file], s.errors)
            if s.failing:
                failing.add_metric([s.file, s.last_error or ""], 1)
        return [loaded, errors, failing]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
