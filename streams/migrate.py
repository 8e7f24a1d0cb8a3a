"""Move data written in the key layout before partition tags into the current one.

Before partition tags, a customer's keys were tagged ``{<customer_id>}`` and the segment
indexes, RFM histograms, progress and decision records were shared by all partitions
(docs/state_format.md, "Layout history"). A worker of this version does not read that
layout. ``segstream migrate-keys`` moves it, on the one redis-server that layout could
run on, with the workers stopped:

- each customer's own keys are renamed under its partition's tag (the documents are
  unchanged: the state format did not change);
- index sets, due indexes, member sets and uplift assignments are split by partition;
- the RFM histograms are counted again from the moved states, per partition;
- progress fields go to their partition's record; suppression counts, which carry no
  customer, go to partition 0's record (the report sums the partitions).

Running it again finds nothing left to move.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from segmenters.rfm import histogram_buckets
from segmenters.state import CustomerState

from .keys import (
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
    partition_for,
    rfm_key,
    state_key,
    suppressed_key,
    timers_key,
)
from .settings import Settings
from .store import load_doc

#: Old per-customer key suffixes -> the builder of the new key.
OWN: dict[str, Callable[[str, int, str], str]] = {
    "state": state_key,
    "outbox": outbox_key,
    "ids": ids_key,
    "actions": actions_key,
    "actions:outbox": actions_outbox_key,
}


class MigrateError(RuntimeError):
    pass


@dataclass
class Moved:
    customers: int = 0
    keys: int = 0
    #: Old shared keys split or recounted, by kind.
    shared: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.shared.items())) or "none"
        return f"{self.customers} customers ({self.keys} keys) moved; shared keys: {parts}"


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
    """Move the old layout under ``settings.key_prefix`` into the current one."""
    if settings.redis_cluster:
        raise MigrateError(
            "the layout before partition tags never ran on a Redis Cluster: nothing to move"
        )
    prefix, n = settings.key_prefix, settings.topic_partitions
    moved = Moved()

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
    old_rfm = [f"{prefix}:rfm:{h}" for h in ("recency", "frequency", "monetary")]
    if any(client.exists(k) for k in old_rfm):
        pipe = client.pipeline(transaction=False)
        for p in range(n):
            for h in ("recency", "frequency", "monetary"):
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
    echo(moved.summary())
    return moved


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
