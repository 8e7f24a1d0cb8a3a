"""Local Kafka and Redis for development and tests, without Docker.

``segstream services up`` makes ``settings.kafka_bootstrap`` and ``settings.redis_url``
answer: a server that already answers is used as is; otherwise segstream starts a
single-node KRaft broker (jars resolved once with Maven) and a ``redis-server`` of its
own. With ``settings.redis_cluster`` it starts a 3-master Redis Cluster instead: one
``redis-server`` per port P, P+1, P+2 (P the URL's port), formed once, with every slot
assigned and no replicas. ``down`` stops only what ``up`` started, found through pid
files. Everything lives under ``settings.cache_dir``, outside the repository::

    m2/                       Maven local repository
    kafka-<version>/libs/     broker jars (+ libs.complete once the copy finished)
    kafka-data-<port>/        KRaft storage, formatted once
    redis-data-<port>/        redis-server working directory
    redis-cluster-<P>/node-<port>/   a cluster node's nodes.conf and appendonlydir/
    run/                      server-<port>.properties, *.pid, *.lock
    logs/                     kafka-<port>.log, redis-<port>.log, redis-node-<port>.log
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.settings import Settings

Echo = Callable[[str], None]

KAFKA_SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "kafka"
KAFKA_POM = KAFKA_SCRIPTS / "pom.xml"
KAFKA_LOG4J = KAFKA_SCRIPTS / "log4j.properties"
KAFKA_TOOLS_LOG4J = KAFKA_SCRIPTS / "tools-log4j.properties"

#: Kafka's own command-line tools that ``segstream services <name>`` runs: name -> main
#: class (from the ``kafka-tools`` artifact in scripts/kafka/pom.xml).
KAFKA_TOOLS = {
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
}

KAFKA_START_TIMEOUT_S = 240.0  # a broker loads every partition on disk before it answers
REDIS_START_TIMEOUT_S = 20.0
REDIS_CLUSTER_TIMEOUT_S = 30.0  # from the nodes answering to cluster_state:ok everywhere
STOP_TIMEOUT_S = 20.0
MAVEN_TIMEOUT_S = 1800.0
LOG_TAIL_LINES = 30
PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
LOG_KEEP_BYTES = 32 * 1024 * 1024  # a server log past this is rotated at its next start
PROGRESS_EVERY_S = 15.0  # a slow start says how far it got

CLUSTER_MASTERS = 3
CLUSTER_SLOTS = 16384
#: How long a node may be silent before the others mark it failing. Small, so a killed
#: node is noticed (and a restarted one accepted again) within seconds.
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_BUS_OFFSET = 10000  # Redis's cluster bus listens on the node's port + 10000


@dataclass(frozen=True)
class ScramListener:
    """An extra SASL_PLAINTEXT listener of the local broker, authenticating with SCRAM.

    ``users`` (name -> password) are written into the KRaft storage when it is
    formatted, so they exist from the broker's first start; a broker whose storage is
    formatted already keeps the users it has. The PLAINTEXT listener on the bootstrap
    port stays (it is how ``services`` probes the broker).
    """

    port: int
    users: dict[str, str]
    mechanism: str = "SCRAM-SHA-256"

    def add_scram_args(self) -> list[str]:
        """``kafka-storage format`` arguments that create the users."""
        args = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return args


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class ServiceState:
    """What ``segstream services status`` shows for one service."""

    name: str
    address: str
    answering: bool
    pid: int | None  # the process segstream started, if it is still alive
    detail: str


@dataclass(frozen=True)
class _Service:
    """One local service: where it answers and where segstream keeps its traces."""

    name: str
    host: str
    port: int
    local: bool  # only a service on this machine can be started, or stopped through a pid file
    pid_file: Path
    log_file: Path
    lock_file: Path
    mark: str  # found in the command line of the process we started; guards against pid reuse
    answers: Callable[[], bool]
    describe: Callable[[], str] | None = None  # more for ``status`` while it answers

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ClusterNode:
    """One ``redis-server`` of a local Redis Cluster: its service and its data dir."""

    service: _Service
    data: Path  # working directory: nodes.conf and appendonlydir/
    url: str  # redis://host:port/0 of this node, with the credentials of the cluster's URL

    @property
    def port(self) -> int:
        return self.service.port


# --------------------------------------------------------------------------- public API


def up(settings: Settings, echo: Echo = print, *, scram: ScramListener | None = None) -> None:
    """Make Kafka and Redis answer at the configured addresses, starting them if needed.

    ``scram``: a broker started here also listens with SASL/SCRAM on ``scram.port``.
    With ``settings.redis_cluster``, Redis is a local 3-master cluster (``start_cluster``).
    """
    _kafka_up(settings, echo, scram)
    redis_up(settings, echo)


def redis_up(settings: Settings, echo: Echo = print) -> None:
    """The Redis half of ``up``: a standalone server, or the cluster if configured."""
    if settings.redis_cluster:
        start_cluster(_redis_cluster_nodes(settings), echo)
    else:
        _redis_up(settings, echo)


def down(settings: Settings, echo: Echo = print) -> None:
    """Stop the Kafka and Redis that ``up`` started; servers found already running are left."""
    for service in _services(settings):
        with _locked(service.lock_file):
            _stop(service, echo)


def status(settings: Settings) -> list[ServiceState]:
    """Whether each service answers, and the pid of the process segstream started, if any."""
    return [_state(service) for service in _services(settings)]


def kafka_tool_command(
    settings: Settings, tool: str, args: list[str], echo: Echo = print
) -> list[str]:
    """The java command line of one of Kafka's tools (``KAFKA_TOOLS``), jars fetched once.

    ``--bootstrap-server`` defaults to ``SEGSTREAM_KAFKA_BOOTSTRAP``.
    """
    if tool not in KAFKA_TOOLS:
        raise ServiceError(f"unknown Kafka tool {tool!r}; known: {', '.join(KAFKA_TOOLS)}")
    java = _require_tool("java", "a Java 17+ runtime (Debian: apt-get install default-jre)")
    libs = _ensure_kafka_jars(settings, echo)
    if not any(libs.glob("kafka-tools-*.jar")):
        raise ServiceError(
            f"{libs} holds no kafka-tools jar; delete {_kafka_libs_marker(settings)} and run "
            "this again to fetch the jars anew"
        )
    bootstrap = (
        []
        if any(a.startswith("--bootstrap-server") for a in args)
        else ["--bootstrap-server", settings.kafka_bootstrap]
    )
    return [
        java,
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{KAFKA_TOOLS_LOG4J}",
        "-cp",
        f"{libs}/*",
        KAFKA_TOOLS[tool],
        *bootstrap,
        *args,
    ]


def run_kafka_tool(settings: Settings, tool: str, args: list[str], echo: Echo = print) -> int:
    """Run one of Kafka's tools with stdin/stdout/stderr passed through; its exit code."""
    command = kafka_tool_command(settings, tool, args, echo)
    return subprocess.run(command, check=False).returncode


# --------------------------------------------------------------------------- layout


def _kafka_service(settings: Settings) -> _Service:
    host, port = settings.kafka_host_port
    run = settings.cache_dir / "run"
    servers = _bootstrap_servers(settings)
    return _Service(
        name="kafka",
        host=host,
        port=port,
        local=_is_local_host(host),
        pid_file=run / f"kafka-{port}.pid",
        log_file=settings.cache_dir / "logs" / f"kafka-{port}.log",
        lock_file=run / f"kafka-{port}.lock",
        mark=str(_kafka_properties_file(settings)),
        answers=lambda: kafka_answers(servers),
    )


def _redis_service(settings: Settings) -> _Service:
    host, port = settings.redis_host_port
    run = settings.cache_dir / "run"
    url = settings.redis_url
    return _Service(
        name="redis",
        host=host,
        port=port,
        local=_is_local_host(host),
        pid_file=run / f"redis-{port}.pid",
        log_file=settings.cache_dir / "logs" / f"redis-{port}.log",
        lock_file=run / f"redis-{port}.lock",
        mark="redis-server",
        answers=lambda: redis_answers(url),
    )


def cluster_nodes(
    root: Path, host: str, port: int, *, count: int = CLUSTER_MASTERS, url: str | None = None
) -> list[ClusterNode]:
    """The nodes of a local cluster on ``port`` and the next ``count - 1`` ports.

    Under ``root``: ``redis-cluster-<port>/node-<p>/`` (data), ``run/redis-node-<p>.pid``,
    ``logs/redis-node-<p>.log``. The lock is the one a standalone server on that port
    takes, so only one of them is ever started there. ``url`` (the settings' URL) lends
    the nodes' probes its credentials.
    """
    run = root / "run"
    base = url or f"redis://{host}:{port}/0"
    nodes = []
    for node_port in range(port, port + count):
        node_url = _node_url(base, node_port)
        nodes.append(
            ClusterNode(
                service=_Service(
                    name="redis",
                    host=host,
                    port=node_port,
                    local=_is_local_host(host),
                    pid_file=run / f"redis-node-{node_port}.pid",
                    log_file=root / "logs" / f"redis-node-{node_port}.log",
                    lock_file=run / f"redis-{node_port}.lock",
                    mark="redis-server",
                    answers=partial(redis_answers, node_url),
                    describe=partial(_describe_cluster_node, node_url),
                ),
                data=root / f"redis-cluster-{port}" / f"node-{node_port}",
                url=node_url,
            )
        )
    return nodes


def _redis_cluster_nodes(settings: Settings) -> list[ClusterNode]:
    host, port = settings.redis_host_port
    return cluster_nodes(settings.cache_dir, host, port, url=settings.redis_url)


def _node_url(url: str, port: int) -> str:
    """``url`` with its port replaced (credentials, scheme and options kept)."""
    parsed = urlparse(url)
    userinfo, at, _ = parsed.netloc.rpartition("@")
    host = parsed.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return parsed._replace(netloc=f"{userinfo}{at}{host}:{port}").geturl()


def _services(settings: Settings) -> list[_Service]:
    if settings.redis_cluster:
        redis_services = [node.service for node in _redis_cluster_nodes(settings)]
    else:
        redis_services = [_redis_service(settings)]
    return [_kafka_service(settings), *redis_services]


def _kafka_libs(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def _kafka_libs_marker(settings: Settings) -> Path:
    """Written only after Maven copied every jar, so an interrupted copy is redone."""
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs.complete"


def _kafka_data_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"kafka-data-{settings.kafka_host_port[1]}"


def _kafka_properties_file(settings: Settings) -> Path:
    return settings.cache_dir / "run" / f"server-{settings.kafka_host_port[1]}.properties"


def _bootstrap_servers(settings: Settings) -> list[str]:
    servers = [s.strip() for s in settings.kafka_bootstrap.split(",") if s.strip()]
    return [s.split("://", 1)[1] if "://" in s else s for s in servers]


# --------------------------------------------------------------------------- probes


def kafka_answers(servers: list[str], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a broker among ``servers`` answers a metadata request.

    A plain TCP connect comes first: a closed port then costs no time and no
    client log noise (the Kafka client retries a refused bootstrap until its timeout).
    """
    if not any(_listening(*_split_host_port(s)) for s in servers):
        return False
    timeout_ms = int(timeout_s * 1000)
    wanted = {  # kafka-python 2.x and 3.x name the bootstrap timeout differently
        "request_timeout_ms": timeout_ms,
        "api_version_auto_timeout_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
    }
    config = {k: v for k, v in wanted.items() if k in KafkaAdminClient.DEFAULT_CONFIG}
    with _quiet("kafka"):
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=servers, client_id="segstream-services", **config
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


def redis_answers(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if the Redis at ``url`` answers PING (with the credentials in the URL)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_cluster_ok(host: str, ports: Sequence[int], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if every node at ``host:ports`` reports ``cluster_state:ok``, all 16384
    slots assigned to masters it is connected to (``served_slots``), and at least
    ``len(ports)`` known nodes (one cluster, not several)."""
    return _cluster_ok([f"redis://{host}:{port}/0" for port in ports], timeout_s)


def _cluster_ok(urls: Sequence[str], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    for url in urls:
        view = _cluster_view(url, timeout_s)
        if view is None:
            return False
        info, nodes = view
        if (
            info.get("cluster_state") != "ok"
            or int(info.get("cluster_slots_assigned", 0)) != CLUSTER_SLOTS
            or int(info.get("cluster_known_nodes", 0)) < len(urls)
            or served_slots(nodes) != CLUSTER_SLOTS
        ):
            return False
    return True


def _node_client(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
    )


def _cluster_view(
    url: str, timeout_s: float = PROBE_TIMEOUT_S
) -> tuple[dict[str, str], str] | None:
    """The node's ``CLUSTER INFO`` fields and ``CLUSTER NODES`` text; None if it does not
    answer (or is no cluster node)."""
    client = _node_client(url, timeout_s)
    try:
        info = parse_cluster_info(client.execute_command("CLUSTER", "INFO"))
        return info, client.execute_command("CLUSTER", "NODES")
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def parse_cluster_info(text: str) -> dict[str, str]:
    r"""``CLUSTER INFO``'s ``field:value`` lines as a dict.

    >>> parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n")
    {'cluster_state': 'ok', 'cluster_slots_assigned': '16384'}
    """
    fields = (line.partition(":") for line in text.splitlines())
    return {name.strip(): value.strip() for name, sep, value in fields if sep}


def _cluster_nodes_lines(text: str) -> Iterator[list[str]]:
    """``CLUSTER NODES`` lines as fields: id, address, flags, master, ping sent, pong
    received, config epoch, link state, slots..."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 8:
            yield fields


def _slot_fields(fields: list[str]) -> list[str]:
    """A node line's slots and slot ranges (``[..]`` entries are slots in migration)."""
    return [f for f in fields[8:] if not f.startswith("[")]


def own_slots(cluster_nodes_text: str) -> list[str]:
    r"""The slot ranges of the ``myself`` line of ``CLUSTER NODES`` (``["0-5460"]``).

    >>> own_slots("ab 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922\n"
    ...           "cd 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 9000\n")
    ['0-5460', '9000']
    """
    for fields in _cluster_nodes_lines(cluster_nodes_text):
        if "myself" in fields[2].split(","):
            return _slot_fields(fields)
    return []


def served_slots(cluster_nodes_text: str) -> int:
    r"""How many slots, in a node's ``CLUSTER NODES``, have a master it is connected to.

    Slots of a failed node, or of one another node replaced at its address (``noaddr``),
    do not count, though ``CLUSTER INFO`` may still say ``cluster_state:ok``.

    >>> served_slots("ab 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922\n"
    ...              "cd 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
    ...              "ef :0@0 master,noaddr - 1 1 3 disconnected 10923-16383\n")
    10923
    """
    served: set[int] = set()
    for fields in _cluster_nodes_lines(cluster_nodes_text):
        flags = set(fields[2].split(","))
        if (
            "master" in flags
            and fields[7] == "connected"
            and not flags & {"fail", "noaddr", "handshake"}
        ):
            served |= _slot_set(_slot_fields(fields))
    return len(served)


def _describe_cluster_node(url: str) -> str:
    """For ``status``: the cluster's state as this node sees it, and the node's slots."""
    view = _cluster_view(url)
    if view is None:
        return "no answer to CLUSTER INFO"
    info, nodes = view
    slots = " ".join(own_slots(nodes)) or "none"
    return f"cluster_state:{info.get('cluster_state', '?')}, slots {slots}"


def _listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _split_host_port(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit():
        return server.strip("[]") or "127.0.0.1", 9092
    return host.strip("[]") or "127.0.0.1", int(port)


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a client library's connection errors while probing: failure is an answer."""
    logger = logging.getLogger(logger_name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


# --------------------------------------------------------------------------- Kafka


def _kafka_up(settings: Settings, echo: Echo, scram: ScramListener | None = None) -> None:
    service = _kafka_service(settings)
    with _locked(service.lock_file):
        if _reuse(service, echo):
            return
        ports = [service.port, service.port + 1]  # + controller
        _require_free_ports(service, ports + ([scram.port] if scram else []))
        java = _require_tool("java", "a Java 17+ runtime (Debian: apt-get install default-jre)")
        libs = _ensure_kafka_jars(settings, echo)
        properties = _write_server_properties(settings, scram)
        _format_kafka_storage(settings, java, libs, properties, echo, scram)
        command = [
            java,
            "-Xms128m",
            f"-Xmx{settings.kafka_heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{KAFKA_LOG4J}",
            "-cp",
            f"{libs}/*",
            "kafka.Kafka",
            str(properties),
        ]
        _start(
            service, command, KAFKA_START_TIMEOUT_S, f"Apache Kafka {settings.kafka_version}", echo
        )


def _ensure_kafka_jars(settings: Settings, echo: Echo) -> Path:
    """The broker's jars, copied by Maven on first use and cached under cache_dir."""
    libs = _kafka_libs(settings)
    marker = _kafka_libs_marker(settings)
    if marker.exists():
        return libs
    if not KAFKA_POM.exists():
        raise ServiceError(f"{KAFKA_POM} is missing; run this from a segstream source checkout")
    mvn = _require_tool("mvn", "Apache Maven (Debian: apt-get install maven)")
    echo(
        f"kafka: resolving Apache Kafka {settings.kafka_version} jars with Maven "
        "(first run only)..."
    )
    if libs.exists():
        shutil.rmtree(libs)  # leftovers of an interrupted copy
    libs.mkdir(parents=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(KAFKA_POM),
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dmaven.repo.local={settings.cache_dir / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    started = time.monotonic()
    _run_checked(command, "Maven could not resolve the Kafka jars", MAVEN_TIMEOUT_S)
    jars = sorted(p.name for p in libs.glob("*.jar"))
    if not any(name.startswith("kafka_2.13-") for name in jars):
        raise ServiceError(f"Maven finished but {libs} holds no kafka_2.13 jar")
    marker.write_text("\n".join(jars) + "\n")
    echo(f"kafka: {len(jars)} jars resolved in {time.monotonic() - started:.1f} s into {libs}")
    return libs


def _server_properties(settings: Settings, scram: ScramListener | None = None) -> str:
    """A single-node KRaft broker+controller on the bootstrap address (+ a SCRAM one)."""
    host, port = settings.kafka_host_port
    advertised = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    controller = port + 1
    listeners = f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}"
    advertised_listeners = f"PLAINTEXT://{advertised}:{port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    sasl: list[str] = []
    if scram is not None:
        listeners += f",SASL_PLAINTEXT://{host}:{scram.port}"
        advertised_listeners += f",SASL_PLAINTEXT://{advertised}:{scram.port}"
        protocols += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        mech = scram.mechanism.lower()
        sasl = [
            f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={scram.mechanism}",
            f"listener.name.sasl_plaintext.{mech}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ]
    lines = [
        "# Generated by `segstream services up`; rewritten on every start.",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{advertised}:{controller}",
        f"listeners={listeners}",
        f"advertised.listeners={advertised_listeners}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"listener.security.protocol.map={protocols}",
        *sasl,
        f"log.dirs={_kafka_data_dir(settings)}",
        f"num.partitions={settings.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
    ]
    return "\n".join(lines) + "\n"


def _write_server_properties(settings: Settings, scram: ScramListener | None = None) -> Path:
    path = _kafka_properties_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_server_properties(settings, scram))
    return path


def new_cluster_id(uuid4: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id made as Kafka's ``Uuid.randomUuid`` makes one: 22 characters of
    URL-safe base64 that never start with "-". kafka-storage's argument parser takes such
    an id for an option ("--cluster-id: expected one argument"); 1 plain id in 64 did.

    >>> ids = iter([uuid.UUID(bytes=b"\\xf8" + bytes(15)), uuid.UUID(int=1)])
    >>> new_cluster_id(ids.__next__)
    'AAAAAAAAAAAAAAAAAAAAAQ'
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _format_kafka_storage(
    settings: Settings,
    java: str,
    libs: Path,
    properties: Path,
    echo: Echo,
    scram: ScramListener | None = None,
) -> None:
    """Format the KRaft log dir once; a formatted dir keeps its cluster id and topics."""
    data = _kafka_data_dir(settings)
    if (data / "meta.properties").exists():
        return
    cluster_id = new_cluster_id()
    echo(f"kafka: formatting KRaft storage in {data} (cluster id {cluster_id})")
    command = [
        java,
        "-Xmx256m",
        f"-Dlog4j.configuration=file:{KAFKA_LOG4J}",
        "-cp",
        f"{libs}/*",
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id,
        "-c",
        str(properties),
        *(scram.add_scram_args() if scram else []),
    ]
    _run_checked(command, f"formatting the Kafka storage in {data} failed", 120.0)


# --------------------------------------------------------------------------- Redis


def _redis_up(settings: Settings, echo: Echo) -> None:
    service = _redis_service(settings)
    with _locked(service.lock_file):
        if _reuse(service, echo):
            return
        _require_free_ports(service, [service.port])
        host, port = service.host, service.port
        server = _redis_server(service, echo)
        if server is None:
            echo(f"redis: the redis-server package started a server on {service.address}; using it")
            return
        data = settings.cache_dir / f"redis-data-{port}"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            server,
            "--bind",
            _bind_address(host),
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--logfile",
            str(service.log_file),
            "--daemonize",
            "no",
        ]
        _start(service, command, REDIS_START_TIMEOUT_S, "redis-server", echo)


def _redis_server(service: _Service, echo: Echo) -> str | None:
    """The redis-server binary, installed if missing; None if installing it started a
    server that answers on ``service``'s address (the Debian package starts one)."""
    server = _find_redis_server()
    if server is None:
        server = _install_redis_server(echo)
        if service.answers():
            return None
    return server


def _bind_address(host: str) -> str:
    return "127.0.0.1" if host == "localhost" else host


def _find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_redis_server(echo: Echo) -> str:
    """Install Debian's redis-server; refresh the package index only if the first try fails."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise ServiceError("redis-server is not installed; install Redis 6+ and run this again")
    if os.geteuid() != 0:
        raise ServiceError(
            "redis-server is not installed; install it with "
            "`sudo apt-get install redis-server` and run this again"
        )
    echo("redis: redis-server not found; installing the Debian package with apt-get...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "redis-server"]
    started = time.monotonic()
    if _run(install, env, 900.0).returncode != 0:
        _run([apt, "update", "-q"], env, 900.0)
        result = _run(install, env, 900.0)
        if result.returncode != 0:
            raise ServiceError(
                f"`apt-get install redis-server` failed:\n{_tail_text(result.stdout)}"
            )
    server = _find_redis_server()
    if server is None:
        raise ServiceError("apt-get installed redis-server but no redis-server binary was found")
    echo(f"redis: installed {server} in {time.monotonic() - started:.1f} s")
    return server


# --------------------------------------------------------------------------- Redis Cluster


def start_cluster(
    nodes: Sequence[ClusterNode], echo: Echo = print, timeout_s: float = REDIS_CLUSTER_TIMEOUT_S
) -> None:
    """Make ``nodes`` a working cluster: start the nodes that do not answer, form the
    cluster if slots are unassigned, and wait until every node reports cluster_state:ok.

    A node that answers already is used as it is (a cluster that works is left alone);
    a node started again loads its nodes.conf and AOF, so it rejoins with its slots and
    keys. Used by ``services up`` and by the fault tests' spare cluster.
    """
    with ExitStack() as stack:
        for node in nodes:  # always in port order, so concurrent starts cannot deadlock
            stack.enter_context(_locked(node.service.lock_file))
        server: str | None = None
        for node in nodes:
            if _reuse(node.service, echo):
                continue
            _require_free_ports(node.service, [node.port, cluster_bus_port(node.port)])
            if server is None:
                server = _redis_server(node.service, echo)
                if server is None:
                    raise ServiceError(
                        f"the redis-server package started a standalone server on "
                        f"{node.service.address}, which cannot be a cluster node; stop it "
                        "(`systemctl stop redis-server`) or choose another port"
                    )
            start_cluster_node(node, server, echo)
        form_cluster(nodes, echo)
        wait_cluster_ok(nodes, timeout_s)
        first, last = nodes[0].service, nodes[-1].service
        echo(
            f"redis: cluster of {len(nodes)} masters on {first.host}:{first.port}-{last.port} "
            "answers (cluster_state:ok, 16384 slots)"
        )


def cluster_bus_port(port: int) -> int:
    """The cluster bus port of a node on ``port``; refused if beyond 65535.

    >>> cluster_bus_port(7001)
    17001
    """
    bus = port + CLUSTER_BUS_OFFSET
    if bus > 65535:
        raise ServiceError(
            f"a cluster node on port {port} needs its bus port {bus}, beyond 65535; "
            f"choose a port of at most {65535 - CLUSTER_BUS_OFFSET - CLUSTER_MASTERS + 1}"
        )
    return bus


def cluster_node_command(
    server: str,
    host: str,
    port: int,
    data: Path,
    log_file: Path,
    node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS,
) -> list[str]:
    """The command line of one cluster node: AOF ``everysec``, no RDB snapshots, its
    own nodes.conf in ``data``, and a cluster that stops serving while any slot has no
    node (``cluster-require-full-coverage``)."""
    return [
        server,
        "--bind",
        _bind_address(host),
        "--port",
        str(port),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(data / "nodes.conf"),
        "--cluster-node-timeout",
        str(node_timeout_ms),
        "--cluster-require-full-coverage",
        "yes",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--dir",
        str(data),
        "--logfile",
        str(log_file),
        "--daemonize",
        "no",
    ]


def start_cluster_node(node: ClusterNode, server: str, echo: Echo = print) -> None:
    """Start one node (pid file, log, wait until it answers PING) with ``_start``."""
    node.data.mkdir(parents=True, exist_ok=True)
    command = cluster_node_command(
        server, node.service.host, node.port, node.data, node.service.log_file
    )
    _start(node.service, command, REDIS_START_TIMEOUT_S, "redis-server (cluster node)", echo)


def cluster_slot_ranges(count: int) -> list[tuple[int, int]]:
    """All 16384 slots in ``count`` contiguous ranges, as ``redis-cli --cluster create``
    splits them.

    >>> cluster_slot_ranges(3)
    [(0, 5460), (5461, 10922), (10923, 16383)]
    """
    bounds = [round(i * CLUSTER_SLOTS / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(count)]


def form_cluster(nodes: Sequence[ClusterNode], echo: Echo = print) -> bool:
    """Join the nodes into one cluster and assign every slot; False if nothing was missing.

    Node *i* gets range *i* of ``cluster_slot_ranges`` (less any slot another node owns
    already) and config epoch *i + 1* while it knows only itself; then the first node
    meets the others. A formed cluster, also one whose nodes just restarted from their
    nodes.conf, is left alone.
    """
    clients = [_node_client(node.url, REDIS_START_TIMEOUT_S) for node in nodes]
    try:
        infos: list[dict[str, str]] = []
        for node, client in zip(nodes, clients, strict=True):
            try:
                infos.append(parse_cluster_info(client.execute_command("CLUSTER", "INFO")))
            except redis.ResponseError as exc:  # "ERR This instance has cluster support disabled"
                raise ServiceError(
                    f"the Redis on {node.service.address} is not a cluster node ({exc}); "
                    "stop it or choose other ports"
                ) from exc
        if all(
            int(info.get("cluster_slots_assigned", 0)) == CLUSTER_SLOTS
            and int(info.get("cluster_known_nodes", 0)) >= len(nodes)
            for info in infos
        ):
            return False
        owned = [_slot_set(own_slots(c.execute_command("CLUSTER", "NODES"))) for c in clients]
        taken = set().union(*owned)
        ranges = cluster_slot_ranges(len(nodes))
        for i, (client, info) in enumerate(zip(clients, infos, strict=True)):
            if not owned[i]:
                wanted = set(range(ranges[i][0], ranges[i][1] + 1))
                for first, last in _ranges(sorted(wanted - taken)):
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            if info.get("cluster_known_nodes") == "1" and info.get("cluster_my_epoch") == "0":
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        address = _meet_address(nodes[0].service.host)
        known = clients[0].execute_command("CLUSTER", "NODES")
        for node in nodes[1:]:
            if f"{address}:{node.port}@" not in known:
                clients[0].execute_command("CLUSTER", "MEET", address, node.port)
    finally:
        for client in clients:
            client.close()
    echo(
        f"redis: formed a cluster of {len(nodes)} masters on {address} ports "
        f"{', '.join(str(n.port) for n in nodes)} (16384 slots, no replicas)"
    )
    return True


def wait_cluster_ok(
    nodes: Sequence[ClusterNode], timeout_s: float = REDIS_CLUSTER_TIMEOUT_S
) -> None:
    """Poll until ``redis_cluster_ok`` holds for the nodes; after ``timeout_s`` a
    ServiceError with each node's view and the log of the first node that is not ok."""
    urls = [node.url for node in nodes]
    started = time.monotonic()
    while not _cluster_ok(urls):
        if time.monotonic() - started > timeout_s:
            raise _cluster_not_ok(nodes, timeout_s)
        time.sleep(POLL_INTERVAL_S)


def _cluster_not_ok(nodes: Sequence[ClusterNode], timeout_s: float) -> ServiceError:
    views: list[str] = []
    log = nodes[0].service.log_file
    for node in reversed(nodes):
        info, known = _cluster_view(node.url) or ({}, "")
        served = served_slots(known)
        if info.get("cluster_state") != "ok" or served != CLUSTER_SLOTS:
            log = node.service.log_file
        views.insert(
            0,
            f"{node.service.address} cluster_state:{info.get('cluster_state', 'no answer')} "
            f"slots_assigned:{info.get('cluster_slots_assigned', '?')} "
            f"slots_served:{served} known_nodes:{info.get('cluster_known_nodes', '?')}",
        )
    return ServiceError(
        f"the Redis Cluster did not reach cluster_state:ok with every slot served within "
        f"{timeout_s:.0f} s "
        f"({'; '.join(views)}). Its nodes still run (`segstream services down` stops "
        "them). A node whose data dir was removed cannot rejoin: stop the nodes and delete "
        f"{nodes[0].data.parent} to create the cluster anew. Logs: "
        f"{', '.join(str(n.service.log_file) for n in nodes)}; last lines of {log}:\n"
        f"{_tail_file(log)}"
    )


def _slot_set(ranges: list[str]) -> set[int]:
    slots: set[int] = set()
    for item in ranges:
        first, _, last = item.partition("-")
        slots.update(range(int(first), int(last or first) + 1))
    return slots


def _ranges(slots: list[int]) -> list[tuple[int, int]]:
    """Sorted slots as contiguous (first, last) ranges.

    >>> _ranges([0, 1, 2, 5, 7, 8])
    [(0, 2), (5, 5), (7, 8)]
    """
    out: list[tuple[int, int]] = []
    for slot in slots:
        if out and out[-1][1] == slot - 1:
            out[-1] = (out[-1][0], slot)
        else:
            out.append((slot, slot))
    return out


def _meet_address(host: str) -> str:
    """The IP that CLUSTER MEET needs (Redis 7.0 takes no host names)."""
    if host in ("localhost", "0.0.0.0", "::", ""):
        return "127.0.0.1"
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


# --------------------------------------------------------------------------- processes


def _reuse(service: _Service, echo: Echo) -> bool:
    """True if the service answers already, or our process from an earlier ``up`` comes up."""
    if service.answers():
        pid = _our_pid(service)
        whose = f"started by segstream, pid {pid}" if pid else "not started by segstream"
        echo(f"{service.name}: {service.address} already answers ({whose}); using it")
        return True
    if not service.local:
        raise ServiceError(
            f"{service.name} does not answer on {service.address}, and {service.host} is not "
            "this machine, so segstream cannot start it; check the address in the settings"
        )
    pid = _our_pid(service)
    if pid is None:
        return False
    echo(f"{service.name}: pid {pid} from an earlier start does not answer yet; waiting for it")
    timeout = KAFKA_START_TIMEOUT_S if service.name == "kafka" else REDIS_START_TIMEOUT_S
    _wait_until_answering(service, lambda: _alive(pid), timeout, time.monotonic(), ours=False)
    echo(f"{service.name}: {service.address} answers (pid {pid})")
    return True


def _require_free_ports(service: _Service, ports: list[int]) -> None:
    """Refuse early, with a clear reason, when the server could not bind its ports."""
    for port in ports:
        if _listening(service.host, port):
            raise ServiceError(
                f"port {port} on {service.host} is taken by a process that is not a working "
                f"{service.name} server; stop it or choose another port in the settings"
            )


def _is_local_host(host: str) -> bool:
    """True if ``host`` is an address of this machine (a socket can be bound to it)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    for family, kind, _, _, address in infos:
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0))
                return True
            except OSError:
                continue
    return False


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH; install {what} and run this again")
    return path


def _start(service: _Service, command: list[str], timeout_s: float, label: str, echo: Echo) -> None:
    """Start a server in its own session (it outlives the CLI) and wait until it answers."""
    service.log_file.parent.mkdir(parents=True, exist_ok=True)
    service.pid_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _rotate(service.log_file)
    with service.log_file.open("ab") as log:
        log.write(f"\n==== segstream: starting {label} at {time.ctime()} ====\n".encode())
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=service.pid_file.parent,
        )
    service.pid_file.write_text(f"{process.pid}\n")
    _wait_until_answering(service, lambda: process.poll() is None, timeout_s, started, echo=echo)
    echo(
        f"{service.name}: started {label} on {service.address} in "
        f"{time.monotonic() - started:.1f} s (pid {process.pid}, log {service.log_file})"
    )


def _rotate(path: Path, keep_bytes: int = LOG_KEEP_BYTES) -> None:
    """Move a log past ``keep_bytes`` to ``<name>.1`` (replacing the older one), so a
    server's log, appended to at every start, stays bounded."""
    try:
        if path.stat().st_size > keep_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def _wait_until_answering(
    service: _Service,
    alive: Callable[[], bool],
    timeout_s: float,
    started: float,
    ours: bool = True,
    echo: Echo | None = None,
) -> None:
    """Poll until the service answers; raise with its log if it dies or takes too long.

    A server this call started (``ours``) is stopped on timeout, so no half-started
    broker is left behind; one from an earlier ``up`` is left for ``down``. Every
    PROGRESS_EVERY_S the wait is reported to ``echo``, with the broker's log-loading
    progress when its log shows it.
    """
    told = started
    while not service.answers():
        if echo is not None and time.monotonic() - told >= PROGRESS_EVERY_S:
            told = time.monotonic()
            loaded = _logs_loaded(service.log_file)
            echo(
                f"{service.name}: not answering yet after {told - started:.0f} s"
                + (f" ({loaded} partition logs loaded)" if loaded else "")
            )
        if not alive():
            service.pid_file.unlink(missing_ok=True)
            raise ServiceError(
                f"{service.name} exited while starting; last lines of {service.log_file}:\n"
                f"{_tail_file(service.log_file)}"
            )
        if time.monotonic() - started > timeout_s:
            if ours:
                _stop(service, lambda _: None)
            what = "was stopped" if ours else "still runs; `segstream services down` stops it"
            raise ServiceError(
                f"{service.name} did not answer on {service.address} within {timeout_s:.0f} s "
                f"and {what}; last lines of {service.log_file}:\n"
                f"{_tail_file(service.log_file)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _stop(service: _Service, echo: Echo) -> None:
    """SIGTERM the process of our pid file, SIGKILL it after STOP_TIMEOUT_S."""
    pid = _read_pid(service.pid_file) if service.local else None
    if pid is None:
        echo(f"{service.name}: nothing started by segstream on {service.address}")
        return
    if not _alive(pid):
        service.pid_file.unlink(missing_ok=True)
        echo(f"{service.name}: pid {pid} is gone; removed its stale pid file")
        return
    if not _is_ours(pid, service.mark):
        service.pid_file.unlink(missing_ok=True)
        echo(f"{service.name}: pid {pid} is now another program; removed the pid file only")
        return
    started = time.monotonic()
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        echo(f"{service.name}: pid {pid} ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killing it")
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)
    service.pid_file.unlink(missing_ok=True)
    echo(f"{service.name}: stopped pid {pid} in {time.monotonic() - started:.1f} s")


def _state(service: _Service) -> ServiceState:
    answering = service.answers()
    pid = _our_pid(service)
    if answering and pid:
        detail = f"log {service.log_file}"
    elif answering:
        detail = "not started by segstream"
    elif pid:
        detail = f"alive but not answering (starting or stuck?), log {service.log_file}"
    else:
        detail = "not running"
    if answering and service.describe is not None:
        detail = f"{service.describe()}, {detail}"
    return ServiceState(service.name, service.address, answering, pid, detail)


def _our_pid(service: _Service) -> int | None:
    """The pid from our pid file if that process is alive and still the one we started."""
    pid = _read_pid(service.pid_file) if service.local else None
    if pid is None or not _alive(pid) or not _is_ours(pid, service.mark):
        return None
    return pid


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True if pid runs. An exited child of ours is reaped, else it lingers as a zombie."""
    if _reap(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_defunct(pid):
        _reap(pid)  # it may have exited since the first try
        return False
    return True


def _reap(pid: int) -> bool:
    """True if pid was our child and has exited (and is now reaped)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def _is_defunct(pid: int) -> bool:
    """True once every thread has exited and only the exit status is left.

    The state letter alone is not enough: a JVM's main thread ends first, after which
    /proc/<pid>/stat shows Z while the shutdown threads still run and hold the ports.
    """
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rpartition(")")[2].split()[:1]
        threads = [t for t in os.listdir(proc / "task") if t != str(pid)]
    except OSError:
        return False
    return state == ["Z"] and not threads


def _is_ours(pid: int, mark: str) -> bool:
    """Check the command line, so a recycled pid never gets a signal from us."""
    return mark in _command_line(pid)


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        pass
    except OSError:
        return ""
    if Path("/proc/self").exists():
        return ""  # Linux, and the process is gone
    result = subprocess.run(  # no /proc (macOS): ask ps
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` of one service, so concurrent runs start it only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- commands


def _run(
    command: list[str], env: dict[str, str] | None, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, stdout and stderr together."""
    try:
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(
            f"`{' '.join(command[:3])} ...` did not finish in {timeout_s:.0f} s"
        ) from exc


def _run_checked(command: list[str], failure: str, timeout_s: float) -> None:
    result = _run(command, None, timeout_s)
    if result.returncode != 0:
        raise ServiceError(
            f"{failure} (exit code {result.returncode}):\n{_tail_text(result.stdout)}"
        )


def _tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


_LOGS_LOADED = re.compile(rb"\((\d+/\d+) completed in ")


def _logs_loaded(path: Path, window: int = 64 * 1024) -> str | None:
    """The broker's last "loaded N/M partition logs" count in the end of its log.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".log") as f:
    ...     _ = f.write(b"Completed load of Log(...) in 9ms (11023/16076 completed in /d)")
    ...     f.flush()
    ...     _logs_loaded(Path(f.name))
    '11023/16076'
    """
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - window))
            found = _LOGS_LOADED.findall(f.read())
    except OSError:
        return None
    return found[-1].decode() if found else None


def _tail_file(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except OSError:
        return "(no log)"
