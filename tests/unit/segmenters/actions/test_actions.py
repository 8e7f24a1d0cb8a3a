"""Retention actions: every guard at its boundary, holdout, idempotency, state format."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.actions import (
    ActionMessage,
    ActionState,
    consent_of,
    due,
    holdout_draw,
    idempotency_key,
    next_due,
    plan,
)
from segmenters.actions.policy import DEFAULT_POLICY, DEFAULT_POLICY_TEXT, load_policy
from segmenters.changes import SegmentChange

DAY = 86400.0
#: 2026-01-05 12:00 UTC, a Monday: outside the quiet hours of POLICY.
NOON = datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()

POLICY = load_policy(
    """
experiment = "exp-1"
[frequency_cap]
email = 2
[quiet_hours]
start_hour = 21
end_hour = 8
timezone = "UTC"

[actions.email.cart]
template = "cart_v1"
priority = 20
cooldown_s = 3600
[actions.email.later]
template = "later_v1"
priority = 10
delay_s = 600
[actions.email.other]
template = "other_v1"
[actions.push.nudge]
template = "nudge_v1"
[actions.ads.cart]
audience = "cart"
[actions.email.held]
template = "held_v1"
holdout = 1.0

[[rules]]
dimension = "journey"
current = "cart_abandoner"
actions = ["email/cart", "ads/cart", "push/nudge"]
[[rules]]
dimension = "journey"
previous = "loyal"
current = "at_risk"
actions = ["email/later"]
[[rules]]
dimension = "rfm"
current = "champions"
actions = ["email/other"]
[[rules]]
dimension = "rfm"
current = "hibernating"
actions = ["email/held"]
"""
)


def change(current="cart_abandoner", dimension="journey", previous=None, *, position=1, at=NOON):
    return SegmentChange.make(
        customer_id="c-1",
        dimension=dimension,
        previous=previous,
        current=current,
        at=at,
        reason="test",
        position=position,
    )


def outcomes(decisions, action=None):
    return [(d.action, d.outcome, d.reason) for d in decisions if action in (None, d.action)]


def run(state, *, now, consent=True, policy=POLICY, **kw):
    return plan(policy, change(**kw), state, now=now, consent=consent)


# --- defaults ---------------------------------------------------------------------------


def test_defaults_file_is_the_packaged_policy():
    path = Path(__file__).resolve().parents[4] / "config" / "actions.toml"
    assert path.read_text() == DEFAULT_POLICY_TEXT
    assert load_policy(path.read_text()) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("dimension", "current", "expected"),
    [
        ("journey", "cart_abandoner", ["email/abandoned_cart"]),
        ("journey", "at_risk", ["email/win_back", "ads/win_back"]),
        ("rfm", "at_risk", ["email/win_back", "ads/win_back"]),
        ("rfm", "champions", ["email/vip_offer"]),
        ("journey", "lapsed", ["ads/reactivation"]),
        ("journey", "loyal", []),
    ],
)
def test_default_rules(dimension, current, expected):
    assert [a.id for a in DEFAULT_POLICY.matching(dimension, "x", current)] == expected


def test_default_targets():
    a = DEFAULT_POLICY.actions
    assert a["email/abandoned_cart"].delay_s == 0
    assert a["ads/win_back"].audience == "win_back"
    assert a["ads/reactivation"].audience == "reactivation"


# --- sending and the message --------------------------------------------------------------


def test_a_change_sends_each_matching_action_once_with_a_message():
    s, ds = run(ActionState("c-1"), now=NOON)
    assert outcomes(ds) == [
        ("email/cart", "send", "sent"),
        ("ads/cart", "send", "sent"),
        ("push/nudge", "send", "sent"),
    ]
    m = ds[0].message
    assert m is not None and m.topic == "actions.email" and m.template == "cart_v1"
    assert m.change == change() and m.priority == 20 and m.experiment == "exp-1"
    assert ds[1].message.audience == "cart" and ds[1].message.template is None
    assert s.last == {"email/cart": NOON}  # the others have no cooldown


def test_message_is_json_with_schema_version_and_features():
    _, ds = plan(
        POLICY, change(), ActionState("c-1"), now=NOON, consent=True, features={"cart_value": 42.5}
    )
    raw = ds[0].message.to_json()
    doc = json.loads(raw)
    assert doc["schema_version"] == 1 and doc["features"] == {"cart_value": 42.5}
    assert doc["change"]["change_id"] == change().change_id
    assert ActionMessage.model_validate_json(raw) == ds[0].message


def test_previous_restricts_a_rule():
    assert outcomes(run(ActionState("c-1"), now=NOON, current="at_risk", previous="new")[1]) == []
    _, ds = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    assert outcomes(ds) == [("email/later", "scheduled", "delay")]


def test_input_state_is_not_changed():
    s0 = ActionState("c-1")
    s1, _ = run(s0, now=NOON)
    run(s1, now=NOON + 10, position=2)
    assert s0.to_doc() == {"customer_id": "c-1", "state_version": 1}
    assert s1.last["email/cart"] == NOON


# --- cooldown -----------------------------------------------------------------------------


def test_cooldown_blocks_until_exactly_cooldown_s():
    s, _ = run(ActionState("c-1"), now=NOON)
    _, ds = run(s, now=NOON + 3599, position=2)
    assert outcomes(ds, "email/cart") == [("email/cart", "suppressed", "cooldown")]
    _, ds = run(s, now=NOON + 3600, position=2)
    assert outcomes(ds, "email/cart") == [("email/cart", "send", "sent")]


def test_cooldown_is_per_action():
    s, _ = run(ActionState("c-1"), now=NOON)
    _, ds = run(s, now=NOON + 1, dimension="rfm", current="champions")
    assert outcomes(ds) == [("email/other", "send", "sent")]


# --- frequency cap (rolling 24 hours) -----------------------------------------------------


def test_cap_allows_n_and_suppresses_n_plus_1():
    s = ActionState("c-1")
    s, ds1 = run(s, now=NOON, dimension="rfm", current="champions", position=1)
    s, ds2 = run(s, now=NOON + 1, dimension="rfm", current="champions", position=2)  # cooldown 0
    s, ds3 = run(s, now=NOON + 2, dimension="rfm", current="champions", position=3)
    assert [d.outcome for d in ds1 + ds2] == ["send", "send"]
    assert outcomes(ds3) == [("email/other", "suppressed", "frequency_cap")]
    assert s.sent == {"email": [NOON, NOON + 1]}


def test_cap_window_is_rolling_24_hours():
    s = ActionState("c-1", sent={"email": [NOON - DAY + 1, NOON - 10]})
    _, ds = run(s, now=NOON, dimension="rfm", current="champions")
    assert outcomes(ds) == [("email/other", "suppressed", "frequency_cap")]
    s2, ds = run(s, now=NOON + 1, dimension="rfm", current="champions")
    assert outcomes(ds) == [("email/other", "send", "sent")]
    assert s2.sent == {"email": [NOON - 10, NOON + 1]}


def test_cap_goes_to_the_higher_priority_action():
    policy = POLICY.model_copy(update={"frequency_cap": {"email": 1}})
    _, ds = run(ActionState("c-1"), now=NOON, policy=policy)
    assert outcomes(ds)[0] == ("email/cart", "send", "sent")
    s = ActionState("c-1", sent={"email": [NOON - 5]})
    _, ds = run(s, now=NOON, policy=policy)
    assert outcomes(ds, "email/cart") == [("email/cart", "suppressed", "frequency_cap")]
    assert outcomes(ds, "ads/cart") == [("ads/cart", "send", "sent")]


def test_uncapped_channel():
    s = ActionState("c-1", sent={"ads": [NOON - 1] * 50})
    _, ds = run(s, now=NOON)
    assert outcomes(ds, "ads/cart") == [("ads/cart", "send", "sent")]


# --- quiet hours --------------------------------------------------------------------------


def at(hour, minute=0, second=0, day=5):
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "deferred_to"),
    [
        (at(20, 59, 59), None),
        (at(21), at(8, day=6)),
        (at(23, 30), at(8, day=6)),
        (at(0), at(8)),
        (at(7, 59, 59), at(8)),
        (at(8), None),
    ],
)
def test_quiet_hours_edges_defer_email_and_push_not_ads(now, deferred_to):
    s, ds = run(ActionState("c-1"), now=now)
    got = {d.action: (d.outcome, d.reason, d.due_at) for d in ds}
    if deferred_to is None:
        assert got["email/cart"] == ("send", "sent", None)
    else:
        assert got["email/cart"] == ("scheduled", "quiet_hours", deferred_to)
        assert got["push/nudge"] == ("scheduled", "quiet_hours", deferred_to)
        assert next_due(s) == deferred_to
    assert got["ads/cart"] == ("send", "sent", None)


def test_deferred_action_is_sent_at_the_end_of_quiet_hours_not_dropped():
    s, _ = run(ActionState("c-1"), now=at(22))
    segs = {"journey": "cart_abandoner"}
    s2, ds = due(POLICY, s, now=at(7, 59, 59, day=6), current_segments=segs, consent=True)
    assert ds == [] and len(s2.pending) == 2
    s3, ds = due(POLICY, s, now=at(8, day=6), current_segments=segs, consent=True)
    assert outcomes(ds) == [("email/cart", "send", "sent"), ("push/nudge", "send", "sent")]
    assert s3.pending == [] and next_due(s3) is None
    assert ds[0].message.decided_at == datetime(2026, 1, 6, 8, tzinfo=UTC)


def test_a_late_due_inside_quiet_hours_is_rescheduled():
    _, ds = run(ActionState("c-1"), now=at(20, 55), current="at_risk", previous="loyal")
    assert ds[0].due_at == at(8, day=6)  # now + delay_s falls into quiet hours
    s, ds = run(ActionState("c-1"), now=at(20, 45), current="at_risk", previous="loyal")
    assert ds[0].due_at == at(20, 55)
    s2, ds = due(POLICY, s, now=at(21, 1), current_segments={"journey": "at_risk"}, consent=True)
    assert outcomes(ds) == [("email/later", "scheduled", "quiet_hours")]  # the timer was late
    assert next_due(s2) == at(8, day=6)


def test_quiet_hours_in_a_named_timezone():
    berlin = POLICY.quiet_hours.model_copy(update={"timezone": "Europe/Berlin"})
    # 20:30 UTC in January is 21:30 in Berlin: quiet until 08:00 Berlin = 07:00 UTC.
    assert berlin.end_after(at(20, 30)) == at(7, day=6)
    assert berlin.end_after(at(19, 59)) is None


def test_quiet_hours_that_do_not_wrap_midnight():
    q = POLICY.quiet_hours.model_copy(update={"start_hour": 1, "end_hour": 6})
    assert q.end_after(at(0, 59)) is None and q.end_after(at(1)) == at(6)
    assert q.end_after(at(6)) is None


# --- consent ------------------------------------------------------------------------------


def test_consent_false_stops_email_and_push_not_ads():
    _, ds = run(ActionState("c-1"), now=NOON, consent=False)
    assert outcomes(ds) == [
        ("email/cart", "suppressed", "no_consent"),
        ("ads/cart", "send", "sent"),
        ("push/nudge", "suppressed", "no_consent"),
    ]


def test_consent_missing_is_allowed_unless_the_policy_requires_it():
    _, ds = run(ActionState("c-1"), now=NOON, consent=None)
    assert [d.outcome for d in ds] == ["send", "send", "send"]
    strict = POLICY.model_copy(update={"require_consent": True})
    _, ds = run(ActionState("c-1"), now=NOON, consent=None, policy=strict)
    assert [d.reason for d in ds] == ["consent_missing", "sent", "consent_missing"]


def test_consent_is_checked_again_when_a_delayed_action_comes_due():
    s, ds = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    assert ds[0].outcome == "scheduled"
    _, ds = due(POLICY, s, now=NOON + 600, current_segments={"journey": "at_risk"}, consent=False)
    assert outcomes(ds) == [("email/later", "suppressed", "no_consent")]


def test_consent_false_at_plan_time_is_not_scheduled():
    s, ds = run(ActionState("c-1"), now=NOON, consent=False, current="at_risk", previous="loyal")
    assert outcomes(ds) == [("email/later", "suppressed", "no_consent")] and s.pending == []


def test_consent_of_profile():
    assert consent_of({"marketing_consent": False}) is False
    assert consent_of({"marketing_consent": "False"}) is False
    assert consent_of({"marketing_consent": True}) is True
    assert consent_of({}) is None


# --- delayed actions and the re-check at send time ----------------------------------------


def test_delayed_action_is_sent_when_due_and_the_segment_holds():
    s, ds = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    assert ds[0].due_at == NOON + 600 and next_due(s) == NOON + 600
    segs = {"journey": "at_risk"}
    s1, ds = due(POLICY, s, now=NOON + 599, current_segments=segs, consent=True)
    assert ds == [] and s1.to_doc() == s.to_doc()
    s2, ds = due(POLICY, s, now=NOON + 600, current_segments=segs, consent=True)
    assert outcomes(ds) == [("email/later", "send", "sent")] and s2.pending == []
    assert ds[0].message.change.current == "at_risk"


def test_segment_changed_before_due_drops_the_action():
    s, ds = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    key = ds[0].idempotency_key
    segs = {"journey": "repeat_buyer"}
    s2, ds = due(POLICY, s, now=NOON + 600, current_segments=segs, consent=True)
    assert outcomes(ds) == [("email/later", "suppressed", "segment_changed")]
    assert ds[0].idempotency_key == key and s2.pending == []
    _, ds = due(POLICY, s, now=NOON + 600, current_segments={}, consent=True)
    assert outcomes(ds) == [("email/later", "suppressed", "segment_changed")]


def test_a_later_change_in_the_same_dimension_drops_pending_at_once():
    s, _ = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    s2, ds = run(s, now=NOON + 60, current="repeat_buyer", previous="at_risk", position=2)
    assert outcomes(ds) == [("email/later", "suppressed", "segment_changed")]
    assert s2.pending == []
    s3, ds = run(s, now=NOON + 60, dimension="rfm", current="loyal", position=2)
    assert ds == [] and len(s3.pending) == 1  # another dimension leaves it alone


def test_action_removed_from_the_policy_while_pending():
    s, _ = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    smaller = POLICY.model_copy(
        update={"actions": {k: v for k, v in POLICY.actions.items() if k != "email/later"}}
    )
    _, ds = due(smaller, s, now=NOON + 600, current_segments={"journey": "at_risk"}, consent=True)
    assert outcomes(ds) == [("email/later", "suppressed", "action_removed")]


# --- idempotency --------------------------------------------------------------------------


def test_idempotency_key_is_stable_and_distinct():
    cid = change().change_id
    assert idempotency_key(cid, "cart", "email") == idempotency_key(cid, "cart", "email")
    assert idempotency_key(cid, "cart", "email") == "916715657a7ebd9f64a82a87"
    keys = {idempotency_key(cid, a, c) for a in ("cart", "x") for c in ("email", "ads")}
    assert len(keys) == 4
    assert idempotency_key(change(position=2).change_id, "cart", "email") not in keys


def test_a_redelivered_change_gets_the_same_keys_and_is_a_duplicate():
    s1, ds1 = run(ActionState("c-1"), now=NOON)
    _, again = run(ActionState("c-1"), now=NOON + 5)  # state lost: decided again, same keys
    assert [d.idempotency_key for d in again] == [d.idempotency_key for d in ds1]
    s2, ds2 = run(s1, now=NOON + 5)  # state kept: recognised
    assert {d.reason for d in ds2} == {"duplicate"}
    assert [d.idempotency_key for d in ds2] == [d.idempotency_key for d in ds1]
    assert s2.last == s1.last and s2.sent == s1.sent


def test_a_redelivered_change_while_pending_is_a_duplicate():
    s, _ = run(ActionState("c-1"), now=NOON, current="at_risk", previous="loyal")
    s2, ds = run(s, now=NOON + 1, current="at_risk", previous="loyal")
    assert outcomes(ds) == [("email/later", "suppressed", "duplicate")] and len(s2.pending) == 1


# --- holdout ------------------------------------------------------------------------------


def test_holdout_is_recorded_not_sent_and_counts_for_cooldown_and_cap():
    s, ds = run(ActionState("c-1"), now=NOON, dimension="rfm", current="hibernating")
    assert outcomes(ds) == [("email/held", "control", "holdout")]
    assert ds[0].message is None
    assert ds[0].assignment().group == "control"
    assert s.last == {} and s.sent == {"email": [NOON]}  # no cooldown: nothing to remember
    held = POLICY.actions["email/held"].model_copy(update={"cooldown_s": 60.0})
    policy = POLICY.model_copy(update={"actions": {**POLICY.actions, "email/held": held}})
    s, _ = run(ActionState("c-1"), now=NOON, dimension="rfm", current="hibernating", policy=policy)
    _, ds = run(s, now=NOON + 59, dimension="rfm", current="hibernating", position=2, policy=policy)
    assert outcomes(ds) == [("email/held", "suppressed", "cooldown")]


def test_holdout_draw_is_pinned():
    # The same in every process and Python version: blake2b, not hash().
    assert holdout_draw("c-1", "email/win_back", "retention-1") == pytest.approx(0.22421655364)


@settings(max_examples=15, deadline=None)
@given(
    share=st.floats(0.0, 1.0),
    experiment=st.text(min_size=1, max_size=12),
    prefix=st.text(max_size=6),
)
def test_holdout_share_converges_and_is_stable(share, experiment, prefix):
    ids = [f"{prefix}{i}" for i in range(20_000)]
    draws = [holdout_draw(c, "email/win_back", experiment) for c in ids]
    assert all(0.0 <= d < 1.0 for d in draws)
    observed = sum(d < share for d in draws) / len(draws)
    assert abs(observed - share) <= 0.02
    assert draws[:50] == [holdout_draw(c, "email/win_back", experiment) for c in ids[:50]]


def test_holdout_share_through_plan():
    policy = POLICY.model_copy(
        update={
            "actions": {
                **POLICY.actions,
                "email/held": POLICY.actions["email/held"].model_copy(update={"holdout": 0.3}),
            }
        }
    )
    groups = []
    for i in range(4000):
        c = SegmentChange.make(
            customer_id=f"c{i}",
            dimension="rfm",
            previous=None,
            current="hibernating",
            at=NOON,
            reason="t",
            position=1,
        )
        _, ds = plan(policy, c, ActionState(f"c{i}"), now=NOON, consent=True)
        groups.append(ds[0].outcome)
    assert abs(groups.count("control") / len(groups) - 0.3) < 0.03


# --- stored state -------------------------------------------------------------------------


def test_state_round_trips_through_json():
    s, _ = run(ActionState("c-1"), now=NOON)
    s, _ = run(s, now=NOON + 1, current="at_risk", previous="loyal")
    doc = s.to_doc()
    assert set(doc) == {"customer_id", "state_version", "last", "sent", "pending", "keys"}
    again = ActionState.from_doc(json.loads(json.dumps(doc)))
    assert again.to_doc() == doc
    assert again.pending[0].change == s.pending[0].change


def test_empty_state_is_small_and_newer_versions_are_refused():
    assert ActionState("c").to_doc() == {"customer_id": "c", "state_version": 1}
    with pytest.raises(ValueError, match="state_version 2"):
        ActionState.from_doc({"customer_id": "c", "state_version": 2})


def test_expired_history_is_pruned():
    s, _ = run(ActionState("c-1"), now=NOON)
    s2, _ = run(s, now=NOON + DAY, dimension="rfm", current="loyal")
    assert s2.last == {} and s2.sent == {}


def test_remembered_keys_are_bounded():
    s = ActionState("c-1")
    for i in range(40):
        s, _ = run(s, now=NOON + i * DAY, position=i + 1)
    assert len(s.keys) == 16
