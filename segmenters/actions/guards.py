"""The guards an action passes before it is sent, each with its reason."""

from __future__ import annotations

from segmenters.actions.decision import Reason
from segmenters.actions.policy import PERSONAL, ActionSpec, Policy
from segmenters.changes import SegmentChange


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

    >>> from segmenters.actions.policy import DEFAULT_POLICY as P
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
