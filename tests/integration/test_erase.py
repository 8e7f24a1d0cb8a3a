"""Erasing a customer leaves no trace in Redis, tells Kafka, and a later event starts over."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import redis

from segmenters.effects import histogram_buckets
from segmenters.state import CustomerState
from streams.kafka.topics import ERASED
from streams.store.keys import index_key, rfm_key
from tests.integration.conftest import Deployment
from tests.integration.test_cli import segstream
from tests.unit.factories import T0, Events


def traces(client: redis.Redis, prefix: str, customer_id: str) -> list[str]:
    """Every place under ``prefix`` where ``customer_id`` still shows: key names, set and
    sorted-set members, hash fields and values, list items, strings."""
    needle = customer_id.encode()
    found = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if needle in key:
            found.append(f"key {key!r}")
            continue
        kind = client.type(key)
        if kind == b"set":
            hit = client.sismember(key, customer_id)
        elif kind == b"zset":
            hit = client.zscore(key, customer_id) is not None
        elif kind == b"hash":
            hit = any(needle in k or needle in v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            hit = any(needle in item for item in client.lrange(key, 0, -1))
        elif kind == b"string":
            hit = needle in (client.get(key) or b"")
        else:  # the sizes stream holds counts only
            hit = False
        if hit:
            found.append(f"{kind.decode()} {key!r}")
    return found


def erased_read(deployment: Deployment, partition: int, timeout: float = 30) -> None:
    """Wait until the workers' group committed past the tombstone on customers.erased."""
    from kafka import KafkaAdminClient, TopicPartition

    from streams.kafka.admin import committed_offsets

    tp = TopicPartition(deployment.settings.topic(ERASED), partition)
    admin = KafkaAdminClient(bootstrap_servers=deployment.settings.kafka_bootstrap)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if committed_offsets(admin, deployment.settings.app_id).get(tp, 0) >= 1:
                return
            time.sleep(0.25)
    finally:
        admin.close()
    raise AssertionError(f"the worker did not read the tombstone in {timeout}s")


def histograms(client: redis.Redis, prefix: str, partition: int) -> dict[str, dict[bytes, int]]:
    return {
        h: {k: int(v) for k, v in client.hgetall(rfm_key(prefix, partition, h)).items()}
        for h in ("recency", "frequency", "monetary")
    }


def two_buyers(cid: str) -> list[dict[str, Any]]:
    e = Events(cid)
    return [
        e.profile(0, country="DE", region="Bavaria", birth_year=1990, gender="female"),
        e.browse(1, sku="A", category="shoes", price=30.0),
        e.add("A", 2, price=30.0),
        e.purchase(f"{cid}-o1", ["A"], 3, price=30.0),
        e.add("B", 4, price=5.0),  # a cart again: a timer is pending
    ]


def test_erase_removes_every_trace_and_a_later_event_starts_fresh(
    deployment: Deployment,
) -> None:
    prefix = deployment.settings.key_prefix
    client = deployment.redis
    deployment.start_worker()
    deployment.produce(two_buyers("c-gone") + two_buyers("c-stays"))
    deployment.wait_applied({"c-gone": 5, "c-stays": 5})

    before = CustomerState.from_doc(deployment.state("c-gone") or {})
    assert before.orders == 1 and before.segments
    journey = before.segment("journey")
    home = deployment.home("c-gone")
    assert client.sismember(index_key(prefix, home, "journey", journey or ""), "c-gone")
    assert traces(client, prefix, "c-gone")
    hist_before = histograms(client, prefix, home)
    buckets = histogram_buckets(before)
    assert set(buckets) == {"recency", "frequency", "monetary"}

    out = segstream(deployment, "erase", "c-gone", "--json")  # while the worker runs
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["existed"] is True
    assert result["keys_deleted"] >= 1
    assert result["tombstone"] == deployment.settings.topic(ERASED)

    assert traces(client, prefix, "c-gone") == []
    hist_after = histograms(client, prefix, home)
    for h, b in buckets.items():  # one buyer less in each bucket, the other's kept
        assert hist_after[h].get(str(b).encode(), 0) == hist_before[h][str(b).encode()] - 1
    stays = histograms(client, prefix, deployment.home("c-stays"))
    assert all(stays[h].get(str(b).encode(), 0) >= 1 for h, b in buckets.items())
    assert traces(client, prefix, "c-stays"), "the other customer is untouched"
    assert deployment.state("c-stays")["orders"] == 1

    records = deployment.read_topic(ERASED, expect=1)
    assert [(r.key, r.value) for r in records] == [(b"c-gone", None)]

    # The worker reads the tombstone and drops the customer from its memory, so even an
    # event id it remembered from before the erase counts as new.
    erased_read(deployment, records[0].partition)
    later = Events("c-gone", start=T0 + timedelta(days=2)).browse(0)
    assert later["event_id"] == "c-gone-e1"  # the id of the first event before the erase
    deployment.produce([later])
    deployment.wait_applied({"c-gone": 1})
    fresh = deployment.state("c-gone")
    assert fresh is not None
    assert fresh["events"] == 1 and fresh.get("orders", 0) == 0
    assert "profile" not in fresh and "cart" not in fresh
    assert fresh["segments"]["journey"][0] == "browser"
    assert client.sismember(index_key(prefix, home, "journey", "browser"), "c-gone")

    again = segstream(deployment, "customer", "c-gone", "--json")
    assert json.loads(again.stdout)["state"]["orders"] == 0

    # erasing someone unknown is harmless: nothing removed, a tombstone all the same
    nobody = json.loads(segstream(deployment, "erase", "c-nobody", "--json").stdout)
    assert (nobody["existed"], nobody["keys_deleted"]) == (False, 0)
