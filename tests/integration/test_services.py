"""The local Kafka and Redis of ``segstream services``, against real processes.

The default-port services are started by ``segstream services up`` before the test run.
The start/stop test runs a second broker and redis-server on spare ports, reusing the
jars of the default cache dir, and removes everything it created afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer

from streams.services import ServiceState, down, status, up
from streams.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_port_pair() -> int:
    """A port p with p + 1 also free: the broker's listener and its controller."""
    for _ in range(50):
        port = _free_port()
        if port < 65535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two adjacent free ports found")


def _spare_settings() -> Settings:
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{_free_port_pair()}",
        redis_url=f"redis://127.0.0.1:{_free_port()}/0",
        cache_dir=Settings().cache_dir,  # the cached Kafka jars are reused
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
    states = _by_name(status(Settings()))
    assert set(states) == {"kafka", "redis"}
    assert states["kafka"].answering, states["kafka"].detail
    assert states["redis"].answering, states["redis"].detail


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
