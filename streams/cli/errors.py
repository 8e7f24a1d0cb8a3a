"""How a command fails: a wrong setting or a service that does not answer becomes one
line naming the environment variable, the address and what to do, with exit code 2 and
no traceback (``--verbose`` adds it).

Commands that talk to Kafka or Redis check them first (:func:`check_services`), bounded
by :data:`CLI_TIMEOUT_S`, so a wrong port fails in a second or two instead of after a
client library's retries; a failure later in the command is explained by
:func:`explain`, which :class:`SegstreamGroup` applies to whatever a command raises.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import click
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from streams.kafka.clients import ConnectionCheckError, bootstrap_addresses
from streams.settings import Settings

#: Exit code of a command that could not start: a wrong setting, or Kafka or Redis absent.
EXIT_CODE = 2
#: How long a command waits for Kafka or Redis to answer its first request; the worker's
#: start check keeps its own, longer, bound.
CLI_TIMEOUT_S = 3.0
#: Fields whose values are never printed.
SECRET_FIELDS = frozenset({"password", "key_password", "redis_password", "api_token", "write_keys"})
#: Most lines one failure prints.
MAX_LINES = 3

REDIS_VAR = "SEGSTREAM_REDIS_URL"
KAFKA_VAR = "SEGSTREAM_KAFKA_BOOTSTRAP"


class CommandFailure(click.ClickException):
    """A failure the user fixes outside segstream: printed as one message, exit code 2."""

    exit_code = EXIT_CODE


# --------------------------------------------------------------------------- settings


def env_name(loc: Sequence[int | str], model: type[BaseModel] = Settings) -> str:
    """The environment variable of a settings field's location.

    >>> env_name(("topic_partitions",))
    'SEGSTREAM_TOPIC_PARTITIONS'
    >>> env_name(("collector", "write_keys", "shop"))
    'SEGSTREAM_COLLECTOR__WRITE_KEYS'
    """
    config = Settings.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = str(config.get("env_nested_delimiter") or "__")
    parts: list[str] = []
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            break
        parts.append(part)
        annotation = current.model_fields[part].annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        current = annotation if is_model else None
    return prefix + delimiter.join(p.upper() for p in parts)


def without_password(url: str) -> str:
    """A URL with its password replaced by ``***``.

    >>> without_password("redis://app:s3cret@db:6379/0")
    'redis://app:***@db:6379/0'
    >>> without_password("redis://db:6379/0")
    'redis://db:6379/0'
    """
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parsed._replace(netloc=f"{user}:***@{netloc[1]}").geturl()


def _shown(loc: Sequence[int | str], value: Any) -> str:
    """How a rejected value is quoted: secrets never, passwords in URLs masked, long ones cut."""
    if any(part in SECRET_FIELDS for part in loc) or not isinstance(value, str | int | float):
        return ""
    text = without_password(value) if isinstance(value, str) else str(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"={text!r}"


def settings_message(exc: ValidationError | SettingsError) -> str:
    """One line per wrong setting, naming its variable, without pydantic's URLs.

    >>> try:
    ...     Settings(topic_partitions="0")
    ... except ValidationError as e:
    ...     print(settings_message(e))
    invalid setting SEGSTREAM_TOPIC_PARTITIONS='0': Input should be greater than or equal to 1
    """
    if isinstance(exc, SettingsError):  # a nested group's JSON that does not parse
        found = re.search(r'field "(\w+)"', str(exc))
        name = env_name((found.group(1),)) if found else "SEGSTREAM_*"
        cause = exc.__cause__
        why = f": {cause}" if isinstance(cause, ValueError) else ""
        return f"invalid setting {name}: not valid JSON{why}"
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        message = str(error["msg"]).removeprefix("Value error, ")
        name = env_name(loc)
        if name == env_name(()):  # a check across fields
            lines.append(f"invalid settings: {message}")
        elif isinstance(error.get("input"), dict):  # a check across a group's fields
            delimiter = Settings.model_config.get("env_nested_delimiter")
            lines.append(f"invalid settings {name}{delimiter}*: {message}")
        else:
            lines.append(f"invalid setting {name}{_shown(loc, error.get('input'))}: {message}")
    if len(lines) > MAX_LINES:
        lines[MAX_LINES - 1 :] = [f"... and {len(lines) - MAX_LINES + 1} more invalid settings"]
    return "\n".join(lines)


def address_problems(settings: Settings) -> str | None:
    """What Settings' types let through but no client takes: a Redis URL without a scheme,
    a Kafka bootstrap server without a numeric port."""
    scheme = urlparse(settings.redis_url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        shown = without_password(settings.redis_url)
        return (
            f"invalid setting {REDIS_VAR}={shown!r}: a URL like redis://host:6379/0 "
            "(rediss:// for TLS, unix:///path.sock)"
        )
    try:
        for host, port in bootstrap_addresses(settings):
            if not host or not 0 < port < 65536:
                raise ValueError
    except ValueError:
        return (
            f"invalid setting {KAFKA_VAR}={settings.kafka_bootstrap!r}: host:port, "
            "comma-separated (e.g. 127.0.0.1:9092)"
        )
    return None


def load_settings() -> Settings:
    """The settings from the environment, or a :class:`CommandFailure` naming the variable."""
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        raise CommandFailure(settings_message(exc)) from None
    problem = address_problems(settings)
    if problem is not None:
        raise CommandFailure(problem)
    return settings


# --------------------------------------------------------------------------- connections


def redis_address(settings: Settings) -> str:
    host, port = settings.redis_host_port
    return f"{host}:{port}"


def unreachable_message(service: str, address: str, variable: str, reason: str) -> str:
    """Where the service should be, why it is not reached, and the two ways out."""
    return (
        f"cannot reach {service} at {address} ({variable}): {reason}. "
        f"Start it with `segstream services up` or fix {variable}."
    )


def check_message(service: str, settings: Settings, exc: ConnectionCheckError) -> str:
    """A failed start check: unreachable, or reached and refused (credentials, ACL,
    partition count), which the check's own message says."""
    if service == "Redis":
        address, variable = redis_address(settings), REDIS_VAR
    else:
        address, variable = settings.kafka_bootstrap, KAFKA_VAR
    if exc.unreachable is not None:
        return unreachable_message(service, address, variable, exc.unreachable)
    return f"{exc} ({variable} and its SEGSTREAM_{service.upper()}_* settings)"


def check_services(
    settings: Settings,
    *,
    kafka: bool = False,
    redis: bool = False,
    timeout_s: float = CLI_TIMEOUT_S,
    check_partitions: bool = False,
) -> None:
    """Fail now, within about ``timeout_s``, unless the services a command needs answer."""
    from streams.kafka.clients import check_kafka
    from streams.store.clients import check_redis

    if redis:
        try:
            check_redis(settings, timeout_s)
        except ConnectionCheckError as exc:
            raise CommandFailure(check_message("Redis", settings, exc)) from None
    if kafka:
        try:
            check_kafka(settings, timeout_s, check_partitions=check_partitions)
        except ConnectionCheckError as exc:
            raise CommandFailure(check_message("Kafka", settings, exc)) from None


def _kafka_failures() -> tuple[type[BaseException], ...]:
    import kafka.errors

    found: list[type[BaseException]] = [kafka.errors.KafkaConnectionError]
    found.append(kafka.errors.KafkaTimeoutError)
    # kafka-python 2.x raises NoBrokersAvailable where 3.x times out
    if (no_brokers := getattr(kafka.errors, "NoBrokersAvailable", None)) is not None:
        found.append(no_brokers)
    try:
        from aiokafka.errors import KafkaConnectionError as AioConnectionError
        from aiokafka.errors import KafkaTimeoutError as AioTimeoutError
    except ImportError:  # aiokafka comes with faust; a slim install may lack it
        pass
    else:
        found += [AioConnectionError, AioTimeoutError]
    return tuple(found)


def explain(exc: BaseException) -> str | None:
    """The message of a known failure a command raised (None: a bug, shown as one).

    Settings are read again for the addresses: a command got this far, so they parse."""
    from streams.store.clients import REDIS_UNREACHABLE, unreachable_reason

    if isinstance(exc, (ValidationError, SettingsError)) and _from_settings(exc):
        return settings_message(exc)
    if isinstance(exc, REDIS_UNREACHABLE):
        settings = Settings()
        return unreachable_message(
            "Redis", redis_address(settings), REDIS_VAR, unreachable_reason(exc)
        )
    if isinstance(exc, _kafka_failures()):
        settings = Settings()
        reason = str(exc).strip() or type(exc).__name__
        return unreachable_message("Kafka", settings.kafka_bootstrap, KAFKA_VAR, reason)
    if isinstance(exc, ConnectionCheckError):
        service = "Redis" if str(exc).startswith("Redis") else "Kafka"
        return check_message(service, Settings(), exc)
    return None


def _from_settings(exc: ValidationError | SettingsError) -> bool:
    return isinstance(exc, SettingsError) or exc.title == Settings.__name__


class SegstreamGroup(click.Group):
    """The root group: a known failure in any command (or sub-group) becomes its one-line
    message and exit code 2; ``--verbose`` prints the traceback above it."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as exc:
            try:
                message = explain(exc)
            except Exception:  # settings that no longer read: the original error counts
                message = None
            if message is None:
                raise
            if ctx.params.get("verbose"):
                click.echo(traceback.format_exc().rstrip(), err=True)
            raise CommandFailure(message) from None
