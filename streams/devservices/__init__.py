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

Modules: ``control`` (up/down/status of the whole set), ``process`` (one supervised
server process), ``kafka`` (broker and tools), ``redis_server`` (a standalone
redis-server), ``cluster`` (a local Redis Cluster) and ``cluster_slots`` (its pure
CLUSTER INFO/NODES parsing and slot arithmetic).
"""

from streams.devservices.cluster import (
    CLUSTER_BUS_OFFSET,
    CLUSTER_MASTERS,
    ClusterNode,
    cluster_bus_port,
    cluster_node_command,
    cluster_nodes,
    form_cluster,
    redis_cluster_ok,
    start_cluster,
    start_cluster_node,
    wait_cluster_ok,
)
from streams.devservices.cluster_slots import (
    CLUSTER_SLOTS,
    cluster_slot_ranges,
    own_slots,
    parse_cluster_info,
    served_slots,
)
from streams.devservices.control import down, redis_up, status, up
from streams.devservices.kafka import (
    KAFKA_TOOLS,
    ScramListener,
    kafka_answers,
    kafka_tool_command,
    new_cluster_id,
    run_kafka_tool,
)
from streams.devservices.process import Echo, ServiceError, ServiceState
from streams.devservices.redis_server import redis_answers

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "CLUSTER_MASTERS",
    "CLUSTER_SLOTS",
    "KAFKA_TOOLS",
    "ClusterNode",
    "Echo",
    "ScramListener",
    "ServiceError",
    "ServiceState",
    "cluster_bus_port",
    "cluster_node_command",
    "cluster_nodes",
    "cluster_slot_ranges",
    "down",
    "form_cluster",
    "kafka_answers",
    "kafka_tool_command",
    "new_cluster_id",
    "own_slots",
    "parse_cluster_info",
    "redis_answers",
    "redis_cluster_ok",
    "redis_up",
    "run_kafka_tool",
    "served_slots",
    "start_cluster",
    "start_cluster_node",
    "status",
    "up",
    "wait_cluster_ok",
]
