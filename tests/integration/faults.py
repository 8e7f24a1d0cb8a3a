"""What the fault tests share: spare servers, traffic, and the end-of-test accounting.

Every fault test ends the same way (``account``): wait until every valid event is in
Redis, run ``segstream verify`` (offline recomputation against Redis), and count what
the input, the dead-letter topic, the states, ``segments.changes`` and the ``actions.*``
topics hold.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from kafka import KafkaConsumer, TopicPartition

from segmenters.core import Source
from streams import devservices as svc
from streams.devservices.kafka import _kafka_service, _kafka_up
from streams.devservices.process import _locked, _our_pid, _stop, _wait_gone
from streams.devservices.redis_server import _find_redis_server
from streams.kafka.topics import ACTION_TOPICS, TOPIC_OF_TYPE
from streams.settings import Settings
from streams.store.keys import applied_key
from streams.store.scans import stored_states
from streams.tools.verify import verify
from tests.integration.conftest import Deployment, free_port, free_ports
from tests.integration.test_pipeline import assert_change_chains
from tests.unit.factories import Events

ROOT = Path(__file__).resolve().parents[2]
#: Where ``account`` appends its rows as JSON lines (for docs/reliability.md), if set.
RESULTS = os.environ.get("SEGSTREAM_RELIABILITY_RESULTS")


# --------------------------------------------------------------------------- servers


class SpareRedis:
    """A redis-server of the test's own on a spare port, persisting to an AOF
    (``appendfsync everysec``) in ``data``: SIGKILL loses up to its last second."""

    cluster = False  # SEGSTREAM_REDIS_CLUSTER for a deployment on it

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data = data
        data.mkdir(parents=True, exist_ok=True)
        server = _find_redis_server()
        assert server, "redis-server not installed"
        self.command = [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
            "--daemonize",
            "no",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        ends = time.monotonic() + 20
        while not svc.redis_answers(self.url, timeout_s=0.5):
            assert self.proc.poll() is None, (self.data / "redis.log").read_text()[-2000:]
            assert time.monotonic() < ends, "spare redis-server did not answer"
            time.sleep(0.1)

    def aof(self) -> Path:
        """The file Redis appends to now (Redis 7: the newest ``*.incr.aof``)."""
        return newest_aof(self.data)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)


class SpareRedisCluster:
    """A 3-master Redis Cluster of the test's own on spare ports P, P+1, P+2, started
    by the code of ``segstream services up`` (``devservices.start_cluster``): each node
    persists to an AOF (``appendfsync everysec``) under ``data``. The same API as
    ``SpareRedis``: ``url`` (the first node), ``start``, ``kill``, ``aof``, ``close``."""

    cluster = True

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_cluster_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.nodes = svc.cluster_nodes(data, "127.0.0.1", self.port)
        self.ports = [node.port for node in self.nodes]
        self.lines: list[str] = []  # what the services code said
        self.start()

    def node(self, port: int | None = None) -> svc.ClusterNode:
        """The node on ``port`` (default: the first)."""
        wanted = self.port if port is None else port
        found = [node for node in self.nodes if node.port == wanted]
        assert found, f"no node on port {wanted}; the ports are {self.ports}"
        return found[0]

    def start(self) -> None:
        """Start every node that does not run (a killed one comes back from its
        nodes.conf and AOF) and wait until each reports cluster_state:ok."""
        svc.start_cluster(self.nodes, self.lines.append)

    def aof(self, port: int | None = None) -> Path:
        """The file the node on ``port`` (default: the first) appends to now."""
        return newest_aof(self.node(port).data)

    def kill(self, port: int | None = None, *, every: bool = False) -> None:
        """SIGKILL the node on ``port`` (default: the first), or ``every`` node."""
        for node in self.nodes if every else [self.node(port)]:
            pid = _our_pid(node.service)
            assert pid is not None, f"node {node.port} does not run"
            os.kill(pid, signal.SIGKILL)
            assert _wait_gone(pid, 10), f"node {node.port} outlived SIGKILL"

    def close(self) -> None:
        for node in self.nodes:
            with _locked(node.service.lock_file):
                _stop(node.service, self.lines.append)
        shutil.rmtree(self.data, ignore_errors=True)


def newest_aof(data: Path) -> Path:
    """The file a Redis with ``--dir data`` appends to now (Redis 7: the ``*.incr.aof``
    with the highest sequence number; before 7: ``appendonly.aof``)."""
    parts = sorted(
        (data / "appendonlydir").glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[-3])
    )
    return parts[-1] if parts else data / "appendonly.aof"


def free_cluster_port(count: int = svc.CLUSTER_MASTERS) -> int:
    """A port P with P .. P+count-1 and their cluster bus ports (+10000) all free."""
    return free_ports(count, plus=svc.CLUSTER_BUS_OFFSET)


def free_port_pair() -> int:
    """A port p with p + 1 also free: a broker's listener and its controller."""
    return free_ports(2)


class SpareKafka:
    """A second single-node KRaft broker on spare ports (the shared one stays up),
    started and stopped with the ``segstream services`` helpers; removed afterwards."""

    def __init__(self, redis_url: str) -> None:
        self.settings = Settings(
            kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
            redis_url=redis_url,
            cache_dir=Settings().cache_dir,  # the cached Kafka jars are reused
        )
        self.lines: list[str] = []
        self.start()

    @property
    def bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    def start(self) -> None:
        _kafka_up(self.settings, self.lines.append)

    def stop(self) -> None:
        with _locked(_kafka_service(self.settings).lock_file):
            _stop(_kafka_service(self.settings), self.lines.append)

    def close(self) -> None:
        self.stop()
        port = self.settings.kafka_host_port[1]
        cache = self.settings.cache_dir
        shutil.rmtree(cache / f"kafka-data-{port}", ignore_errors=True)
        for path in (
            cache / "run" / f"server-{port}.properties",
            cache / "run" / f"kafka-{port}.lock",
            cache / "run" / f"kafka-{port}.pid",
            cache / "logs" / f"kafka-{port}.log",
        ):
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- traffic


def bad_messages(rng: random.Random, n: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """A few kinds of bad input, for the fault tests' dead-letter count."""
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for i in range(n):
        e = Events(f"c-bad-{i % 7}")
        kind = rng.randrange(5)
        if kind == 0:
            out.append(("events.browse", b"c-x", rng.randbytes(rng.randrange(1, 60))))
        elif kind == 1:
            out.append(("events.browse", b"c-x", orjson.dumps(dict(e.browse(), price="cheap"))))
        elif kind == 2:
            add = e.add("A")
            out.append(("events.cart", add["customer_id"].encode(), orjson.dumps(add)[:-9]))
        elif kind == 3:
            out.append(("events.cart", b"c-wrong-key", orjson.dumps(e.add("A"))))
        else:
            out.append(("events.purchase", None, orjson.dumps(dict(e.browse(), type="teleport"))))
    return out


@dataclass
class Traffic:
    """What was produced: good events with their positions, bad ones with theirs."""

    good: list[tuple[dict[str, Any], Source]] = field(default_factory=list)
    bad: list[Source] = field(default_factory=list)

    def produce(self, d: Deployment, events: list[dict], bad: list, rng: random.Random) -> None:
        """Send good events, with the bad ones spread among them at random places; all
        sends are in flight at once and their positions collected after one flush."""
        slots = sorted(rng.randrange(len(events) + 1) for _ in bad)
        sent: list[tuple[dict | None, Any]] = []
        start = 0

        def good(upto: int) -> None:
            for e in events[start:upto]:
                topic = d.settings.topic(TOPIC_OF_TYPE[e["type"]])
                sent.append(
                    (
                        e,
                        d.producer.send(
                            topic, key=e["customer_id"].encode(), value=orjson.dumps(e)
                        ),
                    )
                )

        for slot, (topic, key, value) in zip(slots, bad, strict=True):
            good(slot)
            start = max(start, slot)
            sent.append((None, d.producer.send(d.settings.topic(topic), key=key, value=value)))
        good(len(events))
        d.producer.flush()
        for e, future in sent:
            md = future.get(timeout=30)
            src = Source(md.topic, md.partition, md.offset)
            if e is None:
                self.bad.append(src)
            else:
                self.good.append((e, src))

    def per_customer(self) -> dict[str, int]:
        ids: dict[str, set[str]] = defaultdict(set)
        for e, _ in self.good:
            ids[e["customer_id"]].add(e["event_id"])
        return {c: len(s) for c, s in ids.items()}


def progress(d: Deployment) -> int:
    """Sum of the offsets Redis records as applied (grows as the worker goes on)."""
    try:
        return sum(
            int(v)
            for p in range(d.settings.topic_partitions)
            for v in d.redis.hgetall(applied_key(d.settings.key_prefix, p)).values()
        )
    except redis.RedisError:
        return -1


def wait_progress(d: Deployment, above: int, timeout: float = 60) -> int:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        now = progress(d)
        if now > above:
            return now
        time.sleep(0.05)
    raise AssertionError(f"no progress in {timeout}s:\n{d.log(len(d.workers) - 1)[-3000:]}")


# --------------------------------------------------------------------------- accounting


def read_topics(bootstrap: str, topics: list[str], settle: float = 3.0) -> list[Any]:
    """Every record of these topics, read until nothing new came for ``settle`` s."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or []
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        quiet = time.monotonic()
        ends = time.monotonic() + 60
        while time.monotonic() - quiet < settle and time.monotonic() < ends:
            got = consumer.poll(timeout_ms=200)
            for batch in got.values():
                records.extend(batch)
            if got:
                quiet = time.monotonic()
        return records
    finally:
        consumer.close()


Exempt = Callable[[dict[str, Any], dict[str, Any]], bool]


def resends(
    records: list[Any], key: str, exempt: Exempt = lambda first, again: False
) -> tuple[int, int, int, int]:
    """(distinct ids, repeats that are the very same message, repeats that differ,
    repeats that differ but are ``exempt(first, again)``)."""
    by_id: dict[str, bytes] = {}
    same = differ = exempted = 0
    for r in records:
        message = orjson.loads(r.value)
        ident = message[key]
        if ident not in by_id:
            by_id[ident] = r.value
        elif by_id[ident] == r.value:
            same += 1
        elif exempt(orjson.loads(by_id[ident]), message):
            exempted += 1
        else:
            differ += 1
    return len(by_id), same, differ, exempted


def account(
    name: str,
    d: Deployment,
    traffic: Traffic,
    timeout: float = 90,
    redis_lost_writes: bool = False,
) -> dict[str, Any]:
    """Wait for every valid event, verify, count; print and record the row.

    ``redis_lost_writes``: after Redis lost writes, an action the pipeline decides
    again (from its replay) carries the customer's features of the moment and, if
    delayed, the time of the scan that sent it; counted, not failed. Any other difference
    fails, and a change_id never comes back with other content: a change the replay
    computes differently (RFM, behaviour) is another change, with its own id
    (docs/reliability.md)."""
    expected = traffic.per_customer()
    d.wait_applied(expected, timeout=timeout)
    settings = d.settings
    report = verify(settings, progress=False)
    stored = stored_states(settings, list(expected))
    applied = sum(s.events for s in stored.values())
    lost = sum(max(0, n - (stored[c].events if c in stored else 0)) for c, n in expected.items())
    duplicated = sum(max(0, stored[c].events - n) for c, n in expected.items() if c in stored)

    letters = read_topics(settings.kafka_bootstrap, [settings.topic("events.deadletter")])
    lettered = Counter()
    for r in letters:
        letter = orjson.loads(r.value)
        assert letter["reason"], letter
        lettered[(letter["topic"], letter["partition"], letter["offset"])] += 1
    bad = {(s.topic, s.partition, s.offset) for s in traffic.bad}
    assert set(lettered) == bad, "a bad message is missing from events.deadletter"

    changes = read_topics(settings.kafka_bootstrap, [settings.topic("segments.changes")])

    distinct_changes, changes_resent, changes_differ, _ = resends(changes, "change_id")
    docs = {c: d.state(c) for c in expected}
    assert_change_chains(changes, docs)  # per customer and dimension: nothing lost, no fork
    actions = read_topics(settings.kafka_bootstrap, [settings.topic(t) for t in ACTION_TOPICS])

    def decided_again(first: dict[str, Any], again: dict[str, Any]) -> bool:
        fresh = {"features", "decided_at"}
        return redis_lost_writes and {k: v for k, v in first.items() if k not in fresh} == {
            k: v for k, v in again.items() if k not in fresh
        }

    distinct_actions, actions_resent, actions_differ, actions_again = resends(
        actions, "idempotency_key", decided_again
    )

    row = {
        "test": name,
        "produced": len(traffic.good) + len(traffic.bad),
        "valid": len(traffic.good),
        "applied": applied,
        "dead_lettered": len(lettered),
        "dead_letters_resent": sum(lettered.values()) - len(lettered),
        "lost": lost,
        "duplicated": duplicated,
        "changes": distinct_changes,
        "changes_resent": changes_resent,
        "actions": distinct_actions,
        "actions_resent": actions_resent,
        "actions_redecided": actions_again,
        "field_mismatches": dict(report.field_mismatches),
        "agreement": {k: round(a.share, 4) for k, a in report.dimensions.items()},
    }
    print("\nRELIABILITY", orjson.dumps(row).decode())
    if RESULTS:
        with open(RESULTS, "ab") as out:
            out.write(orjson.dumps(row) + b"\n")
    assert changes_differ == 0, "a change_id was sent with two different contents"
    assert distinct_actions > 0, "no action message: the fault traffic checked no action"
    assert actions_differ == 0, "an action key with two decisions"
    assert not report.missing, report.missing[:5]
    assert not report.field_mismatches, report.field_examples
    assert lost == 0 and duplicated == 0 and applied == len(traffic.good)
    for dim in ("demographic", "geographic"):
        assert report.dimensions[dim].share == 1.0, (dim, report.dimensions[dim].examples)
    return row
