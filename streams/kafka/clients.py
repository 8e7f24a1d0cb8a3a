"""Kafka clients, built from the settings, and the start check of Kafka.

``SEGSTREAM_KAFKA_SECURITY__*``: PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL, with
SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. The same settings become the Faust app's
``broker_credentials``, kafka-python keyword arguments (admin, producers, consumers of
the command-line tools) and aiokafka keyword arguments (bench).

The worker's start check (``store.clients.check_connections``) is one authenticated
metadata request to Kafka (:func:`check_kafka`) and a PING to Redis, each bounded in
time, failing with a message that says what was refused, instead of a client library
retrying forever.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from segmenters.topics import INPUTS
from streams.settings import Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

CHECK_TIMEOUT_S = 10.0


class ConnectionCheckError(RuntimeError):
    """Kafka or Redis refused the configured credentials, or did not answer in time."""

    def __init__(self, message: str, unreachable: str | None = None) -> None:
        super().__init__(message)
        #: Why no connection was made at all ("Connection refused"), when that is the
        #: failure: the command line then says where the service should be and how to start it.
        self.unreachable = unreachable


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of a SSL/SASL_SSL protocol (None for the plaintext ones)."""
    sec = settings.kafka_security
    if not sec.tls:
        return None
    context = ssl.create_default_context(
        cafile=str(sec.ca_file) if sec.ca_file else None,
    )
    if sec.cert_file:
        context.load_cert_chain(
            str(sec.cert_file),
            str(sec.key_file) if sec.key_file else None,
            sec.key_password.get_secret_value() if sec.key_password else None,
        )
    if not sec.check_hostname:
        context.check_hostname = False
    return context


def _sasl_kwargs(settings: Settings) -> dict[str, Any]:
    sec = settings.kafka_security
    if not sec.sasl:
        return {}
    assert sec.password is not None  # the settings' validator ensures it
    return {
        "sasl_mechanism": sec.mechanism,
        "sasl_plain_username": sec.username,
        "sasl_plain_password": sec.password.get_secret_value(),
    }


def kafka_python_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of kafka-python's clients: bootstrap servers and security."""
    sec = settings.kafka_security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": sec.protocol,
        **_sasl_kwargs(settings),
    }
    if sec.tls:
        kwargs["ssl_check_hostname"] = sec.check_hostname
        if sec.ca_file:
            kwargs["ssl_cafile"] = str(sec.ca_file)
        if sec.cert_file:
            kwargs["ssl_certfile"] = str(sec.cert_file)
        if sec.key_file:
            kwargs["ssl_keyfile"] = str(sec.key_file)
        if sec.key_password:
            kwargs["ssl_password"] = sec.key_password.get_secret_value()
    return kwargs


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of aiokafka's clients: bootstrap servers and security."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security.protocol,
        **_sasl_kwargs(settings),
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """``broker_credentials`` of the Faust app (None: plaintext, no authentication).

    faust-streaming hands SASLCredentials' mechanism to aiokafka as ``sasl_mechanism``,
    so SCRAM-SHA-256/512 work as well as PLAIN.
    """
    import faust

    sec = settings.kafka_security
    context = kafka_ssl_context(settings)
    if sec.sasl:
        assert sec.password is not None
        return faust.SASLCredentials(
            username=sec.username,
            password=sec.password.get_secret_value(),
            mechanism=sec.mechanism,
            ssl_context=context,  # SASL_SSL with a context, SASL_PLAINTEXT without
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_broker(settings: Settings) -> dict[str, Any]:
    """A Faust app's broker, credentials and raw (undecoded) keys and values: what the
    worker's app and the benchmark's stock baseline share."""
    return {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "broker_credentials": faust_credentials(settings),
        "key_serializer": "raw",
        "value_serializer": "raw",
    }


def kafka_admin(settings: Settings, **kwargs: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka_python_kwargs(settings), **kwargs)


def kafka_consumer(settings: Settings, *topics: str, **kwargs: Any) -> KafkaConsumer:
    return KafkaConsumer(*topics, **kafka_python_kwargs(settings), **kwargs)


def kafka_producer(settings: Settings, **kwargs: Any) -> KafkaProducer:
    return KafkaProducer(**kafka_python_kwargs(settings), **kwargs)


# --------------------------------------------------------------------------- start check


def admin_timeouts(timeout_s: float) -> dict[str, int]:
    """An admin client's request and bootstrap timeouts of ``timeout_s``, under the names
    the installed kafka-python takes."""
    timeout_ms = int(timeout_s * 1000)
    wanted = {  # kafka-python 2.x and 3.x name the bootstrap timeout differently
        "request_timeout_ms": timeout_ms,
        "api_version_auto_timeout_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
    }
    return {k: v for k, v in wanted.items() if k in KafkaAdminClient.DEFAULT_CONFIG}


def bootstrap_addresses(settings: Settings) -> list[tuple[str, int]]:
    """Host and port of every bootstrap server (kafka-python's default port 9092).

    >>> bootstrap_addresses(Settings(kafka_bootstrap="a:1, PLAINTEXT://b:2,c"))
    [('a', 1), ('b', 2), ('c', 9092)]
    """
    out = []
    for entry in settings.kafka_bootstrap.split(","):
        entry = entry.strip().split("://", 1)[-1]
        host, colon, port = entry.rpartition(":")
        if not colon:
            host, port = entry, ""
        out.append((host.strip("[]") or "127.0.0.1", int(port or 9092)))
    return out


def _no_connection(settings: Settings, timeout_s: float) -> str | None:
    """Why no bootstrap server accepts a TCP connection (None when one does): a refused
    port or an unknown host fails at once here, instead of after the client's retries."""
    addresses = bootstrap_addresses(settings)
    reasons = []
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=timeout_s / len(addresses)):
                return None
        except socket.gaierror:
            reasons.append(f"unknown host {host}")
        except TimeoutError:
            reasons.append(f"no answer within {timeout_s / len(addresses):g} s")
        except OSError as exc:
            reasons.append(exc.strerror or str(exc))
    return reasons[0] if reasons else None


def check_kafka(
    settings: Settings, timeout_s: float = CHECK_TIMEOUT_S, *, check_partitions: bool = True
) -> None:
    """One metadata request, authenticated as configured, within ``timeout_s``; with
    ``check_partitions``, the input topics that exist must have SEGSTREAM_TOPIC_PARTITIONS."""
    from kafka.errors import KafkaError, KafkaTimeoutError

    sec = settings.kafka_security
    where = f"Kafka at {settings.kafka_bootstrap}"
    refused = _no_connection(settings, timeout_s)
    if refused is not None:
        raise ConnectionCheckError(f"{where}: no connection: {refused}", unreachable=refused)
    who = (
        f"the SASL credentials for user {sec.username} ({sec.mechanism})"
        if sec.sasl
        else f"a {sec.protocol} connection"
    )
    config = admin_timeouts(timeout_s)
    outcome: list[BaseException | None] = []
    counts: dict[str, int] = {}  # input topic -> partitions, for those that exist
    done = threading.Event()

    def attempt() -> None:

        try:
            admin = kafka_admin(settings, client_id=f"{settings.app_id}-check", **config)
            try:
                names = set(admin.list_topics())
                inputs = [t for t in (settings.topic(n) for n in INPUTS) if t in names]
                for meta in admin.describe_topics(inputs) if inputs else []:
                    counts[str(meta.get("name") or meta.get("topic"))] = len(meta["partitions"])
            finally:
                admin.close()
        except (KafkaError, OSError, ValueError) as exc:
            outcome.append(exc)
        else:
            outcome.append(None)
        finally:
            done.set()

    # kafka-python retries a refused authentication until its timeout: the attempt runs
    # in a daemon thread, and the first authentication or TLS failure it logs ends the wait.
    failures: list[str] = []
    with _captured("kafka", failures):
        threading.Thread(target=attempt, name="segstream-kafka-check", daemon=True).start()
        deadline = time.monotonic() + timeout_s + 5.0
        while not done.wait(0.1):
            if _auth_failures(failures) or time.monotonic() > deadline:
                break
            if len(bootstrap_addresses(settings)) == 1 and _not_a_broker(failures):
                break
    if done.is_set() and outcome and outcome[0] is None:
        wrong = {t: n for t, n in counts.items() if n != settings.topic_partitions}
        # a customer's partition (and its keys' hash tag) depends on the count
        if wrong and check_partitions:
            raise ConnectionCheckError(
                f"{where}: input topics have "
                + ", ".join(f"{t} {n} partitions" for t, n in sorted(wrong.items()))
                + f", SEGSTREAM_TOPIC_PARTITIONS is {settings.topic_partitions}: set it to "
                "the topics' partition count"
            )
        return
    error = outcome[0] if outcome else None
    message = _kafka_refusal(where, who, error, failures, timeout_s)
    unreachable = None
    if _not_a_broker(failures):
        unreachable = "it answers, but not as a Kafka broker (a controller's port?)"
    elif (
        sec.protocol == "PLAINTEXT"  # else a timeout may be a login or TLS that went wrong
        and not _auth_failures(failures)
        and (error is None or isinstance(error, KafkaTimeoutError))
    ):
        unreachable = f"no answer to a metadata request within {timeout_s:g} s"
    raise ConnectionCheckError(message, unreachable=unreachable)


def _auth_failures(logged: list[str]) -> list[str]:
    keys = ("AuthenticationFailed", "Authentication failed", "SSLError", "CERTIFICATE_VERIFY")
    return [m for m in logged if any(k in m for k in keys)]


def _not_a_broker(logged: list[str]) -> bool:
    """A server that refuses metadata requests (a KRaft controller) is no broker: kafka-python
    would retry it until its timeout."""
    return any("IncompatibleBrokerVersion" in m for m in logged)


def _kafka_refusal(
    where: str, who: str, exc: BaseException | None, logged: list[str], timeout_s: float
) -> str:
    """The clearest reason: an authentication or TLS failure the client logged, if any."""
    auth = _auth_failures(logged)
    if auth:
        reason = auth[0]
        if "[Error " in reason:  # kafka-python: "<transport>: Abort ([Error 58] X: X: why)"
            reason = reason[reason.index("[Error ") :]
            reason = re.sub(r"\)?( \(backoff [\d.]+ secs\))?$", "", reason)
            reason = re.sub(r"(\w+): \1: ", r"\1: ", reason)
        return f"{where} refused {who}: {reason}"
    if exc is None:
        return f"{where} did not answer a metadata request within {timeout_s:.0f} s ({who})"
    return f"{where} did not accept {who}: {type(exc).__name__}: {exc}"


@contextmanager
def _captured(logger_name: str, into: list[str]) -> Iterator[None]:
    """Collect a client library's warnings and errors (and keep them off the console)."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            into.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    handler = Collect(logging.WARNING)
    previous = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = previous
