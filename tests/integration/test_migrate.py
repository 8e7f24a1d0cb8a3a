"""``segstream migrate-keys``: data of the older layouts (before partition tags; the
actions agent's keys before the one pipeline), moved into the current one, reads back
the same through the current readers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import orjson

from segmenters.actions import ActionState
from segmenters.actions.document import ActionDoc
from segmenters.actions.policy import DEFAULT_POLICY_TEXT, load_policy
from segmenters.dimensions.rfm import histogram_buckets
from segmenters.state import CustomerState
from streams.kafka.partitioner import partition_for
from streams.settings import Settings
from streams.store import Loaded, StateStore, _encode, segment_sizes
from streams.store.clients import async_redis_client, redis_client
from streams.store.keys import (
    actions_applied_key,
    actions_clock_key,
    actions_due_key,
    actions_key,
    actions_outbox_key,
    applied_key,
    assigned_key,
    ids_key,
    outbox_key,
    state_key,
    timers_key,
)
from streams.store.migrate import migrate_layout
from streams.worker.actions import report_data

PARTITIONS = 4


def state(cid: str, n: int) -> CustomerState:
    return CustomerState.from_doc(
        {
            "customer_id": cid,
            "state_version": 2,
            "first_seen": 1767261600.0,
            "last_seen": 1767261660.0 + n,
            "events": 2 + n,
            "orders": 1 + n % 3,
            "revenue": 10.0 * (n + 1),
            "items": 1 + n,
            "first_order_at": 1767261660.0,
            "last_order_at": 1767261660.0 + 3600 * n,
            "segments": {"journey": ["first_time_buyer", 1767261660.0]},
        }
    )


def write_old_layout(client: Any, p: str, customers: list[str]) -> dict[str, CustomerState]:
    """What a worker before partition tags left in Redis (key names as it built them)."""
    states = {cid: state(cid, i) for i, cid in enumerate(customers)}
    pipe = client.pipeline(transaction=False)
    for cid, s in states.items():
        home = partition_for(cid, PARTITIONS)
        pipe.hset(f"{p}:{{{cid}}}:state", mapping={"doc": _encode(s), "rev": 3})
        pipe.sadd(f"{p}:{{{cid}}}:ids", 11, 12)
        pipe.rpush(f"{p}:{{{cid}}}:outbox", b'{"change":{}}')
        pipe.hset(f"{p}:{{{cid}}}:actions", mapping={"doc": b"{}", "rev": 1})
        pipe.sadd(f"{p}:idx:journey:first_time_buyer", cid)
        pipe.zadd(f"{p}:timers:{home}", {cid: 1767300000.0})
        pipe.sadd(f"{p}:customers:{home}", cid)
        pipe.zadd(f"{p}:act:due:{home}", {cid: 1767400000.0})
        pipe.hset(f"{p}:act:exp-1:assigned:email/win_back", cid, "treated 1767261660.0")
    pipe.sadd(f"{p}:idx", f"{p}:idx:journey:first_time_buyer")
    pipe.hset(f"{p}:rfm:recency", "0", 999)  # stale: recounted from the states
    pipe.hset(f"{p}:applied", mapping={"events.cart:1": 41, "events.browse:3": 97})
    pipe.hset(f"{p}:act:exp-1:suppressed", "email/win_back cooldown", 3)
    pipe.sadd(f"{p}:act:exp-1:actions", "email/win_back")
    pipe.hset(f"{p}:act:clock", "0", "1767261660.0")
    pipe.execute()
    return states


def test_the_old_layout_moves_and_reads_back(services: Settings) -> None:
    prefix = "mig" + uuid.uuid4().hex[:6]
    settings = services.model_copy(update={"key_prefix": prefix, "topic_partitions": PARTITIONS})
    client = redis_client(settings)
    if settings.redis_cluster:  # that layout never ran on a cluster: the step is left out
        lines: list[str] = []
        moved = migrate_layout(client, settings, echo=lines.append)
        assert (moved.customers, moved.keys, sum(moved.shared.values())) == (0, 0, 0)
        assert lines == [moved.summary()]
        return
    customers = [f"c-mig-{i}" for i in range(12)]
    try:
        states = write_old_layout(client, prefix, customers)
        lines: list[str] = []
        moved = migrate_layout(client, settings, echo=lines.append)
        assert moved.customers == 12 and moved.keys == 12 * 4  # state, ids, outbox, actions
        assert lines == [moved.summary()]

        names = [k.decode() for k in client.scan_iter(match=f"{prefix}:*")]
        assert all("{p" in k for k in names), sorted(names)[:20]
        assert not [
            k
            for k in names
            if k.endswith((":act:due", ":act:clock")) or ":c:" in k and k.endswith(":actions")
        ]

        for cid, s in states.items():
            home = partition_for(cid, PARTITIONS)
            raw = client.hget(state_key(prefix, home, cid), "doc")
            assert CustomerState.from_doc(orjson.loads(_decompress(raw))) == s
            assert client.smembers(ids_key(prefix, home, cid)) == {b"11", b"12"}
            assert client.llen(outbox_key(prefix, home, cid)) == 1
            # The action doc went on into the state hash, its due time into the timers.
            assert client.hmget(state_key(prefix, home, cid), "act", "rev") == [b"{}", b"4"]
            assert not client.exists(actions_key(prefix, home, cid))
            assert client.zscore(timers_key(prefix, home), cid) == 1767300000.0

        async def read() -> tuple[dict[Any, int], dict[str, dict[int, int]], dict[str, int]]:
            aclient = async_redis_client(settings)
            store = StateStore(aclient, prefix=prefix, partitions=PARTITIONS, cache_size=0)
            try:
                return (
                    await segment_sizes(aclient, prefix, PARTITIONS),
                    await store.rfm_counts(),
                    await store.applied_offsets(),
                )
            finally:
                await aclient.aclose()

        sizes, rfm, applied = asyncio.run(read())
        assert sizes == {("journey", "first_time_buyer"): 12}
        expected: dict[str, Counter[int]] = {h: Counter() for h in rfm}
        for s in states.values():
            for h, bucket in histogram_buckets(s).items():
                expected[h][bucket] += 1
        assert rfm == {h: dict(c) for h, c in expected.items()}
        assert applied == {"events.cart:1": 41, "events.browse:3": 97}

        policy = load_policy(DEFAULT_POLICY_TEXT)
        data = report_data(client, settings, policy, experiment="exp-1")
        assert sorted(a.customer_id for a in data.assignments) == sorted(customers)
        assert data.suppressions == [("email/win_back", "cooldown")] * 3

        again = migrate_layout(client, settings, echo=lines.append)
        assert (again.customers, again.keys, sum(again.shared.values())) == (0, 0, 0)
        assert not again.actions
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


def action_doc(cid: str) -> ActionDoc:
    return ActionDoc(
        ActionState(cid, last={"email/win_back": 1767261600.0}, keys=[f"k-{cid}"]),
        first={"exp-1": {"email/win_back": ["treated", 1767261600.0]}},
        buys=[["o-1", 1767261700.0, 42.0]],
    )


def test_the_actions_agent_keys_move_into_the_pipeline(services: Settings) -> None:
    """Before the one pipeline, the actions agent kept its doc, unsent messages, delayed
    actions, progress and clock in keys of its own: they move into the state hash (field
    ``act``), the one outbox and the one timer index, and are gone after."""
    prefix = "mia" + uuid.uuid4().hex[:6]
    settings = services.model_copy(update={"key_prefix": prefix, "topic_partitions": PARTITIONS})
    client = redis_client(settings)
    home = {cid: partition_for(cid, PARTITIONS) for cid in ("a", "b", "c", "d", "e")}
    docs = {cid: action_doc(cid) for cid in home}
    change = b'{"source":"events.cart:1:7","change":{"change_id":"x"}}'
    message = b'{"topic":"actions.email","value":{"idempotency_key":"k-a"}}'

    def put_state(cid: str, act: bytes | None = None) -> None:
        fields: dict[Any, bytes | int] = {"doc": _encode(state(cid, 1)), "rev": 3}
        if act is not None:
            fields["act"] = act
        client.hset(state_key(prefix, home[cid], cid), mapping=fields)

    def put_old(cid: str, due: float | None) -> None:
        old: dict[Any, bytes | int] = {"doc": orjson.dumps(docs[cid].to_doc()), "rev": 5}
        client.hset(actions_key(prefix, home[cid], cid), mapping=old)
        if due is not None:
            client.zadd(actions_due_key(prefix, home[cid]), {cid: due})

    try:
        # a: due earlier than its segment timer; an unsent message after an unsent change.
        put_state("a")
        put_old("a", 100.0)
        client.zadd(timers_key(prefix, home["a"]), {"a": 200.0})
        client.rpush(outbox_key(prefix, home["a"], "a"), change)
        client.rpush(actions_outbox_key(prefix, home["a"], "a"), message, message + b" ")
        # b: due later than its timer (the earlier stays); c: no timer yet.
        put_state("b")
        put_old("b", 300.0)
        client.zadd(timers_key(prefix, home["b"]), {"b": 200.0})
        put_state("c")
        put_old("c", 500.0)
        # d: no state (none is made); e: the pipeline already wrote a doc (it wins).
        put_old("d", 50.0)
        put_state("e", act=b'{"state":{"customer_id":"e","state_version":1}}')
        put_old("e", 60.0)
        for p in range(PARTITIONS):
            client.hset(actions_applied_key(prefix, p), f"{prefix}segments.changes:{p}", 9)
            client.hset(applied_key(prefix, p), f"events.cart:{p}", 4)
        client.hset(actions_clock_key(prefix), "0", "1767261660.0")
        record = assigned_key(prefix, home["a"], "exp-1", "email/win_back")
        client.hset(record, "a", "treated 1767261600.0")

        lines: list[str] = []
        moved = migrate_layout(client, settings, echo=lines.append)
        assert lines == [moved.summary()]
        assert dict(moved.actions) == {
            "docs moved": 3,
            "docs kept (state had one)": 1,
            "docs dropped (no state)": 1,
            "messages moved": 2,
            "timers set": 3,
            "progress records deleted": PARTITIONS,
            "clocks deleted": 1,
        }

        loaded = asyncio.run(load(settings, prefix, ["a", "b", "c", "e"]))
        for cid in ("a", "b", "c"):
            assert loaded[cid].actions == docs[cid]
            assert loaded[cid].rev == 4  # a cached copy of the state loses its write
        assert loaded["a"].unsent == [change, message, message + b" "]
        assert loaded["e"].actions is not None and loaded["e"].actions.buys == []
        assert loaded["e"].rev == 3
        assert not client.exists(state_key(prefix, home["d"], "d"))
        assert 0 < client.ttl(outbox_key(prefix, home["a"], "a")) <= 86400

        timers = {cid: client.zscore(timers_key(prefix, home[cid]), cid) for cid in home}
        assert timers == {"a": 100.0, "b": 200.0, "c": 500.0, "d": None, "e": None}
        names = {k.decode() for k in client.scan_iter(match=f"{prefix}:*")}
        assert not [k for k in names if k.endswith((":actions", ":actout", ":act:due"))]
        assert not [k for k in names if k.endswith((":act:applied", ":act:clock"))]
        assert asyncio.run(applied_offsets(settings, prefix)) == {
            f"events.cart:{p}": 4 for p in range(PARTITIONS)
        }
        assert client.hgetall(record) == {b"a": b"treated 1767261600.0"}  # unchanged

        again = migrate_layout(client, settings, echo=lines.append)
        assert not again.actions and lines[-1].endswith("actions: none")
        assert asyncio.run(load(settings, prefix, ["a"]))["a"].rev == 4
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


async def load(settings: Settings, prefix: str, customers: list[str]) -> dict[str, Loaded]:
    aclient = async_redis_client(settings)
    try:
        store = StateStore(aclient, prefix=prefix, partitions=PARTITIONS, cache_size=0)
        return await store.load(customers)
    finally:
        await aclient.aclose()


async def applied_offsets(settings: Settings, prefix: str) -> dict[str, int]:
    aclient = async_redis_client(settings)
    try:
        store = StateStore(aclient, prefix=prefix, partitions=PARTITIONS, cache_size=0)
        return await store.applied_offsets()
    finally:
        await aclient.aclose()


def _decompress(raw: bytes | str | None) -> bytes:
    from streams.store import load_doc

    return orjson.dumps(load_doc(raw))
