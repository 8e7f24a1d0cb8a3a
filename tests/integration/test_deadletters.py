"""``segstream deadletters`` on a real worker, Kafka and Redis: bad events of several
kinds are dead-lettered; ``top`` counts them by kind, ``show`` prints one, and a redrive of
fixed payloads (``--from-file``) gets them applied, once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner, Result

from streams.cli import main
from streams.settings import Settings
from tests.integration.conftest import Deployment
from tests.unit.factories import Events

CUSTOMER = "c-dl"


def cli(d: Deployment, *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=d.env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_top_show_and_redrive(services: Settings, tmp_path: Path) -> None:
    d = Deployment(services, tmp_path)
    try:
        run(d, tmp_path)
    finally:
        d.close()


def run(d: Deployment, tmp_path: Path) -> None:
    e = Events(CUSTOMER)
    good = [e.browse(1), e.add("A", 2)]
    # Fixable: cut short (invalid JSON at a different column each, as the skus differ in
    # length) and without customer_id; not fixed: a key that is not the customer.
    cut = [e.add("B" * (i + 1), 3 + i) for i in range(5)]
    nameless = [e.browse(10 + i) for i in range(3)]
    wrong_key = [e.browse(20 + i) for i in range(2)]
    d.start_worker()
    d.produce(good)
    for event in cut:
        d.produce_raw("events.cart", CUSTOMER.encode(), orjson.dumps(event)[:-1] + b",}")
    for event in nameless:
        body = {k: v for k, v in event.items() if k != "customer_id"}
        d.produce_raw("events.browse", CUSTOMER.encode(), orjson.dumps(body))
    for event in wrong_key:
        d.produce_raw("events.browse", b"someone-else", orjson.dumps(event))
    # A dead letter of a topic that is not an input topic: redrive refuses it.
    d.produce_raw(
        "events.deadletter",
        b"x",
        orjson.dumps(
            {
                "schema_version": 1,
                "reason": "forged",
                "topic": d.settings.topic("segments.changes"),
                "partition": 0,
                "offset": 0,
                "key_b64": None,
                "value_b64": "e30=",
                "dead_lettered_at": "2026-12-01T00:00:00Z",
            }
        ),
    )
    d.wait_applied({CUSTOMER: len(good)})
    d.read_topic("events.deadletter", expect=11, timeout=30, settle=0.5)

    top = json.loads(cli(d, "deadletters", "top", "--since", "1h", "--json").output)
    counts = {k["kind"]: k["count"] for k in top["kinds"]}
    assert counts == {
        "invalid JSON: trailing comma at line <n> column <n>": 5,
        "missing field customer_id": 3,
        "message key does not match customer_id": 2,
    }, counts
    assert top["kinds"][0]["topics"] == {d.settings.topic("events.cart"): 5}
    text = cli(d, "deadletters", "top", "--since", "1h").output
    assert "invalid JSON: trailing comma at line <n> column <n>" in text, text

    shown = cli(d, "deadletters", "show", "--reason", "missing field", "--limit", "3").output
    assert shown.count("reason      missing field customer_id") == 3, shown
    assert '"page_type": "product"' in shown, shown
    newest = cli(d, "deadletters", "show").output
    assert "dead letter " in newest and "source      " in newest, newest

    records = [
        json.loads(line)
        for reason in ("invalid JSON", "missing field")
        for line in cli(
            d, "deadletters", "show", "--reason", reason, "--limit", "10", "--json"
        ).output.splitlines()
    ]
    assert len(records) == 8
    by_id = {x["event_id"]: x for x in cut + nameless}
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text("".join(json.dumps(fix(r, by_id)) + "\n" for r in records))

    dry = json.loads(
        cli(d, "deadletters", "redrive", "--from-file", str(fixes), "--dry-run", "--json").output
    )
    assert dry["total"]["sent"] == 8 and dry["dry_run"]
    first = json.loads(cli(d, "deadletters", "redrive", "--from-file", str(fixes), "--json").output)
    assert first["total"] == {
        "selected": 8, "sent": 8, "already": 0, "repeated": 0, "refused": 0, "failed": 0
    }  # fmt: skip
    d.wait_applied({CUSTOMER: len(good) + 8}, timeout=30)
    again = cli(d, "deadletters", "redrive", "--from-file", str(fixes)).output
    assert "selected 8, sent 0, already redriven 8, same message redriven 0, refused 0" in again

    # Sent back unfixed, the wrong-key messages are dead-lettered again: a second redrive
    # of the same reason skips the new dead letters (the same messages were redriven).
    wrong = ("deadletters", "redrive", "--reason", "key does not match", "--since", "1h")
    assert "selected 2, sent 2," in cli(d, *wrong).output
    d.read_topic("events.deadletter", expect=13, timeout=30, settle=0.5)
    assert (
        "selected 4, sent 0, already redriven 2, same message redriven 2" in cli(d, *wrong).output
    )

    refused = json.loads(
        cli(d, "deadletters", "redrive", "--reason", "forged", "--since", "all", "--json").output
    )
    assert refused["total"]["refused"] == 1 and refused["total"]["sent"] == 0, refused
    state = d.state(CUSTOMER) or {}
    assert state.get("events") == len(good) + 8, state


def fix(record: dict[str, Any], originals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The operator's fix: the cut events parsed again, the missing customer_id put back."""
    payload = record["payload"]
    if record["payload_encoding"] == "text":  # the cut JSON: the producer's intended event
        event_id = payload.split('"event_id":"')[1].split('"')[0]
        payload = originals[event_id]
    else:
        payload = {**payload, "customer_id": CUSTOMER}
    return {"deadletter": record["deadletter"], "payload": payload, "payload_encoding": "json"}
