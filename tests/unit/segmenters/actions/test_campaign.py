"""Campaigns to current members: the guards of a transition, keys fixed per campaign."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.actions import ActionState, due, holdout_draw, idempotency_key, plan
from segmenters.actions.campaign import (
    Campaign,
    action_error,
    campaign_change_id,
    default_campaign_id,
    parse_target,
    plan_campaign,
)
from segmenters.actions.policy import DEFAULT_POLICY, load_policy
from segmenters.actions.retention import decide_campaign
from segmenters.changes import SegmentChange
from segmenters.state import CustomerState
from segmenters.vocabulary import Vocabulary

DAY = 86400.0
#: 2026-01-05 12:00 UTC: outside the quiet hours of POLICY.
NOON = datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()
NIGHT = datetime(2026, 1, 5, 23, tzinfo=UTC).timestamp()

POLICY = load_policy(
    """
experiment = "exp-1"
[frequency_cap]
email = 2
[quiet_hours]
start_hour = 21
end_hour = 8
timezone = "UTC"

[actions.email.offer]
template = "offer_v1"
cooldown_s = 3600
delay_s = 600
holdout = 0.2
max_age_s = 1
[actions.ads.offer]
audience = "offer"

[[rules]]
dimension = "journey"
current = "at_risk"
actions = ["email/offer"]
"""
)
OFFER = Campaign("spring", "email/offer", "journey", "at_risk")


def treated(n: int = 50) -> list[str]:
    return [
        c for c in (f"c-{i}" for i in range(n)) if holdout_draw(c, "email/offer", "exp-1") >= 0.2
    ]


def test_a_member_is_sent_once_with_a_key_fixed_by_campaign_customer_and_action():
    cid = treated()[0]
    st_, [d] = plan_campaign(POLICY, OFFER, ActionState(cid), now=NOON, consent=True)
    assert (d.outcome, d.reason) == ("send", "sent")
    assert d.idempotency_key == idempotency_key(campaign_change_id("spring", cid), "offer", "email")
    m = d.message
    assert m is not None and m.topic == "actions.email" and m.customer_id == cid
    assert (m.change.previous, m.change.current, m.change.reason) == (
        "at_risk",
        "at_risk",
        "campaign spring",
    )
    # a second run, later (another wall clock): the same key, a duplicate
    _, [again] = plan_campaign(POLICY, OFFER, st_, now=NOON + 7200, consent=True)
    assert (again.reason, again.idempotency_key) == ("duplicate", d.idempotency_key)
    # the same run from a state that lost its keys decides under the same key
    _, [lost] = plan_campaign(POLICY, OFFER, ActionState(cid), now=NOON + 60, consent=True)
    assert lost.idempotency_key == d.idempotency_key
    # another campaign is another key
    _, [d2] = plan_campaign(
        POLICY,
        Campaign("summer", "email/offer", "journey", "at_risk"),
        st_,
        now=NOON + 7200,
        consent=True,
    )
    assert d2.idempotency_key != d.idempotency_key


def test_the_guards_of_a_transition_apply_in_their_order():
    cid = treated()[0]
    s = ActionState(cid)
    assert plan_campaign(POLICY, OFFER, s, now=NOON, consent=False)[1][0].reason == "no_consent"
    # an earlier send of the same action: cooldown; two emails today: the cap
    s = ActionState(cid, last={"email/offer": NOON - 60}, sent={"email": [NOON - 60]})
    assert plan_campaign(POLICY, OFFER, s, now=NOON, consent=True)[1][0].reason == "cooldown"
    s = ActionState(cid, sent={"email": [NOON - 60, NOON - 30]})
    assert plan_campaign(POLICY, OFFER, s, now=NOON, consent=True)[1][0].reason == "frequency_cap"
    # max_age_s = 1 s never makes a campaign stale: the change is the request itself
    assert plan_campaign(POLICY, OFFER, ActionState(cid), now=NOON, consent=True)[1][0].reason == (
        "sent"
    )


def test_the_holdout_draw_is_the_transitions():
    for i in range(200):
        cid = f"h-{i}"
        _, [d] = plan_campaign(POLICY, OFFER, ActionState(cid), now=NOON, consent=True)
        control = holdout_draw(cid, "email/offer", "exp-1") < 0.2
        assert (d.outcome == "control") == control
        if control:
            assert d.message is None and d.assignment() is not None


def test_quiet_hours_defer_and_delay_does_not():
    cid = treated()[0]
    s, [d] = plan_campaign(POLICY, OFFER, ActionState(cid), now=NIGHT, consent=True)
    morning = datetime(2026, 1, 6, 8, tzinfo=UTC).timestamp()
    assert (d.outcome, d.reason, d.due_at) == ("scheduled", "quiet_hours", morning)
    # when due, the pending campaign action re-checks the segment, and sends
    _, [sent] = due(
        POLICY,
        s,
        now=morning,
        current_segments={"journey": "at_risk"},
        consent=True,
        wall=morning,
    )
    assert (sent.outcome, sent.idempotency_key) == ("send", d.idempotency_key)
    _, [gone] = due(POLICY, s, now=morning, current_segments={"journey": "loyal"}, consent=True)
    assert gone.reason == "segment_changed"
    # in the day, delay_s (600 s) does not hold a campaign back
    assert plan_campaign(POLICY, OFFER, ActionState(cid), now=NOON, consent=True)[1][0].outcome in (
        "send",
        "control",
    )


@settings(max_examples=300, deadline=None)
@given(
    consent=st.sampled_from([True, False, None]),
    last=st.none() | st.floats(0, 7200),
    sends=st.integers(0, 3),
    customer=st.integers(0, 10_000),
    hour=st.integers(0, 23),
)
def test_a_campaign_decides_as_a_transition_at_the_same_time(consent, last, sends, customer, hour):
    """Outcome and reason equal plan's for a change into the segment (the rule's action,
    delay_s 0, a fresh change), whatever the state: the same guard chain."""
    policy = POLICY.model_copy(
        update={
            "actions": {
                **POLICY.actions,
                "email/offer": POLICY.actions["email/offer"].model_copy(update={"delay_s": 0.0}),
            }
        }
    )
    now = datetime(2026, 1, 5, hour, tzinfo=UTC).timestamp()
    cid = f"p-{customer}"
    s = ActionState(
        cid,
        last={} if last is None else {"email/offer": now - last},
        sent={"email": [now - 100 - i for i in range(sends)]} if sends else {},
    )
    change = SegmentChange.make(
        customer_id=cid,
        dimension="journey",
        previous="loyal",
        current="at_risk",
        at=now,
        reason="r",
        position=3,
    )
    _, [by_rule] = plan(policy, change, s, now=now, consent=consent)
    _, [by_campaign] = plan_campaign(policy, OFFER, s, now=now, consent=consent)
    assert (by_campaign.outcome, by_campaign.reason, by_campaign.due_at) == (
        by_rule.outcome,
        by_rule.reason,
        by_rule.due_at,
    )


def test_decide_campaign_records_the_assignment_and_skips_those_who_left():
    cid = treated()[0]
    member = CustomerState(cid, profile={"marketing_consent": True})
    member.enter("journey", "at_risk", NOON - DAY)
    out = decide_campaign(POLICY, None, member, OFFER, now=NOON, currency="EUR")
    assert out.changed and [m.topic for m in out.messages] == ["actions.email"]
    assert out.doc.first == {"exp-1": {"email/offer": ["treated", NOON]}}
    assert out.messages[0].features["currency"] == "EUR"
    again = decide_campaign(POLICY, out.doc, member, OFFER, now=NOON + 60)
    assert not again.changed and [d.reason for d in again.decisions] == ["duplicate"]
    left = CustomerState(cid)
    left.enter("journey", "loyal", NOON - DAY)
    gone = decide_campaign(POLICY, None, left, OFFER, now=NOON)
    assert not gone.changed and gone.decisions == []


def test_targets_and_actions_are_checked_with_a_hint():
    v = Vocabulary(clusters=6, custom=frozenset({"vip"}))
    assert parse_target("rfm:champions", v) == ("rfm", "champions")
    assert parse_target("geographic:DE/Bavaria", v) == ("geographic", "DE/Bavaria")
    with pytest.raises(ValueError, match="did you mean 'behaviour'"):
        parse_target("behavior:cluster_1", v)
    with pytest.raises(ValueError, match="not DIMENSION:SEGMENT"):
        parse_target("at_risk", v)
    with pytest.raises(ValueError, match="cluster_0 .. cluster_5"):
        parse_target("behaviour:cluster_7", v)
    assert action_error(DEFAULT_POLICY, "email/win_back") is None
    assert "did you mean 'ads/win_back'" in (action_error(DEFAULT_POLICY, "ad/win_back") or "")
    assert "the policy has:" in (action_error(DEFAULT_POLICY, "sms/x") or "")


def test_the_default_campaign_id_is_one_a_day():
    a = default_campaign_id("email/win_back", "journey", "at_risk", "2026-12-07")
    assert a == default_campaign_id("email/win_back", "journey", "at_risk", "2026-12-07")
    assert a != default_campaign_id("email/win_back", "journey", "at_risk", "2026-12-08")
    assert a != default_campaign_id("ads/win_back", "journey", "at_risk", "2026-12-07")
