"""``up``, ``down`` and ``status`` of the whole local set: Kafka plus a standalone
Redis or a Redis Cluster, as the settings say. The only module that knows every
service; the others each know one.
"""

from __future__ import annotations

from streams.devservices.cluster import _redis_cluster_nodes, start_cluster
from streams.devservices.kafka import ScramListener, _kafka_service, _kafka_up
from streams.devservices.process import Echo, ServiceState, _locked, _Service, _state, _stop
from streams.devservices.redis_server import _redis_service, _redis_up
from streams.settings import Settings


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


def _services(settings: Settings) -> list[_Service]:
    if settings.redis_cluster:
        redis_services = [node.service for node in _redis_cluster_nodes(settings)]
    else:
        redis_services = [_redis_service(settings)]
    return [_kafka_service(settings), *redis_services]
