"""The local Kafka and Redis of ``segstream services``, against real processes.

The default-port services are started by ``segstream services up`` before the test run.
The start/stop test runs a second broker and redis-server on spare ports, reusing the
jars of the default cache dir, and removes everything it created afterwards. The
cluster tests start 3-master Redis Clusters on spare ports in a temporary cache dir.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer
from redis.cluster import RedisCluster

from streams.devservices import (
    ServiceError,
    ServiceState,
    cluster_nodes,
    down,
    parse_cluster_info,
    redis_cluster_ok,
    redis_up,
    start_cluster,
    status,
    up,
)
from streams.devservices.process import _locked, _stop
from streams.settings import Settings
from tests.integration.conftest import ROOT, free_port, free_ports
from tests.integration.faults import SpareRedisCluster, free_cluster_port

pytestmark = pytest.mark.integration


def _spare_settings() -> Settings:
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{free_ports(2)}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        cache_dir=Settings().cache_dir,  # the cached Kafka jars are reused
        redis_cluster=False,  # the standalone path (test_redis_cluster_up_down_up: a cluster)
    )


def _port_files(settings: Settings) -> list[Path]:
    """What a start on these ports leaves in the cache dir."""
    cache = settings.cache_dir
    kafka, redis_port = settings.kafka_host_port[1], settings.redis_host_port[1]
    return [
        cache / f"kafka-data-{kafka}",
        cache / f"redis-data-{redis_port}",
        cache / "run" / f"server-{kafka}.properties",
        cache / "run" / f"kafka-{kafka}.lock",
        cache / "run" / f"redis-{redis_port}.lock",
        cache / "logs" / f"kafka-{kafka}.log",
        cache / "logs" / f"redis-{redis_port}.log",
    ]


def _by_name(states: list[ServiceState]) -> dict[str, ServiceState]:
    return {state.name: state for state in states}


def _pid_files(settings: Settings) -> list[Path]:
    run = settings.cache_dir / "run"
    return [
        run / f"kafka-{settings.kafka_host_port[1]}.pid",
        run / f"redis-{settings.redis_host_port[1]}.pid",
    ]


@pytest.fixture
def spare() -> Iterator[tuple[Settings, list[str]]]:
    """Settings on unused ports; whatever the test started is stopped and removed after."""
    settings = _spare_settings()
    lines: list[str] = []
    try:
        yield settings, lines
    finally:
        down(settings, echo=lines.append)
        for path in _port_files(settings):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def test_default_services_answer() -> None:
    settings = Settings()  # SEGSTREAM_REDIS_CLUSTER=1 (make test-cluster): three nodes
    states = status(settings)
    assert [s.name for s in states] == ["kafka"] + ["redis"] * (3 if settings.redis_cluster else 1)
    assert all(s.answering for s in states), states


@pytest.mark.same_on_cluster
def test_up_and_down_on_spare_ports(spare: tuple[Settings, list[str]]) -> None:
    settings, lines = spare
    up(settings, echo=lines.append)
    assert any(line.startswith("kafka: started Apache Kafka") for line in lines), lines
    assert any(line.startswith("redis: started redis-server") for line in lines), lines
    assert all(path.exists() for path in _pid_files(settings))

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        producer.send("segstream.services-check", b"hello").get(timeout=30)
    finally:
        producer.close()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        assert "segstream.services-check" in admin.list_topics()
    finally:
        admin.close()
    assert redis.Redis.from_url(settings.redis_url).ping()

    running = _by_name(status(settings))
    assert running["kafka"].answering and running["kafka"].pid is not None
    assert running["redis"].answering and running["redis"].pid is not None
    pids = [running["kafka"].pid, running["redis"].pid]

    lines.clear()
    up(settings, echo=lines.append)  # a second up reuses what runs
    assert all("already answers" in line for line in lines), lines

    down(settings, echo=lines.append)
    stopped = _by_name(status(settings))
    assert not stopped["kafka"].answering and stopped["kafka"].pid is None
    assert not stopped["redis"].answering and stopped["redis"].pid is None
    assert not any(path.exists() for path in _pid_files(settings))
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.same_on_cluster
def test_down_removes_a_stale_pid_file(spare: tuple[Settings, list[str]]) -> None:
    settings, lines = spare
    gone = subprocess.Popen(["true"])  # its pid no longer runs once waited for
    gone.wait()
    kafka_pid = _pid_files(settings)[0]
    kafka_pid.parent.mkdir(parents=True, exist_ok=True)
    kafka_pid.write_text(f"{gone.pid}\n")
    assert not os.path.exists(f"/proc/{gone.pid}")

    down(settings, echo=lines.append)
    assert not kafka_pid.exists()
    assert any("stale pid file" in line for line in lines), lines


# --------------------------------------------------------------------------- Redis Cluster


def _cluster_keys(client: RedisCluster, ports: list[int]) -> dict[str, str]:
    """Keys whose slots fall on every node of the cluster, with their values."""
    keys = {f"services-check:{i}": f"value-{i}" for i in range(30)}
    owners = {client.get_node_from_key(key).port for key in keys}
    assert owners == set(ports), owners
    return keys


@pytest.mark.same_on_cluster
def test_redis_cluster_up_down_up(tmp_path: Path) -> None:
    port = free_cluster_port()
    ports = [port, port + 1, port + 2]
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",  # no broker: only Redis is started
        redis_cluster=True,
        redis_url=f"redis://127.0.0.1:{port}/0",
        cache_dir=tmp_path,
    )
    lines: list[str] = []
    try:
        redis_up(settings, echo=lines.append)
        assert sum("started redis-server (cluster node)" in line for line in lines) == 3, lines
        assert any("formed a cluster of 3 masters" in line for line in lines), lines
        assert redis_cluster_ok("127.0.0.1", ports)
        for node_port in ports:
            node = redis.Redis(host="127.0.0.1", port=node_port, decode_responses=True)
            info = parse_cluster_info(node.execute_command("CLUSTER", "INFO"))
            assert info["cluster_state"] == "ok", info
            assert info["cluster_slots_assigned"] == "16384", info
            assert info["cluster_size"] == "3", info  # masters serving slots
            roles = [
                line.split()[2] for line in node.execute_command("CLUSTER", "NODES").splitlines()
            ]
            assert sorted("master" in flags.split(",") for flags in roles) == [True] * 3, roles
            node.close()
            assert (
                tmp_path / f"redis-cluster-{port}" / f"node-{node_port}" / "nodes.conf"
            ).exists()

        states = [s for s in status(settings) if s.name == "redis"]
        assert [s.address for s in states] == [f"127.0.0.1:{p}" for p in ports]
        assert all(s.answering and s.pid for s in states), states
        assert all("cluster_state:ok" in s.detail for s in states), states
        cli = subprocess.run(
            [sys.executable, "-m", "streams.cli", "services", "status"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **os.environ,
                "SEGSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                "SEGSTREAM_REDIS_URL": settings.redis_url,
                "SEGSTREAM_REDIS_CLUSTER": "1",
                "SEGSTREAM_CACHE_DIR": str(tmp_path),
            },
        )
        redis_lines = [line for line in cli.stdout.splitlines() if line.startswith("redis")]
        assert len(redis_lines) == 3, cli.stdout + cli.stderr
        assert all(f":{p} " in line for p, line in zip(ports, redis_lines, strict=True))

        client = RedisCluster.from_url(settings.redis_url)
        keys = _cluster_keys(client, ports)
        for key, value in keys.items():
            client.set(key, value)
        assert {k: client.get(k) for k in keys} == {k: v.encode() for k, v in keys.items()}
        client.close()

        lines.clear()
        down(settings, echo=lines.append)
        assert sum(line.startswith("redis: stopped pid") for line in lines) == 3, lines
        assert not any(s.answering or s.pid for s in status(settings) if s.name == "redis")
        assert not redis_cluster_ok("127.0.0.1", ports, timeout_s=0.5)

        lines.clear()
        redis_up(settings, echo=lines.append)  # from nodes.conf and the AOFs: no new cluster
        assert sum("started redis-server (cluster node)" in line for line in lines) == 3, lines
        assert not any("formed" in line for line in lines), lines
        assert redis_cluster_ok("127.0.0.1", ports)
        client = RedisCluster.from_url(settings.redis_url)
        assert {k: client.get(k) for k in keys} == {k: v.encode() for k, v in keys.items()}
        client.close()
    finally:
        down(settings, echo=lines.append)
    assert not any(s.answering for s in status(settings) if s.name == "redis")


@pytest.mark.same_on_cluster
def test_spare_redis_cluster_kill_and_restart(tmp_path: Path) -> None:
    spare = SpareRedisCluster(tmp_path / "cluster")
    try:
        assert spare.url == f"redis://127.0.0.1:{spare.ports[0]}/0"
        client = RedisCluster.from_url(spare.url)
        keys = _cluster_keys(client, spare.ports)
        for key, value in keys.items():
            client.set(key, value)
        client.close()
        assert spare.aof(spare.ports[1]).stat().st_size > 0

        spare.kill()  # the first node: its slots go unserved, the cluster stops
        assert not redis_cluster_ok("127.0.0.1", spare.ports, timeout_s=0.5)
        ends = time.monotonic() + 30
        survivor = redis.Redis(host="127.0.0.1", port=spare.ports[1], decode_responses=True)
        while (
            parse_cluster_info(survivor.execute_command("CLUSTER", "INFO"))["cluster_state"]
            != "fail"
        ):
            assert time.monotonic() < ends, "the other nodes did not notice the killed one"
            time.sleep(0.2)
        survivor.close()

        spare.start()
        assert redis_cluster_ok("127.0.0.1", spare.ports)
        spare.kill(every=True)
        assert not any(node.service.answers() for node in spare.nodes)
        spare.start()
        client = RedisCluster.from_url(spare.url)
        assert {k: client.get(k) for k in keys} == {k: v.encode() for k, v in keys.items()}
        client.close()
    finally:
        spare.close()
    assert not (tmp_path / "cluster").exists()


@pytest.mark.same_on_cluster
def test_cluster_refuses_a_standalone_redis_on_its_ports(tmp_path: Path) -> None:
    port = free_cluster_port()
    nodes = cluster_nodes(tmp_path, "127.0.0.1", port)
    standalone = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port + 1), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        ends = time.monotonic() + 20
        while not nodes[1].service.answers():
            assert standalone.poll() is None and time.monotonic() < ends
            time.sleep(0.1)
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port + 1} is not a cluster node"):
            start_cluster(nodes, lines.append)
        assert any(f"{port + 1} already answers (not started by segstream)" in x for x in lines)
    finally:
        standalone.kill()
        standalone.wait(10)
        for node in nodes:
            with _locked(node.service.lock_file):
                _stop(node.service, lines.append)
    assert not any(node.service.answers() for node in nodes)
