"""A local 3-master Redis Cluster: its nodes, their start, formation and health.

One ``redis-server`` per port P, P+1, P+2 (P the URL's port), each with its own
nodes.conf and AOF under ``redis-cluster-<P>/``; formed once with every slot assigned
and no replicas. Apart from redis_server.py because a node is started, probed and
reported differently from a standalone server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from streams.devservices.cluster_slots import (
    CLUSTER_SLOTS,
    _ranges,
    _slot_set,
    cluster_slot_ranges,
    own_slots,
    parse_cluster_info,
    served_slots,
)
from streams.devservices.process import (
    POLL_INTERVAL_S,
    PROBE_TIMEOUT_S,
    REDIS_START_TIMEOUT_S,
    Echo,
    ServiceError,
    _local_service,
    _locked,
    _needs_start,
    _Service,
    _start,
    _tail_file,
)
from streams.devservices.redis_server import _bind_address, _redis_server, redis_answers
from streams.settings import Settings
from streams.store.admin import ClusterNodeAdmin, NotAClusterNode, cluster_texts

REDIS_CLUSTER_TIMEOUT_S = 30.0  # from the nodes answering to cluster_state:ok everywhere
CLUSTER_MASTERS = 3
#: How long a node may be silent before the others mark it failing. Small, so a killed
#: node is noticed (and a restarted one accepted again) within seconds.
CLUSTER_NODE_TIMEOUT_MS = 2000
CLUSTER_BUS_OFFSET = 10000  # Redis's cluster bus listens on the node's port + 10000


@dataclass(frozen=True)
class ClusterNode:
    """One ``redis-server`` of a local Redis Cluster: its service and its data dir."""

    service: _Service
    data: Path  # working directory: nodes.conf and appendonlydir/
    url: str  # redis://host:port/0 of this node, with the credentials of the cluster's URL

    @property
    def port(self) -> int:
        return self.service.port


def cluster_nodes(
    root: Path, host: str, port: int, *, count: int = CLUSTER_MASTERS, url: str | None = None
) -> list[ClusterNode]:
    """The nodes of a local cluster on ``port`` and the next ``count - 1`` ports.

    Under ``root``: ``redis-cluster-<port>/node-<p>/`` (data), ``run/redis-node-<p>.pid``,
    ``logs/redis-node-<p>.log``. The lock is the one a standalone server on that port
    takes, so only one of them is ever started there. ``url`` (the settings' URL) lends
    the nodes' probes its credentials.
    """
    base = url or f"redis://{host}:{port}/0"
    nodes = []
    for node_port in range(port, port + count):
        node_url = _node_url(base, node_port)
        nodes.append(
            ClusterNode(
                service=_local_service(
                    root,
                    "redis",
                    host,
                    node_port,
                    mark="redis-server",
                    answers=partial(redis_answers, node_url),
                    describe=partial(_describe_cluster_node, node_url),
                    stem="redis-node",
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


def _cluster_view(
    url: str, timeout_s: float = PROBE_TIMEOUT_S
) -> tuple[dict[str, str], str] | None:
    """The node's ``CLUSTER INFO`` fields and ``CLUSTER NODES`` text; None if it does not
    answer (or is no cluster node)."""
    texts = cluster_texts(url, timeout_s)
    if texts is None:
        return None
    info, nodes = texts
    return parse_cluster_info(info), nodes


def _describe_cluster_node(url: str) -> str:
    """For ``status``: the cluster's state as this node sees it, and the node's slots."""
    view = _cluster_view(url)
    if view is None:
        return "no answer to CLUSTER INFO"
    info, nodes = view
    slots = " ".join(own_slots(nodes)) or "none"
    return f"cluster_state:{info.get('cluster_state', '?')}, slots {slots}"


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
            if not _needs_start(node.service, [node.port, cluster_bus_port(node.port)], echo):
                continue
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


def form_cluster(nodes: Sequence[ClusterNode], echo: Echo = print) -> bool:
    """Join the nodes into one cluster and assign every slot; False if nothing was missing.

    Node *i* gets range *i* of ``cluster_slot_ranges`` (less any slot another node owns
    already) and config epoch *i + 1* while it knows only itself; then the first node
    meets the others. A formed cluster, also one whose nodes just restarted from their
    nodes.conf, is left alone.
    """
    clients = [ClusterNodeAdmin(node.url, REDIS_START_TIMEOUT_S) for node in nodes]
    try:
        infos: list[dict[str, str]] = []
        for node, client in zip(nodes, clients, strict=True):
            try:
                infos.append(parse_cluster_info(client.info()))
            except NotAClusterNode as exc:
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
        owned = [_slot_set(own_slots(c.nodes())) for c in clients]
        taken = set().union(*owned)
        ranges = cluster_slot_ranges(len(nodes))
        for i, (client, info) in enumerate(zip(clients, infos, strict=True)):
            if not owned[i]:
                wanted = set(range(ranges[i][0], ranges[i][1] + 1))
                for first, last in _ranges(sorted(wanted - taken)):
                    client.add_slots_range(first, last)
            if info.get("cluster_known_nodes") == "1" and info.get("cluster_my_epoch") == "0":
                client.set_config_epoch(i + 1)
        address = _meet_address(nodes[0].service.host)
        known = clients[0].nodes()
        for node in nodes[1:]:
            if f"{address}:{node.port}@" not in known:
                clients[0].meet(address, node.port)
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


def _meet_address(host: str) -> str:
    """The IP that CLUSTER MEET needs (Redis 7.0 takes no host names)."""
    if host in ("localhost", "0.0.0.0", "::", ""):
        return "127.0.0.1"
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host
