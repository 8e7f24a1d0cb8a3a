"""Replay catch-up of the real data files, verified after."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streams.settings import Settings
from streams.tools.bench.deploy import Deployment, cpu_seconds, end_offsets
from streams.tools.bench.latency import applied_progress, settle

REPLAY_FORMATS = {"rees46": "rees46", "online_retail": "online-retail"}


def replay_format(path: Path) -> str | None:
    """The replay format of a data file, from its name; None if unknown.

    >>> replay_format(Path("x/rees46_2019-Oct.csv.gz")), replay_format(Path("a.txt"))
    ('rees46', None)
    """
    for stem, fmt in REPLAY_FORMATS.items():
        if path.name.startswith(stem):
            return fmt
    return None


def replay_time(
    base: Settings, log_dir: Path, path: Path, fmt: str, *, limit: int | None = None
) -> dict[str, Any]:
    """Replay a file (its first ``limit`` events, if given) as fast as possible, then time
    a worker catching up on it; verify after."""
    from streams.tools.replay import replay
    from streams.tools.verify import verify

    d = Deployment.new(base, f"replay-{fmt}", log_dir)
    stats = replay(d.settings, path, fmt, progress=False, limit=limit)
    ends = end_offsets(d.settings, d.input_topics())
    proc = d.start(["-m", "streams.cli", "worker"], log_dir)
    try:
        started = time.monotonic()
        progress = applied_progress(
            d.settings,
            ends,
            timeout=1800,
            alive=lambda: proc.poll() is None,
            cpu=lambda: cpu_seconds(proc.pid),
        )
        caught_up = time.monotonic() - started
        settle(d.settings, alive=lambda: proc.poll() is None)
    finally:
        d.stop()
    from segmenters.verify import render as render_verify

    try:
        report = verify(d.settings, progress=False)
    finally:
        d.discard()
    (log_dir / f"replay-{fmt}-verify.txt").write_text(render_verify(report))
    return {
        "file": path.name,
        "events": stats.events,
        "sliced": stats.not_sent > 0,
        "not_sent": stats.not_sent,
        "produce_s": stats.elapsed_s,
        "engine_s": caught_up,
        "engine_rate": progress.rate,
        "cpu_per_1000": progress.cpu_per_1000,
        "verify": report.ok,
    }
