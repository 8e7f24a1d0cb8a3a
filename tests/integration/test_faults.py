"""Faults on real processes: SIGKILLed workers, rebalances, a Redis that loses its last
second of writes, a broker restart. Each test ends with ``segstream verify`` against an
offline recomputation and the accounting of ``faults.account`` (docs/reliability.md)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.settings import Settings
from streams.store.keys import applied_key
from streams.tools.simulate import generate
from tests.integration.conftest import Deployment
from tests.integration.faults import (
    SpareKafka,
    SpareRedis,
    SpareRedisCluster,
    Traffic,
    account,
    bad_messages,
    progress,
    wait_progress,
)

#: Retention actions on transitions the fault traffic makes often (a cart, a first order),
#: with no quiet hours, so every fault is checked on ``actions.*`` too, at any time of day.
FAULT_POLICY = """
version = "faults"
experiment = "faults"

[actions.email.cart]
template = "cart_v1"
cooldown_s = 3600
holdout = 0.2

[actions.ads.buyer]
audience = "buyers"
holdout = 0.2

[[rules]]
dimension = "journey"
current = "active_cart"
actions = ["email/cart"]

[[rules]]
dimension = "journey"
current = "first_time_buyer"
actions = ["ads/buyer"]
"""


def with_policy(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "faults-actions.toml"
    path.write_text(FAULT_POLICY)
    return {"SEGSTREAM_ACTIONS_FILE": str(path)}


@pytest.fixture
def deployment(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(services, tmp_path, **with_policy(tmp_path))
    yield d
    d.close()


def traffic_for(seed: int, customers: int, events: int) -> tuple[list[dict], list, random.Random]:
    """Simulated traffic ending a minute ago: recent enough that the retention actions it
    triggers are taken (history is suppressed ``stale``), so the accounting of
    ``actions.*`` under each fault has messages to check."""
    rng = random.Random(seed)
    span = events / 50
    start = datetime.now(UTC) - timedelta(seconds=span + 60)
    good = list(generate(customers, seed=seed, start=start, duration_s=span, rate=50))
    return good, bad_messages(rng, 40), rng


def produce_while(d: Deployment, traffic: Traffic, events: list[dict], bad: list, rng, rate: float):
    """Produce in the background at about ``rate`` events/s; returns the thread."""

    def run() -> None:
        chunk = max(1, int(rate / 10))
        bad_left = list(bad)
        for i in range(0, len(events), chunk):
            take = [bad_left.pop() for _ in range(min(len(bad_left), rng.randrange(0, 3)))]
            traffic.produce(d, events[i : i + chunk], take, rng)
            time.sleep(0.1)
        if bad_left:
            traffic.produce(d, [], bad_left, rng)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigkill_five_times_during_a_replay(deployment: Deployment) -> None:
    d = deployment
    events, bad, rng = traffic_for(21, 150, 4000)
    traffic = Traffic()
    traffic.produce(d, events[:2500], bad[:20], rng)  # a backlog to replay ...
    feeder = produce_while(d, traffic, events[2500:], bad[20:], rng, rate=60)  # ... and more
    kills = []
    for _ in range(5):
        before = progress(d)
        d.start_worker(SEGSTREAM_BATCH_SIZE="100")
        wait_progress(d, before)  # the new worker owns its partitions and applies events
        time.sleep(rng.uniform(0.0, 1.5))
        d.workers[-1].send_signal(signal.SIGKILL)
        d.workers[-1].wait(10)
        kills.append(progress(d))
    d.start_worker()
    feeder.join(120)
    row = account("SIGKILL x5 during a replay", d, traffic)
    assert len(set(kills)) == 5, kills  # each kill came after new progress
    assert row["applied"] == len(events)


def test_rebalances_two_workers_and_a_third_joins_and_leaves(deployment: Deployment) -> None:
    d = deployment
    events, bad, rng = traffic_for(22, 150, 4000)
    traffic = Traffic()
    d.start_worker(SEGSTREAM_BATCH_SIZE="100")
    d.start_worker(SEGSTREAM_BATCH_SIZE="100")
    feeder = produce_while(d, traffic, events, bad, rng, rate=200)
    time.sleep(4)
    third = d.start_worker(SEGSTREAM_BATCH_SIZE="100")
    time.sleep(8)
    third.send_signal(signal.SIGTERM)  # leaves the group
    third.wait(30)
    feeder.join(120)
    account("2 workers, a 3rd joins and leaves", d, traffic)
    assert all(w.poll() is None for w in d.workers[:2])
    assert "Traceback" not in d.log(0) + d.log(1), (d.log(0) + d.log(1))[-3000:]


@pytest.fixture
def spare_redis(services: Settings, tmp_path: Path) -> Iterator[SpareRedis | SpareRedisCluster]:
    """A Redis of the test's own, of the kind the suite runs against (cluster or not)."""
    kind = SpareRedisCluster if services.redis_cluster else SpareRedis
    server = kind(tmp_path / "redis-aof")
    try:
        yield server
    finally:
        server.close()


def test_redis_sigkill_restart_from_aof(
    services: Settings, spare_redis: SpareRedis | SpareRedisCluster, tmp_path: Path
) -> None:
    base = Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=spare_redis.url,
        redis_cluster=spare_redis.cluster,
    )
    d = Deployment(base, tmp_path, **with_policy(tmp_path))
    try:
        events, bad, rng = traffic_for(23, 150, 4000)
        traffic = Traffic()
        d.start_worker(SEGSTREAM_BATCH_SIZE="100")
        feeder = produce_while(d, traffic, events, bad, rng, rate=250)
        wait_progress(d, 1500)
        # On a cluster, the node that holds partition 0's slot loses its last second; the
        # other nodes keep theirs (the replay must cover only what that node lost).
        port = None
        if isinstance(spare_redis, SpareRedisCluster):
            port = d.redis.get_node_from_key(applied_key(d.settings.key_prefix, 0)).port
        aof = spare_redis.aof(port) if port else spare_redis.aof()
        durable = aof.stat().st_size  # what an fsync a second before the crash kept
        time.sleep(1.0)
        spare_redis.kill(port) if port else spare_redis.kill()
        # SIGKILL alone loses nothing (written data is in the page cache); losing the
        # machine loses what was not fsynced yet: up to a second with `everysec`.
        with aof.open("r+b") as f:
            f.truncate(durable)
        time.sleep(1)
        spare_redis.start()
        feeder.join(120)
        account(
            "Redis loses its last second (AOF everysec)",
            d,
            traffic,
            redis_lost_writes=True,
        )
        assert d.workers[0].poll() is None, "worker stopped"
        assert "Redis lost writes" in d.log(0), d.log(0)[-3000:]  # found, and replayed
    finally:
        d.close()


@pytest.fixture
def spare_kafka(services: Settings) -> Iterator[SpareKafka]:
    broker = SpareKafka(services.redis_url)
    try:
        yield broker
    finally:
        broker.close()


@pytest.mark.same_on_cluster
def test_broker_stop_and_restart(
    services: Settings, spare_kafka: SpareKafka, tmp_path: Path
) -> None:
    base = Settings(kafka_bootstrap=spare_kafka.bootstrap, redis_url=services.redis_url)
    d = Deployment(base, tmp_path, **with_policy(tmp_path))
    try:
        events, bad, rng = traffic_for(24, 150, 3000)
        traffic = Traffic()
        d.start_worker(SEGSTREAM_BATCH_SIZE="100")
        traffic.produce(d, events[:1500], bad[:20], rng)
        wait_progress(d, 500)
        spare_kafka.stop()
        time.sleep(3)
        spare_kafka.start()
        traffic.produce(d, events[1500:], bad[20:], rng)
        account("Kafka broker stopped and restarted", d, traffic, timeout=120)
        assert d.workers[0].poll() is None, "worker stopped"
    finally:
        d.close()
