"""Integration fixtures: the real Kafka broker and Redis, and real worker processes.

The test command (`make test`) starts the services first; if they are not answering,
the session fixture starts them itself. A missing server is a failure, never a skip.
Each test gets its own topics, consumer group and Redis key prefix.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from segmenters.core import Source
from segmenters.events import parse_event
from streams.kafka.clients import kafka_admin
from streams.kafka.partitioner import partition_for
from streams.kafka.topics import TOPIC_OF_TYPE, delete_topics, ensure_topics
from streams.settings import Settings
from streams.store import load_doc
from streams.store.clients import redis_client
from streams.store.keys import state_key

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def services() -> Settings:
    settings = Settings()
    from streams import devservices as svc

    if not all(s.answering for s in svc.status(settings)):
        svc.up(settings)
    states = svc.status(settings)
    assert all(s.answering for s in states), f"services not answering: {states}"
    sweep_test_topics(settings)
    return settings


def claim_topics(settings: Settings) -> Path:
    """Note that this process owns the topics of ``settings.topic_prefix`` (a file named
    for the prefix, holding the pid), so a later session can delete them if this one
    dies before it does (``sweep_test_topics``)."""
    claims = settings.cache_dir / "run" / "test-topics"
    claims.mkdir(parents=True, exist_ok=True)
    claim = claims / settings.topic_prefix
    claim.write_text(f"{os.getpid()}\n")
    return claim


def release_topics(settings: Settings) -> None:
    """Delete the topics of ``settings.topic_prefix`` and the claim on them."""
    delete_topics(settings)
    (settings.cache_dir / "run" / "test-topics" / settings.topic_prefix).unlink(missing_ok=True)


def sweep_test_topics(settings: Settings) -> None:
    """Delete the topics of test sessions that died before deleting their own. Without
    this a killed run's partitions pile up on the shared broker, and a broker with
    thousands of partitions takes minutes to start. Topics of a session still running
    (another pytest on the same broker) are left alone."""
    claims = settings.cache_dir / "run" / "test-topics"
    dead = [c for c in claims.glob("*") if not _pid_alive(c.read_text())]
    if not dead:
        return
    prefixes = tuple(c.name for c in dead)
    admin = kafka_admin(settings, client_id="segstream-tests-sweep")
    try:
        leftovers = [t for t in admin.list_topics() if t.startswith(prefixes)]
        for first in range(0, len(leftovers), 500):
            admin.delete_topics(leftovers[first : first + 500], timeout_ms=60000)
    finally:
        admin.close()
    for claim in dead:
        claim.unlink(missing_ok=True)


def _pid_alive(text: str) -> bool:
    try:
        os.kill(int(text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def free_ports(count: int = 1, *, plus: int | None = None) -> int:
    """The first of ``count`` adjacent free ports (and each port + ``plus``, if given).

    Drawn from 20000-29999: under the kernel's ephemeral range (32768 and up), so an
    outgoing connection does not take one between this check and the server's bind (a
    broker's controller port once failed so); away from 6379 and 7001-7003, which the
    shared services use."""
    rng = random.Random()
    for _ in range(500):
        first = rng.randrange(20000, 30000 - count)
        ports = [p for q in range(first, first + count) for p in (q, q + (plus or 0))]
        if all(_bindable(p) for p in ports):
            return first
    raise RuntimeError(f"no {count} adjacent free ports in 20000-29999")


def free_port() -> int:
    return free_ports(1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Deployment:
    """One isolated segstream deployment: topics, consumer group and keys of its own."""

    def __init__(self, base: Settings, tmp: Path, **overrides: Any) -> None:
        uid = uuid.uuid4().hex[:8]
        self.env = {
            "SEGSTREAM_KAFKA_BOOTSTRAP": base.kafka_bootstrap,
            "SEGSTREAM_REDIS_URL": base.redis_url,
            "SEGSTREAM_REDIS_CLUSTER": str(base.redis_cluster).lower(),
            "SEGSTREAM_TOPIC_PREFIX": f"t{uid}.",
            "SEGSTREAM_APP_ID": f"segstream-t{uid}",
            "SEGSTREAM_KEY_PREFIX": f"t{uid}",
            "SEGSTREAM_BATCH_WINDOW_S": "0.02",
            "SEGSTREAM_WEB_ENABLED": "false",
            "SEGSTREAM_SESSION_TIMEOUT_S": "6",
            **{k: str(v) for k, v in overrides.items()},
        }
        self.settings = Settings(
            **{k.removeprefix("SEGSTREAM_").lower(): v for k, v in self.env.items()}
        )
        self.tmp = tmp
        self.redis = redis_client(self.settings)
        self.workers: list[subprocess.Popen[bytes]] = []
        claim_topics(self.settings)
        ensure_topics(self.settings)
        self.producer = KafkaProducer(
            bootstrap_servers=base.kafka_bootstrap, acks="all", linger_ms=2
        )

    # --- workers ---------------------------------------------------------------------
    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        n = len(self.workers)
        log = open(self.tmp / f"worker-{n}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=ROOT,
            env={**os.environ, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(proc)
        self._wait_log(n, b"[^Worker]: Ready", 90)
        return proc

    def _wait_log(self, n: int, needle: bytes, timeout: float) -> None:
        path = self.tmp / f"worker-{n}.log"
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if needle in path.read_bytes():
                return
            if self.workers[n].poll() is not None:
                raise AssertionError(f"worker exited:\n{path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{path.read_text()[-3000:]}")

    def log(self, n: int = 0) -> str:
        return (self.tmp / f"worker-{n}.log").read_text(errors="replace")

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(sig)
        for p in self.workers:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    # --- input -----------------------------------------------------------------------
    def produce(self, events: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Source]]:
        """Send events keyed by customer; return each with the position Kafka gave it."""
        futures = []
        for e in events:
            topic = self.settings.topic(TOPIC_OF_TYPE[e["type"]])
            futures.append(
                (e, self.producer.send(topic, key=e["customer_id"].encode(), value=orjson.dumps(e)))
            )
        self.producer.flush()
        out = []
        for e, f in futures:
            md = f.get(timeout=30)
            out.append((e, Source(md.topic, md.partition, md.offset)))
        return out

    def produce_raw(self, topic: str, key: bytes | None, value: bytes | None) -> Source:
        md = self.producer.send(self.settings.topic(topic), key=key, value=value).get(timeout=30)
        return Source(md.topic, md.partition, md.offset)

    # --- output ----------------------------------------------------------------------
    def read_topic(
        self, name: str, *, expect: int | None = None, timeout: float = 30, settle: float = 2.0
    ) -> list[Any]:
        """Every record of a topic: wait for ``expect`` records, then ``settle`` s for more."""
        topic = self.settings.topic(name)
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False
        )
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        ends = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < ends:
                got = consumer.poll(timeout_ms=200)
                n = sum(len(v) for v in got.values())
                for batch in got.values():
                    records.extend(batch)
                if n:
                    quiet_since = time.monotonic()
                reached = expect is None or len(records) >= expect
                if reached and time.monotonic() - quiet_since >= settle:
                    break
        finally:
            consumer.close()
        return records

    def home(self, customer_id: str) -> int:
        """The customer's input partition: the hash tag of its keys."""
        return partition_for(customer_id, self.settings.topic_partitions)

    def state(self, customer_id: str) -> dict[str, Any] | None:
        key = state_key(self.settings.key_prefix, self.home(customer_id), customer_id)
        return load_doc(self.redis.hget(key, "doc"))

    def wait_applied(self, expected: dict[str, int], timeout: float = 60) -> None:
        """Wait until each customer's state counts ``expected[customer]`` applied events."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            pending = {
                c: n for c, n in expected.items() if ((self.state(c) or {}).get("events", 0)) < n
            }
            if not pending:
                return
            time.sleep(0.25)
        raise AssertionError(
            f"not applied in {timeout}s: {dict(list(pending.items())[:5])}\n{self.log()[-3000:]}"
        )

    def wait_caught_up(self, group: str, timeout: float = 60) -> dict[Any, int]:
        """Wait until ``group`` has committed the end offset of every input partition."""
        from kafka import KafkaAdminClient

        from streams.kafka.admin import committed_offsets
        from streams.kafka.topics import INPUTS

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        try:
            parts = [
                TopicPartition(self.settings.topic(t), p)
                for t in INPUTS
                for p in range(self.settings.topic_partitions)
            ]
            ends_at = consumer.end_offsets(parts)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                committed = committed_offsets(admin, group)
                if all(committed.get(tp, 0) >= end for tp, end in ends_at.items() if end):
                    return committed
                time.sleep(0.5)
            raise AssertionError(f"group {group} did not catch up: {committed} vs {ends_at}")
        finally:
            admin.close()
            consumer.close()

    def close(self) -> None:
        self.stop_all()
        self.producer.close()
        try:
            release_topics(self.settings)
        except KafkaError as exc:  # a spare broker already gone: its topics went with it
            warnings.warn(
                f"topics of {self.settings.topic_prefix} not deleted: {exc}", stacklevel=2
            )
        for key in self.redis.scan_iter(match=f"{self.settings.key_prefix}:*", count=1000):
            self.redis.delete(key)


@pytest.fixture
def deployment(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(services, tmp_path)
    yield d
    d.close()


def parsed(items: list[tuple[dict[str, Any], Source]]) -> list[tuple[Any, Source]]:
    return [(parse_event(orjson.dumps(e)), s) for e, s in items]
