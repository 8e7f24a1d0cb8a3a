"""``segstream services``: local Kafka, Redis and Redis Cluster for development and tests."""

from __future__ import annotations

import json
import sys

import click

from streams.cli.root import _settings, main


@main.group()
def services() -> None:
    """Local Kafka (KRaft) and Redis for development and tests."""


@services.command("up")
def services_up() -> None:
    """Start local Kafka and Redis unless something already answers."""
    from streams import devservices as svc

    try:
        svc.up(_settings(), echo=click.echo)
    except svc.ServiceError as exc:
        raise click.ClickException(str(exc)) from None


@services.command("down")
def services_down() -> None:
    """Stop what `services up` started (and nothing else)."""
    from streams import devservices as svc

    svc.down(_settings(), echo=click.echo)


@services.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per service.")
def services_status(as_json: bool) -> None:
    """Show whether Kafka and Redis answer, and what we started."""
    from streams import devservices as svc

    for s in svc.status(_settings()):
        if as_json:
            fields = ("name", "address", "answering", "pid", "detail")
            click.echo(json.dumps({f: getattr(s, f) for f in fields}))
            continue
        state = "answering" if s.answering else "not answering"
        pid = f" (started by segstream, pid {s.pid})" if s.pid else ""
        click.echo(f"{s.name:6} {s.address:28} {state}{pid} {s.detail}".rstrip())


@services.command(
    "kafka-consumer-groups",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def services_consumer_groups(args: tuple[str, ...]) -> None:
    """Apache Kafka's kafka-consumer-groups (e.g. --describe --group G).

    Arguments go to the tool as they are; --bootstrap-server defaults to
    SEGSTREAM_KAFKA_BOOTSTRAP. The jars are fetched with Maven on first use.
    """
    from streams import devservices as svc

    try:
        code = svc.run_kafka_tool(
            _settings(kafka=True),
            "kafka-consumer-groups",
            list(args),
            echo=lambda m: click.echo(m, err=True),
        )
    except svc.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)
