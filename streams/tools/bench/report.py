"""The report: the machine, the tables and their targets (docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from streams.settings import Settings
from streams.store.scans import server_version
from streams.tools.bench.deploy import Progress
from streams.tools.bench.in_process import render_stages
from streams.tools.bench.measures import Results
from streams.tools.bench.value import render_value


def machine() -> dict[str, str]:
    import aiokafka
    import faust

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        redis_version = server_version(Settings())
    except Exception:  # noqa: BLE001 - only for the report
        redis_version = "?"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "faust-streaming": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "kafka": Settings().kafka_version,
        "redis": str(redis_version),
    }


def rate_cpu(p: Progress | None) -> str:
    """A rate with its CPU cost, as the report shows it.

    >>> rate_cpu(Progress(10_000, 2.0, 1.5))
    '5,000 events/s, 0.150 CPU s / 1,000 events'
    >>> rate_cpu(Progress(10_000, 2.0)), rate_cpu(None)
    ('5,000 events/s', '-')
    """
    if p is None:
        return "-"
    cpu = p.cpu_per_1000
    return f"{p.rate:,.0f} events/s" + ("" if cpu is None else f", {cpu:.3f} CPU s / 1,000 events")


#: Latency targets per offered rate (events/s).
LATENCY_TARGETS = {500: "p50 <= 10 ms", 5000: "p50 <= 15 ms, p99 <= 100 ms"}
#: Catch-up rate each replayed file must reach (events/s).
REPLAY_TARGET = 10_000


def render(res: Results, info: dict[str, str]) -> str:
    ratio = (
        f"{res.engine.rate / res.baseline.rate:.2f}"
        if res.engine and res.baseline and res.baseline.rate
        else "-"
    )
    lines = [
        "# segstream benchmarks",
        "",
        f"Written by `segstream bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"in {res.seconds / 60:.1f} min. Broker, Redis, worker and load generator share "
        "the machine.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
        f"Workload: {res.events:,} simulated events of {res.customers:,} customers over 30 "
        "days, pre-filled on the four input topics (4 partitions each). CPU: user + system "
        "seconds of the consuming process over the measured window.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| Kafka read, bare aiokafka consumer (ceiling, no Faust) | "
        f"{rate_cpu(res.kafka_read)} | |",
        f"| baseline: stock Faust app, no-op agent (`take_events(500)`) | "
        f"{rate_cpu(res.baseline)} | |",
        f"| engine: one worker process | {rate_cpu(res.engine)} | >= 15,000 events/s |",
        f"| engine / baseline | {ratio} | > 1 (faster than the stock no-op agent) |",
    ]
    if res.events_per_batch is not None:
        lines.append(
            f"| Redis round trips per batch (events per batch) | "
            f"{res.round_trips_per_batch:.2f} ({res.events_per_batch:.0f}) | 1 |"
        )
    if res.stages is not None:
        us = res.stages.us_per_event()
        lines.append(
            f"| in-process pipeline (below), total | {us['total']:.1f} us/event "
            f"({res.stages.rate:,.0f} events/s, {res.stages.cpu_per_1000:.3f} CPU s / 1,000 "
            "events) | <= 40 us/event |"
        )
    if res.value is not None:
        v = res.value.call_us.get("total", {})
        lines.append(
            f"| value model scoring (summary from the state + `ClvModel.predict`), "
            f"p50 (mean CPU) | {v.get('p50', 0.0):.1f} us/customer "
            f"({res.value.cpu_us.get('total', 0.0):.1f} CPU us/customer) | |"
        )
        for n, (fit_cpu, fit_wall) in sorted(res.value.fits.items()):
            lines.append(
                f"| value model fit (BG/NBD + Gamma-Gamma) on {n:,} buyers | "
                f"{fit_cpu:.1f} CPU s ({fit_wall:.1f} s) | |"
            )
    for r, lat in sorted(res.latency.items()):
        if lat.get("n"):
            lines.append(
                f"| latency produce -> first change at {r:,} events/s offered "
                f"({lat['offered']:,.0f} achieved), p50 / p95 / p99 | "
                f"{lat['p50']:,.1f} / {lat['p95']:,.1f} / {lat['p99']:,.1f} ms "
                f"({lat['n']} probes, {lat['missing']:.0f} missing) | "
                f"{LATENCY_TARGETS.get(r, '')} |"
            )
        else:
            lines.append(f"| latency at {r:,} events/s offered | no probe arrived | |")
    if res.timer_lateness.get("n"):
        t = res.timer_lateness
        lines.append(
            f"| timer lateness, live clock, p50 / p99 / max | {t['p50']:,.0f} / "
            f"{t['p99']:,.0f} / {t['max']:,.0f} ms ({t['n']} timers, {t['missing']:.0f} "
            "missing) | p99 <= 1,000 ms |"
        )
    if res.memory:
        m = res.memory
        lines.append(
            f"| Redis per customer: own keys (state hash with its action doc, applied ids, "
            f"outbox), mean (p95) | {m['per_customer_mean']:,.0f} B "
            f"({m['per_customer_p95']:,.0f} B) | <= 1 KB |"
        )
        lines.append(
            f"| Redis per customer: shared indexes, histograms, timers | "
            f"{m['shared_per_customer']:,.0f} B | |"
        )
    for rp in res.replays:
        if "error" in rp:
            lines.append(
                f"| replay catch-up, {rp['file']} | failed: {rp['error']} | "
                f">= {REPLAY_TARGET:,} events/s, verify OK |"
            )
            continue
        what = f"first {rp['events']:,} events" if rp.get("sliced") else f"{rp['events']:,} events"
        cpu = rp.get("cpu_per_1000")
        lines.append(
            f"| replay catch-up, {rp['file']} ({what}) | {rp['engine_rate']:,.0f} events/s"
            + ("" if cpu is None else f", {cpu:.3f} CPU s / 1,000 events")
            + f" (produced in {rp['produce_s']:.1f} s, caught up {rp['engine_s']:.1f} s after "
            f"the worker started), verify {'OK' if rp['verify'] is True else 'FAILED'} | "
            f">= {REPLAY_TARGET:,} events/s, verify OK |"
        )
    if res.stages is not None:
        lines += [
            "",
            "## In-process pipeline stages",
            "",
            "The worker's batch pipeline (`BatchProcessor`) without a broker: real Redis, "
            "sends free, the default retention policy, RFM quantiles and a cluster model "
            "from a first pass over the same workload, records in per-partition order in "
            "fetch-round batches, due timers fired after each batch (their stages count "
            "too). Microseconds of wall time per event. Stages: parse (records to events), "
            "fold (segments), decide (retention actions and their messages), encode "
            "(what the write needs: change JSON, outbox, index moves, due time, id "
            "digests, compressed documents, script arguments), redis (load and commit "
            "round trips), send (to the producer); `other` is the pipeline's time "
            "between stages.",
            "",
            render_stages(res.stages),
        ]
    if res.value is not None:
        lines += [
            "",
            "## Value model",
            "",
            "What scoring a buyer costs in process: the summary (x, t_x, T, mean spend) "
            "from the stored state's purchase days, then P(alive), expected orders, "
            "expected order value and CLV in closed form; over synthetic buyers drawn "
            "from the BG/NBD and Gamma-Gamma processes with the CDNOW parameters. p50 and "
            "p99 time each call; the mean is CPU time over a whole pass. Fits: `fit_model` "
            "on the first buyers' summaries.",
            "",
            render_value(res.value),
        ]
    lines += [
        "",
        "Why the figures are what they are, from profiles of the worker and the baseline: "
        "docs/performance.md.",
    ]
    return "\n".join(lines) + "\n"
