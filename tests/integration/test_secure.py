"""Secured connections end to end: Kafka with SASL/SCRAM, Redis with an ACL user.

A spare broker (PLAINTEXT listener for the services probe, plus a SASL_PLAINTEXT
listener with SCRAM-SHA-256 users written at format time) and a spare redis-server
with an ACL user that may touch only ``<key_prefix>:*`` run on free ports; the worker is
a real subprocess that talks only to the SASL listener and logs in as the ACL user.
Everything started here is stopped and removed afterwards; the shared services on the
default ports are left alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from streams.devservices import ScramListener, down, up
from streams.kafka.clients import ConnectionCheckError, kafka_consumer
from streams.kafka.partitioner import partition_for
from streams.kafka.topics import CHANGES, finish, input_producer
from streams.settings import KafkaSecurity, Settings
from streams.store import load_doc
from streams.store.clients import check_redis, redis_client
from streams.store.keys import state_key
from tests.integration.conftest import (
    Deployment,
    claim_topics,
    free_port,
    free_ports,
    release_topics,
)
from tests.integration.faults import SpareRedisCluster
from tests.unit.factories import Events

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER = "segstream"
KAFKA_PASSWORD = "kafka-" + uuid.uuid4().hex[:12]
REDIS_PASSWORD = "redis-" + uuid.uuid4().hex[:12]
PREFIX = "sec" + uuid.uuid4().hex[:6]

#: What the worker may do in Redis: data commands, scripts, MEMORY USAGE; nothing
#: dangerous (CONFIG, FLUSHALL, KEYS, ...), no pub/sub channels, only its own keys.
ACL_RULES = [
    "reset",
    "on",
    f">{REDIS_PASSWORD}",
    f"~{PREFIX}:*",
    "resetchannels",
    "-@all",
    "+@connection",
    "+@transaction",
    "+@read",
    "+@write",
    "+@keyspace",
    "+@scripting",
    "-@dangerous",
    "+memory|usage",
]


@dataclass(frozen=True)
class Secured:
    base: Settings  # the spare services, as `services up` sees them (plaintext)
    sasl_port: int

    def env(
        self,
        *,
        kafka_password: str = KAFKA_PASSWORD,
        redis_password: str = REDIS_PASSWORD,
        uid: str = "",
    ) -> dict[str, str]:
        uid = uid or uuid.uuid4().hex[:8]
        return {
            "SEGSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.sasl_port}",
            "SEGSTREAM_KAFKA_SECURITY__PROTOCOL": "SASL_PLAINTEXT",
            "SEGSTREAM_KAFKA_SECURITY__MECHANISM": "SCRAM-SHA-256",
            "SEGSTREAM_KAFKA_SECURITY__USERNAME": USER,
            "SEGSTREAM_KAFKA_SECURITY__PASSWORD": kafka_password,
            "SEGSTREAM_REDIS_URL": self.base.redis_url,
            "SEGSTREAM_REDIS_CLUSTER": "false",  # its own standalone server, whatever the suite's
            "SEGSTREAM_REDIS_USERNAME": USER,
            "SEGSTREAM_REDIS_PASSWORD": redis_password,
            "SEGSTREAM_KEY_PREFIX": PREFIX,
            "SEGSTREAM_TOPIC_PREFIX": f"t{uid}.",
            "SEGSTREAM_APP_ID": f"segstream-t{uid}",
            "SEGSTREAM_TOPIC_PARTITIONS": "2",
            "SEGSTREAM_BATCH_WINDOW_S": "0.02",
            "SEGSTREAM_SESSION_TIMEOUT_S": "6",
            "SEGSTREAM_WEB_ENABLED": "false",
            "SEGSTREAM_LOG_LEVEL": "info",
        }

    def settings(self, env: dict[str, str]) -> Settings:
        """The worker's settings, built in this process from its environment."""
        plain: dict[str, Any] = {k.removeprefix("SEGSTREAM_").lower(): v for k, v in env.items()}
        security = {
            k.removeprefix("kafka_security__"): plain.pop(k)
            for k in list(plain)
            if k.startswith("kafka_security__")
        }
        return Settings(**plain, kafka_security=KafkaSecurity(**security))


def _port_files(settings: Settings) -> list[Path]:
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


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    base = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_ports(2)}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        cache_dir=Settings().cache_dir,  # the cached Kafka jars are reused
        kafka_heap="256m",
        topic_partitions=2,
        redis_cluster=False,  # a standalone server with the ACL user, also in a cluster run
    )
    sasl_port = free_port()
    lines: list[str] = []
    try:
        up(base, echo=lines.append, scram=ScramListener(sasl_port, {USER: KAFKA_PASSWORD}))
        admin = redis.Redis.from_url(base.redis_url)  # the default user, on our own server
        try:
            admin.execute_command("ACL", "SETUSER", USER, *ACL_RULES)  # type: ignore[no-untyped-call]
        finally:
            admin.close()
        yield Secured(base, sasl_port)
    finally:
        down(base, echo=lines.append)
        for path in _port_files(base):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_for(log: Path, proc: subprocess.Popen[bytes], needle: str, timeout: float) -> None:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if needle in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def test_worker_runs_with_scram_and_an_acl_user(secured: Secured, tmp_path: Path) -> None:
    env = secured.env()
    env["SEGSTREAM_CACHE_DIR"] = str(tmp_path / "cache")
    settings = secured.settings(env)
    log = tmp_path / "worker.log"
    proc = _start_worker(env, log)
    try:
        _wait_for(log, proc, "[^Worker]: Ready", 120)
        a = Events("c-sec")
        events = [a.browse(0), a.add("A", 1), a.purchase("o-1", ["A"], 2)]
        producer, topics = input_producer(settings, "test")  # SASL as well
        try:
            for e in events:
                producer.send(
                    topics[e["type"]], key=e["customer_id"].encode(), value=orjson.dumps(e)
                ).get(timeout=30)
        finally:
            finish(producer)

        client = redis_client(settings)  # the ACL user
        try:
            ends = time.monotonic() + 60
            state = None
            while time.monotonic() < ends:
                key = state_key(PREFIX, partition_for("c-sec", settings.topic_partitions), "c-sec")
                state = load_doc(client.hget(key, "doc"))
                if state and state.get("events", 0) >= len(events):
                    break
                time.sleep(0.25)
            assert state and state["events"] == len(events), log.read_text()[-3000:]
            assert state["segments"]["journey"][0] == "first_time_buyer"
            with pytest.raises(redis.exceptions.NoPermissionError):  # confined to its keys
                client.set("elsewhere:x", b"1")
        finally:
            client.close()

        journey = _changes(settings, "c-sec", expect=3)
        assert journey[-3:] == [
            (None, "browser"),
            ("browser", "active_cart"),
            ("active_cart", "first_time_buyer"),
        ], journey
        text = log.read_text(errors="replace")
        assert "NOPERM" not in text and "no permissions" not in text, text[-3000:]
        assert "AuthenticationFailed" not in text
    finally:
        _stop(proc)


def _changes(settings: Settings, customer: str, *, expect: int) -> list[tuple[str | None, str]]:
    """The journey changes of ``customer`` on segments.changes, read as the SASL user."""
    from kafka import TopicPartition

    topic = settings.topic(CHANGES)
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        found: list[tuple[str | None, str]] = []
        ends = time.monotonic() + 30
        while time.monotonic() < ends and len(found) < expect:
            for batch in consumer.poll(timeout_ms=300).values():
                for r in batch:
                    ch = orjson.loads(r.value)
                    if ch["customer_id"] == customer and ch["dimension"] == "journey":
                        found.append((ch["previous"], ch["current"]))
        return found
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("which", "message"),
    [
        # "refused" when the client saw the broker's answer in time, "did not accept" when
        # a loaded machine made it time out first: either way a clear error, not a hang
        ("kafka", "the SASL credentials for user segstream (SCRAM-SHA-256)"),
        ("redis", "refused user segstream"),
    ],
)
def test_wrong_password_stops_the_worker_at_start(
    secured: Secured, tmp_path: Path, which: str, message: str
) -> None:
    wrong = {f"{which}_password": "not-the-password"}
    env = {**secured.env(**wrong), "SEGSTREAM_CACHE_DIR": str(tmp_path / "cache")}
    log = tmp_path / "worker.log"
    started = time.monotonic()
    proc = _start_worker(env, log)
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise AssertionError(f"worker still runs after 20 s:\n{log.read_text()[-3000:]}") from None
    text = log.read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert message in text, text[-3000:]
    where = (
        f"Kafka at 127.0.0.1:{secured.sasl_port}"
        if which == "kafka"
        else f"Redis at 127.0.0.1:{secured.base.redis_host_port[1]}"
    )
    assert where in text, text[-3000:]
    assert "not-the-password" not in text  # a password is never echoed
    assert time.monotonic() - started < 20


def test_redis_over_tls(tmp_path: Path) -> None:
    """rediss:// with the server's CA passes the start check; without the CA it fails."""
    from streams.kafka.clients import ConnectionCheckError
    from streams.store.clients import check_redis

    crt, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(crt)],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0"]
        + ["--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        + ["--tls-cert-file", str(crt), "--tls-key-file", str(key)]
        + ["--tls-ca-cert-file", str(crt), "--tls-auth-clients", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0"
        trusted = Settings(redis_url=url, redis_ca_file=crt, key_prefix=PREFIX, redis_cluster=False)
        ends = time.monotonic() + 20
        while True:
            try:
                check_redis(trusted, timeout_s=2)
                break
            except ConnectionCheckError:
                if time.monotonic() > ends or server.poll() is not None:
                    raise
                time.sleep(0.2)
        client = redis_client(trusted)
        try:
            client.set(f"{PREFIX}:tls", b"1")
            assert client.get(f"{PREFIX}:tls") == b"1"
        finally:
            client.close()
        with pytest.raises(ConnectionCheckError, match="certificate verify failed"):
            check_redis(
                Settings(redis_url=url, key_prefix=PREFIX, redis_cluster=False), timeout_s=2
            )
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def test_the_start_check_names_a_partition_count_or_cluster_mode_that_does_not_fit(
    services: Settings,
) -> None:
    """A customer's partition, and so its keys' hash tag, depends on the partition count;
    a worker must not start on topics with another count, or on the wrong kind of Redis."""
    from streams.kafka.clients import ConnectionCheckError, check_kafka
    from streams.kafka.topics import ensure_topics
    from streams.store.clients import check_redis

    two = services.model_copy(
        update={"topic_prefix": f"pc{uuid.uuid4().hex[:8]}.", "topic_partitions": 2}
    )
    claim_topics(two)
    ensure_topics(two)
    try:
        check_kafka(two)
        with pytest.raises(ConnectionCheckError, match="SEGSTREAM_TOPIC_PARTITIONS is 3"):
            check_kafka(two.model_copy(update={"topic_partitions": 3}))
    finally:
        release_topics(two)

    wrong = services.model_copy(update={"redis_cluster": not services.redis_cluster})
    expected = "is a Redis Cluster node" if services.redis_cluster else "is not a Redis Cluster"
    with pytest.raises(ConnectionCheckError, match=expected):
        check_redis(wrong, timeout_s=3)


#: On a Redis Cluster the client also reads the slot map; nothing else is added.
CLUSTER_ACL_RULES = [*ACL_RULES, "+cluster|slots"]


def test_worker_runs_on_a_redis_cluster_with_an_acl_user(
    services: Settings, tmp_path: Path
) -> None:
    """The ACL user of the README, plus the slot-map reads, on every node of a cluster of
    the test's own: the worker applies events, and the user stays confined to its keys."""
    cluster = SpareRedisCluster(tmp_path / "cluster")
    d = None
    try:
        for port in cluster.ports:
            admin = redis.Redis(host="127.0.0.1", port=port)
            try:
                admin.execute_command("ACL", "SETUSER", USER, *CLUSTER_ACL_RULES)  # type: ignore[no-untyped-call]
            finally:
                admin.close()
        d = Deployment(
            services,
            tmp_path,
            SEGSTREAM_REDIS_URL=cluster.url,
            SEGSTREAM_REDIS_CLUSTER="true",
            SEGSTREAM_REDIS_USERNAME=USER,
            SEGSTREAM_REDIS_PASSWORD=REDIS_PASSWORD,
            SEGSTREAM_KEY_PREFIX=PREFIX,
            SEGSTREAM_TOPIC_PARTITIONS=4,
        )
        d.start_worker()
        people = [Events(f"c-acl-{i}") for i in range(8)]
        events = [
            e for p in people for e in (p.browse(0), p.add("A", 1), p.purchase("o", ["A"], 2))
        ]
        d.produce(events)
        d.wait_applied({p.customer_id: 3 for p in people})
        homes = {partition_for(p.customer_id, 4) for p in people}
        assert len(homes) > 1  # more than one slot, so more than one node is written
        for p in people:
            state = d.state(p.customer_id)
            assert state is not None and state["segments"]["journey"][0] == "first_time_buyer"
        with pytest.raises(redis.exceptions.NoPermissionError):  # confined to its keys
            d.redis.set("elsewhere:x", b"1")
        text = d.log()
        assert "NOPERM" not in text and "no permissions" not in text, text[-3000:]

        # The standalone rules alone: the start check names the missing permission.
        for port in cluster.ports:
            admin = redis.Redis(host="127.0.0.1", port=port)
            try:
                admin.execute_command("ACL", "SETUSER", USER, *ACL_RULES)  # type: ignore[no-untyped-call]
                admin.execute_command("ACL", "SETUSER", USER, "-cluster|slots")  # type: ignore[no-untyped-call]
            finally:
                admin.close()
        with pytest.raises(
            ConnectionCheckError, match=r"slot map \(ACL SETUSER segstream \+cluster\|slots\)"
        ):
            check_redis(d.settings)
    finally:
        if d is not None:
            d.close()
        cluster.close()
