"""The producer of a replay: read, map and sort a file, then send its events to the input
topics, keyed by customer, paced or as fast as possible."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from segmenters.actions.policy import Policy
from streams.tools.replay.common import ReplayError, _time_key, events_until, iso
from streams.tools.replay.mapped import MappingConfig
from streams.tools.replay.read import read_and_map
from streams.tools.replay.report import ReplayStats, actions_notice

log = logging.getLogger(__name__)


def deployment_policy(settings: Any) -> Policy | None:
    """The retention policy the target deployment's workers use (None: actions are off)."""
    from segmenters.actions.policy import DEFAULT_POLICY, PolicyError, load_policy

    if not settings.actions_enabled:
        return None
    if settings.actions_file is None:
        return DEFAULT_POLICY
    try:
        return load_policy(Path(settings.actions_file).read_text())
    except (OSError, PolicyError) as exc:
        raise ReplayError(f"retention policy {settings.actions_file}: {exc}") from None


def replay(
    settings: Any,
    path: Path,
    fmt: str,
    *,
    mapping: MappingConfig | None = None,
    rate: float | None = None,
    limit: int | None = None,
    until: datetime | None = None,
    progress: bool = True,
    no_actions: bool = False,
    announce: Callable[[str], None] | None = None,
    wall: float | None = None,
) -> ReplayStats:
    """Read, map, sort and produce ``path``; ``rate`` events/s, or as fast as possible.

    ``until`` sends only the events dated at or before it (a calibration period; the rest
    are counted in ``after_until``); ``limit`` sends only the first ``limit`` of those in
    time order (so a later full replay sends the same ids again and then the rest).
    Ctrl-C stops early; what was sent is flushed and counted. ``announce`` (a
    ``print``-like callable) gets :func:`actions_notice` before the first event is sent;
    ``no_actions`` marks every record with the ``segstream-no-actions`` header; ``wall``
    defaults to ``time.time()``.
    """
    from tqdm import tqdm

    from streams.kafka.topics import finish, input_producer
    from streams.worker.pipeline import NO_ACTIONS_HEADER

    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ReplayError("--rate must be a positive number of events per second")
    t0 = time.monotonic()
    mapped = read_and_map(path, fmt, mapping=mapping, max_bytes=settings.max_event_bytes)
    stats = ReplayStats(
        file=str(path),
        format=fmt,
        rows=mapped.rows,
        skipped=dict(mapped.skipped),
        notes=dict(mapped.notes),
        read_s=time.monotonic() - t0,
    )
    window, stats.after_until = events_until(mapped.events, until)
    stats.until = None if until is None else iso(until)
    events = window if limit is None else window[: max(0, limit)]
    stats.not_sent = len(window) - len(events)
    if announce is not None:
        times = [_time_key(e).timestamp() for e in events]
        now = float(int(time.time())) if wall is None else wall
        policy = None if no_actions else deployment_policy(settings)
        announce(actions_notice(policy, wall=now, no_actions=no_actions, times=times))
    headers = [(NO_ACTIONS_HEADER, b"1")] if no_actions else None

    producer, topics = input_producer(settings, "replay")
    failures: list[BaseException] = []
    by_type: Counter[str] = Counter()
    bar = tqdm(
        total=len(events),
        unit="ev",
        desc=f"replay {fmt}",
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    sent = 0
    t_send = time.monotonic()
    try:
        for event in events:
            if rate is not None:
                wait = sent / rate - (time.monotonic() - t_send)
                if wait > 0.001:
                    time.sleep(wait)
            future = producer.send(
                topics[event["type"]],
                key=str(event["customer_id"]).encode(),
                value=orjson.dumps(event),
                headers=headers,
            )
            future.add_errback(failures.append)
            by_type[event["type"]] += 1
            sent += 1
            bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
        stats.not_sent += len(events) - sent
    finally:
        bar.close()
        finish(producer)
    if events:
        stats.first_at = events[0]["occurred_at"]
        stats.last_at = events[max(0, sent - 1)]["occurred_at"]
    stats.failed = len(failures)
    stats.events = sent - stats.failed
    stats.by_type = dict(by_type)
    stats.elapsed_s = time.monotonic() - t0
    if failures:
        log.warning("%d events were not delivered; first error: %s", len(failures), failures[0])
    return stats
