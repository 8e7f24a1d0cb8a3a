"""The live parts: produce -> first segment change at offered rates, and timer lateness."""

from __future__ import annotations

import math
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition

from streams.kafka.clients import kafka_consumer
from streams.kafka.topics import CHANGES, finish, input_producer
from streams.settings import Settings
from streams.store.clients import redis_client
from streams.store.scans import applied_offsets, due_now, has_state
from streams.tools.bench.deploy import Deployment, Progress, prefill
from streams.tools.simulate import generate


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 of ``values`` (nearest rank), with the count."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


def latency(base: Settings, log_dir: Path, rate: int, seconds: float) -> dict[str, float]:
    """Produce live traffic at ``rate`` events/s for ``seconds``; every 10th event is a
    new customer's first browse, whose first segment change is timed: the change's
    broker timestamp minus the probe's."""
    d = Deployment.new(base, f"latency{rate}", log_dir)
    prefill(d.settings, iter(()))  # topics
    proc = d.start(["-m", "streams.cli", "worker"], log_dir)
    try:
        wait_ready(d, proc)
        n = int(rate * seconds)
        now = datetime.now(UTC)
        body = list(traffic_live(n, max(50, rate // 5), start=now, seconds=seconds, seed=rate))
        producer, topics = input_producer(d.settings, "bench")
        sent: dict[str, float] = {}
        started = time.perf_counter()
        try:
            for i, event in enumerate(body):
                wait = i / rate - (time.perf_counter() - started)
                if wait > 0.0005:
                    time.sleep(wait)
                if i % 10 == 0:
                    cid = f"probe-{i}"
                    at = datetime.now(UTC)
                    event = {
                        "schema_version": 1,
                        "event_id": f"probe-{rate}-{i}",
                        "type": "browse",
                        "customer_id": cid,
                        "occurred_at": at.isoformat().replace("+00:00", "Z"),
                        "page_type": "home",
                    }
                    sent[cid] = at.timestamp()
                else:
                    event["occurred_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                producer.send(
                    topics[event["type"]],
                    key=event["customer_id"].encode(),
                    value=orjson.dumps(event),
                )
        finally:
            finish(producer)
        offered = len(body) / (time.perf_counter() - started)
        arrived = change_times(d.settings, set(sent), timeout=max(60.0, 3 * seconds))
        lat = [(arrived[c] - sent[c]) * 1000 for c in sent if c in arrived]
        out = percentiles(lat)
        out["offered"] = offered
        out["missing"] = len(sent) - len(lat)
        return out
    finally:
        d.discard()


def traffic_live(
    n: int, customers: int, *, start: datetime, seconds: float, seed: int
) -> Iterator[dict[str, Any]]:
    yield from generate(customers, seed=seed, start=start, duration_s=seconds, rate=n / seconds)


def wait_ready(d: Deployment, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the worker has applied a first event (it has joined its group)."""
    ends = time.monotonic() + timeout
    probe = {
        "schema_version": 1,
        "event_id": f"warmup-{uuid.uuid4().hex}",
        "type": "browse",
        "customer_id": "warmup",
        "occurred_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "page_type": "home",
    }
    prefill(d.settings, iter([probe]))
    client = redis_client(d.settings)
    while time.monotonic() < ends:
        if proc.poll() is not None:
            raise RuntimeError("the worker exited while starting")
        if has_state(client, d.settings, "warmup"):
            return
        time.sleep(0.2)
    raise TimeoutError("the worker did not start in time")


def change_times(
    settings: Settings, customers: set[str], *, timeout: float, current: str | None = None
) -> dict[str, float]:
    """Broker timestamp (s) of the first segment change of each of ``customers`` (to
    segment ``current``, if given), reading ``segments.changes`` from the start."""
    topic = settings.topic(CHANGES)
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    found: dict[str, float] = {}
    ends = time.monotonic() + timeout
    try:
        while time.monotonic() < ends and len(found) < len(customers):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    cid = record.key.decode() if record.key else ""
                    if cid not in customers or cid in found:
                        continue
                    if current is None or orjson.loads(record.value)["current"] == current:
                        found[cid] = record.timestamp / 1000
    finally:
        consumer.close()
    return found


def timer_lateness(base: Settings, log_dir: Path, customers: int = 200) -> dict[str, float]:
    """Live clock: cart adds whose abandonment deadline is 3 s later; lateness of each
    ``cart_abandoner`` change (broker timestamp) against its deadline."""
    d = Deployment.new(
        base,
        "timers",
        log_dir,
        SEGSTREAM_CLOCK="live",
        SEGSTREAM_JOURNEY__CART_ABANDON_MINUTES="0.05",
    )
    prefill(d.settings, iter(()))
    proc = d.start(["-m", "streams.cli", "worker"], log_dir)
    try:
        wait_ready(d, proc)
        due: dict[str, float] = {}
        events = []
        for i in range(customers):
            at = datetime.now(UTC) + timedelta(milliseconds=10 * i)
            cid = f"cart-{i}"
            due[cid] = at.timestamp() + 3.0
            events.append(
                {
                    "schema_version": 1,
                    "event_id": f"cart-{i}",
                    "type": "cart",
                    "customer_id": cid,
                    "occurred_at": at.isoformat().replace("+00:00", "Z"),
                    "action": "add",
                    "sku": "p-1",
                    "quantity": 1,
                    "unit_price": 10.0,
                }
            )
        prefill(d.settings, iter(events))
        fired = change_times(d.settings, set(due), timeout=30, current="cart_abandoner")
        late = [(fired[c] - due[c]) * 1000 for c in due if c in fired]
        out = percentiles(late)
        out["max"] = max(late) if late else float("nan")
        out["missing"] = len(due) - len(late)
        return out
    finally:
        d.discard()


def applied_progress(
    settings: Settings,
    ends: dict[TopicPartition, int],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    cpu: Callable[[], float | None] = lambda: None,
) -> Progress:
    """Like :func:`wait_consumed`, from the offsets the worker records in Redis with each
    batch's states (``<p>:applied``) instead of the group's commits: exact to the batch,
    which a short catch-up needs (commits come only every commit interval)."""
    client = redis_client(settings)
    total = sum(ends.values())
    partitions = sorted({tp.partition for tp in ends})
    deadline = time.monotonic() + timeout
    first: tuple[float, int] | None = None
    cpu_at_first: float | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the worker exited")
        applied = {
            tp: offset + 1
            for tp, offset in applied_offsets(client, settings.key_prefix, partitions).items()
        }
        done = sum(min(applied.get(f"{tp.topic}:{tp.partition}", 0), n) for tp, n in ends.items())
        now = time.monotonic()
        if first is None and done > 0:
            first, cpu_at_first = (now, done), cpu()
        if done >= total and first is not None:
            cpu_at_end = cpu()
            used = None if cpu_at_first is None or cpu_at_end is None else cpu_at_end - cpu_at_first
            return Progress(total - first[1], now - first[0], used)
        time.sleep(0.02)
    raise TimeoutError(f"the worker did not apply {total} events in {timeout:.0f} s")


def settle(settings: Settings, *, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """After a catch-up, until the worker has fired every timer due by its final clocks
    (three polls in a row with none due; the clocks are saved once a second): the
    stored segments are then the ones ``segstream verify`` recomputes."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and alive() and quiet < 3:
        quiet = quiet + 1 if due_now(settings) == 0 else 0
        time.sleep(0.5)


#: Replay formats of the real data files (streams/tools/replay/), by file name.
