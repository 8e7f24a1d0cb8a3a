"""Retention actions: from a segment change to send, control, suppressed or scheduled.

Two pure functions carry a customer's :class:`ActionState` forward, like ``core.fold``
does for segments: :func:`plan` when a segment change arrives, :func:`due` when delayed
actions come due. The caller passes the time, the consent and the features; nothing here
reads a clock or a store. Guards run in a fixed order, each with its reason:

0. ``replay``: the change follows events replayed with ``--no-actions``; ``stale``: the
   change is older than the action's ``max_age_s`` by the wall clock (``wall``, which the
   shell passes in; ``now`` is event time), so history is never acted on;
1. ``segment_changed`` (delayed only): the customer left the segment that triggered it;
2. ``no_consent`` / ``consent_missing``: email and push need marketing consent;
3. ``cooldown``: the same action for the same customer too recently;
4. ``frequency_cap``: too many on this channel in the rolling 24 hours;
5. ``holdout``: the customer's hash puts them in the control group (recorded, not sent).

Quiet hours and ``delay_s`` defer (outcome ``scheduled``) and never drop. Guards 2-4 run
before the holdout draw, so control and treated customers are equally eligible; a control
assignment counts towards cooldown and cap as if it had been sent.

>>> from segmenters.changes import SegmentChange
>>> ch = SegmentChange.make(customer_id="c-1", dimension="journey", previous="active_cart",
...                         current="cart_abandoner", at=43000.0, reason="r", position=1)
>>> st, ds = plan(DEFAULT_POLICY, ch, ActionState("c-1"), now=43200.0, consent=True)
>>> [(d.action, d.outcome, d.reason) for d in ds]
[('email/abandoned_cart', 'send', 'sent')]
>>> ds[0].message.topic, st.to_doc()["last"]
('actions.email', {'email/abandoned_cart': 43200.0})
>>> [d.reason for d in plan(DEFAULT_POLICY, ch, ActionState("c-1"), now=43200.0,
...                         consent=True, wall=43000.0 + 7 * 3600)[1]]
['stale']
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .changes import SegmentChange
from .policy import DAY, DEFAULT_POLICY, PERSONAL, ActionSpec, Channel, Policy
from .uplift import Assignment

__all__ = [
    "DEFAULT_POLICY",
    "ActionMessage",
    "ActionState",
    "CartLine",
    "Decision",
    "Pending",
    "cart_lines",
    "consent_of",
    "due",
    "holdout_draw",
    "idempotency_key",
    "next_due",
    "plan",
    "stale",
]

ACTION_STATE_VERSION = 1
#: How many idempotency keys a state remembers, so a redelivered change is a ``duplicate``.
RECENT_KEYS = 16

Outcome = Literal["send", "control", "suppressed", "scheduled"]
Reason = Literal[
    "sent",
    "holdout",
    "delay",
    "quiet_hours",
    "segment_changed",
    "no_consent",
    "consent_missing",
    "cooldown",
    "frequency_cap",
    "duplicate",
    "action_removed",
    "stale",
    "replay",
]
Feature = float | int | str | bool | None


def idempotency_key(change_id: str, action: str, channel: str) -> str:
    """The same change, action and channel always give the same key (redelivery-safe).

    >>> idempotency_key("b19f0c9a0388182d3ceb98e8", "win_back", "email")
    '96eb901b027375d59a74c2d5'
    """
    raw = f"{change_id}\x1f{action}\x1f{channel}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def holdout_draw(customer_id: str, action: str, experiment: str) -> float:
    """A uniform number in [0, 1) fixed by (customer, action id, experiment), in every process.

    >>> holdout_draw("c-1", "email/win_back", "retention-1")
    0.2242165536...
    """
    raw = f"{customer_id}\x1f{action}\x1f{experiment}".encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") / 2.0**64


def consent_of(profile: Mapping[str, Any]) -> bool | None:
    """The profile's ``marketing_consent`` as a bool, or None when missing or unreadable.

    >>> [consent_of({"marketing_consent": v}) for v in (False, "false", "yes", 1, None, "?")]
    [False, False, True, True, None, None]
    """
    value = profile.get("marketing_consent")
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "1", "y"):
            return True
        if text in ("false", "no", "0", "n"):
            return False
    return None


class CartLine(BaseModel):
    """One line of the customer's cart when the action was decided."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    quantity: int
    #: In the shop's currency, as the cart events carried it; None if they carried none.
    unit_price: float | None = None


def cart_lines(cart: Mapping[str, Sequence[Any]]) -> list[CartLine]:
    """The cart of a customer state (sku -> [quantity, unit price, ...]) as message lines.

    >>> [line.model_dump() for line in cart_lines({"A-7": [2, 59.9, []]})]
    [{'sku': 'A-7', 'quantity': 2, 'unit_price': 59.9}]
    """
    return [
        CartLine(
            sku=sku,
            quantity=int(line[0]),
            unit_price=None if line[1] is None else float(line[1]),
        )
        for sku, line in sorted(cart.items())
    ]


#: Journey segments whose actions are about the cart: their messages carry its lines.
CART_SEGMENTS = frozenset({"cart_abandoner", "active_cart"})


class ActionMessage(BaseModel):
    """What goes to ``actions.<channel>``, keyed by customer (schema version 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    idempotency_key: str
    customer_id: str
    channel: Channel
    action: str
    template: str | None = None
    audience: str | None = None
    priority: int = 0
    decided_at: datetime
    experiment: str
    change: SegmentChange
    features: dict[str, Feature] = {}
    #: ``max_age_s`` after the time it was meant to go out: a sender drops it after this.
    expires_at: datetime
    #: The ``marketing_consent`` the decision was made under (None: not given).
    consent: bool | None
    #: The cart's lines, for an action triggered by a journey cart segment; else None.
    cart: list[CartLine] | None = None

    @property
    def topic(self) -> str:
        return f"actions.{self.channel}"

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class Decision(BaseModel):
    """The outcome for one action of one change, with the guard that decided it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Outcome
    reason: Reason
    customer_id: str
    action: str
    idempotency_key: str
    change_id: str
    decided_at: float
    experiment: str
    #: When a ``scheduled`` action comes due.
    due_at: float | None = None
    #: The message to send, for outcome ``send`` only.
    message: ActionMessage | None = None

    def assignment(self) -> Assignment | None:
        """The uplift record of a ``send`` (treated) or ``control`` decision."""
        if self.outcome not in ("send", "control"):
            return None
        group: Literal["treated", "control"] = "treated" if self.outcome == "send" else "control"
        return Assignment(self.customer_id, self.action, group, self.decided_at)


@dataclass(slots=True)
class Pending:
    """A scheduled action: the change that triggered it is kept for the re-check and message."""

    key: str
    action: str
    due_at: float
    change: SegmentChange

    def to_doc(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "action": self.action,
            "due_at": self.due_at,
            "change": self.change.model_dump(mode="json"),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Pending:
        change = SegmentChange.model_validate(doc["change"])
        return cls(str(doc["key"]), str(doc["action"]), float(doc["due_at"]), change)


@dataclass(slots=True)
class ActionState:
    """One customer's action history, small enough to live next to the segment state."""

    customer_id: str
    state_version: int = ACTION_STATE_VERSION
    #: action id -> time of its last send or control assignment (for the cooldown).
    last: dict[str, float] = field(default_factory=dict)
    #: channel -> times of sends and control assignments in the last 24 hours (for the cap).
    sent: dict[str, list[float]] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    #: Idempotency keys decided most recently, oldest first.
    keys: list[str] = field(default_factory=list)

    def copy(self) -> ActionState:
        return ActionState(
            self.customer_id,
            self.state_version,
            dict(self.last),
            {c: list(ts) for c, ts in self.sent.items()},
            [Pending(p.key, p.action, p.due_at, p.change) for p in self.pending],
            list(self.keys),
        )

    def to_doc(self) -> dict[str, Any]:
        """The stored form; empty fields are left out (docs/actions.md, "State")."""
        doc: dict[str, Any] = {"customer_id": self.customer_id, "state_version": self.state_version}
        if self.last:
            doc["last"] = dict(self.last)
        if self.sent:
            doc["sent"] = {c: list(ts) for c, ts in self.sent.items()}
        if self.pending:
            doc["pending"] = [p.to_doc() for p in self.pending]
        if self.keys:
            doc["keys"] = list(self.keys)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ActionState:
        version = int(doc.get("state_version", ACTION_STATE_VERSION))
        if version != ACTION_STATE_VERSION:
            raise ValueError(f"action state_version {version} is not {ACTION_STATE_VERSION}")
        return cls(
            customer_id=str(doc["customer_id"]),
            last={k: float(v) for k, v in doc.get("last", {}).items()},
            sent={c: [float(t) for t in ts] for c, ts in doc.get("sent", {}).items()},
            pending=[Pending.from_doc(p) for p in doc.get("pending", [])],
            keys=[str(k) for k in doc.get("keys", [])],
        )


def next_due(state: ActionState) -> float | None:
    """The earliest time :func:`due` has something to do (for the shell's due index)."""
    if not state.pending:  # most customers: no generator to set up
        return None
    return min(p.due_at for p in state.pending)


def _pruned(policy: Policy, state: ActionState, now: float) -> ActionState:
    """A copy without sends older than the cap window or cooldowns that have run out."""
    s = state.copy()
    s.sent = {c: [t for t in ts if now - t < DAY] for c, ts in s.sent.items()}
    s.sent = {c: ts for c, ts in s.sent.items() if ts}
    s.last = {
        a: t
        for a, t in s.last.items()
        if a in policy.actions and now - t < policy.actions[a].cooldown_s
    }
    return s


def _remember(state: ActionState, key: str) -> None:
    state.keys = [*[k for k in state.keys if k != key], key][-RECENT_KEYS:]


def _consent_block(policy: Policy, channel: str, consent: bool | None) -> Reason | None:
    if channel not in PERSONAL:
        return None
    if consent is False:
        return "no_consent"
    if consent is None and policy.require_consent:
        return "consent_missing"
    return None


def stale(spec: ActionSpec, since: float, wall: float) -> bool:
    """True when an action meant to go out at ``since`` is older than ``spec.max_age_s``
    at wall-clock time ``wall``.

    ``since`` is the change's ``changed_at`` when the action is decided at once, and the
    time it was scheduled for when the policy itself put it later (``delay_s``, quiet
    hours): the policy's own wait never makes an action stale, a late worker does.

    >>> from segmenters.policy import DEFAULT_POLICY as P
    >>> spec = P.actions["email/abandoned_cart"]
    >>> stale(spec, 0.0, wall=6 * 3600.0), stale(spec, 0.0, wall=6 * 3600.0 + 1)
    (False, True)
    """
    return wall - since > spec.max_age_s


def evidence_at(change: SegmentChange, last_seen: float | None) -> float:
    """The time whose age decides whether ``change`` is news: its ``changed_at``, except for
    a change of the rescoring sweep, which re-reads old behaviour against new statistics
    and is as old as the customer's last event (``last_seen``).

    >>> from segmenters.changes import SegmentChange
    >>> ch = SegmentChange.make(customer_id="c-1", dimension="rfm", previous=None,
    ...                         current="champions", at=1000.0, reason="r", position=1)
    >>> evidence_at(ch, 10.0), evidence_at(ch.model_copy(update={"rescored": True}), 10.0)
    (1000.0, 10.0)
    """
    at = change.changed_at.timestamp()
    if change.rescored and last_seen is not None:
        return min(at, last_seen)
    return at


def _gate(spec: ActionSpec, change: SegmentChange, since: float, wall: float) -> Reason | None:
    """The guards before all others: a change marked no-actions, and history."""
    if change.no_actions:
        return "replay"
    if stale(spec, since, wall):
        return "stale"
    return None


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
    for spec in policy.matching(change.dimension, change.previous, change.current):
        key = idempotency_key(change.change_id, spec.name, spec.channel)
        at = policy.send_at(spec.channel, now + spec.delay_s)
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
            reason: Reason = "delay" if at == now + spec.delay_s else "quiet_hours"
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
