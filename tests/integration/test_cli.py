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

    from streams.store.keys import state_key
    from streams.tools.simulate import generate

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
    assert "state fields: all 17 equal" in ok.stdout

    deployment.stop_all()
    lost = sorted(per_customer)[0]
    deployment.redis.delete(state_key(deployment.settings.key_prefix, deployment.home(lost), lost))
    bad = segstream(deployment, "verify", "--quiet")
    assert bad.returncode == 1
    assert "1 missing" in bad.stdout and "verdict: MISMATCH" in bad.stdout
    assert f"missing from Redis: {lost}" in bad.stdout

    # Erased customers are named apart, never a mismatch: the lost one, and one erased whole.
    erased = sorted([lost, sorted(per_customer)[1]])
    for cid in erased:
        assert segstream(deployment, "erase", cid).returncode == 0
    after = segstream(deployment, "verify", "--quiet")
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"erased (not compared): 2: {', '.join(erased)}" in after.stdout
    assert "0 missing" in after.stdout and "verdict: OK" in after.stdout


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


def _check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``segstream`` as an operator runs it, with only the given SEGSTREAM_* settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_segments_check_refuses_a_rule_that_can_never_match_with_its_line(tmp_path) -> None:
    ok = _check("segments", "check", str(ROOT / "config" / "segments.toml"))
    assert ok.returncode == 0 and "3 segment(s) OK" in ok.stdout, ok.stderr
    bad = tmp_path / "segments.toml"
    bad.write_text(
        'version = "x"\n\n[segments.fine]\nrule = "orders >= 1"\n\n'
        "[segments.abandoners]\nrule = \"journey == 'cart_abandonr'\"\n"
    )
    out = _check("segments", "check", str(bad))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert (
        f"{bad}: line 7: segment 'abandoners': `journey == 'cart_abandonr'`: unknown segment "
        "'cart_abandonr' for journey (did you mean 'cart_abandoner'?)" in out.stderr
    )
    bad.write_text("[segments.c]\nrule = \"behaviour == 'cluster_5'\"\n")
    assert _check("segments", "check", str(bad), SEGSTREAM_CLUSTERS="6").returncode == 0
    four = _check("segments", "check", str(bad), SEGSTREAM_CLUSTERS="4")
    assert four.returncode != 0 and "line 2: segment 'c'" in four.stderr
    assert "the model has 4 clusters, cluster_0 .. cluster_3" in four.stderr


def test_actions_check_refuses_an_unknown_dimension_and_custom_segment(tmp_path) -> None:
    ok = _check("actions", "check", str(ROOT / "config" / "actions.toml"))
    assert ok.returncode == 0, ok.stderr
    policy = tmp_path / "actions.toml"
    action = '[actions.email.vip]\ntemplate = "vip_v1"\n\n'
    policy.write_text(
        action
        + '[[rules]]\ndimension = "behavior"\ncurrent = "cluster_1"\nactions = ["email/vip"]\n'
    )
    out = _check("actions", "check", str(policy))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert (
        f"{policy}: line 5: rule 1 (behavior -> cluster_1): unknown dimension 'behavior' "
        "(did you mean 'behaviour'?)" in out.stderr
    )
    policy.write_text(
        action
        + '[[rules]]\ndimension = "custom:big"\ncurrent = "member"\nactions = ["email/vip"]\n'
    )
    segments = tmp_path / "segments.toml"
    segments.write_text('[segments.big]\nrule = "revenue >= 1000"\n')
    assert _check("actions", "check", str(policy), "--segments", str(segments)).returncode == 0
    via_env = _check("actions", "check", str(policy), SEGSTREAM_SEGMENTS_FILE=str(segments))
    assert via_env.returncode == 0, via_env.stderr
    none = _check("actions", "check", str(policy))
    assert none.returncode != 0
    assert "line 5: rule 1 (custom:big -> member): unknown custom segment 'big'" in none.stderr
