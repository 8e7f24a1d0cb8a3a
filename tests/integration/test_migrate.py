"""``segstream migrate-keys``: data of the layout before partition tags, moved into the
current one, reads back the same through the current readers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
import pytest

from segmenters.policy import DEFAULT_POLICY_TEXT, load_policy
from segmenters.rfm import histogram_buckets
from segmenters.state import CustomerState
from streams.actions import report_data
from streams.keys import actions_key, ids_key, outbox_key, partition_for, state_key
from streams.migrate import MigrateError, migrate_layout
from streams.security import async_redis_client, redis_client
from streams.settings import Settings
from streams.store import StateStore, _encode, segment_sizes

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


def write_old_layout(client, p: str, customers: list[str]) -> dict[str, CustomerState]:
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
    if settings.redis_cluster:  # that layout never ran on a cluster: refused, clearly
        with pytest.raises(MigrateError, match="never ran on a Redis Cluster"):
            migrate_layout(client, settings)
        return
    customers = [f"c-mig-{i}" for i in range(12)]
    try:
        states = write_old_layout(client, prefix, customers)
        lines: list[str] = []
        moved = migrate_layout(client, settings, echo=lines.append)
        assert moved.customers == 12 and moved.keys == 12 * 4  # state, ids, outbox, actions
        assert lines == [moved.summary()]

        names = [k.decode() for k in client.scan_iter(match=f"{prefix}:*")]
        kept = {f"{prefix}:act:clock"}  # global keys keep their names
        assert all("{p" in k or k in kept for k in names), sorted(names)[:20]

        for cid, s in states.items():
            home = partition_for(cid, PARTITIONS)
            raw = client.hget(state_key(prefix, home, cid), "doc")
            assert CustomerState.from_doc(orjson.loads(_decompress(raw))) == s
            assert client.smembers(ids_key(prefix, home, cid)) == {b"11", b"12"}
            assert client.llen(outbox_key(prefix, home, cid)) == 1
            assert client.exists(actions_key(prefix, home, cid))

        async def read() -> tuple[dict, dict, dict]:
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
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)


def _decompress(raw: bytes) -> bytes:
    from streams.store import load_doc

    return orjson.dumps(load_doc(raw))
