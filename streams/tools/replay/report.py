"""What a replay says: the summary at its end, and before sending, what the target
deployment's retention policy will do about the replayed events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from segmenters.actions.policy import DAY, Policy
from streams.tools.replay.common import iso


@dataclass
class ReplayStats:
    """What :func:`replay` read and sent."""

    file: str = ""
    format: str = ""
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    events: int = 0  # delivered
    failed: int = 0
    not_sent: int = 0  # beyond --limit or after Ctrl-C
    after_until: int = 0  # dated after --until
    until: str | None = None
    first_at: str | None = None
    last_at: str | None = None
    read_s: float = 0.0
    elapsed_s: float = 0.0
    interrupted: bool = False


def render(stats: ReplayStats) -> str:
    """The summary printed at the end of a replay."""
    sending_s = stats.elapsed_s - stats.read_s
    rate = stats.events / sending_s if sending_s > 0 else 0.0
    by_type = ", ".join(f"{t} {n}" for t, n in sorted(stats.by_type.items(), key=lambda x: -x[1]))
    out = [
        f"replayed {stats.file} ({stats.format})",
        f"  rows read        {stats.rows}",
        f"  events produced  {stats.events} ({by_type or 'none'})",
    ]
    if stats.first_at:
        out.append(f"  event time       {stats.first_at} .. {stats.last_at}")
    if stats.failed:
        out.append(f"  not delivered    {stats.failed}")
    if stats.until is not None:
        out.append(f"  after --until    {stats.after_until} (dated after {stats.until})")
    if stats.not_sent:
        why = "interrupted" if stats.interrupted else "beyond --limit"
        out.append(f"  not sent         {stats.not_sent} ({why})")
    skipped = sum(stats.skipped.values())
    out.append(f"  rows skipped     {skipped}")
    for reason, n in sorted(stats.skipped.items(), key=lambda x: (-x[1], x[0])):
        out.append(f"    {n:>9}  {reason}")
    if stats.notes:
        out.append("  notes")
        for note, n in sorted(stats.notes.items(), key=lambda x: (-x[1], x[0])):
            out.append(f"    {n:>9}  {note}")
    out.append(
        f"  seconds          {stats.elapsed_s:.1f} (reading and mapping {stats.read_s:.1f}, "
        f"sending {sending_s:.1f} at {rate:,.0f} events/s)"
    )
    return "\n".join(out)


def _age(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds < 2 * DAY else f"{seconds / DAY:g} days"


def actions_notice(
    policy: Policy | None, *, wall: float, no_actions: bool, times: list[float]
) -> str:
    """What the target deployment will do about the replayed events, said before sending.

    ``policy``: the deployment's retention policy (None: its actions agent is off);
    ``times``: the ``occurred_at`` of the events to send (epoch seconds).

    >>> from segmenters.actions.policy import DEFAULT_POLICY
    >>> print(actions_notice(DEFAULT_POLICY, wall=100 * DAY, no_actions=False,
    ...                      times=[0.0, 99.9 * DAY]))  # doctest: +NORMALIZE_WHITESPACE
    actions: this deployment's policy (version 2026-11-24.1) sends ads/reactivation,
      ads/win_back, email/abandoned_cart, email/vip_offer, email/win_back, but only for
      segment changes recent by the wall clock; older ones are suppressed `stale`:
      email/abandoned_cart (max age 6 h): changes dated before 1970-04-10T18:00:00Z;
        1 of 2 events to send are newer
      ads/reactivation, ads/win_back, email/vip_offer, email/win_back (max age 24 h):
        changes dated before 1970-04-10T00:00:00Z; 1 of 2 events to send are newer
      (timers fire later than the events: at_risk comes 30 days after the last order)
      --no-actions: act on none of them
    >>> actions_notice(DEFAULT_POLICY, wall=0.0, no_actions=True, times=[])[:60]
    'actions: replayed events are marked no-actions (Kafka header'
    """
    if no_actions:
        return (
            "actions: replayed events are marked no-actions (Kafka header "
            "segstream-no-actions: 1): the worker segments them and never acts on the "
            "changes they cause (suppressed `replay`)"
        )
    if policy is None:
        return "actions: this deployment runs no actions agent (SEGSTREAM_ACTIONS_ENABLED=false)"
    used = sorted({a for rule in policy.rules for a in rule.actions})
    if not used:
        return f"actions: this deployment's policy (version {policy.version}) has no rules"
    by_age: dict[float, list[str]] = {}
    for a in used:
        by_age.setdefault(policy.actions[a].max_age_s, []).append(a)
    out = [
        f"actions: this deployment's policy (version {policy.version}) sends "
        f"{', '.join(used)}, but only for segment changes recent by the wall clock; older "
        "ones are suppressed `stale`:"
    ]
    for age, ids in sorted(by_age.items()):
        cutoff = wall - age
        newer = sum(1 for t in times if t >= cutoff)
        when = iso(datetime.fromtimestamp(cutoff, UTC))
        out.append(
            f"  {', '.join(ids)} (max age {_age(age)}): changes dated before {when}; "
            f"{newer} of {len(times)} events to send are newer"
        )
    out.append("  (timers fire later than the events: at_risk comes 30 days after the last order)")
    out.append("  --no-actions: act on none of them")
    return "\n".join(out)
