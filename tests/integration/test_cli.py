"""The command line against the real services: look-ups and the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import ROOT, Deployment
from tests.unit.factories import Events


def segstream(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **deployment.env},
        timeout=60,
    )


def test_customer_lookup_prints_segments_and_state(deployment: Deployment) -> None:
    e = Events("c-look")
    deployment.start_worker()
    deployment.produce(
        [
            e.profile(0, country="PL"),
            e.add("A", 1, price=25.0, qty=2),
            e.purchase("o-1", ["B"], 2, price=40.0),
        ]
    )
    deployment.wait_applied({"c-look": 3})
    out = segstream(deployment, "customer", "c-look", "--json")
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["customer_id"] == "c-look"
    assert view["segments"]["journey"] == "active_cart"
    assert view["segments"]["geographic"] == "PL/unknown"
    state = view["state"]
    assert (state["orders"], state["revenue"], state["cart_items"]) == (1, 40.0, 2)
    assert state["first_seen"] == "2026-01-01T10:00:00+00:00"
    assert state["last_seen"] == "2026-01-01T10:02:00+00:00"

    missing = segstream(deployment, "customer", "nobody")
    assert missing.returncode != 0 and "no state for customer" in missing.stderr


def test_schema_is_valid_json_with_every_type(deployment: Deployment) -> None:
    out = segstream(deployment, "schema")
    schema = json.loads(out.stdout)
    kinds = {
        v["properties"]["type"]["const"]
        for v in schema["$defs"].values()
        if "type" in v.get("properties", {})
    }
    assert kinds == {"browse", "cart", "purchase", "refund", "profile"}


def test_verify_agrees_after_a_run_and_reports_a_lost_customer(deployment: Deployment) -> None:
    from datetime import UTC, datetime

    from streams.keys import state_key
    from streams.simulate import generate

    events = list(
        generate(40, seed=4, start=datetime(2026, 1, 1, tzinfo=UTC), duration_s=20, rate=50)
    )
    deployment.start_worker()
    deployment.produce(events)
    per_customer: dict[str, int] = {}
    for e in events:
        per_customer[e["customer_id"]] = per_customer.get(e["customer_id"], 0) + 1
    deployment.wait_applied(per_customer)

    ok = segstream(deployment, "verify", "--quiet")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verdict: OK" in ok.stdout
    assert f"{len(events)} valid, 0 invalid" in ok.stdout
    assert "state fields: all 15 equal" in ok.stdout

    deployment.stop_all()
    lost = sorted(per_customer)[0]
    deployment.redis.delete(state_key(deployment.settings.key_prefix, deployment.home(lost), lost))
    bad = segstream(deployment, "verify", "--quiet")
    assert bad.returncode == 1
    assert "1 missing" in bad.stdout and "verdict: MISMATCH" in bad.stdout


def test_verify_without_topics_says_so(deployment: Deployment) -> None:
    env_free = {**deployment.env, "SEGSTREAM_TOPIC_PREFIX": "no-such-deployment."}
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "verify", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env_free},
        timeout=60,
    )
    assert out.returncode != 0
    assert "nothing to verify" in out.stderr and "Traceback" not in out.stderr
