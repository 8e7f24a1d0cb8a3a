"""Move data written in older key layouts into the current one (``segstream migrate-keys``,
with the workers stopped; docs/state_format.md, "Layout history"). Two steps, in order.

Before partition tags, a customer's keys were tagged ``{<customer_id>}`` and the segment
indexes, RFM histograms, progress and decision records were shared by all partitions.
A worker of this version does not read that layout. The first step moves it, on the one
redis-server that layout could run on (skipped on a Redis Cluster):

- each customer's own keys are renamed under its partition's tag (the documents are
  unchanged: the state format did not change);
- index sets, due indexes, member sets and uplift assignments are split by partition;
- the RFM histograms are counted again from the moved states, per partition;
- progress fields go to their partition's record; suppression counts, which carry no
  customer, go to partition 0's record (the report sums the partitions).

Before the one pipeline, a separate actions agent kept each customer's action doc in
``...:actions``, its unsent messages in ``...:actout``, delayed actions in ``<p>:act:due``,
its progress in ``<p>:act:applied`` and its clock in ``<prefix>:act:clock``. The pipeline
reads none of them: the second step (``migrate_actions``) moves, customer by customer in
one Lua call, the doc into field ``act`` of the state hash, the unsent messages into the
outbox and the due time into the timer index, then deletes the old keys.

Running it again finds nothing left to move.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from segmenters.effects import HISTOGRAMS, histogram_buckets
from segmenters.state import CustomerState
from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store import load_doc
from streams.store.keys import (
    actions_applied_key,
    actions_clock_key,
    actions_due_key,
    actions_key,
    actions_outbox_key,
    applied_key,
    assigned_key,
    customer_of,
    experiment_actions_key,
    ids_key,
    index_key,
    index_registry_key,
    members_key,
    outbox_key,
    rfm_key,
    state_key,
    suppressed_key,
    timers_key,
)

log = logging.getLogger(__name__)

#: Old per-customer key suffixes -> the builder of the new key.
OWN: dict[str, Callable[[str, int, str], str]] = {
    "state": state_key,
    "outbox": outbox_key,
    "ids": ids_key,
    "actions": actions_key,
    "actions:outbox": actions_outbox_key,
}


class MigrateError(RuntimeError):
    """A migration that cannot run; the message says why."""


@dataclass
class Moved:
    customers: int = 0
    keys: int = 0
    #: Old shared keys split or recounted, by kind.
    shared: Counter[str] = field(default_factory=Counter)
    #: What the actions agent left, moved into the pipeline's keys (``migrate_actions``).
    actions: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.shared.items())) or "none"
        acts = ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items())) or "none"
        return (
            f"{self.customers} customers ({self.keys} keys) moved; shared keys: {parts}; "
            f"actions: {acts}"
        )


def old_customer_key(prefix: str, key: str) -> tuple[str, str] | None:
    """(customer id, suffix) of an old-layout per-customer key, else None.

    >>> old_customer_key("seg", "seg:{c-1}:actions:outbox")
    ('c-1', 'actions:outbox')
    >>> old_customer_key("seg", "seg:{p3}:c:c-1:state") is None
    True
    """
    head = f"{prefix}:{{"
    if not key.startswith(head):
        return None
    cid, sep, suffix = key[len(head) :].partition("}:")
    if not sep or suffix not in OWN or not cid:
        return None
    return cid, suffix


def migrate_layout(client: Any, settings: Settings, echo: Callable[[str], None] = print) -> Moved:
    """Move the older layouts under ``settings.key_prefix`` into the current one: the
    layout before partition tags (never on a Redis Cluster), then the actions agent's keys."""
    moved = Moved()
    if not settings.redis_cluster:
        _move_untagged(client, settings, moved)
    migrate_actions(client, settings, moved)
    echo(moved.summary())
    return moved


def _move_untagged(client: Any, settings: Settings, moved: Moved) -> None:
    """The layout before partition tags, moved under the partitions' tags."""
    prefix, n = settings.key_prefix, settings.topic_partitions

    def home(cid: str) -> int:
        return partition_for(cid, n)

    def scan(pattern: str) -> Iterator[str]:
        for raw in client.scan_iter(match=pattern, count=1000):
            yield raw.decode() if isinstance(raw, bytes) else raw

    # 1. Every customer's own keys, renamed under the partition tag.
    customers: set[str] = set()
    for key in list(scan(f"{prefix}:{{*}}:*")):
        found = old_customer_key(prefix, key)
        if found is None:
            continue
        cid, suffix = found
        client.rename(key, OWN[suffix](prefix, home(cid), cid))
        customers.add(cid)
        moved.keys += 1
    moved.customers = len(customers)

    # 2. The RFM histograms, counted again from the moved states, per partition.
    old_rfm = [f"{prefix}:rfm:{h}" for h in HISTOGRAMS]
    if any(client.exists(k) for k in old_rfm):
        pipe = client.pipeline(transaction=False)
        for p in range(n):
            for h in HISTOGRAMS:
                pipe.delete(rfm_key(prefix, p, h))
        for cid in sorted(_all_customers(client, prefix, n)):
            doc = load_doc(client.hget(state_key(prefix, home(cid), cid), "doc"))
            if doc:
                for h, bucket in histogram_buckets(CustomerState.from_doc(doc)).items():
                    pipe.hincrby(rfm_key(prefix, home(cid), h), str(bucket), 1)
        pipe.delete(*old_rfm)
        pipe.execute()
        moved.shared["rfm histograms"] += 3

    # 3. Segment indexes, split by partition.
    registry = f"{prefix}:idx"
    for name in sorted(_text(m) for m in client.smembers(registry)):
        dimension, _, segment = name[len(prefix) + len(":idx:") :].rpartition(":")
        pipe = client.pipeline(transaction=False)
        for cid in (_text(m) for m in client.smembers(name)):
            p = home(cid)
            pipe.sadd(index_key(prefix, p, dimension, segment), cid)
            pipe.sadd(index_registry_key(prefix, p), index_key(prefix, p, dimension, segment))
        pipe.delete(name)
        pipe.execute()
        moved.shared["segment indexes"] += 1
    client.delete(registry)

    # 4. Per-partition sets whose name changed: timers, members, delayed actions.
    renamed: list[tuple[str, Callable[[str, int], str], str]] = [
        ("timers", timers_key, "zset"),
        ("customers", members_key, "set"),
        ("act:due", actions_due_key, "zset"),
    ]
    for what, new_key, kind in renamed:
        pattern = f"{prefix}:{what}:*"
        for key in list(scan(pattern)):
            if not key.rpartition(":")[2].isdigit():
                continue
            pipe = client.pipeline(transaction=False)
            if kind == "zset":
                for cid, score in client.zrange(key, 0, -1, withscores=True):
                    pipe.zadd(new_key(prefix, home(_text(cid))), {_text(cid): score})
            else:
                for cid in client.smembers(key):
                    pipe.sadd(new_key(prefix, home(_text(cid))), _text(cid))
            pipe.delete(key)
            pipe.execute()
            moved.shared[what] += 1

    # 5. Progress: "<topic>:<partition>" fields to their partition's record.
    old_applied = f"{prefix}:applied"
    progress = client.hgetall(old_applied)
    if progress:
        pipe = client.pipeline(transaction=False)
        for f, offset in progress.items():
            f = _text(f)
            pipe.hset(applied_key(prefix, int(f.rpartition(":")[2])), f, offset)
        pipe.delete(old_applied)
        pipe.execute()
        moved.shared["progress"] += 1

    # 6. The uplift report's decision records.
    for key in list(scan(f"{prefix}:act:*")):
        rest = key[len(prefix) + len(":act:") :]
        experiment, _, kind = rest.partition(":")
        if kind.startswith("assigned:"):
            action = kind[len("assigned:") :]
            pipe = client.pipeline(transaction=False)
            for cid, value in client.hgetall(key).items():
                p = home(_text(cid))
                pipe.hset(assigned_key(prefix, p, experiment, action), _text(cid), value)
                pipe.sadd(experiment_actions_key(prefix, p, experiment), action)
            pipe.delete(key)
            pipe.execute()
            moved.shared["assignments"] += 1
        elif kind == "suppressed":
            pipe = client.pipeline(transaction=False)
            for what, count in client.hgetall(key).items():
                pipe.hincrby(suppressed_key(prefix, 0, experiment), _text(what), int(count))
            pipe.delete(key)
            pipe.execute()
            moved.shared["suppressions"] += 1
        elif kind == "actions":
            for action in client.smembers(key):
                client.sadd(experiment_actions_key(prefix, 0, experiment), action)
            client.delete(key)


#: One customer's action keys into the pipeline's, atomically (all in its partition's
#: slot). KEYS: old action hash, old unsent messages, state hash, outbox, timer index, old
#: due index; ARGV: customer id, outbox expiry (seconds, as the commit script sets it).
#: The doc goes into ``act`` only where a state exists and has none (the pipeline's own
#: wins); ``rev`` moves on so a cached copy of the state loses its compare-and-set. The
#: due time joins the timer index only with a moved doc: a timer without a state would
#: never be cleared. Returns {status, messages moved, timer set}.
MOVE_ACTIONS_LUA = """
local doc = redis.call('HGET', KEYS[1], 'doc')
local status = 'none'
if doc and doc ~= '' then
  if redis.call('EXISTS', KEYS[3]) == 0 then status = 'orphan'
  elseif redis.call('HSETNX', KEYS[3], 'act', doc) == 1 then
    redis.call('HINCRBY', KEYS[3], 'rev', 1)
    status = 'moved'
  else status = 'kept' end
end
local unsent = redis.call('LRANGE', KEYS[2], 0, -1)
for _, entry in ipairs(unsent) do redis.call('RPUSH', KEYS[4], entry) end
if #unsent > 0 and redis.call('TTL', KEYS[4]) < 0 then
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
local timed = 0
local due = redis.call('ZSCORE', KEYS[6], ARGV[1])
if due and status == 'moved' then
  redis.call('ZADD', KEYS[5], 'LT', due, ARGV[1])
  timed = 1
end
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('DEL', KEYS[1], KEYS[2])
return {status, #unsent, timed}
"""
#: Seconds an outbox is kept (as ``store.COMMIT_LUA`` sets it).
OUTBOX_TTL_S = 86400
#: Customers moved per pipelined round trip.
MOVE_CHUNK = 500
#: Summary names of the statuses ``MOVE_ACTIONS_LUA`` returns.
STATUS = {
    "moved": "docs moved",
    "kept": "docs kept (state had one)",
    "orphan": "docs dropped (no state)",
}


def migrate_actions(client: Any, settings: Settings, moved: Moved) -> None:
    """Move what the actions agent left into the pipeline's keys, count it in
    ``moved.actions``, and delete its progress records and clock."""
    prefix, n = settings.key_prefix, settings.topic_partitions
    customers: set[tuple[int, str]] = set()
    for suffix in ("actions", "actout"):
        for raw in client.scan_iter(match=f"{prefix}:{{p*}}:c:*:{suffix}", count=1000):
            key = _text(raw)
            owner = customer_of(prefix, key)
            if owner is not None and key == _old_key(suffix, prefix, *owner):
                customers.add(owner)
    for p in range(n):
        for cid in client.zrange(actions_due_key(prefix, p), 0, -1):
            customers.add((p, _text(cid)))
    todo = sorted(customers)
    for start in range(0, len(todo), MOVE_CHUNK):
        chunk = todo[start : start + MOVE_CHUNK]
        # redis-py's cluster pipeline has no EVAL: on a cluster, one call per customer.
        pipe = client if settings.redis_cluster else client.pipeline(transaction=False)
        replies = []
        for p, cid in chunk:
            replies.append(
                pipe.eval(
                    MOVE_ACTIONS_LUA,
                    6,
                    actions_key(prefix, p, cid),
                    actions_outbox_key(prefix, p, cid),
                    state_key(prefix, p, cid),
                    outbox_key(prefix, p, cid),
                    timers_key(prefix, p),
                    actions_due_key(prefix, p),
                    cid,
                    OUTBOX_TTL_S,
                )
            )
        if not settings.redis_cluster:
            replies = pipe.execute()
        for (_p, cid), (status, messages, timed) in zip(chunk, replies, strict=True):
            status = _text(status)
            if status == "orphan":
                log.warning("action doc of %s dropped: the customer has no state", cid)
            if status in STATUS:
                moved.actions[STATUS[status]] += 1
            moved.actions["messages moved"] += int(messages)
            moved.actions["timers set"] += int(timed)
    for p in range(n):  # one key per call: each partition is its own cluster slot
        client.delete(actions_due_key(prefix, p))  # emptied above: nothing should be left
        moved.actions["progress records deleted"] += client.delete(actions_applied_key(prefix, p))
    moved.actions["clocks deleted"] += client.delete(actions_clock_key(prefix))
    moved.actions += Counter()  # drop the zero counts


def _old_key(suffix: str, prefix: str, partition: int, customer_id: str) -> str:
    build = actions_key if suffix == "actions" else actions_outbox_key
    return build(prefix, partition, customer_id)


def _all_customers(client: Any, prefix: str, partitions: int) -> set[str]:
    """Every customer with a state in the current layout."""
    out: set[str] = set()
    for key in client.scan_iter(match=f"{prefix}:{{p*}}:c:*:state", count=1000):
        owner = customer_of(prefix, _text(key))
        if owner is not None:
            out.add(owner[1])
    return out


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
