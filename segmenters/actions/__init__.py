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

Modules: ``decision`` (outcomes and reasons), ``messages`` (keys, draws, consent, the
message), ``state`` (a customer's action state), ``guards``, ``plan`` (``plan`` and ``due``),
``campaign`` (one action for the current members of a segment, through ``plan``'s guards).

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

from segmenters.actions.decision import Decision, Outcome, Reason
from segmenters.actions.guards import evidence_at, stale
from segmenters.actions.messages import (
    CART_SEGMENTS,
    ActionMessage,
    CartLine,
    Feature,
    cart_lines,
    consent_of,
    holdout_draw,
    idempotency_key,
)
from segmenters.actions.plan import due, plan
from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.actions.state import (
    ACTION_STATE_VERSION,
    RECENT_KEYS,
    ActionState,
    Pending,
    next_due,
)

__all__ = [
    "ACTION_STATE_VERSION",
    "CART_SEGMENTS",
    "DEFAULT_POLICY",
    "RECENT_KEYS",
    "ActionMessage",
    "ActionState",
    "CartLine",
    "Decision",
    "Feature",
    "Outcome",
    "Pending",
    "Reason",
    "cart_lines",
    "consent_of",
    "due",
    "evidence_at",
    "holdout_draw",
    "idempotency_key",
    "next_due",
    "plan",
    "stale",
]
