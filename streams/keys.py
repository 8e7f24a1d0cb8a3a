"""Redis key layout, in one place (documented in docs/state_format.md).

A customer's keys share the hash tag ``{<customer_id>}`` so they live in one Redis
Cluster slot and one Lua script can update them atomically.

>>> state_key("seg", "c-42")
'seg:{c-42}:state'
>>> index_key("seg", "journey", "loyal")
'seg:idx:journey:loyal'
"""

from __future__ import annotations


def state_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{{{customer_id}}}:state"


def outbox_key(prefix: str, customer_id: str) -> str:
    return f"{prefix}:{{{customer_id}}}:outbox"


def ids_key(prefix: str, customer_id: str) -> str:
    """Integer set of the digests of every event id applied (``state.id_number``), kept
    while the customer is active (see ``Settings.dedupe_retention_s``)."""
    return f"{prefix}:{{{customer_id}}}:ids"


def index_key(prefix: str, dimension: str, segment: str) -> str:
    return f"{prefix}:idx:{dimension}:{segment}"


def index_registry_key(prefix: str) -> str:
    """Set of every segment-index key in use (so sizes need no keyspace scan)."""
    return f"{prefix}:idx"


def sizes_key(prefix: str) -> str:
    """Stream of segment sizes over time: one entry a minute, field ``dim:segment``."""
    return f"{prefix}:sizes"


def flows_key(prefix: str, resolution: str, bucket: int) -> str:
    """Hash of segment flows in one time bucket: field ``dim\\x1fprevious\\x1fcurrent`` ->
    changes published. ``resolution`` is ``m`` (bucket = unix minute) or ``h`` (hour).

    >>> flows_key("seg", "m", 28000000)
    'seg:flows:m:28000000'
    """
    return f"{prefix}:flows:{resolution}:{bucket}"


def timers_key(prefix: str, partition: int) -> str:
    """Due index of one input partition: sorted set customer -> due event time."""
    return f"{prefix}:timers:{partition}"


def rfm_key(prefix: str, histogram: str) -> str:
    """Shared RFM histogram (bucket -> buyers): recency, frequency or monetary."""
    return f"{prefix}:rfm:{histogram}"


def clock_key(prefix: str) -> str:
    """Hash partition -> watermark (largest event time seen)."""
    return f"{prefix}:clock"


def applied_key(prefix: str) -> str:
    """Hash ``<topic>:<partition>`` -> last input offset applied (written with the state)."""
    return f"{prefix}:applied"


def members_key(prefix: str, partition: int) -> str:
    """Every customer of one input partition (the rescoring sweep walks it)."""
    return f"{prefix}:customers:{partition}"


def model_key(prefix: str) -> str:
    """The latest behaviour-cluster snapshot (JSON, with its version)."""
    return f"{prefix}:model:behaviour"


def actions_key(prefix: str, customer_id: str) -> str:
    """Hash of the actions service: ``rev`` and ``doc`` (action state, first assignments,
    purchases; docs/actions.md)."""
    return f"{prefix}:{{{customer_id}}}:actions"


def actions_outbox_key(prefix: str, customer_id: str) -> str:
    """Action messages written but not yet confirmed delivered."""
    return f"{prefix}:{{{customer_id}}}:actions:outbox"


def actions_due_key(prefix: str, partition: int) -> str:
    """Due index of delayed actions of one partition: customer -> due time."""
    return f"{prefix}:act:due:{partition}"


def actions_clock_key(prefix: str) -> str:
    """Hash partition -> latest ``changed_at`` the actions service has seen."""
    return f"{prefix}:act:clock"


def assigned_key(prefix: str, experiment: str, action: str) -> str:
    """Hash customer -> ``"<group> <at>"``: first assignment of each customer to an action."""
    return f"{prefix}:act:{experiment}:assigned:{action}"


def suppressed_key(prefix: str, experiment: str) -> str:
    """Hash ``"<action> <reason>"`` -> count of suppressed decisions."""
    return f"{prefix}:act:{experiment}:suppressed"


def experiment_actions_key(prefix: str, experiment: str) -> str:
    """Set of the action ids with decision records in an experiment (for the report)."""
    return f"{prefix}:act:{experiment}:actions"


def customer_keys(prefix: str, customer_id: str) -> list[str]:
    """Every per-customer key (for look-ups and erase)."""
    return [
        state_key(prefix, customer_id),
        outbox_key(prefix, customer_id),
        ids_key(prefix, customer_id),
        actions_key(prefix, customer_id),
        actions_outbox_key(prefix, customer_id),
    ]


class ScriptKeys:
    """The KEYS of one Lua call: each key listed once, referred to by its 1-based position.

    >>> k = ScriptKeys()
    >>> k.ref("a"), k.ref("b"), k.ref("a"), k.keys
    (1, 2, 1, ['a', 'b'])
    """

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._pos: dict[str, int] = {}

    def ref(self, key: str) -> int:
        if key not in self._pos:
            self.keys.append(key)
            self._pos[key] = len(self.keys)
        return self._pos[key]
