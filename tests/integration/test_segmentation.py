"""The segmentation loop on the real broker and Redis: trainer, scorer, sweep, sizes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from streams.store.keys import index_registry_key, model_key, sizes_key
from streams.tools.simulate import generate
from tests.integration.conftest import ROOT, Deployment


@pytest.fixture
def fast_loop(services, tmp_path):
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_CLUSTER_SNAPSHOT_S=1,
        # 30 days of traffic in seconds: a drifted snapshot is held 2 s, not 6 hours
        SEGSTREAM_CLUSTER_MAX_HOLD_S=2,
        SEGSTREAM_RFM_REFRESH_S=1,
        SEGSTREAM_RESCORE_PASS_S=1,
        SEGSTREAM_SIZES_EVERY_S=1,
        SEGSTREAM_SEGMENTS_FILE=str(ROOT / "config/segments.toml"),
    )
    yield d
    d.close()


def test_trainer_publishes_and_every_customer_is_scored(fast_loop):
    d = fast_loop
    start = datetime.now(UTC) - timedelta(days=30)
    events = list(
        generate(150, seed=21, start=start, duration_s=30 * 86400, rate=8000 / (30 * 86400))
    )
    customers = {e["customer_id"] for e in events}
    d.start_worker()
    # Half the traffic, then the rest once a first model is out: the trainer learns from
    # vectors that moved (an idle rescoring sweep sends none), so the second half is what
    # makes a second version.
    half = len(events) // 2
    d.produce(events[:half])
    ends = time.monotonic() + 60
    while d.redis.get(model_key(d.settings.key_prefix)) is None and time.monotonic() < ends:
        time.sleep(0.5)
    d.produce(events[half:])

    versions, states = [], {}
    ends = time.monotonic() + 90
    while time.monotonic() < ends:
        raw = d.redis.get(model_key(d.settings.key_prefix))
        if raw is not None:
            versions.append(orjson.loads(raw)["model"]["version"])
        states = {c: d.state(c) for c in customers}
        scored = [s for s in states.values() if s and "behaviour" in s.get("segments", {})]
        if len(scored) == len(customers) and len(set(versions)) >= 2:
            break
        time.sleep(1)
    assert versions, "the trainer never published a model"
    assert len(set(versions)) >= 2 and versions == sorted(versions), versions
    model = orjson.loads(d.redis.get(model_key(d.settings.key_prefix)))["model"]
    ids = {f"cluster_{c['id']}" for c in model["clusters"]}
    missing = [c for c, s in states.items() if not s or "behaviour" not in s["segments"]]
    assert not missing, f"{len(missing)} customers never scored"
    assert {s["segments"]["behaviour"][0] for s in states.values()} <= ids

    # RFM, demographic and custom segments are there too
    assert any("rfm" in s["segments"] for s in states.values())
    assert any(k.startswith("custom:") for s in states.values() for k in s["segments"])
    # segment sizes are recorded, and equal the index sets
    ends = time.monotonic() + 10
    while not d.redis.xlen(sizes_key(d.settings.key_prefix)) and time.monotonic() < ends:
        time.sleep(0.5)
    assert d.redis.xlen(sizes_key(d.settings.key_prefix)) >= 1
    names = {
        m
        for p in range(d.settings.topic_partitions)
        for m in d.redis.smembers(index_registry_key(d.settings.key_prefix, p))
    }
    assert len(names) >= 5

    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "clusters"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **d.env},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert f"behaviour model v{model['version']}" in out.stdout or "behaviour model v" in out.stdout
    assert out.stdout.count("cluster_") == len(model["clusters"])
    assert "e-1" not in out.stdout and "monetary (EUR)" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "clusters", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **d.env},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = orjson.loads(out.stdout)["clusters"]
    # members come from the segment indexes: every scored customer is in one
    assert sum(r["members"] for r in rows) == len(customers)
    assert {r["segment"] for r in rows} == ids
