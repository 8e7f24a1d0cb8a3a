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
