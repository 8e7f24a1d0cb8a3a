"""``segstream`` command line: services, worker, simulator, look-ups and tools."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import click
import orjson
from pydantic import ValidationError

from .lookup import customer_view, iso
from .settings import Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid SEGSTREAM_* settings:\n{exc}") from None


#: Client libraries whose INFO lines (connections, metadata, group joins) are noise in a
#: command's output; ``--verbose`` shows them.
QUIET_LIBRARIES = {"kafka": logging.WARNING, "aiokafka": logging.WARNING}
#: kafka-python warns when one of its own tasks takes over 0.1 s, which a busy 2-core
#: machine does all the time; it says nothing about segstream.
QUIET_LOGGERS = {"kafka.net.selector": logging.ERROR}


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show the client libraries' INFO logs.")
def main(verbose: bool) -> None:
    """segstream: real-time customer segmentation on Kafka and Redis."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not verbose:
        for name, level in {**QUIET_LIBRARIES, **QUIET_LOGGERS}.items():
            logging.getLogger(name).setLevel(level)


@main.group()
def services() -> None:
    """Local Kafka (KRaft) and Redis for development and tests."""


@services.command("up")
def services_up() -> None:
    """Start local Kafka and Redis unless something already answers."""
    from . import devservices as svc

    try:
        svc.up(_settings(), echo=click.echo)
    except svc.ServiceError as exc:
        raise click.ClickException(str(exc)) from None


@services.command("down")
def services_down() -> None:
    """Stop what `services up` started (and nothing else)."""
    from . import devservices as svc

    svc.down(_settings(), echo=click.echo)


@services.command("status")
def services_status() -> None:
    """Show whether Kafka and Redis answer, and what we started."""
    from . import devservices as svc

    for s in svc.status(_settings()):
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
    from . import devservices as svc

    try:
        code = svc.run_kafka_tool(
            _settings(),
            "kafka-consumer-groups",
            list(args),
            echo=lambda m: click.echo(m, err=True),
        )
    except svc.ServiceError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option("--group", help="Consumer group (default: SEGSTREAM_APP_ID, the workers' group).")
@click.option(
    "--all", "every_topic", is_flag=True, help="Also the group's other topics (the trainer's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lag(group: str | None, every_topic: bool, as_json: bool) -> None:
    """Per input partition: committed offset, log end offset and lag of the workers."""
    from .lag import consumer_lag, render

    settings = _settings()
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
    from .erase import EraseConflict, erase_sync, publish_tombstone
    from .security import redis_client
    from .topics import ERASED, ensure_topics

    settings = _settings()
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
    from .topics import ensure_topics

    created = ensure_topics(_settings())
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
    import faust

    from .app import create_app, tune_gc
    from .delivery import use_uvloop
    from .security import ConnectionCheckError, check_connections
    from .topics import ensure_topics

    settings = _settings()
    if settings.segments_file is not None:  # a bad file stops the start, with the line
        from segmenters.custom import SegmentConfigError

        from .rules import load_segments

        try:
            load_segments(settings.segments_file, settings)
        except (OSError, SegmentConfigError) as exc:
            raise click.ClickException(f"{settings.segments_file}: {exc}") from None
    if settings.actions_file is not None:  # likewise the retention policy
        from segmenters.policy import PolicyError

        from .rules import load_policy_file

        try:
            load_policy_file(settings.actions_file, settings)
        except (OSError, PolicyError) as exc:
            raise click.ClickException(f"{settings.actions_file}: {exc}") from None
    try:  # wrong credentials: a clear message now, not a client retrying forever
        check_connections(settings)
    except ConnectionCheckError as exc:
        raise click.ClickException(str(exc)) from None
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
    from .collector.service import run

    settings = _settings()
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if changes:
        settings = settings.model_copy(
            update={"collector": settings.collector.model_copy(update=changes)}
        )
    run(settings)


@main.command()
@click.option("--customers", default=200, show_default=True, help="Simulated customers.")
@click.option("--rate", default=100.0, show_default=True, help="Events per second (0: max).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds of traffic.")
@click.option("--seed", default=7, show_default=True)
@click.option("--truth", type=click.Path(path_type=Path), help="Write customer -> persona.")
@click.option("--days", type=float, help="Spread event time over this many days (ends now).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    customers: int,
    rate: float,
    duration: float,
    seed: int,
    truth: Path | None,
    days: float | None,
    quiet: bool,
) -> None:
    """Produce realistic shop traffic (personas) to the input topics."""
    from .tools.simulate import simulate as run

    stats = run(
        _settings(),
        customers=customers,
        rate=rate,
        duration=duration,
        seed=seed,
        progress=not quiet,
        truth_path=truth,
        days=days,
    )
    click.echo(f"simulated: {stats}")


@main.command("migrate-keys")
def migrate_keys() -> None:
    """Move Redis data of the layout before partition tags into the current one (stop the
    workers first; docs/state_format.md, "Layout history")."""
    from .migrate import MigrateError, migrate_layout
    from .security import redis_client

    settings = _settings()
    try:
        migrate_layout(redis_client(settings), settings, echo=click.echo)
    except MigrateError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def customer(customer_id: str, as_json: bool) -> None:
    """Show one customer's segments and state."""
    from segmenters.state import CustomerState

    from .keys import partition_for, state_key
    from .security import redis_client

    settings = _settings()
    p = partition_for(customer_id, settings.topic_partitions)
    doc = redis_client(settings).hget(state_key(settings.key_prefix, p, customer_id), "doc")
    if doc is None:
        raise click.ClickException(f"no state for customer {customer_id!r}")
    from .store import load_doc

    state = CustomerState.from_doc(load_doc(doc) or {})
    out = customer_view(state)
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"customer {customer_id}")
        for dim, seg in out["segments"].items():
            click.echo(f"  {dim:12} {seg}")
        for key, value in out["state"].items():
            click.echo(f"  {key:14} {value}")


@main.group()
def segments() -> None:
    """Custom segments (named rules in a TOML file)."""


@segments.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def segments_check(path: Path) -> None:
    """Type-check a custom-segment file (fields, segment names, SEGSTREAM_CLUSTERS);
    errors name the line."""
    from segmenters.custom import FIELDS, SegmentConfigError

    from .rules import load_segments

    try:
        parsed = load_segments(path, _settings())
    except SegmentConfigError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(f"{path}: version {parsed.version}, {len(parsed.rules)} segment(s) OK")
    for r in parsed.rules:
        click.echo(f"  custom:{r.name:<32} {r.rule}")
    click.echo(f"fields: {', '.join(FIELDS)}")


@segments.command("sizes")
@click.option("--history", default=0, show_default=True, help="Also show the last N records.")
def segments_sizes(history: int) -> None:
    """Current size of every segment (from the segment indexes), and their history."""
    import asyncio

    from .keys import sizes_key
    from .security import async_redis_client, redis_client
    from .store import segment_sizes

    settings = _settings()

    async def current() -> dict[tuple[str, str], int]:
        client = async_redis_client(settings)
        try:
            return await segment_sizes(client, settings.key_prefix, settings.topic_partitions)
        finally:
            await client.aclose()

    for (dimension, segment), size in asyncio.run(current()).items():
        click.echo(f"{dimension:<34} {segment:<28} {size:>8}")
    client = redis_client(settings)
    for _entry_id, fields in client.xrevrange(sizes_key(settings.key_prefix), count=history):
        at = iso(float(fields.pop(b"at")))
        top = ", ".join(f"{k.decode()} {v.decode()}" for k, v in list(fields.items())[:6])
        click.echo(f"{at}  {top} ...")


@main.group()
def actions() -> None:
    """Retention actions: the policy file and the uplift report (docs/actions.md)."""


@actions.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--segments",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Custom-segment file the rules may use (default: SEGSTREAM_SEGMENTS_FILE).",
)
def actions_check(path: Path, segments: Path | None) -> None:
    """Validate a retention policy file against the segments that exist (journey, rfm,
    SEGSTREAM_CLUSTERS clusters, the custom segments); errors name the line."""
    from segmenters.policy import PolicyError

    from .rules import load_policy_file

    try:
        policy = load_policy_file(path, _settings(), segments)
    except PolicyError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(
        f"{path}: version {policy.version}, experiment {policy.experiment}, "
        f"{len(policy.actions)} action(s), {len(policy.rules)} rule(s) OK"
    )
    for a in sorted(policy.actions.values(), key=lambda a: (-a.priority, a.id)):
        target = f"template {a.template}" if a.template else f"audience {a.audience}"
        click.echo(
            f"  {a.id:<28} {target:<30} priority {a.priority:<4} holdout {a.holdout:.0%}"
            f"  cooldown {a.cooldown_s / 3600:g} h  delay {a.delay_s:g} s"
        )
    for r in policy.rules:
        click.echo(
            f"  {r.dimension}: {r.previous or '*'} -> {r.current}  =>  {', '.join(r.actions)}"
        )


@actions.command("report")
@click.option("--experiment", help="Experiment id (default: the policy's).")
@click.option(
    "--since", help="Count decisions made at or after this ISO date/datetime (UTC if no offset)."
)
@click.option("--until", help="Count decisions made before this ISO datetime (a date: to its end).")
@click.option(
    "--min-group",
    type=click.IntRange(min=0),
    help="Fewest customers per group for an interval (default SEGSTREAM_UPLIFT_MIN_GROUP, 30).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (numbers, no display strings).")
def actions_report(
    experiment: str | None,
    since: str | None,
    until: str | None,
    min_group: int | None,
    as_json: bool,
) -> None:
    """Per action: treated vs control customers, conversion and revenue per customer in
    the policy's conversion window, the differences with 95% CI (or "too few" below
    --min-group customers per group), suppressions by reason (docs/actions.md)."""
    from segmenters.policy import DEFAULT_POLICY, PolicyError, load_policy
    from segmenters.uplift import parse_when, render

    from .actions import report_data
    from .security import redis_client

    settings = _settings()
    if min_group is not None:
        settings = settings.model_copy(update={"uplift_min_group": min_group})
    try:
        start = parse_when(since) if since else None
        end = parse_when(until, end=True) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if start is not None and end is not None and end <= start:
        raise click.BadParameter("--until must be after --since")
    policy = DEFAULT_POLICY
    if settings.actions_file is not None:
        try:
            policy = load_policy(settings.actions_file.read_text())
        except (OSError, PolicyError) as exc:
            raise click.ClickException(f"{settings.actions_file}: {exc}") from None
    data = report_data(redis_client(settings), settings, policy, experiment)
    if as_json:
        click.echo(json.dumps(data.to_json(settings, since=start, until=end), indent=2))
        return
    results = data.results(min_group=settings.uplift_min_group, since=start, until=end)
    days = data.window_s / 86400
    window = "all decisions"
    if start is not None or end is not None:
        window = f"decisions {iso(start) or '…'} .. {iso(end) or '…'}"
    click.echo(
        f"experiment {data.experiment}: {len(data.assignments)} assignment(s) recorded, "
        f"{window}, conversion window {days:g} day(s), intervals from "
        f"{settings.uplift_min_group} customers per group, amounts in {settings.currency}"
    )
    if start is not None or end is not None:
        click.echo("(suppressions are counted over all time: they carry no time)")
    if not results:
        click.echo("no decisions recorded yet")
        return
    click.echo(render(results, currency=settings.currency))


@main.command()
def clusters() -> None:
    """The latest behaviour-cluster model: id, size, centroid and description."""
    from segmenters.clustering import ClusterModel

    from .keys import model_key
    from .security import redis_client

    settings = _settings()
    raw = redis_client(settings).get(model_key(settings.key_prefix))
    if raw is None:
        raise click.ClickException("no behaviour model yet (the trainer publishes after warm-up)")
    doc = orjson.loads(raw)
    model = ClusterModel.from_doc(doc["model"])
    drift = doc.get("drift", {})
    click.echo(
        f"behaviour model v{model.version}: {len(model.clusters)} clusters, "
        f"{doc.get('learned', 0)} vectors learned, {drift.get('drifts', 0)} drift(s) detected"
    )
    for c in sorted(model.clusters, key=lambda c: -c.size):
        units = model.centroid_in_units(c)
        centroid = ", ".join(f"{k} {v:.3g}" for k, v in units.items())
        click.echo(f"cluster_{c.id:<3} size {c.size:<6} {c.description}\n    {centroid}")


@main.command()
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--truth",
    type=click.Path(exists=True, path_type=Path),
    help="customer -> persona JSON (from `simulate --truth`): ARI against it too.",
)
def verify(quiet: bool, truth: Path | None) -> None:
    """Recompute every customer from the input topics and compare with Redis."""
    from segmenters.verify import render

    from .verify import verify as run

    personas = orjson.loads(truth.read_bytes()) if truth else None
    from .verify import VerifyError

    try:
        report = run(_settings(), progress=not quiet, personas=personas)
    except VerifyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(report))
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["rees46", "online-retail", "jsonl", "mapped"]),
    help="Layout of FILE (plain or gzip).",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML column mapping, for --format mapped (see config/replay-example.toml).",
)
@click.option("--rate", type=float, help="Send this many events per second.")
@click.option("--max", "as_fast", is_flag=True, help="Send as fast as possible (the default).")
@click.option("--limit", type=click.IntRange(min=0), help="Send only the first N events by time.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--no-actions",
    is_flag=True,
    help="Mark the events (Kafka header segstream-no-actions): segmented, never acted on.",
)
def replay(
    file: Path,
    fmt: str,
    mapping: Path | None,
    rate: float | None,
    as_fast: bool,
    limit: int | None,
    quiet: bool,
    no_actions: bool,
) -> None:
    """Replay recorded shop data from FILE to the input topics, in event-time order.

    Rows become contract-v1 events with ids derived from the rows, so replaying the same
    file again sends the same event and order ids; workers skip those still in each
    customer's de-duplication memory (its most recent ids). Ends with a summary: events
    by type, rows read, rows skipped by reason, seconds.

    Before sending, it says which retention actions the deployment's policy would take:
    only on segment changes newer than each action's max age (older ones are suppressed
    `stale`), or none with --no-actions.
    """
    from .tools.replay import ReplayError, load_mapping, render
    from .tools.replay import replay as run

    if rate is not None and as_fast:
        raise click.UsageError("--rate and --max exclude each other")
    if mapping is not None and fmt != "mapped":
        raise click.UsageError("--mapping goes with --format mapped")
    try:
        config = load_mapping(mapping) if mapping is not None else None
        stats = run(
            _settings(),
            file,
            fmt,
            mapping=config,
            rate=rate,
            limit=limit,
            progress=not quiet,
            no_actions=no_actions,
            announce=lambda text: click.echo(text, err=True),
        )
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(stats))
    if stats.failed:
        sys.exit(1)


@main.command()
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest change.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
def watch(duration: float | None, from_beginning: bool, quiet: bool) -> None:
    """Print segment changes as they happen, then a summary line."""
    from kafka import TopicPartition

    from .security import kafka_consumer
    from .topics import CHANGES, ensure_topics

    settings = _settings()
    ensure_topics(settings)
    topic = settings.topic(CHANGES)
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    if from_beginning:
        consumer.seek_to_beginning(*parts)
    else:
        consumer.seek_to_end(*parts)
    for tp in parts:
        consumer.position(tp)  # resolve now, so nothing produced from here on is missed
    click.echo(f"watching {topic} ...", err=True)
    seen: Counter[str] = Counter()
    ends = None if duration is None else time.monotonic() + duration
    try:
        while ends is None or time.monotonic() < ends:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    c = orjson.loads(r.value)
                    seen[f"{c['dimension']}:{c['current']}"] += 1
                    if not quiet:
                        click.echo(
                            f"{c['changed_at'][11:19]} {c['customer_id']:>14} {c['dimension']}: "
                            f"{c['previous'] or '-'} -> {c['current']}  ({c['reason']})"
                        )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    by_dimension: Counter[str] = Counter()
    for key, n in seen.items():
        by_dimension[key.rsplit(":", 1)[0]] += n
    top = ", ".join(f"{k} {v}" for k, v in by_dimension.most_common())
    click.echo(f"segment changes seen: {sum(seen.values())} ({top or 'none'})")
    sys.stdout.flush()


@main.command()
@click.option("--events", default=100_000, show_default=True, help="Pre-filled events.")
@click.option("--customers", default=10_000, show_default=True, help="Customers in them.")
@click.option(
    "--rates", default="500,5000", show_default=True, help="Offered rates for latency (ev/s)."
)
@click.option("--seconds", default=20.0, show_default=True, help="Seconds at each rate.")
@click.option(
    "--data",
    "data_files",
    type=click.Path(path_type=Path),
    multiple=True,
    default=[
        Path("../shared/data/rees46_2019-Oct_head_2019-10-01T0000_to_0249.csv.gz"),
        Path("../shared/data/online_retail_2010-12-01_to_2011-06-30.csv.gz"),
    ],
    show_default=True,
    help="REES46 or Online Retail file to time a replay catch-up of (repeatable; a "
    "missing one is skipped).",
)
@click.option(
    "--replay-limit",
    default=100_000,
    show_default=True,
    help="Replay at most this many events of each file (0: all).",
)
@click.option(
    "--stages-only",
    is_flag=True,
    help="Only the in-process stage benchmark (no broker, under a minute); prints only.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("docs/benchmarks.md"),
    show_default=True,
    help="Where the report goes.",
)
def bench(
    events: int,
    customers: int,
    rates: str,
    seconds: float,
    data_files: tuple[Path, ...],
    replay_limit: int,
    stages_only: bool,
    out: Path,
) -> None:
    """Measure pipeline stages, throughput against a stock no-op Faust app, latency,
    timers, memory and replay catch-up."""
    from .tools import bench as b
    from .tools.bench.in_process import render_stages

    settings = _settings()
    if stages_only:
        click.echo(render_stages(b.stages(settings, say=click.echo)))
        return
    log_dir = settings.cache_dir / "bench" / time.strftime("%Y%m%d-%H%M%S")
    click.echo(f"logs in {log_dir}")
    res = b.run(
        settings,
        events=events,
        customers=customers,
        rates=[int(r) for r in rates.split(",") if r.strip()],
        seconds=seconds,
        data_files=list(data_files),
        replay_limit=replay_limit or None,
        log_dir=log_dir,
        say=click.echo,
    )
    report = b.render(res, b.machine())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    click.echo(report)
    click.echo(f"written to {out}")


@main.group()
def clock() -> None:
    """Partition clocks: show them, repair one an event dated in the future moved."""


@clock.command("show")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per partition.")
def clock_show(as_json: bool) -> None:
    """Every partition's clock, how far it is from wall time, and whether it is a fault."""
    from . import clock as clocks
    from .security import redis_client

    settings = _settings()
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
    from . import clock as clocks
    from .security import redis_client

    settings = _settings()
    wall = time.time()
    try:
        done = clocks.reset(
            redis_client(settings), settings, partition, clocks.parse_when(to, wall), wall
        )
    except clocks.ClockError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(done))


if __name__ == "__main__":  # pragma: no cover
    main()
