"""What a decision says: its outcome, the guard's reason, and the uplift record it makes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from segmenters.actions.messages import ActionMessage
from segmenters.actions.uplift import Assignment

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
