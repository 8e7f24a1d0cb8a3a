"""The throughput part: bare Kafka read, the stock Faust baseline, the engine, and Redis
memory per customer."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from streams.kafka.clients import aiokafka_kwargs, kafka_admin
from streams.settings import Settings
from streams.store.scans import redis_memory
from streams.tools.bench.deploy import (
    Deployment,
    Progress,
    cpu_seconds,
    end_offsets,
    prefill,
    traffic,
    wait_consumed,
)
from streams.tools.bench.in_process import StageResult
from streams.tools.bench.value import ValueCost


@dataclass
class Results:
    """Every figure of one run, rendered by :func:`render`."""

    events: int = 0
    customers: int = 0
    kafka_read: Progress | None = None
    baseline: Progress | None = None
    engine: Progress | None = None
    round_trips_per_batch: float | None = None
    events_per_batch: float | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)
    timer_lateness: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    replays: list[dict[str, Any]] = field(default_factory=list)
    stages: StageResult | None = None
    value: ValueCost | None = None
    seconds: float = 0.0


def kafka_read_rate(settings: Settings, topics: list[str], total: int) -> Progress:
    """How fast a bare aiokafka consumer reads the topics: the ceiling under Faust (CPU:
    this process's, over the same window)."""
    from aiokafka import AIOKafkaConsumer

    async def read() -> Progress:
        consumer = AIOKafkaConsumer(
            *topics,
            **aiokafka_kwargs(settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            n, started, cpu = 0, None, 0.0
            first = 0
            while n < total:
                got = await consumer.getmany(timeout_ms=1000, max_records=5000)
                got_n = sum(len(v) for v in got.values())
                if got_n and started is None:
                    started, cpu, first = time.perf_counter(), time.process_time(), got_n
                n += got_n
            seconds = time.perf_counter() - (started or time.perf_counter())
            return Progress(n - first, seconds, time.process_time() - cpu)
        finally:
            await consumer.stop()

    return asyncio.run(read())


def worker_counters(log_path: Path) -> tuple[float, float] | None:
    """Events and Redis round trips per batch, from the worker's last progress line."""
    last = None
    for line in log_path.read_text(errors="replace").splitlines():
        if "redis round trips" in line:
            last = line
    if last is None:
        return None
    words = last.split()
    events = int(words[words.index("events") + 1])
    batches = int(words[words.index("batches") + 1])
    trips = int(words[words.index("trips") + 1].rstrip(";,"))
    return (events / batches, trips / batches) if batches else None


def throughput(base: Settings, log_dir: Path, res: Results, events: int, customers: int) -> None:
    d = Deployment.new(base, "throughput", log_dir, SEGSTREAM_LOG_LEVEL="info")
    res.events = prefill(d.settings, traffic(events, customers, seed=11, days=30))
    res.customers = customers
    ends = end_offsets(d.settings, d.input_topics())
    res.kafka_read = kafka_read_rate(d.settings, d.input_topics(), sum(ends.values()))
    try:
        group = d.settings.app_id + "-baseline"
        proc = d.start(["-m", "streams.tools.bench.baseline"], log_dir, SEGSTREAM_APP_ID=group)
        res.baseline = wait_consumed(
            d.settings,
            group,
            ends,
            timeout=900,
            alive=lambda: proc.poll() is None,
            cpu=lambda: cpu_seconds(proc.pid),
        )
        d.stop()
        drop_topics(d.settings, [f"{group}-__assignor-__leader"])
        proc = d.start(["-m", "streams.cli", "worker"], log_dir)
        res.engine = wait_consumed(
            d.settings,
            d.settings.app_id,
            ends,
            timeout=1800,
            alive=lambda: proc.poll() is None,
            cpu=lambda: cpu_seconds(proc.pid),
        )
        time.sleep(11)  # one more progress line
        d.stop()
        counters = worker_counters(log_dir / f"{d.name}-1.log")
        if counters:
            res.events_per_batch, res.round_trips_per_batch = counters
        res.memory = redis_memory(d.settings, sample=500)
    finally:
        d.discard()


def drop_topics(settings: Settings, topics: list[str]) -> None:
    """Delete ``topics`` if they exist (the stock baseline's own assignor topic)."""
    admin = kafka_admin(settings)
    try:
        doomed = [t for t in topics if t in set(admin.list_topics())]
        if doomed:
            admin.delete_topics(doomed)
    except KafkaError:  # only litter on a shared broker: never fail the run for it
        pass
    finally:
        admin.close()
