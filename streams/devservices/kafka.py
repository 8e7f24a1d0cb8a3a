"""The local Apache Kafka broker and Kafka's command-line tools.

Jars resolved once with Maven (scripts/kafka/pom.xml) into the cache, a single-node
KRaft broker+controller's server.properties (optionally with a SASL/SCRAM listener), its
storage formatted once, the metadata probe that says whether a broker answers, and the
java command line of the tools ``segstream services <tool>`` runs.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.devservices.process import (
    KAFKA_START_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    Echo,
    ServiceError,
    _listening,
    _local_service,
    _locked,
    _needs_start,
    _require_tool,
    _run_checked,
    _Service,
    _start,
)
from streams.kafka.clients import admin_timeouts
from streams.settings import Settings

KAFKA_SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "kafka"
KAFKA_POM = KAFKA_SCRIPTS / "pom.xml"
KAFKA_LOG4J = KAFKA_SCRIPTS / "log4j.properties"
KAFKA_TOOLS_LOG4J = KAFKA_SCRIPTS / "tools-log4j.properties"
MAVEN_TIMEOUT_S = 1800.0


#: Kafka's own command-line tools that ``segstream services <name>`` runs: name -> main
#: class (from the ``kafka-tools`` artifact in scripts/kafka/pom.xml).
KAFKA_TOOLS = {
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
}


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


def _kafka_service(settings: Settings) -> _Service:
    host, port = settings.kafka_host_port
    servers = _bootstrap_servers(settings)
    return _local_service(
        settings.cache_dir,
        "kafka",
        host,
        port,
        mark=str(_kafka_properties_file(settings)),
        answers=lambda: kafka_answers(servers),
    )


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


def kafka_answers(servers: list[str], timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True if a broker among ``servers`` answers a metadata request.

    A plain TCP connect comes first: a closed port then costs no time and no
    client log noise (the Kafka client retries a refused bootstrap until its timeout).
    """
    if not any(_listening(*_split_host_port(s)) for s in servers):
        return False
    config = admin_timeouts(timeout_s)
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


def _kafka_up(settings: Settings, echo: Echo, scram: ScramListener | None = None) -> None:
    service = _kafka_service(settings)
    with _locked(service.lock_file):
        ports = [service.port, service.port + 1]  # + controller
        if not _needs_start(service, ports + ([scram.port] if scram else []), echo):
            return
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
