"""Segment changes: the engine's output contract v1 (topic ``segments.changes``).

``change_id`` is derived from what caused the change, so a redelivered event yields
the same id again and subscribers can de-duplicate on it.

>>> change_id("c-1", "journey", "event:e-9")
'b19f0c9a0388182d3ceb98e8'
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from . import ENGINE_VERSION


def change_id(customer_id: str, dimension: str, cause: str) -> str:
    """A deterministic id for the change of ``dimension`` caused by ``cause``."""
    raw = f"{customer_id}\x1f{dimension}\x1f{cause}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


class SegmentChange(BaseModel):
    """One customer entering a new segment of one dimension."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    change_id: str
    customer_id: str
    dimension: str
    previous: str | None
    current: str
    changed_at: datetime
    reason: str
    engine_version: str = ENGINE_VERSION

    @classmethod
    def make(
        cls,
        *,
        customer_id: str,
        dimension: str,
        previous: str | None,
        current: str,
        at: float,
        reason: str,
        cause: str,
    ) -> SegmentChange:
        # built from the engine's own typed values: no validation (a change per event in
        # a catch-up makes it measurable); ``test_changes`` checks against the validator
        return cls.model_construct(
            change_id=change_id(customer_id, dimension, cause),
            customer_id=customer_id,
            dimension=dimension,
            previous=previous,
            current=current,
            changed_at=datetime.fromtimestamp(at, UTC),
            reason=reason,
        )
