"""``segstream bench``: throughput, latency, timer lateness and memory, on the real broker
and Redis, with a no-op Faust agent as the baseline, all in one run.

Each part runs in its own deployment (topic prefix, consumer group, key prefix), so parts
never see each other's data. Workers are real ``segstream worker`` processes; progress is
read from the consumer group's committed offsets, the same way for the baseline and the
engine, so the two rates are comparable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError

from .bench_stages import StageResult, render_stages, run_stages
from .kafka_admin import committed_offsets
from .keys import (
    applied_key,
    clock_key,
    customer_of,
    ids_key,
    outbox_key,
    partition_for,
    state_key,
    timers_key,
)
from .security import aiokafka_kwargs, kafka_admin, kafka_consumer, redis_client
from .settings import Settings
from .simulate import generate
from .topics import CHANGES, INPUTS, delete_topics, finish, input_producer

POLL_S = 0.2
log = logging.getLogger(__name__)


# --- deployments and workers -------------------------------------------------------------


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
        client = redis_client(self.settings)
        for key in client.scan_iter(match=f"{self.settings.key_prefix}:*", count=1000):
            client.delete(key)

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


# --- the parts --------------------------------------------------------------------------


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
        proc = d.start(["-m", "streams.bench"], log_dir, SEGSTREAM_APP_ID=group)
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


def redis_memory(settings: Settings, *, sample: int) -> dict[str, float]:
    """``MEMORY USAGE`` of a sample of customers' keys (the state hash, which holds the
    action doc in its field ``act``; the applied-id set; the outbox), and of the shared
    keys per customer."""
    client = redis_client(settings)
    prefix = settings.key_prefix
    own: list[int] = []
    shared = 0
    customers = 0
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        name = key.decode()
        owner = customer_of(prefix, name)
        if owner is not None:
            if name.endswith(":state"):
                customers += 1
                if len(own) < sample:
                    p, cid = owner
                    total = 0
                    for k in (name, ids_key(prefix, p, cid), outbox_key(prefix, p, cid)):
                        total += int(client.memory_usage(k, samples=0) or 0)
                    own.append(total)
        else:
            shared += int(client.memory_usage(name, samples=0) or 0)
    if not own:
        return {}
    return {
        "customers": customers,
        "per_customer_mean": statistics.fmean(own),
        "per_customer_p95": sorted(own)[int(0.95 * (len(own) - 1))],
        "shared_per_customer": shared / max(1, customers),
    }


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
    key = state_key(
        d.settings.key_prefix, partition_for("warmup", d.settings.topic_partitions), "warmup"
    )
    while time.monotonic() < ends:
        if proc.poll() is not None:
            raise RuntimeError("the worker exited while starting")
        if client.exists(key):
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
        pipe = client.pipeline(transaction=False)
        for p in partitions:
            pipe.hgetall(applied_key(settings.key_prefix, p))
        applied: dict[str, int] = {}
        for row in pipe.execute():
            applied.update({k.decode(): int(v) + 1 for k, v in row.items()})
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


def due_now(settings: Settings) -> int | None:
    """Timers due by the partition clocks the worker saved (watermark - lateness), summed
    over partitions; None while no clock is saved."""
    client = redis_client(settings)
    saved = client.hgetall(clock_key(settings.key_prefix))
    if not saved:
        return None
    pipe = client.pipeline(transaction=False)
    for p, watermark in saved.items():
        clock = float(watermark) - settings.allowed_lateness_s
        pipe.zcount(timers_key(settings.key_prefix, int(p)), "-inf", clock)
    return sum(int(n) for n in pipe.execute())


def settle(settings: Settings, *, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """After a catch-up, until the worker has fired every timer due by its final clocks
    (three polls in a row with none due; the clocks are saved once a second): the
    stored segments are then the ones ``segstream verify`` recomputes."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and alive() and quiet < 3:
        quiet = quiet + 1 if due_now(settings) == 0 else 0
        time.sleep(0.5)


#: Replay formats of the real data files (streams/replay.py), by file name.
REPLAY_FORMATS = {"rees46": "rees46", "online_retail": "online-retail"}


def replay_format(path: Path) -> str | None:
    """The replay format of a data file, from its name; None if unknown.

    >>> replay_format(Path("x/rees46_2019-Oct.csv.gz")), replay_format(Path("a.txt"))
    ('rees46', None)
    """
    for stem, fmt in REPLAY_FORMATS.items():
        if path.name.startswith(stem):
            return fmt
    return None


def replay_time(
    base: Settings, log_dir: Path, path: Path, fmt: str, *, limit: int | None = None
) -> dict[str, Any]:
    """Replay a file (its first ``limit`` events, if given) as fast as possible, then time
    a worker catching up on it; verify after."""
    from .replay import replay
    from .verify import verify

    d = Deployment.new(base, f"replay-{fmt}", log_dir)
    stats = replay(d.settings, path, fmt, progress=False, limit=limit)
    ends = end_offsets(d.settings, d.input_topics())
    proc = d.start(["-m", "streams.cli", "worker"], log_dir)
    try:
        started = time.monotonic()
        progress = applied_progress(
            d.settings,
            ends,
            timeout=1800,
            alive=lambda: proc.poll() is None,
            cpu=lambda: cpu_seconds(proc.pid),
        )
        caught_up = time.monotonic() - started
        settle(d.settings, alive=lambda: proc.poll() is None)
    finally:
        d.stop()
    from segmenters.verify import render as render_verify

    try:
        report = verify(d.settings, progress=False)
    finally:
        d.discard()
    (log_dir / f"replay-{fmt}-verify.txt").write_text(render_verify(report))
    return {
        "file": path.name,
        "events": stats.events,
        "sliced": stats.not_sent > 0,
        "not_sent": stats.not_sent,
        "produce_s": stats.elapsed_s,
        "engine_s": caught_up,
        "engine_rate": progress.rate,
        "cpu_per_1000": progress.cpu_per_1000,
        "verify": report.ok,
    }


# --- the report --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    import aiokafka
    import faust

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        redis_version = redis_client(Settings()).info()["redis_version"]
    except Exception:  # noqa: BLE001 - only for the report
        redis_version = "?"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "faust-streaming": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "kafka": Settings().kafka_version,
        "redis": str(redis_version),
    }


def rate_cpu(p: Progress | None) -> str:
    """A rate with its CPU cost, as the report shows it.

    >>> rate_cpu(Progress(10_000, 2.0, 1.5))
    '5,000 events/s, 0.150 CPU s / 1,000 events'
    >>> rate_cpu(Progress(10_000, 2.0)), rate_cpu(None)
    ('5,000 events/s', '-')
    """
    if p is None:
        return "-"
    cpu = p.cpu_per_1000
    return f"{p.rate:,.0f} events/s" + ("" if cpu is None else f", {cpu:.3f} CPU s / 1,000 events")


#: Latency targets per offered rate (events/s).
LATENCY_TARGETS = {500: "p50 <= 10 ms", 5000: "p50 <= 15 ms, p99 <= 100 ms"}
#: Catch-up rate each replayed file must reach (events/s).
REPLAY_TARGET = 10_000


def render(res: Results, info: dict[str, str]) -> str:
    ratio = (
        f"{res.engine.rate / res.baseline.rate:.2f}"
        if res.engine and res.baseline and res.baseline.rate
        else "-"
    )
    lines = [
        "# segstream benchmarks",
        "",
        f"Written by `segstream bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"in {res.seconds / 60:.1f} min. Broker, Redis, worker and load generator share "
        "the machine.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
        f"Workload: {res.events:,} simulated events of {res.customers:,} customers over 30 "
        "days, pre-filled on the four input topics (4 partitions each). CPU: user + system "
        "seconds of the consuming process over the measured window.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| Kafka read, bare aiokafka consumer (ceiling, no Faust) | "
        f"{rate_cpu(res.kafka_read)} | |",
        f"| baseline: stock Faust app, no-op agent (`take_events(500)`) | "
        f"{rate_cpu(res.baseline)} | |",
        f"| engine: one worker process | {rate_cpu(res.engine)} | >= 15,000 events/s |",
        f"| engine / baseline | {ratio} | > 1 (faster than the stock no-op agent) |",
    ]
    if res.events_per_batch is not None:
        lines.append(
            f"| Redis round trips per batch (events per batch) | "
            f"{res.round_trips_per_batch:.2f} ({res.events_per_batch:.0f}) | 1 |"
        )
    if res.stages is not None:
        us = res.stages.us_per_event()
        lines.append(
            f"| in-process pipeline (below), total | {us['total']:.1f} us/event "
            f"({res.stages.rate:,.0f} events/s, {res.stages.cpu_per_1000:.3f} CPU s / 1,000 "
            "events) | <= 40 us/event |"
        )
    for r, lat in sorted(res.latency.items()):
        if lat.get("n"):
            lines.append(
                f"| latency produce -> first change at {r:,} events/s offered "
                f"({lat['offered']:,.0f} achieved), p50 / p95 / p99 | "
                f"{lat['p50']:,.1f} / {lat['p95']:,.1f} / {lat['p99']:,.1f} ms "
                f"({lat['n']} probes, {lat['missing']:.0f} missing) | "
                f"{LATENCY_TARGETS.get(r, '')} |"
            )
        else:
            lines.append(f"| latency at {r:,} events/s offered | no probe arrived | |")
    if res.timer_lateness.get("n"):
        t = res.timer_lateness
        lines.append(
            f"| timer lateness, live clock, p50 / p99 / max | {t['p50']:,.0f} / "
            f"{t['p99']:,.0f} / {t['max']:,.0f} ms ({t['n']} timers, {t['missing']:.0f} "
            "missing) | p99 <= 1,000 ms |"
        )
    if res.memory:
        m = res.memory
        lines.append(
            f"| Redis per customer: own keys (state hash with its action doc, applied ids, "
            f"outbox), mean (p95) | {m['per_customer_mean']:,.0f} B "
            f"({m['per_customer_p95']:,.0f} B) | <= 1 KB |"
        )
        lines.append(
            f"| Redis per customer: shared indexes, histograms, timers | "
            f"{m['shared_per_customer']:,.0f} B | |"
        )
    for rp in res.replays:
        if "error" in rp:
            lines.append(
                f"| replay catch-up, {rp['file']} | failed: {rp['error']} | "
                f">= {REPLAY_TARGET:,} events/s, verify OK |"
            )
            continue
        what = f"first {rp['events']:,} events" if rp.get("sliced") else f"{rp['events']:,} events"
        cpu = rp.get("cpu_per_1000")
        lines.append(
            f"| replay catch-up, {rp['file']} ({what}) | {rp['engine_rate']:,.0f} events/s"
            + ("" if cpu is None else f", {cpu:.3f} CPU s / 1,000 events")
            + f" (produced in {rp['produce_s']:.1f} s, caught up {rp['engine_s']:.1f} s after "
            f"the worker started), verify {'OK' if rp['verify'] is True else 'FAILED'} | "
            f">= {REPLAY_TARGET:,} events/s, verify OK |"
        )
    if res.stages is not None:
        lines += [
            "",
            "## In-process pipeline stages",
            "",
            "The worker's batch pipeline (`BatchProcessor`) without a broker: real Redis, "
            "sends free, the default retention policy, RFM quantiles and a cluster model "
            "from a first pass over the same workload, records in per-partition order in "
            "fetch-round batches, due timers fired after each batch (their stages count "
            "too). Microseconds of wall time per event. Stages: parse (records to events), "
            "fold (segments), decide (retention actions and their messages), encode "
            "(what the write needs: change JSON, outbox, index moves, due time, id "
            "digests, compressed documents, script arguments), redis (load and commit "
            "round trips), send (to the producer); `other` is the pipeline's time "
            "between stages.",
            "",
            render_stages(res.stages),
        ]
    lines += [
        "",
        "Why the figures are what they are, from profiles of the worker and the baseline: "
        "docs/performance.md.",
    ]
    return "\n".join(lines) + "\n"


def stages(
    base: Settings,
    *,
    events: int = 30_000,
    customers: int = 3_000,
    batch: int = 2_000,
    say: Callable[[str], None] = print,
) -> StageResult:
    """The in-process stage benchmark on the bench workload (30 days of traffic)."""
    say(f"stages: {events:,} events of {customers:,} customers in process, batches of ~{batch:,}")
    return run_stages(base, traffic(events, customers, seed=11, days=30), batch=batch, say=say)


def run(
    base: Settings,
    *,
    events: int,
    customers: int,
    rates: list[int],
    seconds: float,
    data_files: list[Path],
    log_dir: Path,
    replay_limit: int | None = 100_000,
    say: Callable[[str], None] = print,
) -> Results:
    """Every part, in order; each prints a line as it ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    res = Results()
    started = time.monotonic()
    res.stages = stages(base, say=say)
    say(render_stages(res.stages))
    say(f"throughput: {events:,} events of {customers:,} customers (baseline, then engine)")
    throughput(base, log_dir, res, events, customers)
    say(
        f"  kafka read {rate_cpu(res.kafka_read)}; baseline {rate_cpu(res.baseline)}; "
        f"engine {rate_cpu(res.engine)}"
    )
    for r in rates:
        say(f"latency at {r:,} events/s for {seconds:.0f} s")
        res.latency[r] = latency(base, log_dir, r, seconds)
        say(f"  {res.latency[r]}")
    say("timer lateness (live clock)")
    res.timer_lateness = timer_lateness(base, log_dir)
    say(f"  {res.timer_lateness}")
    for path in data_files:
        fmt = replay_format(path)
        if fmt is None or not path.exists():
            say(f"replay {path}: skipped (missing, or not a known data file)")
            continue
        say(f"replay {path.name} ({fmt}, at most {replay_limit or 'all'} events)")
        try:
            res.replays.append(replay_time(base, log_dir, path, fmt, limit=replay_limit))
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
            log.exception("replay of %s failed", path.name)
            res.replays.append({"file": path.name, "error": f"{type(exc).__name__}: {exc}"})
        say(f"  {res.replays[-1]}")
    res.seconds = time.monotonic() - started
    return res


# --- the baseline ------------------------------------------------------------------------


def baseline_main() -> None:
    """A stock Faust worker whose agent takes batches of 500 and does nothing.

    Stock: Faust's own consumer settings (fetch sizes, message-by-message delivery),
    none of segstream's. Set only what connecting needs (broker, credentials), raw
    serializers (no decoding is measured), reading from the start, no web server, the
    data directory out of the working tree, and the engine's commit interval: progress
    is read from committed offsets for both, so both must commit as often.
    """
    import faust

    from .security import faust_credentials

    settings = Settings()
    datadir = settings.cache_dir / "faust-baseline"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=False,
        datadir=str(datadir),
    )
    source = app.topic(*(settings.topic(name) for name in INPUTS))

    @app.agent(source, name=f"{settings.app_id}.noop", concurrency=1)
    async def noop(stream: Any) -> None:
        async for _events in stream.take_events(500, within=settings.batch_window_s):
            pass

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":  # pragma: no cover
    sys.argv = sys.argv[:1] + ["worker"]
    baseline_main()
