"""Looking: a customer, segment sizes and custom-segment files, the clusters, and
segment changes as they happen (``watch``)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import click
import orjson

from streams.cli.root import _settings, main


@main.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def customer(customer_id: str, as_json: bool) -> None:
    """Show one customer's segments and state."""
    from streams.store.queries import read_once

    out = read_once(_settings(), lambda reads: reads.customer(customer_id))
    if out is None:
        raise click.ClickException(f"no state for customer {customer_id!r}")
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"customer {customer_id}")
        for dim, seg in out["segments"].items():
            click.echo(f"  {dim:12} {seg}")
        for key, value in out["state"].items():
            click.echo(f"  {key:14} {value}")
        if (p := out["predictions"]) is not None:
            click.echo(
                f"  {'predictions':14} p_alive {p['p_alive']:.3f}, "
                f"{p['expected_orders']:.2f} orders of {p['expected_order_value']:.2f}, "
                f"clv {p['clv']:.2f} over {p['horizon_days']:g} days (model v{p['model_version']})"
            )


@main.group()
def segments() -> None:
    """Custom segments (named rules in a TOML file)."""


@segments.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def segments_check(path: Path) -> None:
    """Type-check a custom-segment file (fields, segment names, SEGSTREAM_CLUSTERS);
    errors name the line."""
    from segmenters.dimensions.custom import FIELDS, SegmentConfigError
    from streams.worker.rules import load_segments

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
    from streams.store.queries import ReadModel, iso, read_once

    async def read(reads: ReadModel) -> tuple[dict[tuple[str, str], int], list[dict[str, str]]]:
        return await reads.segment_sizes(), await reads.sizes_records(history)

    sizes, records = read_once(_settings(), read)
    for (dimension, segment), size in sizes.items():
        click.echo(f"{dimension:<34} {segment:<28} {size:>8}")
    for fields in records:
        at = iso(float(fields.pop("at")))
        top = ", ".join(f"{k} {v}" for k, v in list(fields.items())[:6])
        click.echo(f"{at}  {top} ...")


@main.command()
def clusters() -> None:
    """The latest behaviour-cluster model: id, size, centroid and description."""
    from segmenters.clustering import ClusterModel
    from streams.store.queries import ReadModel, read_once

    doc = read_once(_settings(), ReadModel.model)
    if doc is None:
        raise click.ClickException("no behaviour model yet (the trainer publishes after warm-up)")
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
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest change.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
def watch(duration: float | None, from_beginning: bool, quiet: bool) -> None:
    """Print segment changes as they happen, then a summary line."""
    from kafka import TopicPartition

    from streams.kafka.clients import kafka_consumer
    from streams.kafka.topics import CHANGES, ensure_topics

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
