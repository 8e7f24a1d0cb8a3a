"""Erase a customer: every Redis key and membership, in one atomic step, plus a tombstone.

What goes, in one Lua script:

- every per-customer key (``keys.customer_keys``: state, outbox, and whatever is added
  there later);
- the customer in every segment index of its partition: the sets named by its stored
  segments, and, to be safe, every set in the partition's index registry;
- the customer in its partition's member set and due indexes;
- its share of its partition's shared histograms (one buyer less in its RFM recency,
  frequency and monetary buckets and its value bucket, computed from the stored state
  as the worker computes them).

All these keys carry the hash tag of the customer's partition (streams/store/keys.py), so the
script touches one Redis Cluster slot.

The script runs only if the state's revision is still the one read (compare-and-set), so
a worker writing the customer at the same moment makes the erase read again, never leave
half a customer. A worker that still holds the customer in memory loses its next write
(the stored revision is gone) and starts from nothing: later events build a fresh profile.

Then a tombstone (key ``customer_id``, no value) goes to the compacted topic
``customers.erased``, for downstream services to erase their copies, and one to
``segments.features`` (compacted too), so the trainer forgets the customer's vector and
the topic's cleaner drops the vectors sent before. Workers read that
topic too (``register_erasures``): it has the input topics' key and partition count, so
Faust's co-partitioning hands partition *n* to the owner of input partition *n*, which
drops the customer from its memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmenters.contract import Erasure
from segmenters.effects import histogram_buckets
from segmenters.state import CustomerState
from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store import load_doc
from streams.store.keys import (
    ScriptKeys,
    actions_due_key,
    assigned_key,
    customer_keys,
    index_key,
    index_registry_key,
    members_key,
    rfm_key,
    state_key,
    timers_key,
)

log = logging.getLogger(__name__)

#: KEYS[1] is the state key; ARGV[1] the revision read ('' if none), ARGV[2] the customer
#: id, ARGV[3] the plan as JSON: lists of 1-based KEYS positions to delete (``del``),
#: to SREM the customer from (``srem``), to ZREM it from (``zrem``), and histogram
#: buckets to take one buyer from (``hist``: [position, bucket]).
#: Returns {1, keys deleted, sets left} or, if the state changed since it was read,
#: {0, current revision}.
ERASE_LUA = """
local rev = redis.call('HGET', KEYS[1], 'rev') or ''
if rev ~= ARGV[1] then return {0, rev} end
local plan = cjson.decode(ARGV[3])
local cid = ARGV[2]
local deleted, left = 0, 0
for _, i in ipairs(plan.del) do deleted = deleted + redis.call('DEL', KEYS[i]) end
for _, i in ipairs(plan.srem) do left = left + redis.call('SREM', KEYS[i], cid) end
for _, i in ipairs(plan.zrem) do left = left + redis.call('ZREM', KEYS[i], cid) end
for _, i in ipairs(plan.hdel or {}) do left = left + redis.call('HDEL', KEYS[i], cid) end
for _, h in ipairs(plan.hist) do
  local n = tonumber(redis.call('HGET', KEYS[h[1]], h[2]) or '0')
  if n > 1 then redis.call('HINCRBY', KEYS[h[1]], h[2], -1)
  elseif n == 1 then redis.call('HDEL', KEYS[h[1]], h[2]) end
end
return {1, deleted, left}
"""

MAX_ATTEMPTS = 10


class EraseConflict(RuntimeError):
    """The customer kept changing while being erased (should not happen in practice)."""


@dataclass(frozen=True)
class EraseResult:
    customer_id: str
    #: A stored state existed (False: nothing but stray memberships, if any, was removed).
    existed: bool
    #: Per-customer keys deleted.
    keys_deleted: int
    #: Index sets, member sets and timer indexes the customer was removed from.
    memberships_removed: int
    #: Histogram buckets taken one buyer from: (histogram, bucket).
    histograms: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "existed": self.existed,
            "keys_deleted": self.keys_deleted,
            "memberships_removed": self.memberships_removed,
            "histograms": [list(h) for h in self.histograms],
        }


@dataclass(frozen=True)
class Plan:
    keys: list[str]
    args: list[str | bytes]
    histograms: list[tuple[str, int]]


def plan_erase(
    prefix: str,
    customer_id: str,
    rev: str,
    doc: bytes | None,
    registry: list[str],
    partition: int,
    actions_doc: bytes | None = None,
) -> Plan:
    """The keys and arguments of one erase script call (pure: no Redis here)."""
    script_keys = ScriptKeys()
    keys, ref = script_keys.keys, script_keys.ref
    p = partition

    ref(state_key(prefix, p, customer_id))  # KEYS[1]
    raw: dict[str, Any] = {}
    state: CustomerState | None = None
    if doc:
        try:
            raw = load_doc(doc) or {}
            state = CustomerState.from_doc(dict(raw))
        except Exception:  # a corrupt document is still erased, just without histograms
            log.warning("erase %s: stored state unreadable; erasing the keys anyway", customer_id)
    delete = [ref(k) for k in customer_keys(prefix, p, customer_id)]
    sets = set(registry)
    for dimension, entry in (raw.get("segments") or {}).items():
        if isinstance(entry, list) and entry:
            sets.add(index_key(prefix, p, dimension, str(entry[0])))
    srem = [ref(k) for k in sorted(sets)] + [ref(members_key(prefix, p))]
    zrem = [ref(timers_key(prefix, p)), ref(actions_due_key(prefix, p))]
    hdel = []  # the customer's first assignments in the uplift records (docs/actions.md)
    try:
        first = dict(orjson.loads(actions_doc)).get("first", {}) if actions_doc else {}
        for experiment, assigned in first.items():
            hdel += [ref(assigned_key(prefix, p, experiment, a)) for a in sorted(assigned)]
    except Exception:  # an unreadable document is still deleted, with its records kept
        log.warning("erase %s: actions document unreadable; its records stay", customer_id)
    hist = sorted(histogram_buckets(state).items())
    plan = {
        "del": delete,
        "srem": srem,
        "zrem": zrem,
        "hdel": hdel,
        "hist": [[ref(rfm_key(prefix, p, h)), str(b)] for h, b in hist],
    }
    return Plan(keys, [rev, customer_id, orjson.dumps(plan)], hist)


def _decode(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _reads(client: Any, prefix: str, partition: int, customer_id: str) -> Any:
    pipe = client.pipeline(transaction=False)
    pipe.hmget(state_key(prefix, partition, customer_id), "rev", "doc")
    pipe.smembers(index_registry_key(prefix, partition))
    pipe.hget(state_key(prefix, partition, customer_id), "act")
    return pipe


def _result(customer_id: str, rev: str, reply: list[Any], plan: Plan) -> EraseResult:
    return EraseResult(
        customer_id=customer_id,
        existed=rev != "",
        keys_deleted=int(reply[1]),
        memberships_removed=int(reply[2]),
        histograms=plan.histograms if rev != "" else [],
    )


def erase_sync(client: Any, settings: Settings, customer_id: str) -> EraseResult:
    """Erase with a blocking redis-py client (the command line)."""
    prefix = settings.key_prefix
    p = partition_for(customer_id, settings.topic_partitions)
    for _ in range(MAX_ATTEMPTS):
        (rev_raw, doc), registry, actions = _reads(client, prefix, p, customer_id).execute()
        rev = _decode(rev_raw)
        registry_names = sorted(_decode(m) for m in registry)
        plan = plan_erase(prefix, customer_id, rev, doc, registry_names, p, actions)
        reply = client.eval(ERASE_LUA, len(plan.keys), *plan.keys, *plan.args)
        if int(reply[0]) == 1:
            return _result(customer_id, rev, reply, plan)
    raise EraseConflict(f"customer {customer_id!r} kept changing; erase not done, try again")


async def erase_async(client: Any, settings: Settings, customer_id: str) -> EraseResult:
    """Erase with an asyncio redis-py client (the worker's HTTP API)."""
    prefix = settings.key_prefix
    p = partition_for(customer_id, settings.topic_partitions)
    for _ in range(MAX_ATTEMPTS):
        (rev_raw, doc), registry, actions = await _reads(client, prefix, p, customer_id).execute()
        rev = _decode(rev_raw)
        registry_names = sorted(_decode(m) for m in registry)
        plan = plan_erase(prefix, customer_id, rev, doc, registry_names, p, actions)
        reply = await client.eval(ERASE_LUA, len(plan.keys), *plan.keys, *plan.args)
        if int(reply[0]) == 1:
            return _result(customer_id, rev, reply, plan)
    raise EraseConflict(f"customer {customer_id!r} kept changing; erase not done, try again")


def register_erasures(app: Any, settings: Settings, forget: Any) -> None:
    """An agent that drops erased customers from this worker's memory (``forget``)."""
    from streams.kafka.topics import ERASED

    topic = app.topic(
        settings.topic(ERASED),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    @app.agent(topic, name=f"{settings.app_id}.erasures", concurrency=1)
    async def erasures(stream: Any) -> None:
        async for event in stream.events():
            key = event.message.key
            if key and event.message.value is None:
                forget([key.decode(errors="replace")])


def publish_tombstone(settings: Settings, customer_id: str, timeout_s: float = 30.0) -> None:
    """Send the tombstones (``customers.erased``, and ``segments.features`` so the trainer
    and the compacted topic drop the customer's vectors) with a blocking producer."""
    from streams.kafka.clients import kafka_producer
    from streams.kafka.topics import TOMBSTONED

    producer = kafka_producer(
        settings,
        client_id=f"{settings.app_id}-erase",
        acks="all",
    )
    try:
        key = Erasure(customer_id=customer_id).key()
        sent = [producer.send(settings.topic(name), key=key, value=None) for name in TOMBSTONED]
        for future in sent:
            future.get(timeout=timeout_s)
    finally:
        producer.close()
