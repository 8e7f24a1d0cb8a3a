"""The two pure steps: plan (a segment change arrives) and due (delayed actions come due)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from segmenters.actions.decision import Decision, Reason
from segmenters.actions.guards import _consent_block, _gate, evidence_at
from segmenters.actions.messages import (
    CART_SEGMENTS,
    ActionMessage,
    Feature,
    cart_lines,
    holdout_draw,
    idempotency_key,
)
from segmenters.actions.policy import ActionSpec, Policy
from segmenters.actions.state import ActionState, Pending, _pruned, _remember
from segmenters.changes import SegmentChange


def _decide(
    policy: Policy,
    spec: ActionSpec,
    change: SegmentChange,
    key: str,
    s: ActionState,
    *,
    now: float,
    consent: bool | None,
    features: Mapping[str, Feature],
    cart: Mapping[str, Sequence[Any]],
    since: float,
) -> Decision:
    """The final decision at send time; records it in ``s`` (which the caller owns).

    ``since`` is when the action was meant to go out (see :func:`stale`); the message
    expires ``max_age_s`` after it."""
    _remember(s, key)
    base = {
        "customer_id": change.customer_id,
        "action": spec.id,
        "idempotency_key": key,
        "change_id": change.change_id,
        "decided_at": now,
        "experiment": policy.experiment,
    }
    reason: Reason | None = _consent_block(policy, spec.channel, consent)
    last = s.last.get(spec.id)
    cap = policy.frequency_cap.get(spec.channel)
    if reason is None and last is not None and now - last < spec.cooldown_s:
        reason = "cooldown"
    if reason is None and cap is not None and len(s.sent.get(spec.channel, [])) >= cap:
        reason = "frequency_cap"
    if reason is not None:
        return Decision(outcome="suppressed", reason=reason, **base)
    if spec.cooldown_s > 0:
        s.last[spec.id] = now
    s.sent.setdefault(spec.channel, []).append(now)
    if holdout_draw(change.customer_id, spec.id, policy.experiment) < spec.holdout:
        return Decision(outcome="control", reason="holdout", **base)
    expires = since + spec.max_age_s
    carted = change.dimension == "journey" and change.current in CART_SEGMENTS
    message = ActionMessage(
        idempotency_key=key,
        customer_id=change.customer_id,
        channel=spec.channel,
        action=spec.name,
        template=spec.template,
        audience=spec.audience,
        priority=spec.priority,
        decided_at=datetime.fromtimestamp(now, UTC),
        experiment=policy.experiment,
        change=change,
        features=dict(features),
        expires_at=datetime.fromtimestamp(expires, UTC),
        consent=consent,
        cart=cart_lines(cart) if carted else None,
    )
    return Decision(outcome="send", reason="sent", message=message, **base)


def _dropped(p: Pending, reason: Reason, now: float, experiment: str) -> Decision:
    return Decision(
        outcome="suppressed",
        reason=reason,
        customer_id=p.change.customer_id,
        action=p.action,
        idempotency_key=p.key,
        change_id=p.change.change_id,
        decided_at=now,
        experiment=experiment,
    )


def _plan_actions(
    policy: Policy,
    specs: Sequence[ActionSpec],
    change: SegmentChange,
    s: ActionState,
    *,
    now: float,
    consent: bool | None,
    features: Mapping[str, Feature] | None,
    cart: Mapping[str, Sequence[Any]] | None,
    wall: float,
    since: float,
    delay: bool = True,
) -> list[Decision]:
    """Each of ``specs`` for ``change``, through the guards in order; records in ``s``
    (which the caller owns). ``delay``: the actions' ``delay_s`` applies (quiet hours
    always do)."""
    decisions: list[Decision] = []
    for spec in specs:
        key = idempotency_key(change.change_id, spec.name, spec.channel)
        at = policy.send_at(spec.channel, now + (spec.delay_s if delay else 0.0))
        if key in s.keys or any(p.key == key for p in s.pending):
            decisions.append(
                _dropped(Pending(key, spec.id, at, change), "duplicate", now, policy.experiment)
            )
        elif (gate := _gate(spec, change, since, wall)) is not None:
            decisions.append(
                _dropped(Pending(key, spec.id, at, change), gate, now, policy.experiment)
            )
            _remember(s, key)
        elif at > now and _consent_block(policy, spec.channel, consent) is None:
            s.pending.append(Pending(key, spec.id, at, change))
            reason: Reason = "delay" if delay and at == now + spec.delay_s else "quiet_hours"
            decisions.append(
                Decision(
                    outcome="scheduled",
                    reason=reason,
                    customer_id=change.customer_id,
                    action=spec.id,
                    idempotency_key=key,
                    change_id=change.change_id,
                    decided_at=now,
                    experiment=policy.experiment,
                    due_at=at,
                )
            )
        else:
            decisions.append(
                _decide(
                    policy,
                    spec,
                    change,
                    key,
                    s,
                    now=now,
                    consent=consent,
                    features=features or {},
                    cart=cart or {},
                    since=change.changed_at.timestamp(),
                )
            )
    return decisions


def plan(
    policy: Policy,
    change: SegmentChange,
    state: ActionState,
    *,
    now: float,
    consent: bool | None,
    features: Mapping[str, Feature] | None = None,
    cart: Mapping[str, Sequence[Any]] | None = None,
    wall: float | None = None,
    last_seen: float | None = None,
) -> tuple[ActionState, list[Decision]]:
    """Decide the actions ``change`` triggers; ``state`` is not modified.

    ``now`` is the decision's event time; ``wall`` the wall clock (default: ``now``),
    against which each action's ``max_age_s`` is measured (from :func:`evidence_at`, so a
    rescoring change of a customer away longer than that is ``stale``; ``last_seen`` is
    the customer's last event time). ``cart`` is the customer's cart
    (``CustomerState.cart``), for the lines of cart actions' messages.

    Pending actions of the same dimension whose segment this change leaves are dropped
    (``segment_changed``). Each triggered action is decided now, or scheduled when its
    ``delay_s`` or quiet hours put it later (the guards then run in :func:`due`).
    """
    s = _pruned(policy, state, now)
    wall = now if wall is None else wall
    since = evidence_at(change, last_seen)
    decisions: list[Decision] = []
    keep = []
    for p in s.pending:
        if p.change.dimension == change.dimension and p.change.current != change.current:
            decisions.append(_dropped(p, "segment_changed", now, policy.experiment))
            _remember(s, p.key)
        else:
            keep.append(p)
    s.pending = keep
    specs = policy.matching(change.dimension, change.previous, change.current)
    decisions += _plan_actions(
        policy,
        specs,
        change,
        s,
        now=now,
        consent=consent,
        features=features,
        cart=cart,
        wall=wall,
        since=since,
    )
    return s, decisions


def due(
    policy: Policy,
    state: ActionState,
    *,
    now: float,
    current_segments: Mapping[str, str | None],
    consent: bool | None,
    features: Mapping[str, Feature] | None = None,
    cart: Mapping[str, Sequence[Any]] | None = None,
    wall: float | None = None,
) -> tuple[ActionState, list[Decision]]:
    """Decide the scheduled actions due at ``now``, highest priority first.

    An action found due more than its ``max_age_s`` after the time it was scheduled for,
    by ``wall`` (default ``now``), is dropped ``stale`` (a worker that was down for a day);
    the policy's own delay and quiet hours never make it stale.

    ``current_segments`` maps dimension -> the customer's segment now; an action whose
    triggering segment is no longer current is dropped (``segment_changed``). One that
    falls into quiet hours again (a timer fired late) is re-scheduled to their end.
    """
    s = _pruned(policy, state, now)
    wall = now if wall is None else wall

    def order(p: Pending) -> tuple[int, float, str]:
        spec = policy.actions.get(p.action)
        return (-(spec.priority if spec else 0), p.due_at, p.key)

    ready = sorted((p for p in s.pending if p.due_at <= now), key=order)
    s.pending = [p for p in s.pending if p.due_at > now]
    decisions: list[Decision] = []
    for p in ready:
        spec = policy.actions.get(p.action)
        if spec is None:
            decisions.append(_dropped(p, "action_removed", now, policy.experiment))
            _remember(s, p.key)
        elif (gate := _gate(spec, p.change, p.due_at, wall)) is not None:
            decisions.append(_dropped(p, gate, now, policy.experiment))
            _remember(s, p.key)
        elif current_segments.get(p.change.dimension) != p.change.current:
            decisions.append(_dropped(p, "segment_changed", now, policy.experiment))
            _remember(s, p.key)
        elif (at := policy.send_at(spec.channel, now)) > now:
            s.pending.append(Pending(p.key, p.action, at, p.change))
            decisions.append(
                _dropped(p, "quiet_hours", now, policy.experiment).model_copy(
                    update={"outcome": "scheduled", "due_at": at}
                )
            )
        else:
            decisions.append(
                _decide(
                    policy,
                    spec,
                    p.change,
                    p.key,
                    s,
                    now=now,
                    consent=consent,
                    features=features or {},
                    cart=cart or {},
                    since=p.due_at,
                )
            )
    return s, decisions
