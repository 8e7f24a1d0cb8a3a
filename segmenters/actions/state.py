"""A customer's action state (scheduled actions, last sends, recent keys), and its upkeep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segmenters.actions.policy import DAY, Policy
from segmenters.changes import SegmentChange

ACTION_STATE_VERSION = 1
#: How many idempotency keys a state remembers, so a redelivered change is a ``duplicate``.
RECENT_KEYS = 16


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
