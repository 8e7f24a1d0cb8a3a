"""Tools: simulated traffic, verify, replay of real files, and the benchmark."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from streams.cli.root import _settings, main

if TYPE_CHECKING:
    from streams.tools.simulate import SimulationStats


def _bar(quiet: bool) -> bool:
    """A progress bar only on a terminal: redirected to a file or a log it is noise."""
    return not quiet and sys.stderr.isatty()


def _jsonable(value: object) -> object:
    """``json.dumps``' fallback for the reports' dataclasses, models and sets."""
    from dataclasses import fields, is_dataclass

    from pydantic import BaseModel

    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: getattr(value, f.name) for f in fields(value)}
        share = getattr(value, "share", None)  # DimensionAgreement's derived share
        return {**out, "share": share} if isinstance(share, float) else out
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def simulation_summary(stats: SimulationStats) -> str:
    """The closing lines of ``simulate``: what was sent, by type and persona."""
    stopped = " (interrupted)" if stats.interrupted else ""
    lines = [
        f"simulated {stats.events} event(s){stopped} in {stats.elapsed_s:.1f} s "
        f"({stats.rate:.0f} ev/s), {stats.failed} not delivered",
        f"  by type:    {_counts(stats.by_type) or 'none'}",
        f"  by persona: {_counts(stats.by_persona) or 'none'}",
    ]
    return "\n".join(lines)


@main.command()
@click.option("--customers", default=200, show_default=True, help="Simulated customers.")
@click.option("--rate", default=100.0, show_default=True, help="Events per second (0: max).")
@click.option("--duration", default=60.0, show_default=True, help="Seconds of traffic.")
@click.option("--seed", default=7, show_default=True)
@click.option("--truth", type=click.Path(path_type=Path), help="Write customer -> persona.")
@click.option("--days", type=float, help="Spread event time over this many days (ends now).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate(
    customers: int,
    rate: float,
    duration: float,
    seed: int,
    truth: Path | None,
    days: float | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Produce realistic shop traffic (personas) to the input topics."""
    from streams.tools.simulate import simulate as run

    stats = run(
        _settings(kafka=True),
        customers=customers,
        rate=rate,
        duration=duration,
        seed=seed,
        progress=_bar(quiet),
        truth_path=truth,
        days=days,
    )
    if as_json:
        click.echo(json.dumps({**asdict(stats), "rate": round(stats.rate, 3)}, indent=2))
    else:
        click.echo(simulation_summary(stats))


@main.command()
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--truth",
    type=click.Path(exists=True, path_type=Path),
    help="customer -> persona JSON (from `simulate --truth`): ARI against it too.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (with ok).")
def verify(quiet: bool, truth: Path | None, as_json: bool) -> None:
    """Recompute every customer from the input topics and compare with Redis."""
    from segmenters.verify import render
    from streams.tools.verify import verify as run

    personas = orjson.loads(truth.read_bytes()) if truth else None
    from streams.tools.verify import VerifyError

    try:
        report = run(_settings(kafka=True, redis=True), progress=_bar(quiet), personas=personas)
    except VerifyError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        doc = {"ok": report.ok, "report": report}
        click.echo(json.dumps(doc, indent=2, default=_jsonable))
    else:
        click.echo(render(report))
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["rees46", "online-retail", "jsonl", "mapped", "cdnow"]),
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
@click.option(
    "--until",
    metavar="ISO",
    help="Send only events dated at or before this time (a date alone: through that UTC "
    "day); the rest are counted, not sent.",
)
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
    until: str | None,
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
    from streams.tools.replay import ReplayError, load_mapping, parse_until, render
    from streams.tools.replay import replay as run

    if rate is not None and as_fast:
        raise click.UsageError("--rate and --max exclude each other")
    if mapping is not None and fmt != "mapped":
        raise click.UsageError("--mapping goes with --format mapped")
    try:
        config = load_mapping(mapping) if mapping is not None else None
        window_end = parse_until(until) if until is not None else None
        stats = run(
            _settings(kafka=True),
            file,
            fmt,
            mapping=config,
            rate=rate,
            limit=limit,
            until=window_end,
            progress=_bar(quiet),
            no_actions=no_actions,
            announce=lambda text: click.echo(text, err=True),
        )
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render(stats))
    if stats.failed:
        sys.exit(1)


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
    "--value-only",
    is_flag=True,
    help="Only the value model's cost in process (scoring us/customer, fit seconds); prints only.",
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
    value_only: bool,
    out: Path,
) -> None:
    """Measure pipeline stages, the value model's scoring cost, throughput against a
    stock no-op Faust app, latency, timers, memory and replay catch-up."""
    if stages_only and value_only:
        raise click.UsageError("--stages-only and --value-only exclude each other")
    # settings and services first: a wrong one fails before the benchmark's heavy imports
    settings = None if value_only else _settings(redis=True, kafka=not stages_only)

    from streams.tools import bench as b
    from streams.tools.bench.in_process import render_stages

    if settings is None:
        click.echo(b.render_value(b.value_cost(say=click.echo)))
        return
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
