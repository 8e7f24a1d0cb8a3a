"""The pure parts behind the dashboard's panels: the customer's activity, the
descriptions, the dead-letter ranking, the CSV cells."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from segmenters.actions import ActionState
from segmenters.actions.document import ActionDoc
from segmenters.contract import DeadLetter
from segmenters.deadletters import Letter
from segmenters.state import CustomerState
from streams.store.queries import ACTIVITY_ROWS, customer_activity
from streams.worker.web import csv_cell, deadletter_report, vocabulary_doc


def test_activity_lists_the_newest_entries_and_the_actions() -> None:
    state = CustomerState("c-1")
    state.segments = {"journey": ["buyer", 200.0], "rfm": ["new", 100.0]}
    state.positions = {"journey": 3, "rfm": 1}
    doc = ActionDoc(ActionState("c-1", last={"email/win_back": 150.0}))
    doc.assign("exp", "email/win_back", "treated", 150.0)
    out = customer_activity(state, orjson.dumps(doc.to_doc()))
    assert [(e["dimension"], e["changes"]) for e in out["entries"]] == [("journey", 3), ("rfm", 1)]
    assert out["entries"][0]["at"] == "1970-01-01T00:03:20+00:00"
    assert out["actions"]["last"] == [
        {"action": "email/win_back", "at": "1970-01-01T00:02:30+00:00"}
    ]
    assert out["actions"]["assigned"][0]["group"] == "treated"
    assert customer_activity(state, None)["actions"] == {"last": [], "pending": [], "assigned": []}


def test_activity_is_bounded() -> None:
    state = CustomerState("c-2")
    state.segments = {f"custom:s{i}": ["member", float(i)] for i in range(3 * ACTIVITY_ROWS)}
    entries = customer_activity(state, None)["entries"]
    assert (
        len(entries) == ACTIVITY_ROWS
        and entries[0]["dimension"] == f"custom:s{3 * ACTIVITY_ROWS - 1}"
    )


def test_vocabulary_names_clusters_and_custom_segments() -> None:
    published = {"model": {"version": 4, "clusters": [{"id": 2, "description": "big baskets"}]}}
    rule = SimpleNamespace(dimension="custom:vip", description="VIPs", rule="revenue >= 1000")
    context = SimpleNamespace(custom=SimpleNamespace(rules=(rule,)))
    doc = vocabulary_doc(published, context)
    assert doc["segments"] == {"behaviour": {"cluster_2": "big baskets"}}
    assert doc["dimensions"] == {"custom:vip": {"description": "VIPs", "rule": "revenue >= 1000"}}
    assert doc["model_version"] == 4
    assert vocabulary_doc(None, None) == {"segments": {}, "dimensions": {}, "model_version": None}


def test_deadletter_report_ranks_and_limits() -> None:
    def dl(reason: str, at: float, offset: int) -> Letter:
        letter = DeadLetter.of(
            reason=reason,
            topic="events.cart",
            partition=0,
            offset=offset,
            key=None,
            value=None,
            at=at,
        )
        return Letter(0, offset, letter)

    letters = [dl("missing field sku", 10.0, 0), dl("bad", 20.0, 1), dl("bad", 30.0, 2)]
    doc = deadletter_report(letters, since=15.0, limit=1)
    assert doc["total"] == 2 and doc["more_kinds"] == 0 and doc["scanned"] == 3
    assert [(k["kind"], k["count"], k["example"]["deadletter"]) for k in doc["kinds"]] == [
        ("bad", 2, "0:2")
    ]
    assert deadletter_report(letters, since=None, limit=1)["more_kinds"] == 1


def test_csv_cells_are_quoted_and_defused() -> None:
    assert [csv_cell(x) for x in ("c-1", "a,b", 'say "hi"', "=SUM(A1)", "-1")] == [
        "c-1",
        '"a,b"',
        '"say ""hi"""',
        "'=SUM(A1)",
        "'-1",
    ]
