"""``segstream bench``: throughput, latency, timer lateness and memory, on the real broker
and Redis, with a no-op Faust agent as the baseline, all in one run.

Each part runs in its own deployment (topic prefix, consumer group, key prefix), so parts
never see each other's data. Workers are real ``segstream worker`` processes; progress is
read from the consumer group's committed offsets, the same way for the baseline and the
engine, so the two rates are comparable.

Modules: ``deploy`` (deployments, workers, consumption, traffic), ``in_process`` (the
stage benchmark), ``measures`` (throughput, memory), ``latency`` (live latency, timers),
``replays``, ``value`` (the value model's scoring and fitting cost), ``report``,
``baseline`` (the stock Faust app).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from streams.settings import Settings
from streams.tools.bench.deploy import Deployment, Progress, cpu_seconds, parse_proc_stat, traffic
from streams.tools.bench.in_process import StageResult, render_stages, run_stages
from streams.tools.bench.latency import latency, percentiles, timer_lateness
from streams.tools.bench.measures import Results, throughput
from streams.tools.bench.replays import replay_format, replay_time
from streams.tools.bench.report import machine, rate_cpu, render
from streams.tools.bench.value import ValueCost, render_value, value_cost

log = logging.getLogger(__name__)


def stages(
    base: Settings,
    *,
    events: int = 30_000,
    customers: int = 3_000,
    batch: int = 2_000,
    say: Callable[[str], None] = print,
) -> StageResult:
    """The in-process stage benchmark on the bench workload (30 days of traffic)."""
    say(f"stages: {events:,} events of {customers:,} customers in process, batches of ~{batch:,}")
    return run_stages(base, traffic(events, customers, seed=11, days=30), batch=batch, say=say)


def run(
    base: Settings,
    *,
    events: int,
    customers: int,
    rates: list[int],
    seconds: float,
    data_files: list[Path],
    log_dir: Path,
    replay_limit: int | None = 100_000,
    say: Callable[[str], None] = print,
) -> Results:
    """Every part, in order; each prints a line as it ends."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    res = Results()
    started = time.monotonic()
    res.stages = stages(base, say=say)
    say(render_stages(res.stages))
    res.value = value_cost(say=say)
    say(render_value(res.value))
    say(f"throughput: {events:,} events of {customers:,} customers (baseline, then engine)")
    throughput(base, log_dir, res, events, customers)
    say(
        f"  kafka read {rate_cpu(res.kafka_read)}; baseline {rate_cpu(res.baseline)}; "
        f"engine {rate_cpu(res.engine)}"
    )
    for r in rates:
        say(f"latency at {r:,} events/s for {seconds:.0f} s")
        res.latency[r] = latency(base, log_dir, r, seconds)
        say(f"  {res.latency[r]}")
    say("timer lateness (live clock)")
    res.timer_lateness = timer_lateness(base, log_dir)
    say(f"  {res.timer_lateness}")
    for path in data_files:
        fmt = replay_format(path)
        if fmt is None or not path.exists():
            say(f"replay {path}: skipped (missing, or not a known data file)")
            continue
        say(f"replay {path.name} ({fmt}, at most {replay_limit or 'all'} events)")
        try:
            res.replays.append(replay_time(base, log_dir, path, fmt, limit=replay_limit))
        except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
            log.exception("replay of %s failed", path.name)
            res.replays.append({"file": path.name, "error": f"{type(exc).__name__}: {exc}"})
        say(f"  {res.replays[-1]}")
    res.seconds = time.monotonic() - started
    return res


__all__ = [
    "Deployment",
    "Progress",
    "Results",
    "ValueCost",
    "cpu_seconds",
    "machine",
    "parse_proc_stat",
    "percentiles",
    "render",
    "render_value",
    "replay_format",
    "run",
    "stages",
    "value_cost",
]
