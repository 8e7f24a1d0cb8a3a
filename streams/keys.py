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


def members_key(prefix: str, partition: int) -> str:
    """Every customer of one input partition (the rescoring sweep walks it)."""
    return f"{prefix}:customers:{partition}"


def model_key(prefix: str) -> str:
    """The latest behaviour-cluster snapshot (JSON, with its version)."""
    return f"{prefix}:model:behaviour"


def customer_keys(prefix: str, customer_id: str) -> list[str]:
    """Every per-customer key (for look-ups and erase)."""
    return [state_key(prefix, customer_id), outbox_key(prefix, customer_id)]
