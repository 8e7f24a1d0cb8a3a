"""The actions shell's per-customer document, features and policy reloads."""

import logging
import os
import typing

from segmenters.actions import ActionState
from segmenters.actions.document import ActionDoc, current_segments, customer_features
from segmenters.actions.policy import DEFAULT_POLICY, Channel
from segmenters.state import CustomerState
from streams.kafka.topics import ACTION_TOPICS
from streams.worker.actions import PolicySource

DAY = 86400.0


def test_doc_round_trip_and_empty_fields_left_out():
    doc = ActionDoc(ActionState("c-1", last={"email/x": 5.0}))
    assert ActionDoc.from_doc(None, "c-1").to_doc() == {
        "state": {"customer_id": "c-1", "state_version": 1}
    }
    doc.assign("e1", "email/x", "control", 5.0)
    doc.add_purchase("o-1", 7.0, 12.5)
    again = ActionDoc.from_doc(doc.to_doc(), "c-1")
    assert again.to_doc() == doc.to_doc()
    assert again.first == {"e1": {"email/x": ["control", 5.0]}}
    assert again.state.last == {"email/x": 5.0}


def test_first_assignment_wins_per_experiment():
    doc = ActionDoc.from_doc(None, "c-1")
    assert doc.assign("e1", "email/x", "treated", 1.0)
    assert not doc.assign("e1", "email/x", "control", 2.0)
    assert doc.assign("e2", "email/x", "control", 3.0)  # a new experiment draws again
    assert doc.first == {"e1": {"email/x": ["treated", 1.0]}, "e2": {"email/x": ["control", 3.0]}}


def test_purchases_are_kept_once_sorted_and_while_a_report_may_need_them():
    doc = ActionDoc.from_doc(None, "c-1")
    assert doc.add_purchase("o-2", 20.0 * DAY, 5.0)
    assert doc.add_purchase("o-1", 10.0 * DAY, 5.0)
    assert not doc.add_purchase("o-1", 10.0 * DAY, 5.0)  # redelivered
    doc.add_purchase("o-0", 1.0 * DAY, 5.0)
    doc.assign("e", "email/x", "treated", 9.5 * DAY)
    # o-1 is in the window (9.5, 16.5] days; o-2 is recent; o-0 is neither.
    doc.prune(now=21.0 * DAY, window_s=7 * DAY, keep_s=2 * DAY)
    assert [b[0] for b in doc.buys] == ["o-1", "o-2"]
    doc.prune(now=40.0 * DAY, window_s=7 * DAY, keep_s=2 * DAY)
    assert [b[0] for b in doc.buys] == ["o-1"]  # counted for the assignment: kept for good


def test_purchase_at_the_assignment_instant_is_not_kept_for_it():
    doc = ActionDoc.from_doc(None, "c-1")
    doc.add_purchase("o-1", 100.0, 5.0)
    doc.assign("e", "email/x", "treated", 100.0)
    doc.prune(now=100.0 + 10 * DAY, window_s=7 * DAY, keep_s=DAY)
    assert doc.buys == []


def test_features_and_segments_of_a_customer():
    s = CustomerState(
        "c-1",
        orders=3,
        revenue=120.456,
        last_order_at=5.0,
        cart={"A": [2, 12.5, []]},
        geo={"country": "DE"},
        profile={"language": "de"},
        segments={"journey": ["loyal", 1.0], "rfm": ["champions", 2.0]},
    )
    f = customer_features(s)
    assert f["orders"] == 3 and f["revenue"] == 120.46
    assert f["last_order_at"] == "1970-01-01T00:00:05Z" and "currency" not in f
    assert customer_features(s, "EUR")["currency"] == "EUR"
    assert f["cart_value"] == 25.0 and f["cart_items"] == 2 and f["country"] == "DE"
    assert all(isinstance(v, int | float | str | bool | type(None)) for v in f.values())
    assert current_segments(s) == {"journey": "loyal", "rfm": "champions"}
    assert current_segments(None) == {} and customer_features(None) == {}


def test_one_topic_per_channel():
    assert set(ACTION_TOPICS) == {f"actions.{c}" for c in typing.get_args(Channel)}


GOOD = (
    '[actions.email.hi]\ntemplate = "t"\n'
    '[[rules]]\ndimension = "journey"\ncurrent = "lapsed"\nactions = ["email/hi"]\n'
)


def test_policy_reload_on_change_and_a_bad_file_keeps_the_old_policy(tmp_path, caplog):
    assert PolicySource(None).reload() is DEFAULT_POLICY
    path = tmp_path / "actions.toml"
    path.write_text(GOOD)
    source = PolicySource(path)
    assert list(source.policy.actions) == ["email/hi"]
    path.write_text(GOOD.replace('"lapsed"', '"lapsd"'))
    os.utime(path, (1, 1))
    with caplog.at_level(logging.ERROR):
        kept = source.reload()
    assert kept is source.policy and list(kept.actions) == ["email/hi"]
    assert "line 5: rule 1 (journey -> lapsd): unknown segment" in caplog.text
    assert source.reload() is kept  # unchanged mtime: not read again
    path.write_text(GOOD.replace("hi", "ho"))
    os.utime(path, (2, 2))
    assert list(source.reload().actions) == ["email/ho"]
