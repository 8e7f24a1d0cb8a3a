"""Every command fails well: a wrong Redis URL, a Kafka port nobody serves, a Kafka that
never answers and a malformed setting each end the command with exit code 2, at most
three lines naming the variable, no traceback, and no waiting on a client's retries.

Connection faults run ``python -m streams.cli`` in subprocesses (exit code, lines, no
traceback, and no hang: at most 15 s over the interpreter's start, measured in the same
pool by ``segstream --help`` runs), then in process through click's runner, where nothing
but the command itself is timed: each gives up within 5 s.
Malformed settings fail before any connection, so every command meets one in process
(click's runner), and two of them in subprocesses too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.settings import Settings
from tests.integration.conftest import ROOT

WAIT_S = 5.0
#: A subprocess's bound over the interpreter's start: far below a client's retries (30 s
#: and more), above what a loaded machine adds to a 3-s check. The in-process runs hold
#: each command to ``WAIT_S``.
HANG_S = 15.0
MAX_LINES = 3
SEGSTREAM = [sys.executable, "-m", "streams.cli"]

#: Every command, with arguments, and the services it needs. Commands that need neither
#: still read the settings, so they meet the malformed ones.
COMMANDS: dict[str, tuple[list[str], set[str]]] = {
    "actions check": (["actions", "check", "config/actions.toml"], set()),
    "actions report": (["actions", "report"], {"redis"}),
    "actions send --dry-run": (
        ["actions", "send", "email/win_back", "--segment", "journey:at_risk", "--dry-run"],
        {"redis"},
    ),
    "bench --stages-only": (["bench", "--stages-only", "--events", "100"], {"redis"}),
    "bench": (["bench", "--events", "100", "--seconds", "1", "--out", "{tmp}/b.md"], {"kafka"}),
    "clock show": (["clock", "show"], {"redis"}),
    "clock reset": (["clock", "reset", "0", "--to", "now"], {"redis"}),
    "clusters": (["clusters"], {"redis"}),
    "clv": (["clv"], {"redis"}),
    # without Redis the collector serves identified customers only (by design): Kafka only
    "collector": (["collector", "--port", "0"], {"kafka"}),
    "customer": (["customer", "c-1"], {"redis"}),
    "erase": (["erase", "c-1"], {"kafka", "redis"}),
    "lag": (["lag"], {"kafka"}),
    "migrate-keys": (["migrate-keys"], {"redis"}),
    "replay": (["replay", "{tmp}/events.jsonl", "--format", "jsonl"], {"kafka"}),
    "segments check": (["segments", "check", "config/segments.toml"], set()),
    "segments sizes": (["segments", "sizes"], {"redis"}),
    "segments history": (["segments", "history", "journey"], {"redis"}),
    "segments report": (["segments", "report"], {"redis"}),
    "services status": (["services", "status"], set()),
    "services kafka-consumer-groups": (["services", "kafka-consumer-groups", "--list"], {"kafka"}),
    "simulate": (["simulate", "--duration", "1", "--customers", "3", "--quiet"], {"kafka"}),
    "topics": (["topics"], {"kafka"}),
    "verify": (["verify", "--quiet"], {"kafka", "redis"}),
    "watch": (["watch", "--duration", "1"], {"kafka"}),
    "worker": (["worker"], {"kafka", "redis"}),
}
#: Malformed settings, taken in turn by the commands: (variable, value, what the message names).
MALFORMED = [
    ("SEGSTREAM_TOPIC_PARTITIONS", "abc", "invalid setting SEGSTREAM_TOPIC_PARTITIONS='abc'"),
    ("SEGSTREAM_REDIS_URL", "notaurl", "invalid setting SEGSTREAM_REDIS_URL='notaurl'"),
    ("SEGSTREAM_KAFKA_BOOTSTRAP", "broker:x", "invalid setting SEGSTREAM_KAFKA_BOOTSTRAP="),
    ("SEGSTREAM_COLLECTOR__PORT", "0", "invalid setting SEGSTREAM_COLLECTOR__PORT='0'"),
]


@dataclass
class Run:
    label: str
    args: list[str]
    env: dict[str, str]
    expect: str
    returncode: int = 0
    output: str = ""
    elapsed_s: float = 0.0

    def __call__(self) -> Run:
        started = time.monotonic()
        out = subprocess.run(
            SEGSTREAM + self.args,
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.elapsed_s = time.monotonic() - started
        self.returncode = out.returncode
        self.output = out.stdout + out.stderr
        return self


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"schema_version":1,"event_id":"e-1","customer_id":"c-1",'
        '"occurred_at":"2026-01-01T10:00:00Z","type":"browse","product_id":"p1"}\n'
    )
    return path


def test_every_command_fails_fast_in_a_line_or_two(
    services: Settings, tmp_path: Path, silent_port: int, events_file: Path
) -> None:
    prefix = f"clierr{uuid.uuid4().hex[:8]}"
    base = {
        "SEGSTREAM_KEY_PREFIX": prefix,
        "SEGSTREAM_TOPIC_PREFIX": f"{prefix}.",
        "SEGSTREAM_WEB_PORT": str(free_port()),
    }
    redis_down = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    kafka_down = f"127.0.0.1:{free_port()}"
    runs: list[Run] = []
    for i, (label, (template, needs)) in enumerate(COMMANDS.items()):
        args = [a.replace("{tmp}", str(tmp_path)) for a in template]
        if "redis" in needs:
            runs.append(
                Run(
                    f"{label} / Redis down",
                    args,
                    {**base, "SEGSTREAM_REDIS_URL": redis_down},
                    f"cannot reach Redis at {redis_down.rsplit('@', 1)[1].split('/')[0]} "
                    "(SEGSTREAM_REDIS_URL): Connection refused",
                )
            )
        if "kafka" in needs:
            runs.append(
                Run(
                    f"{label} / Kafka down",
                    args,
                    {**base, "SEGSTREAM_KAFKA_BOOTSTRAP": kafka_down},
                    f"cannot reach Kafka at {kafka_down} (SEGSTREAM_KAFKA_BOOTSTRAP): "
                    "Connection refused",
                )
            )
        if label in ("customer", "worker"):
            name, value, expect = MALFORMED[i % len(MALFORMED)]
            runs.append(Run(f"{label} / {name}={value}", args, {**base, name: value}, expect))
    for label in ("lag", "topics"):  # a broker that accepts and never answers
        runs.append(
            Run(
                f"{label} / Kafka silent",
                COMMANDS[label][0],
                {**base, "SEGSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{silent_port}"},
                f"cannot reach Kafka at 127.0.0.1:{silent_port} (SEGSTREAM_KAFKA_BOOTSTRAP): "
                "no answer",
            )
        )
    starts = [Run(f"start {i}", ["--help"], {}, "") for i in range(4)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(r) for r in starts[:2]]
        futures += [pool.submit(r) for r in runs]
        futures += [pool.submit(r) for r in starts[2:]]
        for f in futures:
            f.result()

    start_s = max(r.elapsed_s for r in starts)
    problems = check(runs)
    # A client's retries wait 30 s or more; the start-up and a loaded machine vary, so
    # the subprocesses get a loose bound and the in-process runs below time the waiting.
    slow = [r for r in runs if r.elapsed_s > start_s + HANG_S]
    problems += [f"{r.label}: {r.elapsed_s:.1f} s, over {start_s:.1f} s + {HANG_S} s" for r in slow]
    assert not problems, "\n".join(problems)

    # The same faults in process: no interpreter start, only the command's own time.
    runner = CliRunner()
    for r in runs:
        r.env = {k: v for k, v in r.env.items() if k != "SEGSTREAM_WEB_PORT"}
        started = time.monotonic()
        out = runner.invoke(main, r.args, env={**r.env, "SEGSTREAM_WEB_PORT": str(free_port())})
        r.elapsed_s = time.monotonic() - started
        r.returncode = out.exit_code
        r.output = out.output
        if out.exception is not None and not isinstance(out.exception, SystemExit):
            r.output = "Traceback: " + repr(out.exception)
    problems = check(runs)
    problems += [
        f"{r.label} (in process): {r.elapsed_s:.1f} s, over {WAIT_S} s"
        for r in runs
        if r.elapsed_s > WAIT_S
    ]
    assert not problems, "\n".join(problems)


def test_every_command_names_a_malformed_setting(tmp_path: Path, events_file: Path) -> None:
    runner = CliRunner()
    runs = []
    for label, (template, _needs) in COMMANDS.items():
        args = [a.replace("{tmp}", str(tmp_path)) for a in template]
        for name, value, expect in MALFORMED:
            run = Run(f"{label} / {name}={value}", args, {name: value}, expect)
            out = runner.invoke(main, args, env=run.env)
            if out.exception is not None and not isinstance(out.exception, SystemExit):
                run.output = "Traceback: " + repr(out.exception)
            else:
                run.output = out.output
            run.returncode = out.exit_code
            runs.append(run)
    problems = check(runs)
    assert not problems, "\n".join(problems)


def check(runs: list[Run]) -> list[str]:
    problems = []
    for r in runs:
        lines = [line for line in r.output.splitlines() if line.strip()]
        what = f"{r.label}: exit {r.returncode}, {r.elapsed_s:.1f} s, {len(lines)} line(s)"
        if r.returncode != 2:
            problems.append(f"{what}: exit code\n{r.output[-2000:]}")
        elif "Traceback" in r.output:
            problems.append(f"{what}: traceback\n{r.output[-2000:]}")
        elif not 1 <= len(lines) <= MAX_LINES:
            problems.append(f"{what}: line count\n{r.output[-2000:]}")
        elif r.expect not in r.output:
            problems.append(f"{what}: expected {r.expect!r}, got\n{r.output}")
        elif "hunter2" in r.output:
            problems.append(f"{what}: shows the password")
    return problems
