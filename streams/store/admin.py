"""Redis as a local development server sees it (streams/devservices): the PING probe
of a server and the node-level CLUSTER commands behind forming a local Redis Cluster
and reading its health. Apart from clients.py, whose clients log in to a deployment's
Redis with its settings; these talk to one node by URL.
"""

from __future__ import annotations

from typing import Any

import redis


class NotAClusterNode(Exception):
    """The node refused ``CLUSTER INFO``: it runs without cluster support."""


def node_client(url: str, timeout_s: float, *, decode: bool = False) -> redis.Redis:
    """A client of the one node at ``url`` (credentials from the URL), with timeouts."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=decode
    )


def redis_answers(url: str, timeout_s: float) -> bool:
    """True if the Redis at ``url`` answers PING (with the credentials in the URL)."""
    client = node_client(url, timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def cluster_texts(url: str, timeout_s: float) -> tuple[str, str] | None:
    """The node's ``CLUSTER INFO`` and ``CLUSTER NODES`` texts; None if it does not
    answer (or is no cluster node)."""
    client = node_client(url, timeout_s, decode=True)
    try:
        info = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        return info, client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


class ClusterNodeAdmin:
    """One connection to a cluster node for the commands that form the cluster."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._client = node_client(url, timeout_s, decode=True)

    def _command(self, *args: Any) -> Any:
        return self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    def info(self) -> str:
        """``CLUSTER INFO``; :class:`NotAClusterNode` if the node has no cluster support."""
        try:
            return str(self._command("CLUSTER", "INFO"))
        except redis.ResponseError as exc:  # "ERR This instance has cluster support disabled"
            raise NotAClusterNode(str(exc)) from exc

    def nodes(self) -> str:
        """``CLUSTER NODES``."""
        return str(self._command("CLUSTER", "NODES"))

    def add_slots_range(self, first: int, last: int) -> None:
        self._command("CLUSTER", "ADDSLOTSRANGE", first, last)

    def set_config_epoch(self, epoch: int) -> None:
        self._command("CLUSTER", "SET-CONFIG-EPOCH", epoch)

    def meet(self, address: str, port: int) -> None:
        self._command("CLUSTER", "MEET", address, port)

    def close(self) -> None:
        self._client.close()
