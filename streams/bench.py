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

from .kafka_admin import committed_offsets
from .keys import customer_of, ids_key, outbox_key, partition_for, state_key
from .security import aiokafka_kwargs, kafka_admin, kafka_consumer, redis_client
from .settings import Settings
from .simulate import generate
from .topics import CHANGES, INPUTS, delete_topics, finish, input_producer

POLL_S = 0.2


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
        settings = Settings(
            **{k.removeprefix("SEGSTREAM_").lower(): v for k, v in env.items() if "__" not in k}
        )
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
    admin = kafka_admin(settings)
    try:
        deadline = time.monotonic() + timeout
        first: tuple[float, int] | None = None
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


# --- the parts --------------------------------------------------------------------------


@dataclass
class Results:
    """Every figure of one run, rendered by :func:`render`."""

    events: int = 0
    customers: int = 0
    kafka_read: float = 0.0
    baseline: Progress | None = None
    engine: Progress | None = None
    round_trips_per_batch: float | None = None
    events_per_batch: float | None = None
    latency: dict[int, dict[str, float]] = field(default_factory=dict)
    timer_lateness: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def kafka_read_rate(settings: Settings, topics: list[str], total: int) -> float:
    """How fast a bare aiokafka consumer reads the topics: the ceiling under Faust."""
    from aiokafka import AIOKafkaConsumer

    async def read() -> float:
        consumer = AIOKafkaConsumer(
            *topics,
            **aiokafka_kwargs(settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            n, started = 0, None
            while n < total:
                got = await consumer.getmany(timeout_ms=1000, max_records=5000)
                if got and started is None:
                    started = time.perf_counter()
                n += sum(len(v) for v in got.values())
            return n / (time.perf_counter() - (started or time.perf_counter()))
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
    trips = int(words[words.index("trips") + 1])
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
            d.settings, group, ends, timeout=900, alive=lambda: proc.poll() is None
        )
        d.stop()
        proc = d.start(["-m", "streams.cli", "worker"], log_dir)
        res.engine = wait_consumed(
            d.settings, d.settings.app_id, ends, timeout=1800, alive=lambda: proc.poll() is None
        )
        time.sleep(11)  # one more progress line
        d.stop()
        counters = worker_counters(log_dir / f"{d.name}-1.log")
        if counters:
            res.events_per_batch, res.round_trips_per_batch = counters
        res.memory = redis_memory(d.settings, sample=500)
    finally:
        d.discard()


def redis_memory(settings: Settings, *, sample: int) -> dict[str, float]:
    """``MEMORY USAGE`` of a sample of customers' keys, and of the shared keys per customer."""
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


def replay_time(base: Settings, log_dir: Path, path: Path) -> dict[str, Any]:
    """Replay a file as fast as possible, then time a worker through it; verify after."""
    from .replay import replay
    from .verify import verify

    d = Deployment.new(base, "replay", log_dir)
    stats = replay(d.settings, path, "online-retail", progress=False)
    ends = end_offsets(d.settings, d.input_topics())
    proc = d.start(["-m", "streams.cli", "worker"], log_dir)
    try:
        started = time.monotonic()
        progress = wait_consumed(
            d.settings, d.settings.app_id, ends, timeout=1800, alive=lambda: proc.poll() is None
        )
        caught_up = time.monotonic() - started
    finally:
        d.stop()
    from segmenters.verify import render as render_verify

    try:
        report = verify(d.settings, progress=False)
    finally:
        d.discard()
    (log_dir / "replay-verify.txt").write_text(render_verify(report))
    return {
        "file": path.name,
        "events": stats.events,
        "produce_s": stats.elapsed_s,
        "engine_s": caught_up,
        "engine_rate": progress.rate,
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


def render(res: Results, info: dict[str, str]) -> str:
    def rate(p: Progress | None) -> str:
        return "-" if p is None else f"{p.rate:,.0f} events/s"

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
        "days, pre-filled on the four input topics (4 partitions each).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| Kafka read, bare aiokafka consumer (ceiling, no Faust) | "
        f"{res.kafka_read:,.0f} events/s | |",
        f"| baseline: no-op Faust agent, same batches | {rate(res.baseline)} | |",
        f"| engine: one worker process | {rate(res.engine)} | >= 15,000 events/s |",
        f"| engine / baseline | {ratio} | >= 0.5 |",
    ]
    if res.events_per_batch is not None:
        lines.append(
            f"| Redis round trips per batch (events per batch) | "
            f"{res.round_trips_per_batch:.2f} ({res.events_per_batch:.0f}) | 1 |"
        )
    for r, lat in sorted(res.latency.items()):
        if lat.get("n"):
            lines.append(
                f"| latency produce -> change at {r:,} events/s offered "
                f"({lat['offered']:,.0f} achieved), p50 / p95 / p99 | "
                f"{lat['p50']:,.0f} / {lat['p95']:,.0f} / {lat['p99']:,.0f} ms "
                f"({lat['n']} probes, {lat['missing']:.0f} missing) | "
                + ("p50 <= 20 ms, p99 <= 100 ms |" if r == 5000 else "|")
            )
    if res.timer_lateness.get("n"):
        t = res.timer_lateness
        lines.append(
            f"| timer lateness, live clock, p50 / p99 / max | {t['p50']:,.0f} / "
            f"{t['p99']:,.0f} / {t['max']:,.0f} ms ({t['n']} timers, {t['missing']:.0f} "
            "missing) | <= 1,000 ms |"
        )
    if res.memory:
        m = res.memory
        lines.append(
            f"| Redis per customer: own keys, mean (p95) | {m['per_customer_mean']:,.0f} B "
            f"({m['per_customer_p95']:,.0f} B) | <= 1 KB |"
        )
        lines.append(
            f"| Redis per customer: shared indexes, histograms, timers | "
            f"{m['shared_per_customer']:,.0f} B | |"
        )
    if res.replay:
        r = res.replay
        lines.append(
            f"| replay {r['file']} ({r['events']:,} events): produce / worker catch-up | "
            f"{r['produce_s']:.1f} s / {r['engine_s']:.1f} s ({r['engine_rate']:,.0f} "
            f"events/s), verify {'OK' if r['verify'] is True else r['verify']} | |"
        )
    lines += [
        "",
        "Why the figures are what they are, from profiles of the worker and the baseline: "
        "docs/performance.md.",
    ]
    return "\n".join(lines) + "\n"


def run(
    base: Settings,
    *,
    events: int,
    customers: int,
    rates: list[int],
    seconds: float,
    online_retail: Path | None,
    log_dir: Path,
    say: Callable[[str], None] = print,
) -> Results:
    """Every part, in order; each prints a line as it ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    res = Results()
    started = time.monotonic()
    say(f"throughput: {events:,} events of {customers:,} customers (baseline, then engine)")
    throughput(base, log_dir, res, events, customers)
    rates_seen = [p.rate if p else 0.0 for p in (res.baseline, res.engine)]
    say(
        f"  kafka read {res.kafka_read:,.0f}/s, baseline {rates_seen[0]:,.0f}/s, "
        f"engine {rates_seen[1]:,.0f}/s"
    )
    for r in rates:
        say(f"latency at {r:,} events/s for {seconds:.0f} s")
        res.latency[r] = latency(base, log_dir, r, seconds)
        say(f"  {res.latency[r]}")
    say("timer lateness (live clock)")
    res.timer_lateness = timer_lateness(base, log_dir)
    say(f"  {res.timer_lateness}")
    if online_retail is not None and online_retail.exists():
        say(f"replay {online_retail.name}")
        res.replay = replay_time(base, log_dir, online_retail)
        say(f"  {res.replay}")
    res.seconds = time.monotonic() - started
    return res


# --- the baseline ------------------------------------------------------------------------


def baseline_main() -> None:
    """A Faust worker whose agent takes the same batches as segstream's and does nothing."""
    import faust

    from .app import faust_app

    settings = Settings()
    app = faust_app(settings, datadir="faust-baseline", web=False)
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
