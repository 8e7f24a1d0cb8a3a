"""Looking: a customer, segment sizes and custom-segment files, the clusters, and
segment changes as they happen (``watch``)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from streams.cli.root import _settings, main


def plain(value: Any) -> str:
    """A value as a person reads it: no Python quotes, brackets or None.

    >>> plain({"desktop": 3, "app": 1})
    'desktop 3, app 1'
    >>> plain(None), plain(True), plain(["a", "b"]), plain({})
    ('-', 'yes', 'a, b', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(plain(v) for v in value) or "-"
    return str(value)


def utc(stamp: str) -> str:
    """An ISO-8601 time with a zone as UTC to the second (unchanged if it does not parse).

    >>> utc("2026-01-25T12:44:57.054+01:00")
    '2026-01-25T11:44:57Z'
    """
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return stamp


def render_customer(out: Mapping[str, Any]) -> str:
    """The human view of ``customer``: one column of names, as wide as the longest."""
    rows: list[tuple[str, str]] = [(d, plain(s)) for d, s in out["segments"].items()]
    rows += [(k, plain(v)) for k, v in out["state"].items()]
    if (p := out.get("predictions")) is not None:
        rows.append(
            (
                "predictions",
                f"p_alive {p['p_alive']:.3f}, {p['expected_orders']:.2f} orders of "
                f"{p['expected_order_value']:.2f}, clv {p['clv']:.2f} over "
                f"{p['horizon_days']:g} days (model v{p['model_version']})",
            )
        )
    width = max((len(name) for name, _ in rows), default=0)
    lines = [f"customer {out['customer_id']}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


@main.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def customer(customer_id: str, as_json: bool) -> None:
    """Show one customer's segments and state."""
    from streams.store.queries import read_once

    out = read_once(_settings(redis=True), lambda reads: reads.customer(customer_id, activity=True))
    if out is None:
        raise click.ClickException(f"no state for customer {customer_id}")
    if as_json:
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(render_customer({"customer_id": customer_id, **out}))


@main.group()
def segments() -> None:
    """Segments: sizes, history, the report, and custom-segment files."""


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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def segments_sizes(history: int, as_json: bool) -> None:
    """Current size of every segment (from the segment indexes), and their history."""
    from streams.store.queries import ReadModel, iso, read_once

    async def read(reads: ReadModel) -> tuple[dict[tuple[str, str], int], list[dict[str, str]]]:
        return await reads.segment_sizes(), await reads.sizes_records(history)

    sizes, records = read_once(_settings(redis=True), read)
    if as_json:
        doc = {
            "sizes": [{"dimension": d, "segment": s, "size": n} for (d, s), n in sizes.items()],
            "history": [
                {"at": iso(float(f["at"])), **{k: int(v) for k, v in f.items() if k != "at"}}
                for f in records
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    wide_d = max((len(d) for d, _ in sizes), default=0)
    wide_s = max((len(s) for _, s in sizes), default=0)
    for (dimension, segment), size in sizes.items():
        click.echo(f"{dimension:<{wide_d}}  {segment:<{wide_s}}  {size:>8}")
    for fields in records:
        at = iso(float(fields.pop("at")))
        click.echo(f"{at}  {', '.join(f'{k} {v}' for k, v in fields.items())}")


def span_option(text: str | None, name: str) -> float | None:
    """``--since``/``--every`` in seconds (``90s``, ``30m``, ``12h``, ``7d``, ``2w``)."""
    from segmenters.reports import parse_span

    if text is None:
        return None
    value = parse_span(text)
    if value is None:
        raise click.BadParameter(
            f"{text!r} is not a duration like 90s, 30m, 12h, 7d", param_hint=name
        )
    return value


def change_text(c: Mapping[str, Any]) -> str:
    """A size change as ``+12 (+4.1%)``; ``-`` when unknown.

    >>> change_text({"delta": 12, "pct": 4.08}), change_text({"delta": None, "pct": None})
    ('+12 (+4.1%)', '-')
    """
    if c["delta"] is None:
        return "-"
    pct = "" if c["pct"] is None else f" ({c['pct']:+.1f}%)"
    return f"{c['delta']:+d}{pct}"


def render_history(doc: Mapping[str, Any], dimension: str) -> str:
    """``segments history`` as a table: a row per time (UTC), a column per segment, and
    the change over the window."""
    from segmenters.eventtime import iso_utc

    series = doc["dimensions"].get(dimension, {})
    names = list(series)
    if not doc["at"]:
        return f"no sizes recorded for {dimension} since {iso_utc(doc['since'])}"
    changes = doc["change"].get(dimension, {})
    widths = [max(len(n), 8, len(change_text(changes[n]))) for n in names]
    head = f"{'time (UTC)':<20}  " + "  ".join(
        f"{n:>{w}}" for n, w in zip(names, widths, strict=True)
    )
    lines = [head]
    for i, at in enumerate(doc["at"]):
        row = "  ".join(f"{series[n][i]:>{w}}" for n, w in zip(names, widths, strict=True))
        lines.append(f"{iso_utc(round(at)):<20}  {row}")
    row = "  ".join(f"{change_text(changes[n]):>{w}}" for n, w in zip(names, widths, strict=True))
    lines.append(f"{'change':<20}  {row}")
    return "\n".join(lines)


@segments.command("history")
@click.argument("dimension")
@click.argument("segment", required=False)
@click.option("--since", "since", default="7d", show_default=True, help="Window: 30m, 12h, 7d ...")
@click.option(
    "--every", "every", default=None, help="One point per this long (default: <= 200 points)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def segments_history(
    dimension: str, segment: str | None, since: str, every: str | None, as_json: bool
) -> None:
    """How a dimension's segments (or one segment) changed: size at each time, and the
    change over the window (from the sizes recorded every SEGSTREAM_SIZES_EVERY_S)."""
    from segmenters.reports import MAX_POINTS
    from streams.store.queries import read_once

    window = span_option(since, "--since")
    step = span_option(every, "--every")
    assert window is not None
    if step is not None and window / step > MAX_POINTS:
        raise click.BadParameter(
            f"more than {MAX_POINTS} points: choose a larger --every", param_hint="--every"
        )
    now = time.time()
    doc = read_once(
        _settings(redis=True),
        lambda reads: reads.history(window, now, every=step, dimension=dimension, segment=segment),
    )
    if as_json:
        out = {
            **doc,
            "dimension": dimension,
            "segment": segment,
            "segments": doc["dimensions"].get(dimension, {}),
        }
        out["change"] = doc["change"].get(dimension, {})
        del out["dimensions"]
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(render_history(doc, dimension))


def _span(seconds: float) -> str:
    """A window as people say it.

    >>> _span(3600.0), _span(7 * 86400.0), _span(90.0), _span(36 * 3600.0)
    ('1 h', '7 days', '90 s', '1.5 days')
    """
    if seconds >= 86400:
        return f"{seconds / 86400:g} day{'' if seconds == 86400 else 's'}"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def render_report(doc: Mapping[str, Any], currency: str) -> str:
    """``segments report`` as one table per dimension."""
    from segmenters.eventtime import iso_utc

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [
        f"segments over the last {_span(doc['window_s'])} "
        f"(since {iso_utc(round(doc['since']))}); sizes history from "
        f"{'-' if doc['history_from'] is None else iso_utc(round(doc['history_from']))}; "
        f"value model {'none' if doc['model_version'] is None else 'v' + str(doc['model_version'])}"
    ]
    cols = (
        "segment",
        "size",
        "share",
        "change",
        "in",
        "out",
        "conv",
        f"rev/cust {currency}",
        "clv",
        "p_alive",
        "events/wk",
        "flags",
    )
    sampled = False
    for dim in doc["dimensions"]:
        rows = []
        for r in dim["segments"]:
            flags = [f for f in ("over_broad", "stale") if r[f]]
            sampled = sampled or r["sampled"]
            rows.append(
                (
                    r["segment"] + ("*" if r["sampled"] else ""),
                    str(r["size"]),
                    f"{100 * r['share']:.1f}%",
                    change_text(r["change"]),
                    str(r["entries"]),
                    str(r["exits"]),
                    "-" if r["conversion"] is None else f"{100 * r['conversion']:.1f}%",
                    num(r["revenue_per_customer"], ".2f"),
                    num(r["clv"], ".2f"),
                    num(r["p_alive"], ".3f"),
                    num(r["engagement"], ".2f"),
                    ",".join(flags) or "-",
                )
            )
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
        lines.append("")
        lines.append(f"{dim['dimension']} ({dim['customers']} customers)")
        lines.append(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cols, widths, strict=True))
            )
        )
        for row in rows:
            lines.append(
                "  "
                + "  ".join(
                    v.ljust(w) if i == 0 else v.rjust(w)
                    for i, (v, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    if sampled:
        lines.append(f"\n* member figures over a sample of {doc['sample']} members (--sample)")
    return "\n".join(lines)


@segments.command("report")
@click.option("--since", "since", default="7d", show_default=True, help="Window: 1d, 7d, 30d ...")
@click.option("--dimension", default=None, help="Only this dimension.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Members read per segment [default: SEGSTREAM_REPORT_SAMPLE].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def segments_report(since: str, dimension: str | None, sample: int | None, as_json: bool) -> None:
    """Per segment: size and share, change, entries and exits over the window,
    conversion, revenue per customer, predicted CLV and P(alive), engagement, and the
    over-broad and stale flags (docs/reports.md)."""
    from streams.store.queries import read_once

    window = span_option(since, "--since")
    assert window is not None
    settings = _settings(redis=True)
    n = sample or settings.report_sample
    now = time.time()
    doc = read_once(
        settings, lambda reads: reads.report(window, now, dimension=dimension, sample=n)
    )
    if dimension is not None and not doc["dimensions"]:
        raise click.ClickException(f"no segments in dimension {dimension!r}")
    if as_json:
        click.echo(json.dumps({**doc, "currency": settings.currency}, indent=2))
        return
    click.echo(render_report(doc, settings.currency))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The clusters and the model as JSON.")
def clusters(as_json: bool) -> None:
    """The behaviour clusters in force: members, description, centroid in units.

    Members are the customers in each cluster's segment now (the segment indexes, as
    ``segments sizes`` and ``/segments`` count them); "window" is how many of the
    trainer's recent customers the cluster held when the snapshot was made. A centroid
    is its cluster's typical member: counts and amounts are geometric means.
    """
    from segmenters.clustering import ClusterModel
    from segmenters.clustering.model import DIMENSION
    from segmenters.clustering.report import centroid_rows, unit
    from streams.store.queries import ReadModel, iso, read_once

    settings = _settings(redis=True)

    async def read(reads: ReadModel) -> tuple[dict[str, Any] | None, dict[tuple[str, str], int]]:
        return await reads.model(), await reads.segment_sizes()

    doc, sizes = read_once(settings, read)
    if doc is None:
        raise click.ClickException("no behaviour model yet (the trainer publishes after warm-up)")
    model = ClusterModel.from_doc(doc["model"])
    members = {
        int(segment.removeprefix("cluster_")): n
        for (dimension, segment), n in sizes.items()
        if dimension == DIMENSION and segment.removeprefix("cluster_").isdigit()
    }
    rows = centroid_rows(model, members, settings.currency)
    drift = doc.get("drift", {})
    if as_json:
        out = {
            "version": model.version,
            "published_at": iso(doc.get("published_at")),
            "learned": doc.get("learned", 0),
            "drift": drift,
            "clusters": rows,
            "model": doc["model"],
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(
        f"behaviour model v{model.version} (published {iso(doc.get('published_at')) or '-'}): "
        f"{len(model.clusters)} clusters, {doc.get('learned', 0)} vectors learned, "
        f"{drift.get('holds', 0)} drifted snapshot(s) held back"
    )
    rows.sort(key=lambda r: (-(r["members"] or 0), r["id"]))
    click.echo(f"{'segment':<12}{'members':>8}{'window':>8}  description")
    for r in rows:
        click.echo(f"{r['segment']:<12}{r['members']:>8}{r['window']:>8}  {r['description']}")
    labels = {f: f"{f} ({unit(f, settings.currency)})" for f in model.features}
    wide = max(len(label) for label in labels.values())
    width = max(7, *(len(str(r["id"])) + 2 for r in rows))
    click.echo(
        f"\ntypical member{'':<{wide - 14}}"
        + "".join(f"{'#' + str(r['id']):>{width}}" for r in rows)
    )
    for f in model.features:
        values = "".join(f"{r['centroid'][f]['value']:>{width}}" for r in rows)
        click.echo(f"{labels[f]:<{wide}}{values}")


@main.command()
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest change.")
@click.option("--quiet", is_flag=True, help="Only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Each change as one JSON line, as published.")
def watch(duration: float | None, from_beginning: bool, quiet: bool, as_json: bool) -> None:
    """Print segment changes as they happen, then a summary line."""
    from kafka import TopicPartition

    from streams.kafka.clients import kafka_consumer
    from streams.kafka.topics import CHANGES, ensure_topics

    settings = _settings(kafka=True)
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
                    if as_json:
                        click.echo(r.value.decode())
                    elif not quiet:
                        click.echo(
                            f"{utc(c['changed_at'])} {c['customer_id']:>14} {c['dimension']}: "
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
    summary = f"segment changes seen: {sum(seen.values())} ({top or 'none'})"
    click.echo(summary, err=as_json)  # stdout stays JSON lines
    sys.stdout.flush()
