"""Bounded event time against a real worker: an event dated 2099 is dead-lettered and
moves no clock, and ``segstream clock show|reset`` repairs a clock that is ahead."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.kafka.topics import DEADLETTER
from streams.settings import Settings
from streams.store.keys import clock_key
from tests.integration.conftest import Deployment, free_port
from tests.integration.test_cli import segstream
from tests.integration.test_dashboard import CHROMIUM_ARGS, chromium, wait_js
from tests.integration.test_web import call
from tests.unit.factories import Events

__all__ = ["chromium"]  # the browser fixture of the dashboard test
FUTURE = "2099-01-01T00:00:00Z"
FUTURE_S = datetime(2099, 1, 1, tzinfo=UTC).timestamp()


@pytest.fixture
def web(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
        SEGSTREAM_API_TOKEN="s3cret-token",
    )
    yield d
    d.close()


def metric(d: Deployment, name: str, partition: int | None = None) -> float | None:
    request = urllib.request.Request(f"http://127.0.0.1:{d.settings.web_port}/metrics")
    request.add_header("Authorization", "Bearer s3cret-token")
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    label = "" if partition is None else f'{{partition="{partition}"}}'
    for line in text.splitlines():
        if line.startswith(f"{name}{label} "):
            return float(line.split()[-1])
    return None


def until(check: Any, what: str, timeout: float = 30) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        got = check()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout} s (last: {check()!r})")


def clock_rows(d: Deployment) -> dict[int, dict[str, Any]]:
    out = segstream(d, "clock", "show", "--json")
    assert out.returncode == 0, out.stderr
    return {row["partition"]: row for row in map(json.loads, out.stdout.splitlines())}


def test_an_event_dated_2099_is_dead_lettered_and_moves_no_clock(web: Deployment) -> None:
    d = web
    d.start_worker()
    now = datetime.now(UTC).replace(microsecond=0)
    e = Events("c-future", start=now - timedelta(minutes=1))
    poisoned = e.add("A-7", 0)
    poisoned["occurred_at"] = FUTURE
    normal = e.add("A-8", 0.5)
    topic = d.settings.topic("events.cart")
    sent = d.producer.send(topic, key=b"c-future", value=orjson.dumps(poisoned)).get(timeout=30)
    d.produce([normal])
    d.wait_applied({"c-future": 1})

    [dead] = d.read_topic(DEADLETTER, expect=1)
    letter = orjson.loads(dead.value)
    print("dead letter:", dead.value.decode())
    assert (letter["topic"], letter["partition"], letter["offset"]) == (
        sent.topic,
        sent.partition,
        sent.offset,
    )
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["occurred_at"] == FUTURE
    record_at = datetime.fromtimestamp(sent.timestamp / 1000, UTC)  # the input record's
    days = int((datetime(2099, 1, 1, tzinfo=UTC) - record_at).total_seconds() // 86400)
    stamp = record_at.isoformat().replace("+00:00", "Z")
    assert letter["reason"] == (
        f"occurred_at {FUTURE} is {days} days ahead of the record timestamp {stamp}; "
        "limit SEGSTREAM_MAX_FUTURE_S=300"
    )

    # The normal event right after it was applied, and is what the clock shows.
    state = d.state("c-future") or {}
    assert state["events"] == 1
    p = d.home("c-future")
    normal_at = datetime.fromisoformat(normal["occurred_at"]).timestamp()
    saved = until(lambda: d.redis.hget(clock_key(d.settings.key_prefix), str(p)), "clock saved")
    assert float(saved) == normal_at
    status, body = call(d, "GET", "/api/status")
    [row] = [r for r in body["partitions"] if r["partition"] == p]
    assert status == 200 and row["watermark"] == normal_at and row["clock_fault"] is False
    assert metric(d, "segstream_deadletters_total") == 1.0
    assert metric(d, "segstream_partition_clock_ahead_seconds", p) == 0.0
    assert clock_rows(d)[p]["fault"] is False
    assert call(d, "GET", "/ready", token=None)[0] == 200


def partition_status(page: Any, partition: int) -> list[str]:
    """The dashboard's status cell of one partition: text, class and colour."""
    return page.evaluate(
        """(p) => { const row = [...document.querySelectorAll('#partitions tbody tr')]
            .find(r => r.cells[0].textContent === String(p));
            if (!row) return ['', '', ''];
            const cell = row.cells[row.cells.length - 1];
            return [cell.textContent, cell.className, getComputedStyle(cell).color]; }""",
        partition,
    )


def test_clock_show_and_reset_repair_a_poisoned_clock(web: Deployment, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    d = web
    p = 2
    # A clock poisoned before event time was bounded: written directly, as it was saved.
    d.redis.hset(clock_key(d.settings.key_prefix), str(p), repr(FUTURE_S))
    rows = clock_rows(d)
    assert rows[p]["fault"] is True and rows[p]["watermark"] == FUTURE
    assert [r["fault"] for q, r in rows.items() if q != p] == [False, False, False]
    shown = segstream(d, "clock", "show").stdout
    assert f"{p}          2098-12-31T23:59:55Z" in shown and "CLOCK AHEAD (fault)" in shown

    d.start_worker()
    status, ready = until(
        lambda: (r := call(d, "GET", "/ready", token=None))[1].get("clock_ahead") and r,
        "/ready reports the clock ahead",
    )
    assert status == 503 and ready["clock_ahead"] == [p], ready
    [reason] = ready["reasons"]
    assert reason.startswith(f"clock: partition {p} clock 2098-12-31T23:59:55Z is ")
    assert f"segstream clock reset {p} --to" in reason
    assert (metric(d, "segstream_partition_clock_ahead_seconds", p) or 0) > 2e9
    _, body = call(d, "GET", "/api/status")
    assert [r["partition"] for r in body["partitions"] if r["clock_fault"]] == [p]

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{d.settings.web_port}/dashboard?token=s3cret-token")
        wait_js(page, "window.segstream && window.segstream.polls >= 1")
        text, css, colour = partition_status(page, p)
        assert text.startswith("clock ahead ") and css == "fault", (text, css)
        assert colour == "rgb(192, 57, 43)"  # --bad
        assert page.locator("#health").inner_text() == f"clock ahead: partition {p}"
        assert partition_status(page, 0)[0] == "up to date"

        to = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        out = segstream(d, "clock", "reset", str(p), "--to", to.isoformat())
        assert out.returncode == 0, out.stderr
        done = json.loads(out.stdout)
        assert done["before"]["watermark"] == FUTURE
        assert done["after"]["clock"] == to.isoformat().replace("+00:00", "Z")

        status, ready = until(
            lambda: (r := call(d, "GET", "/ready", token=None))[0] == 200 and r,
            "/ready back to 200",
        )
        assert ready["ready"] is True and "clock_ahead" not in ready
        polls = page.evaluate("window.segstream.polls")
        wait_js(page, f"window.segstream.polls > {polls}")
        assert partition_status(page, p)[:2] == ["up to date", "ok"]
        assert page.locator("#health").inner_text() == "running"
    finally:
        browser.close()
        pw.stop()

    # The worker took the reset: its memory no longer writes the poisoned value back.
    watermark = to.timestamp() + d.settings.allowed_lateness_s
    until(
        lambda: float(d.redis.hget(clock_key(d.settings.key_prefix), str(p)) or 0) == watermark,
        "the reset watermark saved by the worker",
    )
    assert "clock reset to watermark" in d.log()
    assert metric(d, "segstream_partition_clock_ahead_seconds", p) == 0.0
    rows = clock_rows(d)
    assert rows[p]["fault"] is False and rows[p]["clock"] == done["after"]["clock"]
    assert [r["fault"] for r in rows.values()] == [False] * 4

    # A reset to a time that is itself ahead is refused.
    out = segstream(d, "clock", "reset", str(p), "--to", FUTURE)
    assert out.returncode != 0 and "ahead of the wall clock" in out.stderr
