"""``segstream bench``: throughput, latency, timer lateness and memory, on the real broker
and Redis, with a no-op Faust agent as the baseline, all in one run.

Each part runs in its own deployment (topic prefix, consumer group, key prefix), so parts
never see each other's data. Workers are real ``segstream worker`` processes; progress is
read from the consumer group's committed offsets, the same way for the baseline and the
engine, so the two rates are comparable.
"""

from __future__ import annotations

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
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from .kafka_admin import committed_offsets
from .settings import Settings
from .simulate import generate
from .topics import INPUTS, finish, input_producer

POLL_S = 0.2


# --- deployments and workers -------------------------------------------------------------


@dataclass
class Deployment:
    """One isolated segstream deployment of the benchmark."""

    name: str
    env: dict[str, str]
    settings: Settings
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def new(cls, base: Settings, name: str, log_dir: Path, **overrides: Any) -> Deployment:
        uid = uuid.uuid4().hex[:6]
        env = {
            "SEGSTREAM_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
            "SEGSTREAM_REDIS_URL": base.redis_url,
            "SEGSTREAM_TOPIC_PREFIX": f"bench-{name}-{uid}.",
            "SEGSTREAM_APP_ID": f"segstream-bench-{name}-{uid}",
            "SEGSTREAM_KEY_PREFIX": f"bench-{name}-{uid}",
            "SEGSTREAM_WEB_ENABLED": "false",
            "SEGSTREAM_COMMIT_INTERVAL_S": "0.5",
            "SEGSTREAM_CACHE_DIR": str(log_dir / "cache"),
            **{k: str(v) for k, v in overrides.items()},
        }
        settings = Settings(**{k.removeprefix("SEGSTREAM_").lower(): v for k, v in env.items()})
        return cls(name, env, settings)

    def start(self, args: list[str], log_dir: Path) -> subprocess.Popen[bytes]:
        log = open(log_dir / f"{self.name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, *args],
            env={**os.environ, **self.env},
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

    def input_topics(self) -> list[str]:
        return [self.settings.topic(t) for t in INPUTS]


def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        return dict(consumer.end_offsets(parts))
    finally:
        consumer.close()


@dataclass
class Progress:
    """Consumption of a pre-filled topic set, from committed offsets."""

    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def wait_consumed(
    settings: Settings,
    group: str,
    ends: dict[TopicPartition, int],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
) -> Progress:
    """Time from the group's first committed progress to its last offset committed.

    Startup (process start, group join) is left out; what is measured is the steady
    consumption of ``sum(ends)`` events minus those committed at the first sight.
    """
    total = sum(ends.values())
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        deadline = time.monotonic() + timeout
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError(f"the consumer of group {group} exited")
            done = sum(min(o, ends.get(tp, 0)) for tp, o in committed_offsets(admin, group).items())
            now = time.monotonic()
            if first is None and done > 0:
                first = (now, done)
            if done >= total and first is not None:
                return Progress(total - first[1], now - first[0])
            time.sleep(POLL_S)
        raise TimeoutError(f"group {group} did not consume {total} events in {timeout:.0f} s")
    finally:
        admin.close()


# --- traffic -----------------------------------------------------------------------------


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


# --- the baseline ------------------------------------------------------------------------


def baseline_main() -> None:
    """A Faust worker whose agent takes the same batches as segstream's and does nothing."""
    import faust

    settings = Settings()
    datadir = settings.cache_dir / "faust-baseline"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        consumer_max_fetch_size=settings.fetch_partition_bytes,
        broker_commit_interval=settings.commit_interval_s,
        datadir=str(datadir),
        web_enabled=False,
    )
    source = app.topic(
        *(settings.topic(name) for name in INPUTS),
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name=f"{settings.app_id}.noop", concurrency=1)
    async def noop(stream: Any) -> None:
        batches = stream.take_events(settings.batch_size, within=settings.batch_window_s)
        async for _events in batches:
            pass

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":  # pragma: no cover
    sys.argv = sys.argv[:1] + ["worker"]
    baseline_main()
