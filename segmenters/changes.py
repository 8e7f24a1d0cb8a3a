"""Segment changes: the engine's output contract v1 (topic ``segments.changes``).

``change_id`` names one change: it is a digest of the change's content (customer,
dimension, previous and current segment, ``changed_at``, reason) and of its position in
the customer's history of that dimension (the state counts the changes of each
dimension). Two different changes never share an id, even two that a rescoring sweep
computes at the same event time; the same change sent again, or computed again by a
replay of the same events, has the same id, so subscribers can de-duplicate on it.

>>> change_id("c-1", "journey", 1, None, "browser", 1767261600.0, "browsing")
'a8f07762f1fd4f9feaa759cf'
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from segmenters import ENGINE_VERSION


def change_id(
    customer_id: str,
    dimension: str,
    position: int,
    previous: str | None,
    current: str,
    changed_at: float,
    reason: str,
    rescored: bool = False,
) -> str:
    """The id of the ``position``-th change of ``dimension``: a digest of all it says.

    The tuple's ``repr`` keeps the parts apart (strings are quoted and escaped, so no
    separator can be forged by an id or a reason) and writes ``changed_at`` exactly; it
    costs half of ``json.dumps``, once per change. A change of the rescoring sweep
    (``rescored``) says so in its digest too.
    """
    parts = (customer_id, dimension, position, previous, current, changed_at, reason)
    raw = repr(parts + ("rescored",) if rescored else parts)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


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
    #: True when the change follows events replayed with ``segstream replay --no-actions``:
    #: the engine never acts on it (suppressed ``replay``), and subscribers should not.
    no_actions: bool = False
    #: True when the rescoring sweep made the change: the customer was re-evaluated against
    #: new population statistics or a new model, not moved by an event or a deadline of
    #: its own. Actions judge such a change's age by the customer's last event.
    rescored: bool = False

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
        position: int,
        rescored: bool = False,
    ) -> SegmentChange:
        """``position`` is the change's place in the customer's history of ``dimension``
        (1 for the first; ``CustomerState.positions``)."""
        # built from the engine's own typed values: no validation (a change per event in
        # a catch-up makes it measurable); ``test_changes`` checks against the validator
        values: dict[str, Any] = {
            "schema_version": 1,
            "change_id": change_id(
                customer_id, dimension, position, previous, current, at, reason, rescored
            ),
            "customer_id": customer_id,
            "dimension": dimension,
            "previous": previous,
            "current": current,
            "changed_at": datetime.fromtimestamp(at, UTC),
            "reason": reason,
            "engine_version": ENGINE_VERSION,
            "no_actions": False,
            "rescored": rescored,
        }
        if cls is not SegmentChange:
            return cls.model_construct(set(_MADE_FIELDS), **values)
        # what ``model_construct`` sets, without its generic per-field loop
        m = cls.__new__(cls)
        _set(m, "__dict__", values)
        _set(m, "__pydantic_fields_set__", set(_MADE_FIELDS))
        _set(m, "__pydantic_extra__", None)
        _set(m, "__pydantic_private__", None)
        return m


#: The fields ``make`` passes: ``model_fields_set`` of a change it makes.
_MADE_FIELDS = frozenset(
    ("change_id", "customer_id", "dimension", "previous", "current", "changed_at", "reason")
    + ("rescored",)
)
_set = object.__setattr__
