"""Campaigns to current members: one action for everyone in a segment now.

A rule acts on transitions, so customers already in a segment never trigger it. A
campaign decides one action for each current member of ``dimension:segment`` through the
guards of a transition (consent, cooldown, frequency cap, holdout draw, quiet hours, max
age), recorded the same way. The "change" it acts on is the send request itself, made
at the wall clock ``now``: ``changed_at`` is ``now``, so ``max_age_s`` always passes;
``previous`` and ``current`` are both the segment (the customer is in it, nothing moved)
and ``reason`` is ``campaign <id>``. The action's ``delay_s`` (a wait after a transition)
does not apply; quiet hours do.

The change id is a digest of the campaign id and the customer only, so the idempotency
key (``idempotency_key(change_id, action, channel)``) is the same for (campaign,
customer, action) in every run: a second run of the same campaign finds the key among the
customer's recent keys and gives ``duplicate``.

>>> c = Campaign("spring", "email/win_back", "journey", "at_risk")
>>> from segmenters.actions.policy import DEFAULT_POLICY
>>> from segmenters.actions.state import ActionState
>>> noon = 1_767_268_800.0  # 2026-01-01 12:00 UTC, outside the default quiet hours
>>> st, [d] = plan_campaign(DEFAULT_POLICY, c, ActionState("c-1"), now=noon, consent=True)
>>> d.outcome, d.reason, d.message.change.reason
('send', 'sent', 'campaign spring')
>>> plan_campaign(DEFAULT_POLICY, c, st, now=noon + 60, consent=True)[1][0].reason
'duplicate'
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from segmenters.actions.decision import Decision
from segmenters.actions.messages import Feature
from segmenters.actions.plan import _plan_actions
from segmenters.actions.policy import Policy
from segmenters.actions.state import ActionState, _pruned
from segmenters.changes import SegmentChange
from segmenters.vocabulary import Vocabulary, did_you_mean


@dataclass(frozen=True, slots=True)
class Campaign:
    """Send ``action`` (an action id, ``channel/name``) to the members of
    ``dimension:segment``; ``id`` makes its idempotency keys."""

    id: str
    action: str
    dimension: str
    segment: str


def default_campaign_id(action: str, dimension: str, segment: str, day: str) -> str:
    """The campaign id when none is given: a digest of the action, the segment and the
    UTC date (``YYYY-MM-DD``), so the same send repeated on the same day is one campaign.

    >>> default_campaign_id("email/win_back", "journey", "at_risk", "2026-12-07")
    'c6e95d2dc416d6cd'
    """
    raw = f"{action}\x1f{dimension}\x1f{segment}\x1f{day}".encode()
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


def campaign_change_id(campaign_id: str, customer_id: str) -> str:
    """The change id of a campaign's send request to one customer: fixed by the two.

    >>> campaign_change_id("spring", "c-1") == campaign_change_id("spring", "c-1")
    True
    """
    raw = f"campaign\x1f{campaign_id}\x1f{customer_id}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def campaign_change(campaign: Campaign, customer_id: str, at: float) -> SegmentChange:
    """The change a campaign's message carries: the send request at ``at``."""
    return SegmentChange(
        change_id=campaign_change_id(campaign.id, customer_id),
        customer_id=customer_id,
        dimension=campaign.dimension,
        previous=campaign.segment,
        current=campaign.segment,
        changed_at=datetime.fromtimestamp(at, UTC),
        reason=f"campaign {campaign.id}",
    )


def plan_campaign(
    policy: Policy,
    campaign: Campaign,
    state: ActionState,
    *,
    now: float,
    consent: bool | None,
    features: Mapping[str, Feature] | None = None,
    cart: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[ActionState, list[Decision]]:
    """Decide the campaign's action for the customer of ``state`` at the wall clock
    ``now``, as :func:`~segmenters.actions.plan.plan` decides a transition's (the same
    guards, in the same order); ``state`` is not modified. The caller checks that the
    customer is still a member; the action must be in ``policy``."""
    spec = policy.actions[campaign.action]
    s = _pruned(policy, state, now)
    change = campaign_change(campaign, state.customer_id, now)
    decisions = _plan_actions(
        policy,
        [spec],
        change,
        s,
        now=now,
        consent=consent,
        features=features,
        cart=cart,
        wall=now,
        since=now,
        delay=False,
    )
    return s, decisions


def parse_target(text: str, vocabulary: Vocabulary) -> tuple[str, str]:
    """``DIMENSION:SEGMENT`` as (dimension, segment), checked against ``vocabulary``;
    raises ValueError with a "did you mean". A custom dimension has a colon of its own
    (``custom:big_spenders:member``): the segment follows the last one.

    >>> v = Vocabulary(clusters=6, custom=frozenset({"vip"}))
    >>> parse_target("journey:at_risk", v), parse_target("custom:vip:member", v)
    (('journey', 'at_risk'), ('custom:vip', 'member'))
    >>> parse_target("journey:at_rsk", v)
    Traceback (most recent call last):
    ...
    ValueError: unknown segment 'at_rsk' for journey (did you mean 'at_risk'?)
    """
    dimension, colon, segment = text.rpartition(":")
    if not colon or not dimension or not segment:
        raise ValueError(f"{text!r} is not DIMENSION:SEGMENT (e.g. 'journey:at_risk')")
    error = vocabulary.dimension_error(dimension) or vocabulary.segment_error(dimension, segment)
    if error is not None:
        raise ValueError(error)
    return dimension, segment


def action_error(policy: Policy, action: str) -> str | None:
    """Why ``action`` (``channel/name``) is not one the policy can send, or None.

    >>> from segmenters.actions.policy import DEFAULT_POLICY
    >>> action_error(DEFAULT_POLICY, "email/winback")
    "unknown action 'email/winback' (did you mean 'email/win_back'?)"
    """
    if action in policy.actions:
        return None
    known = sorted(policy.actions)
    hint = did_you_mean(action, known) or f" (the policy has: {', '.join(known) or 'none'})"
    return f"unknown action {action!r}{hint}"
