"""Running segstream: the worker and the collector, topics and schemas, consumer lag,
erasing a customer, migrating keys, and the partition clocks."""

from __future__ import annotations

import json
import time

import click

from streams.cli.root import _settings, main


@main.command()
@click.option("--group", help="Consumer group (default: SEGSTREAM_APP_ID, the workers' group).")
@click.option(
    "--all", "every_topic", is_flag=True, help="Also the group's other topics (the trainer's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lag(group: str | None, every_topic: bool, as_json: bool) -> None:
    """Per input partition: committed offset, log end offset and lag of the workers."""
    from streams.tools.lag import consumer_lag, render

    settings = _settings(kafka=True)
    group = group or settings.app_id
    rows = consumer_lag(settings, group, every_topic=every_topic)
    if as_json:
        out = {
            "group": group,
            "total_lag": sum(r.lag for r in rows if r.lag is not None),
            "partitions": [r.to_json() for r in rows],
        }
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(render(rows, group))


@main.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def erase(customer_id: str, as_json: bool) -> None:
    """Erase a customer: every Redis key and membership, then a tombstone on
    customers.erased. Later events of the customer start a fresh profile."""
    from streams.kafka.topics import ERASED, ensure_topics
    from streams.store.clients import redis_client
    from streams.store.erase import EraseConflict, erase_sync, publish_tombstone

    settings = _settings(kafka=True, redis=True)
    ensure_topics(settings)
    try:
        result = erase_sync(redis_client(settings), settings, customer_id)
    except EraseConflict as exc:
        raise click.ClickException(str(exc)) from None
    publish_tombstone(settings, customer_id)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "tombstone": settings.topic(ERASED)}))
    elif result.existed:
        click.echo(
            f"erased {customer_id}: {result.keys_deleted} key(s), "
            f"{result.memberships_removed} membership(s); tombstone on {settings.topic(ERASED)}"
        )
    else:
        click.echo(
            f"no state for {customer_id}; removed {result.memberships_removed} stray "
            f"membership(s); tombstone on {settings.topic(ERASED)}"
        )


@main.command()
def topics() -> None:
    """Create segstream's topics if missing."""
    from streams.kafka.topics import ensure_topics

    created = ensure_topics(_settings(kafka=True))
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@main.command()
@click.option(
    "--topic",
    "topic",
    default=None,
    help="a topic segstream writes (segments.changes, actions.email, events.deadletter, "
    "customers.erased, ...) or an input topic; default: the input events",
)
@click.option("--list", "listing", is_flag=True, help="list the topics and what they carry")
def schema(topic: str | None, listing: bool) -> None:
    """Print the JSON Schema of a topic's messages (default: event contract v1)."""
    from segmenters.contract import TOPICS, schema_for

    if listing:
        for name, (what, _build) in TOPICS.items():
            click.echo(f"{name:<20} {what}")
        return
    try:
        click.echo(json.dumps(schema_for(topic or "events"), indent=2))
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--topic") from None


@main.command()
def worker() -> None:
    """Run a worker: consume events, keep state in Redis, publish segment changes."""
    from streams.cli.errors import check_services
    from streams.kafka.clients import CHECK_TIMEOUT_S

    settings = _settings()
    if settings.segments_file is not None:  # a bad file stops the start, with the line
        from segmenters.dimensions.custom import SegmentConfigError
        from streams.worker.rules import load_segments

        try:
            load_segments(settings.segments_file, settings)
        except (OSError, SegmentConfigError) as exc:
            raise click.ClickException(f"{settings.segments_file}: {exc}") from None
    if settings.actions_file is not None:  # likewise the retention policy
        from segmenters.actions.policy import PolicyError
        from streams.worker.rules import load_policy_file

        try:
            load_policy_file(settings.actions_file, settings)
        except (OSError, PolicyError) as exc:
            raise click.ClickException(f"{settings.actions_file}: {exc}") from None
    # wrong credentials: a clear message now, not a client retrying forever; the worker's
    # bound stays the longer one of its start check (a loaded broker is no absent broker)
    check_services(
        settings, kafka=True, redis=True, timeout_s=CHECK_TIMEOUT_S, check_partitions=True
    )
    import faust  # the worker's heavy imports, once the settings and services are right

    from streams.kafka.topics import ensure_topics
    from streams.worker.app import create_app, tune_gc
    from streams.worker.delivery import use_uvloop

    ensure_topics(settings)
    use_uvloop()  # before the app and its loop exist; asyncio's loop if not installed
    app = create_app(settings)
    tune_gc()
    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


@main.command()
@click.option("--host", help="Listen address (default: SEGSTREAM_COLLECTOR__HOST).")
@click.option("--port", type=int, help="Listen port (default: SEGSTREAM_COLLECTOR__PORT).")
def collector(host: str | None, port: int | None) -> None:
    """Run the HTTP collector: websites POST events (or load a pixel), it puts them on
    Kafka (see "Sending events from a website" in README.md)."""
    from streams.collector.service import run

    settings = _settings(kafka=True)  # without Redis it serves identified customers only
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if changes:
        settings = settings.model_copy(
            update={"collector": settings.collector.model_copy(update=changes)}
        )
    run(settings)


@main.command("migrate-keys")
def migrate_keys() -> None:
    """Move Redis data of the layout before partition tags into the current one (stop the
    workers first; docs/state_format.md, "Layout history")."""
    from streams.store.clients import redis_client
    from streams.store.migrate import MigrateError, migrate_layout

    settings = _settings(redis=True)
    try:
        migrate_layout(redis_client(settings), settings, echo=click.echo)
    except MigrateError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def clock() -> None:
    """Partition clocks: show them, repair one an event dated in the future moved."""


@clock.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per partition.")
def clock_show(as_json: bool) -> None:
    """Every partition's clock, how far it is from wall time, and whether it is a fault."""
    from streams.store.clients import redis_client
    from streams.worker import clock as clocks

    settings = _settings(redis=True)
    wall = time.time()
    rows = clocks.show(redis_client(settings), settings, wall)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.to_json()))
    else:
        click.echo(clocks.render(rows, wall))


@clock.command("reset")
@click.argument("partition", type=int)
@click.option("--to", "to", required=True, help="The clock to set: ISO-8601 with a zone, or now.")
def clock_reset(partition: int, to: str) -> None:
    """Set PARTITION's clock (running workers take it within a second); see
    docs/reliability.md for what a reset does not undo."""
    from streams.store.clients import redis_client
    from streams.worker import clock as clocks

    settings = _settings(redis=True)
    wall = time.time()
    try:
        done = clocks.reset(
            redis_client(settings), settings, partition, clocks.parse_when(to, wall), wall
        )
    except clocks.ClockError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(done))
