"""The benchmark's pure parts: figures, CPU sampling, batching and the report."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.tools import bench
from streams.tools.bench import Progress, Results, parse_proc_stat, percentiles, render
from streams.tools.bench import in_process as bench_stages
from streams.tools.bench.in_process import StageResult, fetch_rounds, render_stages, to_records
from streams.worker.pipeline import Record

INFO = {"cpu": "test cpu", "python": "3.11"}


@pytest.mark.parametrize("module", [bench, bench_stages])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # 1..100, unsorted
    out = percentiles(values)
    assert out == {"n": 100, "p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert percentiles([7.0]) == {"n": 1, "p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert percentiles([]) == {"n": 0}


def test_proc_stat_counts_user_and_system_after_the_command_name() -> None:
    # a command name with a space and a parenthesis must not shift the fields
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "120", "30", "7", "8"]
    text = "1234 (py (x) y) " + " ".join(fields) + "\n"
    assert parse_proc_stat(text, 100.0) == pytest.approx(1.5)


def test_proc_stat_of_this_process_is_read() -> None:
    cpu = bench.cpu_seconds(__import__("os").getpid())
    assert cpu is not None and cpu >= 0
    assert bench.cpu_seconds(2**22 + 12345) is None  # beyond pid_max: no such process


def test_progress_cpu_per_thousand_events() -> None:
    assert Progress(20_000, 2.0, 3.0).cpu_per_1000 == pytest.approx(0.15)
    assert Progress(20_000, 2.0).cpu_per_1000 is None
    assert Progress(0, 0.0, 1.0).cpu_per_1000 is None


def test_stage_figures_per_event() -> None:
    res = StageResult(
        events=2_000,
        stages={"parse": 0.01, "fold": 0.02, "redis": 0.03},
        process_s=0.07,
        timers_s=0.01,
        cpu_s=0.1,
    )
    us = res.us_per_event()
    assert us["parse"] == pytest.approx(5.0)
    assert us["decide"] == 0.0
    assert us["other"] == pytest.approx(10.0)  # 0.08 s of pipeline minus 0.06 s of stages
    assert us["total"] == pytest.approx(40.0)
    assert res.rate == pytest.approx(25_000)
    assert res.cpu_per_1000 == pytest.approx(0.05)


def test_fetch_rounds_keep_each_partition_in_offset_order() -> None:
    records = [Record("a", p, o, None, None) for p in range(3) for o in range(10)]
    records += [Record("b", 0, o, None, None) for o in range(2)]
    batches = list(fetch_rounds(records, 8))
    got = [r for b in batches for r in b]
    assert len(got) == len(records) and set(got) == set(records)  # all, once
    seen: dict[tuple[str, int], int] = {}
    for batch in batches:
        for r in batch:
            assert r.offset == seen.get((r.topic, r.partition), -1) + 1
            seen[(r.topic, r.partition)] = r.offset
    assert len(batches[0]) == 8  # 4 partitions with records: 2 each
    assert [len(b) for b in batches] == [8, 9, 9, 6]  # then 3 partitions: ceil(8 / 3) each


def test_records_are_on_their_customers_partition() -> None:
    settings = Settings(topic_prefix="t.", topic_partitions=4)
    events = [
        {"type": "browse", "customer_id": "c-1", "occurred_at": "2026-01-01T00:00:00Z"},
        {"type": "purchase", "customer_id": "c-1", "occurred_at": "2026-01-01T00:00:01Z"},
        {"type": "browse", "customer_id": "c-1", "occurred_at": "2026-01-01T00:00:02Z"},
    ]
    recs = to_records(events, settings)
    browse, purchase = (settings.topic(TOPIC_OF_TYPE[t]) for t in ("browse", "purchase"))
    assert [r.topic for r in recs] == [browse, purchase, browse]
    assert [r.offset for r in recs] == [0, 0, 1]
    assert len({r.partition for r in recs}) == 1
    assert recs[2].timestamp == pytest.approx(1767225602.0)
    assert recs[0].key == b"c-1"


def full_results() -> Results:
    res = Results(events=100_000, customers=10_000, seconds=600.0)
    res.kafka_read = Progress(100_000, 0.5, 0.2)
    res.baseline = Progress(100_000, 10.0, 6.0)
    res.engine = Progress(100_000, 5.0, 4.0)
    res.stages = StageResult(
        events=30_000, customers=3_000, batches=15, stages={"parse": 0.3}, process_s=0.9
    )
    res.latency = {
        500: {"n": 1000, "p50": 8.0, "p95": 12.0, "p99": 20.0, "offered": 499.0, "missing": 0},
        5000: {"n": 0, "offered": 5000.0, "missing": 10000},
    }
    res.timer_lateness = {"n": 200, "p50": 100.0, "p99": 300.0, "max": 320.0, "missing": 0}
    res.memory = {"per_customer_mean": 800.0, "per_customer_p95": 950.0, "shared_per_customer": 1}
    res.replays = [
        {
            "file": "rees46.csv.gz",
            "events": 17_410,
            "sliced": False,
            "produce_s": 1.5,
            "engine_s": 3.0,
            "engine_rate": 12_345.0,
            "cpu_per_1000": 0.08,
            "verify": True,
        },
        {
            "file": "retail.csv.gz",
            "events": 100_000,
            "sliced": True,
            "produce_s": 1.5,
            "engine_s": 3.0,
            "engine_rate": 9_000.0,
            "cpu_per_1000": None,
            "verify": False,
        },
        {"file": "x.csv.gz", "error": "OSError: gone"},
    ]
    return res


def test_render_has_every_figure_with_its_target() -> None:
    text = render(full_results(), INFO)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "| test cpu |" in text
    assert (
        "200,000 events/s, 0.002 CPU s / 1,000 events"
        in rows["| Kafka read, bare aiokafka consumer (ceiling, no Faust)"]
    )
    assert "10,000 events/s, 0.060 CPU s / 1,000 events" in text  # baseline
    assert "20,000 events/s, 0.040 CPU s / 1,000 events" in text  # engine
    assert "| engine / baseline | 2.00 | > 1 (faster than the stock no-op agent) |" in text
    assert "30.0 us/event" in text and "<= 40 us/event" in text
    assert "8.0 / 12.0 / 20.0 ms" in text and "p50 <= 10 ms" in text
    assert "| latency at 5,000 events/s offered | no probe arrived | |" in text
    assert "100 / 300 / 320 ms" in text
    assert "800 B (950 B)" in text
    assert "rees46.csv.gz (17,410 events) | 12,345 events/s, 0.080 CPU s" in text
    assert "retail.csv.gz (first 100,000 events) | 9,000 events/s (" in text
    assert "verify FAILED" in text
    assert "| replay catch-up, x.csv.gz | failed: OSError: gone |" in text
    assert text.count(">= 10,000 events/s, verify OK") == 3
    assert "| **total** | **30.0** | <= 40 |" in text  # the stage table
    assert "docs/performance.md" in text


def test_render_without_optional_parts() -> None:
    text = render(Results(events=10, customers=1), INFO)
    assert "| engine / baseline | - | > 1 (faster than the stock no-op agent) |" in text
    assert "In-process pipeline stages" not in text
    assert "replay" not in text


def test_stage_table_lists_every_stage() -> None:
    table = render_stages(StageResult(events=10, stages={"send": 1e-5}, process_s=1e-4))
    names = [line.split(" | ")[0].strip("| ") for line in table.splitlines() if "| " in line]
    assert names[1:8] == ["parse", "fold", "decide", "encode", "redis", "send", "other"]
    assert "| send | 1.0 | |" in table


def test_replay_format_of_the_data_files() -> None:
    assert bench.replay_format(Path("online_retail_2010.csv.gz")) == "online-retail"
    assert bench.replay_format(Path("rees46_2019.csv.gz")) == "rees46"
    assert bench.replay_format(Path("cdnow_sample.txt.gz")) is None
