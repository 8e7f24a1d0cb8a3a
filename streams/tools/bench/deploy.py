"""Deployments of the bench (a topic prefix, group and key prefix each), worker processes,
their CPU, consumption read from committed offsets, and the pre-filled traffic."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError

from streams.kafka.admin import committed_offsets
from streams.kafka.clients import kafka_admin, kafka_consumer
from streams.kafka.topics import INPUTS, delete_topics, finish, input_producer
from streams.settings import Settings
from streams.store.scans import delete_prefix
from streams.tools.simulate import generate

POLL_S = 0.2
log = logging.getLogger(__name__)


@dataclass
class Deployment:
    """One isolated segstream deployment of the benchmark."""

    name: str
    env: dict[str, str]
    settings: Settings
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0

    @classmethod
    def new(cls, base: Settings, name: str, log_dir: Path, **overrides: Any) -> Deployment:
        uid = uuid.uuid4().hex[:6]
        env = {
            "SEGSTREAM_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
            "SEGSTREAM_REDIS_URL": base.redis_url,
            # short prefixes: topic names are stored in each state's offsets and key
            # names count in Redis memory; a bench should not pay for its own labels
            "SEGSTREAM_TOPIC_PREFIX": f"b{uid}.",
            "SEGSTREAM_APP_ID": f"segstream-bench-{name}-{uid}",
            "SEGSTREAM_KEY_PREFIX": f"b{uid}",
            "SEGSTREAM_WEB_ENABLED": "false",
            "SEGSTREAM_COMMIT_INTERVAL_S": "0.5",
            "SEGSTREAM_CACHE_DIR": str(log_dir / "cache"),
            **{k: str(v) for k, v in overrides.items()},
        }
        fields: dict[str, Any] = {
            k.removeprefix("SEGSTREAM_").lower(): v for k, v in env.items() if "__" not in k
        }
        settings = Settings(**fields)
        return cls(name, env, settings)

    def start(self, args: list[str], log_dir: Path, **env: str) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{self.name}-{self.started}.log", "wb")  # noqa: SIM115
        self.started += 1
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def discard(self) -> None:
        """Stop the processes, then delete the deployment's topics and Redis keys: a
        bench run leaves nothing behind on the shared broker and Redis."""
        self.stop()
        delete_topics(self.settings)
        delete_prefix(self.settings)

    def input_topics(self) -> list[str]:
        return [self.settings.topic(t) for t in INPUTS]


def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = kafka_consumer(settings)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


def parse_proc_stat(text: str, ticks_per_s: float) -> float:
    """CPU seconds (user + system) of a process, from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may hold spaces or parentheses, so
    fields are counted after its last ``)``: utime and stime are fields 14 and 15.

    >>> parse_proc_stat("42 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0", 100.0)
    3.0
    """
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_s


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds a running process has used so far; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return parse_proc_stat(text, float(os.sysconf("SC_CLK_TCK")))


@dataclass
class Progress:
    """Consumption of a pre-filled topic set, from committed offsets."""

    events: int
    seconds: float
    #: CPU seconds the consumer process used over the same window (None: not sampled).
    cpu_s: float | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float | None:
        """CPU seconds per 1,000 events consumed."""
        if self.cpu_s is None or self.events <= 0:
            return None
        return self.cpu_s * 1000 / self.events


def wait_consumed(
    settings: Settings,
    group: str,
    ends: dict[TopicPartition, int],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    cpu: Callable[[], float | None] = lambda: None,
) -> Progress:
    """Time from the group's first committed progress to its last offset committed.

    Startup (process start, group join) is left out; what is measured is the steady
    consumption of ``sum(ends)`` events minus those committed at the first sight.
    ``cpu`` (the consumer's CPU seconds so far) is sampled at both ends of that window.
    """
    total = sum(ends.values())
    admin = kafka_admin(settings)
    try:
        deadline = time.monotonic() + timeout
        first: tuple[float, int] | None = None
        cpu_at_first: float | None = None
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError(f"the consumer of group {group} exited")
            try:
                offsets = committed_offsets(admin, group)
            except KafkaError:  # a fresh broker creates its offsets topic first: ask again
                time.sleep(POLL_S)
                continue
            done = sum(min(o, ends.get(tp, 0)) for tp, o in offsets.items())
            now = time.monotonic()
            if first is None and done > 0:
                first = (now, done)
                cpu_at_first = cpu()
            if done >= total and first is not None:
                cpu_at_end = cpu()
                used = (
                    None
                    if cpu_at_first is None or cpu_at_end is None
                    else cpu_at_end - cpu_at_first
                )
                return Progress(total - first[1], now - first[0], used)
            time.sleep(POLL_S)
        raise TimeoutError(f"group {group} did not consume {total} events in {timeout:.0f} s")
    finally:
        admin.close()


def traffic(events: int, customers: int, *, seed: int, days: float) -> Iterator[dict[str, Any]]:
    """Simulated shop traffic: ``events`` events of ``customers`` customers over ``days``."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    yield from generate(
        customers, seed=seed, start=start, duration_s=days * 86400, rate=events / (days * 86400)
    )


def prefill(settings: Settings, events: Iterator[dict[str, Any]]) -> int:
    """Produce ``events`` to the deployment's input topics; return how many."""
    producer, topics = input_producer(settings, "bench")
    n = 0
    try:
        for event in events:
            producer.send(
                topics[event["type"]],
                key=event["customer_id"].encode(),
                value=orjson.dumps(event),
            )
            n += 1
    finally:
        finish(producer)
    return n
