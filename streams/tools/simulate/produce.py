"""The paced producer behind ``segstream simulate``: events onto the input topics."""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from tqdm import tqdm

from streams.kafka.topics import finish, input_producer
from streams.settings import Settings
from streams.tools.simulate.catalog import UNPACED_RATE
from streams.tools.simulate.generate import _stream
from streams.tools.simulate.personas import customer_id, personas

log = logging.getLogger(__name__)


@dataclass
class SimulationStats:
    """What :func:`simulate` sent.

    ``events`` were delivered, ``failed`` were not; ``by_type`` and ``by_persona`` count
    every event offered to the producer (delivered or not).
    """

    events: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    by_type: dict[str, int] = field(default_factory=dict)
    by_persona: dict[str, int] = field(default_factory=dict)  # events per persona
    customers_by_persona: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Events sent per wall-clock second."""
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0


def simulate(
    settings: Settings,
    *,
    customers: int,
    rate: float,
    duration: float,
    seed: int = 7,
    progress: bool = True,
    truth_path: Path | None = None,
    days: float | None = None,
) -> SimulationStats:
    """Send simulated traffic to Kafka for ``duration`` seconds at ``rate`` events/s.

    Event time is wall time: the events start now and each is sent when it is due.
    With ``days``, the same events span that many days of event time instead, ending
    now: weeks of shop life in a minute, for RFM recency, lapsing and tenure to show.
    ``rate=0`` sends as fast as possible, with event times spaced as if at
    :data:`UNPACED_RATE` events/s (so ``UNPACED_RATE * duration`` events) and ending
    now: an event is never dated after it is sent (workers dead-letter events dated
    more than ``SEGSTREAM_MAX_FUTURE_S`` ahead of their record timestamp).
    Ctrl-C stops early; what was sent is flushed and counted.
    """
    if rate < 0:
        raise ValueError("rate must be >= 0 (0 means as fast as possible)")
    paced = rate > 0
    event_rate = rate if paced else UNPACED_RATE

    mix = personas(customers, seed) if customers >= 1 else ()
    if truth_path is not None:
        truth = {customer_id(i, seed): p for i, p in enumerate(mix)}
        truth_path.parent.mkdir(parents=True, exist_ok=True)
        truth_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))

    producer, topics = input_producer(settings, "simulate")
    failures: list[BaseException] = []
    by_type: Counter[str] = Counter()
    by_persona: Counter[str] = Counter()
    stats = SimulationStats(customers_by_persona=dict(Counter(mix)))

    span = duration if days is None else days * 86400.0
    speed = span / duration if duration > 0 else 1.0  # event seconds per wall second
    if not paced:  # sent at once: event times end now
        start = datetime.now(UTC) - timedelta(seconds=span)
    else:  # each sent when due; with days, the last is due now
        start = datetime.now(UTC) - timedelta(seconds=span - duration if days else 0)
    t0 = time.monotonic()
    bar = tqdm(
        total=round(event_rate * duration),
        unit="ev",
        desc="simulate",
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    try:
        for offset_s, c, event in _stream(
            customers, seed=seed, start=start, duration_s=span, rate=event_rate / speed
        ):
            if paced:
                wait = offset_s / speed - (time.monotonic() - t0)
                if wait > 0.001:
                    time.sleep(wait)
            future = producer.send(
                topics[event["type"]], key=c.id.encode(), value=orjson.dumps(event)
            )
            future.add_errback(failures.append)
            by_type[event["type"]] += 1
            by_persona[c.persona] += 1
            bar.update(1)
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        bar.close()
        finish(producer)
    stats.elapsed_s = time.monotonic() - t0
    stats.failed = len(failures)
    stats.events = sum(by_type.values()) - stats.failed
    stats.by_type = dict(by_type)
    stats.by_persona = dict(by_persona)
    if failures:
        log.warning("%d events were not delivered; first error: %s", len(failures), failures[0])
    return stats
