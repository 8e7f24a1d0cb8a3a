"""No action for history: ``max_age_s`` against the wall clock, the ``--no-actions`` mark,
and what an action message says (expiry, consent, cart lines)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenters.actions import ActionState, due, plan
from segmenters.actions.policy import DAY, DEFAULT_POLICY, PolicyError, load_policy
from segmenters.changes import SegmentChange
from segmenters.config import EngineConfig
from segmenters.core import Source, carry_no_actions, fold, tick
from streams.worker.pipeline import no_actions_of
from tests.unit.factories import Events, ev

#: 2026-01-05 12:00 UTC, a Monday: outside the default quiet hours (21-8 Europe/Berlin).
NOON = datetime(2026, 1, 5, 12, tzinfo=UTC).timestamp()
HOUR = 3600.0


def change(current="cart_abandoner", *, at=NOON, dimension="journey", previous="active_cart"):
    return SegmentChange.make(
        customer_id="c-1",
        dimension=dimension,
        previous=previous,
        current=current,
        at=at,
        reason="test",
        position=1,
    )


def reasons(decisions):
    return {d.action: (d.outcome, d.reason) for d in decisions}


# --- the policy setting --------------------------------------------------------------------


def test_default_max_ages_are_24_hours_and_6_for_the_abandoned_cart():
    ages = {a: spec.max_age_s for a, spec in DEFAULT_POLICY.actions.items()}
    assert ages.pop("email/abandoned_cart") == 6 * HOUR
    assert set(ages.values()) == {DAY}


def test_max_age_is_positive_and_independent_of_the_delay():
    text = '[actions.email.x]\ntemplate = "t"\ndelay_s = 600\nmax_age_s = {}\n'
    assert load_policy(text.format(60)).actions["email/x"].max_age_s == 60
    with pytest.raises(PolicyError, match="max_age_s"):
        load_policy(text.format(0))


# --- stale ----------------------------------------------------------------------------------


def test_a_change_exactly_max_age_old_is_sent_one_second_more_is_stale():
    ch = change()
    _, ds = plan(
        DEFAULT_POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=NOON + 6 * HOUR
    )
    assert ds[0].action == "email/abandoned_cart" and ds[0].outcome in ("send", "control")
    s, ds = plan(
        DEFAULT_POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=NOON + 6 * HOUR + 1
    )
    assert reasons(ds) == {"email/abandoned_cart": ("suppressed", "stale")}
    # Not counted as a send (no cooldown, no cap), but remembered: a redelivery is a duplicate.
    assert s.last == {} and s.sent == {}
    _, again = plan(DEFAULT_POLICY, ch, s, now=NOON, consent=True, wall=NOON + 6 * HOUR + 2)
    assert reasons(again) == {"email/abandoned_cart": ("suppressed", "duplicate")}


def test_max_age_is_per_action():
    ch = change("at_risk", previous="loyal")
    seven_hours = NOON + 7 * HOUR
    _, ds = plan(DEFAULT_POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=seven_hours)
    decided = reasons(ds)  # 7 h old: within 24 h, so decided (sent, or held out)
    assert set(decided) == {"email/win_back", "ads/win_back"}
    assert all(r in ("sent", "holdout") for _, r in decided.values())
    _, ds = plan(
        DEFAULT_POLICY, change(), ActionState("c-1"), now=NOON, consent=True, wall=seven_hours
    )
    assert reasons(ds)["email/abandoned_cart"] == ("suppressed", "stale")
    _, ds = plan(
        DEFAULT_POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=NOON + 2 * DAY
    )
    assert reasons(ds) == {
        "email/win_back": ("suppressed", "stale"),
        "ads/win_back": ("suppressed", "stale"),
    }


def test_stale_comes_before_consent_so_history_is_never_counted_as_refused():
    _, ds = plan(
        DEFAULT_POLICY, change(), ActionState("c-1"), now=NOON, consent=False, wall=NOON + DAY
    )
    assert reasons(ds) == {"email/abandoned_cart": ("suppressed", "stale")}


def test_wall_defaults_to_now():
    """A caller without a separate wall clock decides in real time: ``now`` is the wall."""
    _, ds = plan(DEFAULT_POLICY, change(), ActionState("c-1"), now=NOON + 7 * HOUR, consent=True)
    assert reasons(ds) == {"email/abandoned_cart": ("suppressed", "stale")}


POLICY = load_policy(
    """
[actions.email.later]
template = "later_v1"
delay_s = 3600
max_age_s = 7200
[[rules]]
dimension = "journey"
current = "at_risk"
actions = ["email/later"]
"""
)


def test_a_scheduled_action_that_came_due_too_late_is_stale():
    ch = change("at_risk", previous="loyal")
    s, ds = plan(POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=NOON)
    assert reasons(ds) == {"email/later": ("scheduled", "delay")}
    segs = {"journey": "at_risk"}
    # Event time reaches the due time (NOON + 1 h), but the wall clock is 2 h + 1 s past it
    # (a worker that was down): dropped, never sent. The policy's own hour of delay does not
    # count against the 2 h.
    late = NOON + HOUR + 7201
    s2, ds = due(POLICY, s, now=NOON + HOUR, current_segments=segs, consent=True, wall=late)
    assert reasons(ds) == {"email/later": ("suppressed", "stale")} and s2.pending == []
    _, ds = due(POLICY, s, now=NOON + HOUR, current_segments=segs, consent=True, wall=late - 1)
    assert reasons(ds) == {"email/later": ("send", "sent")}
    assert ds[0].message.expires_at.timestamp() == NOON + HOUR + 7200


def test_quiet_hours_never_make_an_abandoned_cart_stale():
    """A cart abandoned at 22:00 Berlin waits for the quiet hours to end (8:00, 10 h later,
    more than the 6 h max age): it is sent then, and expires 6 h after 8:00."""
    evening = datetime(2026, 1, 5, 21, tzinfo=UTC).timestamp()  # 22:00 in Berlin
    s, ds = plan(
        DEFAULT_POLICY,
        change(at=evening),
        ActionState("c-1"),
        now=evening,
        consent=True,
        wall=evening,
    )
    assert reasons(ds) == {"email/abandoned_cart": ("scheduled", "quiet_hours")}
    at = ds[0].due_at
    assert at is not None and at - evening == 10 * HOUR
    segs = {"journey": "cart_abandoner"}
    _, ds = due(DEFAULT_POLICY, s, now=at, current_segments=segs, consent=True, wall=at + 60)
    assert ds[0].outcome in ("send", "control") and ds[0].reason in ("sent", "holdout")
    if ds[0].message is not None:
        assert ds[0].message.expires_at.timestamp() == at + 6 * HOUR


@given(
    age=st.integers(min_value=-86400, max_value=30 * 86400),
    max_age=st.integers(min_value=1, max_value=10 * 86400),
)
def test_sent_if_and_only_if_the_change_is_at_most_max_age_old(age, max_age):
    policy = load_policy(
        f'[actions.ads.a]\naudience = "a"\nmax_age_s = {max_age}\n'
        '[[rules]]\ndimension = "journey"\ncurrent = "cart_abandoner"\nactions = ["ads/a"]\n'
    )
    _, ds = plan(policy, change(), ActionState("c-1"), now=NOON, consent=None, wall=NOON + age)
    assert [d.reason for d in ds] == (["stale"] if age > max_age else ["sent"])


# --- the no-actions mark ----------------------------------------------------------------


def test_a_change_marked_no_actions_is_suppressed_replay_however_fresh():
    marked = change().model_copy(update={"no_actions": True})
    s, ds = plan(DEFAULT_POLICY, marked, ActionState("c-1"), now=NOON, consent=True, wall=NOON)
    assert reasons(ds) == {"email/abandoned_cart": ("suppressed", "replay")}
    assert s.last == {} and s.sent == {} and s.pending == []
    ch = change("at_risk", previous="loyal").model_copy(update={"no_actions": True})
    _, ds = plan(POLICY, ch, ActionState("c-1"), now=NOON, consent=True, wall=NOON)
    assert reasons(ds) == {"email/later": ("suppressed", "replay")}  # not even scheduled


def test_the_mark_survives_the_change_json_and_is_false_by_default():
    marked = change().model_copy(update={"no_actions": True})
    again = SegmentChange.model_validate_json(marked.model_dump_json())
    assert again.no_actions is True and again.change_id == change().change_id
    assert change().no_actions is False


def test_no_actions_header():
    assert no_actions_of([("segstream-no-actions", b"1")])
    assert no_actions_of({"segstream-no-actions": b"1"})
    assert not no_actions_of([("segstream-no-actions", b"0")])
    assert not no_actions_of([("other", b"1")]) and not no_actions_of(None)


CONFIG = EngineConfig()


def folded(events, marked_positions, state=None, first=0):
    """Fold events (offsets from ``first``), the ones at ``marked_positions`` marked."""
    items = [(ev(e), Source("events.cart", 0, first + i)) for i, e in enumerate(events)]
    marked = {src for i, (_e, src) in enumerate(items) if i in marked_positions}
    was = state is not None and state.no_actions
    result = fold(state, "c-1", items, config=CONFIG)
    carry_no_actions(result, items, marked, was)
    return result


def test_changes_of_marked_events_carry_the_mark_and_live_ones_do_not():
    c = Events("c-1")
    result = folded([c.browse(0), c.add("A", 1)], marked_positions={0, 1})
    assert result.changes and all(ch.no_actions for ch in result.changes)
    assert result.state.no_actions is True
    c2 = Events("c-2")
    live = folded([c2.browse(0), c2.add("A", 1)], marked_positions=set())
    assert live.changes and not any(ch.no_actions for ch in live.changes)
    assert live.state.no_actions is False


def test_a_timer_after_replayed_events_is_marked_until_a_live_event_clears_it():
    """Choice: a customer whose latest event was replayed with --no-actions keeps the mark
    in its state; the cart_abandoner timer that fires after a replayed cart is history too."""
    c = Events("c-1")
    replayed = folded([c.add("A", 0)], marked_positions={0})
    later = c.start.timestamp() + 2 * HOUR
    fired = tick(replayed.state, later, config=CONFIG)
    assert [ch.current for ch in fired.changes] == ["cart_abandoner"]
    carry_no_actions(fired, [], set(), replayed.state.no_actions)
    assert fired.changes[0].no_actions is True
    # A live event afterwards: its own changes and the state are unmarked again, and so
    # is the next timer's change.
    live = folded([c.add("B", 180)], marked_positions=set(), state=replayed.state.copy(), first=1)
    assert live.state.no_actions is False
    # In that fold, the timer due before the live event fires first, from the replayed cart
    # (marked); the live event's own change is not.
    marks = [
        (src is None, ch.current, ch.no_actions)
        for ch, src in zip(live.changes, live.causes, strict=True)
    ]
    assert marks == [(True, "cart_abandoner", True), (False, "active_cart", False)]
    again = tick(live.state, c.start.timestamp() + 5 * HOUR, config=CONFIG)
    carry_no_actions(again, [], set(), live.state.no_actions)
    assert again.changes and not any(ch.no_actions for ch in again.changes)


def test_a_timer_between_two_events_of_one_batch_follows_the_event_before_it():
    """In one batch: a replayed cart, then (hours later) a live one. The cart_abandoner
    timer fired between them follows the replayed cart: marked, although the state before
    the batch was not (a new customer). And the other way round: a live cart, then a
    replayed one, leaves the timer between them unmarked."""
    c = Events("c-1")
    mixed = folded([c.add("A", 0), c.add("B", 180)], marked_positions={0})
    marks = [
        (src is None, ch.current, ch.no_actions)
        for ch, src in zip(mixed.changes, mixed.causes, strict=True)
    ]
    assert marks == [
        (False, "active_cart", True),
        (True, "cart_abandoner", True),
        (False, "active_cart", False),
    ]
    c2 = Events("c-2")
    other = folded([c2.add("A", 0), c2.add("B", 180)], marked_positions={1})
    assert [ch.no_actions for ch in other.changes] == [False, False, True]
    assert other.state.no_actions is True


def test_the_mark_is_stored_only_when_set():
    c = Events("c-1")
    replayed = folded([c.add("A", 0)], marked_positions={0})
    assert replayed.state.to_doc()["no_actions"] is True
    live = folded([Events("c-2").add("A", 0)], marked_positions=set())
    assert "no_actions" not in live.state.to_doc()


# --- the message --------------------------------------------------------------------------


def test_a_cart_message_carries_expiry_consent_and_the_cart_lines():
    ch = change()
    cart = {"B-2": [1, None, []], "A-7": [2, 59.9, [[NOON, 2]]]}
    policy = load_policy(
        '[actions.email.c]\ntemplate = "c"\nmax_age_s = 21600\n[actions.ads.c]\naudience = "c"\n'
        '[[rules]]\ndimension = "journey"\ncurrent = "cart_abandoner"\n'
        'actions = ["email/c", "ads/c"]\n'
    )
    for consent in (True, None):
        _, ds = plan(policy, ch, ActionState("c-1"), now=NOON, consent=consent, cart=cart)
        msgs = {d.action: d.message for d in ds}
        email = msgs["email/c"]
        assert email is not None and email.consent is consent
        assert email.expires_at == datetime.fromtimestamp(NOON + 21600, UTC)
        assert msgs["ads/c"].expires_at == datetime.fromtimestamp(NOON + DAY, UTC)
        doc = email.model_dump(mode="json")
        assert doc["expires_at"] == "2026-01-05T18:00:00Z"
        assert doc["cart"] == [
            {"sku": "A-7", "quantity": 2, "unit_price": 59.9},
            {"sku": "B-2", "quantity": 1, "unit_price": None},
        ]
    _, ds = plan(policy, ch, ActionState("c-1"), now=NOON, consent=False, cart=cart)
    assert reasons(ds)["email/c"] == ("suppressed", "no_consent")
    assert [d.message.consent for d in ds if d.message] == [False]  # ads need no consent


def test_a_message_not_about_the_cart_carries_no_cart():
    cart = {"A-7": [2, 59.9, []]}
    ch = change("at_risk", previous="loyal")
    _, ds = plan(DEFAULT_POLICY, ch, ActionState("c-x"), now=NOON, consent=True, cart=cart)
    sent = [d.message for d in ds if d.message is not None]
    assert sent and all(m.cart is None for m in sent)


# --- rescoring: news by the clock, not by behaviour -----------------------------------------


def test_a_rescoring_change_is_as_old_as_the_customers_last_event():
    """The sweep re-reads a customer against new quantiles at the partition clock (now);
    a customer last seen a year ago gets no VIP offer from it, one seen an hour ago does."""
    champion = change("champions", dimension="rfm", previous="loyal")
    rescored = champion.model_copy(update={"rescored": True})
    year_ago, hour_ago = NOON - 365 * DAY, NOON - HOUR
    _, ds = plan(
        DEFAULT_POLICY,
        rescored,
        ActionState("c-1"),
        now=NOON,
        consent=True,
        wall=NOON,
        last_seen=year_ago,
    )
    assert reasons(ds) == {"email/vip_offer": ("suppressed", "stale")}
    _, ds = plan(
        DEFAULT_POLICY,
        rescored,
        ActionState("c-1"),
        now=NOON,
        consent=True,
        wall=NOON,
        last_seen=hour_ago,
    )
    assert reasons(ds)["email/vip_offer"][1] in ("sent", "holdout")
    # an event's or a deadline's change keeps its own time, however long ago the last event
    _, ds = plan(
        DEFAULT_POLICY,
        champion,
        ActionState("c-1"),
        now=NOON,
        consent=True,
        wall=NOON,
        last_seen=year_ago,
    )
    assert reasons(ds)["email/vip_offer"][1] in ("sent", "holdout")


def test_rescore_marks_only_the_sweeps_own_changes():
    from segmenters.core import Context, rescore
    from segmenters.dimensions.rfm import RfmQuantiles

    c = Events("c-1")
    state = fold(None, "c-1", [(ev(c.purchase("o-1", ["A"])), None)], config=CONFIG).state
    assert "rfm" not in state.segments and state.eval_at is not None
    quantiles = RfmQuantiles(
        recency_days=(1.0, 2.0, 3.0, 4.0),
        frequency=(0.5, 0.6, 0.7, 0.8),
        monetary=(1.0, 2.0, 3.0, 4.0),
        buyers=100,
        as_of=state.eval_at,
    )
    result = rescore(state, state.eval_at, config=CONFIG, ctx=Context(rfm=quantiles))
    assert [(ch.dimension, ch.rescored) for ch in result.changes] == [("rfm", True)]
    timer = tick(state, state.eval_at + 31 * DAY, config=CONFIG)
    assert timer.changes and not any(ch.rescored for ch in timer.changes)
