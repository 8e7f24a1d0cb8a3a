"""The example email subscriber against the real Kafka: poison records go to its
dead-letter file and it goes on; anonymous, expired and erased customers get no email."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.integration.conftest import ROOT, Deployment
from tests.unit.test_email_subscriber import message


def test_the_subscriber_skips_what_it_must_and_survives_poison(
    deployment: Deployment, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    deployment.produce_raw("customers.erased", b"c-erased", None)  # erased after deciding
    for key, value in [
        (b"c-1", b"{not json"),
        (b"anon:a-1", message("anon:a-1", now)),
        (b"c-old", message("c-old", now - timedelta(hours=7))),  # past expires_at (6 h)
        (b"c-erased", message("c-erased", now - timedelta(minutes=1))),
        (b"c-ok", message("c-ok", now)),
        (b"c-ok", message("c-ok", now)),  # redelivered: same idempotency key
    ]:
        deployment.produce_raw("actions.email", key, value)
    deadletter = tmp_path / "dead.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "email_subscriber.py"),
            "--bootstrap",
            deployment.settings.kafka_bootstrap,
            "--topic-prefix",
            deployment.settings.topic_prefix,
            "--group",
            f"{deployment.settings.app_id}-email",
            "--db",
            str(tmp_path / "sent.sqlite3"),
            "--deadletter",
            str(deadletter),
            "--stop-at-end",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()  # partitions interleave: compare sorted
    assert sorted(line.split(" (")[0] for line in lines) == sorted(
        [
            f"dead-lettered {deployment.settings.topic('actions.email')}:"
            f"{deployment.home('c-1')}:0: not JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2",
            "skipped k-anon:a-1: anonymous",
            "skipped k-c-old: expired",
            "skipped k-c-erased: erased",
            "email 'cart-reminder' to c-ok",
            "duplicate k-c-ok: already sent",
        ]
    )
    (letter,) = [json.loads(x) for x in deadletter.read_text().splitlines()]
    assert letter["reason"].startswith("not JSON") and letter["offset"] == 0
    assert letter["value_b64"] == "e25vdCBqc29u"  # the original bytes, {not json
