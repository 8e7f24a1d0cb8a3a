"""What an action sends: idempotency keys, holdout draws, consent, cart lines, the message."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from segmenters.actions.policy import Channel
from segmenters.changes import SegmentChange

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
