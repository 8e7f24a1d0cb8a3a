"""Segment history and the segment report on a real worker: sizes recorded on wall time,
``segments history``, ``segments report``, ``/api/sizes?since=`` and ``/api/report``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from streams.store.keys import sizes_key
from streams.tools.simulate import generate
from tests.integration.conftest import ROOT, Deployment, free_port
from tests.integration.test_cli import segstream
from tests.integration.test_web import TOKEN, call


@pytest.fixture
def reporting(services: Settings, tmp_path: Path):
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_SIZES_EVERY_S=1,
        SEGSTREAM_RFM_REFRESH_S=1,
        SEGSTREAM_SEGMENTS_FILE=str(ROOT / "config/segments.toml"),
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
        SEGSTREAM_API_TOKEN=TOKEN,
    )
    yield d
    d.close()


def test_history_and_report(reporting: Deployment) -> None:
    d = reporting
    start = datetime.now(UTC) - timedelta(days=20)
    events = list(
        generate(120, seed=5, start=start, duration_s=20 * 86400, rate=3000 / (20 * 86400))
    )
    customers = {e["customer_id"] for e in events}
    d.start_worker()
    half = len(events) // 2
    d.produce(events[:half])
    time.sleep(3)
    d.produce(events[half:])
    key = sizes_key(d.settings.key_prefix)
    ends = time.monotonic() + 60
    while time.monotonic() < ends:
        states = [d.state(c) for c in customers]
        if all(s and "journey" in s["segments"] for s in states) and d.redis.xlen(key) >= 4:
            break
        time.sleep(0.5)
    time.sleep(2)  # a record or two of the settled sizes

    # one record per wall-clock second, stamped with wall time, not the event clocks
    records = d.redis.xrange(key)
    at = [float(fields[b"at"]) for _id, fields in records]
    assert len(at) >= 4 and len(set(int(a) for a in at)) == len(at), at
    assert all(abs(a - time.time()) < 300 for a in at)

    out = segstream(d, "segments", "history", "journey", "--since", "1h", "--every", "1s", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert len(set(doc["at"])) >= 3 and doc["at"] == sorted(doc["at"])
    assert doc["segments"] and all(len(v) == len(doc["at"]) for v in doc["segments"].values())
    assert set(doc["change"]) == set(doc["segments"])
    table = segstream(d, "segments", "history", "journey", "--since", "1h", "--every", "1s")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].startswith("change")

    # the same through the API, with custom segments named as /segments names them
    status, api = call(d, "GET", "/api/sizes?since=1h&every=1s")
    assert status == 200 and len(api["at"]) >= 3
    status, listed = call(d, "GET", "/segments")
    named = {(s["dimension"], s["segment"]) for s in listed["segments"]}
    assert any(dim.startswith("custom:") for dim, _ in named)
    in_history = {(dim, s) for dim, segs in api["dimensions"].items() for s in segs}
    assert named <= in_history, named - in_history
    status, old = call(d, "GET", "/api/sizes?count=2")
    assert (
        status == 200 and len(old["at"]) == 2 and set(old["dimensions"]) == set(api["dimensions"])
    )
    assert call(d, "GET", "/api/sizes?since=1h&every=0.1s")[0] == 400

    out = segstream(d, "segments", "report", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    check_report(report, named)
    text = segstream(d, "segments", "report", "--dimension", "journey")
    assert text.returncode == 0 and "journey (" in text.stdout, text.stderr
    status, api_report = call(d, "GET", "/api/report?since=7d")
    assert status == 200
    check_report(api_report, named)
    sampled = segstream(d, "segments", "report", "--sample", "2", "--json")
    rows = [r for dim in json.loads(sampled.stdout)["dimensions"] for r in dim["segments"]]
    assert all(r["members_read"] <= 2 for r in rows) and any(r["sampled"] for r in rows)


def check_report(report: dict[str, Any], named: set[tuple[str, str]]) -> None:
    shown = {
        (dim["dimension"], r["segment"]) for dim in report["dimensions"] for r in dim["segments"]
    }
    # every dimension; a segment or member may move between reads (the rescoring sweep)
    assert {d for d, _ in shown} == {d for d, _ in named}
    for dim in report["dimensions"]:
        rows = dim["segments"]
        assert abs(sum(r["share"] for r in rows) - 1.0) < 0.01, dim["dimension"]
        assert sum(r["size"] for r in rows) == dim["customers"]
        for r in rows:
            assert abs(r["members_read"] - r["size"]) <= max(2, r["size"] // 10)
            assert r["conversion"] is None or 0 <= r["conversion"] <= 1
            assert r["p_alive"] is None or 0 <= r["p_alive"] <= 1
            assert r["engagement"] is None or r["engagement"] > 0
            assert r["entries"] >= 0 and r["exits"] >= 0
            assert r["change"]["to"] == r["size"]
            assert isinstance(r["over_broad"], bool) and r["stale"] in (None, False)
    journey = next(dim for dim in report["dimensions"] if dim["dimension"] == "journey")
    assert sum(r["entries"] for r in journey["segments"]) >= journey["customers"]
