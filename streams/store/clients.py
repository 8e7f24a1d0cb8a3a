"""Redis clients, built from the settings, and the start check of Redis.

``SEGSTREAM_REDIS_URL`` (``rediss://`` for TLS, optionally ``user:password@``),
``SEGSTREAM_REDIS_USERNAME``/``_PASSWORD`` (they win over the URL's), and the TLS files.
A standalone client or, with ``SEGSTREAM_REDIS_CLUSTER``, a cluster client: the same
commands, routed by key slot. Only ``streams/store/`` speaks Redis.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlparse

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from streams.kafka.clients import CHECK_TIMEOUT_S, ConnectionCheckError, check_kafka
from streams.settings import Settings

#: What a Redis client made here raises when Redis fails: a standalone client raises
#: ``RedisError`` (or ``OSError``), a Redis Cluster client with no reachable node
#: ``RedisClusterException``, which is not a ``RedisError``.
REDIS_FAILURES: tuple[type[BaseException], ...] = (
    redis.RedisError,
    RedisClusterException,
    OSError,
)
#: What a client raises when it gets no connection at all, or no answer in time (a refused
#: login is a ``ConnectionError`` too: ``AuthenticationError``).
REDIS_UNREACHABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    RedisClusterException,
)


def redis_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url`` besides the URL itself."""
    kwargs: dict[str, Any] = {}
    if settings.redis_username:
        kwargs["username"] = settings.redis_username
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ca_file:
        kwargs["ssl_ca_certs"] = str(settings.redis_ca_file)
    if settings.redis_cert_file:
        kwargs["ssl_certfile"] = str(settings.redis_cert_file)
    if settings.redis_key_file:
        kwargs["ssl_keyfile"] = str(settings.redis_key_file)
    return kwargs


def redis_client(settings: Settings, **kwargs: Any) -> redis.Redis:
    """A blocking redis-py client with the configured credentials and TLS (a cluster
    client when ``redis_cluster`` is set: the same commands, routed by key slot)."""
    if settings.redis_cluster:
        return RedisCluster.from_url(  # type: ignore[return-value]
            settings.redis_url, **redis_kwargs(settings), **kwargs
        )
    return redis.Redis.from_url(settings.redis_url, **redis_kwargs(settings), **kwargs)


def async_redis_client(settings: Settings, **kwargs: Any) -> aioredis.Redis:
    """An asyncio redis-py client with the configured credentials and TLS (or cluster)."""
    if settings.redis_cluster:
        return AsyncRedisCluster.from_url(  # type: ignore[return-value]
            settings.redis_url, **redis_kwargs(settings), **kwargs
        )
    return aioredis.Redis.from_url(settings.redis_url, **redis_kwargs(settings), **kwargs)


def redis_user(settings: Settings) -> str:
    """The ACL user the clients log in as (``default`` unless one is configured)."""
    if settings.redis_username:
        return settings.redis_username
    return unquote(urlparse(settings.redis_url).username or "") or "default"


def _cluster_enabled(client: Any) -> bool:
    """Whether the server is a cluster node; False if the user may not run INFO (a
    restricted ACL user: then a cluster shows later as MOVED errors)."""
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.NoPermissionError:
        return False


def _no_slot_map(where: str, user: str, exc: Exception) -> str:
    return (
        f"{where}: user {user} may not read the cluster's slot map "
        f"(ACL SETUSER {user} +cluster|slots): {exc}"
    )


def _not_a_cluster(settings: Settings, where: str, user: str, timeout_s: float) -> str:
    """redis-py reports any refused CLUSTER SLOTS as "cluster mode is not enabled"; ask
    the node itself, so a user without the permission is told so."""
    probe = redis_client(
        settings.model_copy(update={"redis_cluster": False}),
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
    )
    try:
        probe.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    except redis.exceptions.NoPermissionError as exc:
        return _no_slot_map(where, user, exc)
    except redis.RedisError:
        pass
    finally:
        probe.close()
    return f"{where} is not a Redis Cluster node, but SEGSTREAM_REDIS_CLUSTER is set"


def check_redis(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """PING, then read one of segstream's keys: the user must exist and reach the keys."""
    host, port = settings.redis_host_port
    where = f"Redis at {host}:{port}"
    user = redis_user(settings)
    client = None
    try:
        client = redis_client(settings, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        client.ping()
        if not settings.redis_cluster and _cluster_enabled(client):
            raise ConnectionCheckError(
                f"{where} is a Redis Cluster node: set SEGSTREAM_REDIS_CLUSTER=true"
            )
        client.exists(f"{settings.key_prefix}:clock")
    except redis.AuthenticationError as exc:
        raise ConnectionCheckError(f"{where} refused user {user}: {exc}") from None
    except redis.exceptions.NoPermissionError as exc:
        if "cluster|" in str(exc):
            raise ConnectionCheckError(_no_slot_map(where, user, exc)) from None
        raise ConnectionCheckError(
            f"{where}: user {user} may not use segstream's keys ({settings.key_prefix}:*): {exc}"
        ) from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise ConnectionCheckError(f"{where} refused user {user}: {exc}") from None
        raise ConnectionCheckError(f"{where} failed the start check: {exc}") from None
    except RedisClusterException as exc:
        if "username-password" in str(exc) or "WRONGPASS" in str(exc):
            raise ConnectionCheckError(f"{where} refused user {user}: {exc}") from None
        if "not enabled" in str(exc):
            raise ConnectionCheckError(_not_a_cluster(settings, where, user, timeout_s)) from None
        if "reachable node" in str(exc):  # no node answered at all: the same as one Redis
            raise ConnectionCheckError(
                f"{where}: no connection: {exc}", unreachable=unreachable_reason(exc)
            ) from None
        raise ConnectionCheckError(f"{where}: the cluster did not answer: {exc}") from None
    except (redis.RedisError, OSError) as exc:
        raise ConnectionCheckError(
            f"{where}: no connection: {type(exc).__name__}: {exc}",
            unreachable=unreachable_reason(exc),
        ) from None
    finally:
        if client is not None:
            client.close()


def unreachable_reason(exc: BaseException) -> str:
    """The short why of a failed connection: the socket's own words ("Connection refused")
    rather than redis-py's sentence around them."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, redis.TimeoutError):
        return "no answer in time"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"it answers, but not as Redis ({exc})"
    return str(exc).rstrip(".").rsplit(". ", 1)[-1] or type(exc).__name__


def check_connections(settings: Settings, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """Raise :class:`ConnectionCheckError` unless Kafka and Redis accept the credentials."""
    check_kafka(settings, timeout_s)
    check_redis(settings, timeout_s)
