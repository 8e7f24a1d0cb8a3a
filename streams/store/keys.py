"""Redis key layout, in one place (documented in docs/state_format.md).

Every key a worker writes in a batch carries the hash tag of the customer's input
partition, ``{p<n>}``: a customer's own keys, and the segment indexes, histograms, timers,
members and progress of its partition. A batch's Lua call then touches one Redis Cluster
slot, so it is atomic on a cluster as on a single server, and a cluster spreads the work
by partition. A customer's partition is Kafka's default partitioner applied to its id
(``streams.kafka.partitioner``): events are keyed by ``customer_id``, so this is the partition they
arrive on, and a look-up by id finds the keys without asking Kafka.

>>> state_key("seg", 3, "c-42")
'seg:{p3}:c:c-42:state'
>>> index_key("seg", 3, "journey", "loyal")
'seg:{p3}:idx:journey:loyal'
"""

from __future__ import annotations


def shard(prefix: str, partition: int) -> str:
    """The head of every key of one input partition: its hash tag decides the slot."""
    return f"{prefix}:{{p{partition}}}"


def customer_head(prefix: str, partition: int) -> str:
    """What every per-customer key of a partition starts with: the key is this, the
    customer id and ``:state``, ``:outbox`` or ``:ids`` (one format per call, not per key).

    >>> customer_head("seg", 3) + "c-42:state" == state_key("seg", 3, "c-42")
    True
    """
    return f"{shard(prefix, partition)}:c:"


def state_key(prefix: str, partition: int, customer_id: str) -> str:
    return f"{shard(prefix, partition)}:c:{customer_id}:state"


def outbox_key(prefix: str, partition: int, customer_id: str) -> str:
    return f"{shard(prefix, partition)}:c:{customer_id}:outbox"


def ids_key(prefix: str, partition: int, customer_id: str) -> str:
    """Integer set of the digests of every event id applied (``state.id_number``), kept
    while the customer is active (see ``Settings.dedupe_retention_s``)."""
    return f"{shard(prefix, partition)}:c:{customer_id}:ids"


def customer_of(prefix: str, key: str) -> tuple[int, str] | None:
    """(partition, customer id) of a per-customer key, or None for any other key.

    >>> customer_of("seg", "seg:{p3}:c:c:42:state"), customer_of("seg", "seg:{p3}:timers")
    ((3, 'c:42'), None)
    """
    head = f"{prefix}:{{p"
    if not key.startswith(head):
        return None
    number, _, rest = key[len(head) :].partition("}:c:")
    cid, _, _suffix = rest.rpartition(":")
    if not number.isdigit() or not cid:
        return None
    return int(number), cid


def index_key(prefix: str, partition: int, dimension: str, segment: str) -> str:
    """Customers of one partition in a segment (a segment's size sums the partitions)."""
    return f"{shard(prefix, partition)}:idx:{dimension}:{segment}"


def index_registry_key(prefix: str, partition: int) -> str:
    """Set of every segment-index key of a partition in use (sizes need no key scan)."""
    return f"{shard(prefix, partition)}:idx"


def split_index_key(prefix: str, key: str) -> tuple[str, str]:
    """``<prefix>:{p<n>}:idx:<dimension>:<segment>`` -> (dimension, segment).

    A custom dimension holds one colon (``custom:<name>``, a name without one), any other
    dimension none; a segment may hold colons (an interest segment is a category name).

    >>> split_index_key("seg", "seg:{p12}:idx:custom:vip:member")
    ('custom:vip', 'member')
    >>> split_index_key("seg", "seg:{p0}:idx:geographic:DE/Bavaria")
    ('geographic', 'DE/Bavaria')
    >>> split_index_key("seg", "seg:{p0}:idx:interest:books:sci-fi")
    ('interest', 'books:sci-fi')
    """
    rest = key[len(prefix) + 1 :]
    rest = rest[rest.index("}:idx:") + len("}:idx:") :]
    dimension, _, segment = rest.partition(":")
    if dimension == "custom":
        name, _, segment = segment.partition(":")
        dimension = f"custom:{name}"
    return dimension, segment


def sizes_key(prefix: str) -> str:
    """Stream of segment sizes over time: one entry a minute, field ``dim:segment``."""
    return f"{prefix}:sizes"


def sizes_slot_key(prefix: str, slot: int) -> str:
    """Taken (``SET NX``) by the worker that records the sizes of one slot of
    ``SEGSTREAM_SIZES_EVERY_S`` wall-clock seconds: one record per slot per deployment."""
    return f"{prefix}:sizes:slot:{slot}"


def ops_key(prefix: str) -> str:
    """Stream of the workers' operating figures: every ``SEGSTREAM_HISTORY_EVERY_S`` one
    entry per worker (``segmenters.reports.OpsRecord``), trimmed by age.

    >>> ops_key("seg")
    'seg:ops'
    """
    return f"{prefix}:ops"


def entered_key(prefix: str) -> str:
    """Hash ``dim\\x1fsegment`` -> wall time of the segment's latest entry, and ``since``
    -> when the hash started being kept (the report's stale flag).

    >>> entered_key("seg")
    'seg:flows:entered'
    """
    return f"{prefix}:flows:entered"


def flows_key(prefix: str, resolution: str, bucket: int) -> str:
    """Hash of segment flows in one time bucket: field ``dim\\x1fprevious\\x1fcurrent`` ->
    changes published. ``resolution`` is ``m`` (bucket = unix minute) or ``h`` (hour).

    >>> flows_key("seg", "m", 28000000)
    'seg:flows:m:28000000'
    """
    return f"{prefix}:flows:{resolution}:{bucket}"


def timers_key(prefix: str, partition: int) -> str:
    """Due index of one input partition: sorted set customer -> due event time."""
    return f"{shard(prefix, partition)}:timers"


def rfm_key(prefix: str, partition: int, histogram: str) -> str:
    """A shared histogram of one partition (bucket -> buyers): RFM's recency, frequency or
    monetary, or the alive buyers' CLV (``value``). The population's is the sum over
    partitions."""
    return f"{shard(prefix, partition)}:rfm:{histogram}"


def clock_key(prefix: str) -> str:
    """Hash partition -> watermark (largest event time seen)."""
    return f"{prefix}:clock"


def clock_reset_key(prefix: str) -> str:
    """Hash partition -> the last ``segstream clock reset`` of it (JSON: ``id``,
    ``watermark``, ``at``); every worker adopts a reset it has not seen
    (streams/worker/clocks.py).

    >>> clock_reset_key("seg")
    'seg:clock:reset'
    """
    return f"{prefix}:clock:reset"


def applied_key(prefix: str, partition: int) -> str:
    """Hash ``<topic>:<partition>`` -> last input offset applied (written with the state)."""
    return f"{shard(prefix, partition)}:applied"


def members_key(prefix: str, partition: int) -> str:
    """Every customer of one input partition (the rescoring sweep walks it)."""
    return f"{shard(prefix, partition)}:customers"


def model_key(prefix: str) -> str:
    """The latest behaviour-cluster snapshot (JSON, with its version)."""
    return f"{prefix}:model:behaviour"


def clv_model_key(prefix: str) -> str:
    """The latest value-model snapshot (JSON ``segmenters.clv.ClvModel``, with its version).
    Hash-tagged with :func:`clv_version_key`, so one script writes both on a cluster."""
    return f"{prefix}:model:{{clv}}"


def clv_version_key(prefix: str) -> str:
    """The last value-model version handed out (``INCR``): each snapshot its own number."""
    return f"{prefix}:model:{{clv}}:version"


def redriven_key(prefix: str) -> str:
    """The ledger of ``segstream deadletters redrive``, which sends each dead letter back
    once: hash ``<dead-letter topic>:<partition>:<offset>`` -> JSON of the redrive, and
    ``msg:<digest>`` -> the dead letter id of each message sent.

    >>> redriven_key("seg")
    'seg:deadletters:redriven'
    """
    return f"{prefix}:deadletters:redriven"


def actions_key(prefix: str, partition: int, customer_id: str) -> str:
    """Hash ``rev``, ``doc`` of the actions agent before the one pipeline; the doc is now
    field ``act`` of ``state_key``. Only migrated (streams/store/migrate.py) and erased."""
    return f"{shard(prefix, partition)}:c:{customer_id}:actions"


def actions_outbox_key(prefix: str, partition: int, customer_id: str) -> str:
    """The actions agent's unsent messages before the one pipeline (now entries of
    ``outbox_key``). Only migrated (streams/store/migrate.py) and erased."""
    return f"{shard(prefix, partition)}:c:{customer_id}:actout"


def actions_due_key(prefix: str, partition: int) -> str:
    """The actions agent's due index before the one pipeline (delayed actions now share
    ``timers_key``). Only migrated (streams/store/migrate.py) and cleared by erase."""
    return f"{shard(prefix, partition)}:act:due"


def actions_applied_key(prefix: str, partition: int) -> str:
    """The actions agent's progress before the one pipeline (now all in ``applied_key``);
    deleted by ``segstream migrate-keys``."""
    return f"{shard(prefix, partition)}:act:applied"


def actions_clock_key(prefix: str) -> str:
    """The actions agent's clocks before the one pipeline (delayed actions now follow the
    partition clock, ``clock_key``); deleted by ``segstream migrate-keys``."""
    return f"{prefix}:act:clock"


def assigned_key(prefix: str, partition: int, experiment: str, action: str) -> str:
    """Hash customer -> ``"<group> <at>"``: first assignment of each customer of a
    partition to an action."""
    return f"{shard(prefix, partition)}:act:{experiment}:assigned:{action}"


def suppressed_key(prefix: str, partition: int, experiment: str) -> str:
    """Hash ``"<action> <reason>"`` -> count of suppressed decisions in a partition."""
    return f"{shard(prefix, partition)}:act:{experiment}:suppressed"


def experiment_actions_key(prefix: str, partition: int, experiment: str) -> str:
    """Set of the action ids with decision records in an experiment (for the report)."""
    return f"{shard(prefix, partition)}:act:{experiment}:actions"


def customer_keys(prefix: str, partition: int, customer_id: str) -> list[str]:
    """Every per-customer key (for look-ups and erase)."""
    return [
        state_key(prefix, partition, customer_id),
        outbox_key(prefix, partition, customer_id),
        ids_key(prefix, partition, customer_id),
        # Written by versions before the one pipeline (the action doc is now field
        # ``act`` of the state hash): erased too, should a deployment still hold them.
        actions_key(prefix, partition, customer_id),
        actions_outbox_key(prefix, partition, customer_id),
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
