"""Campaigns to current members on the real broker and Redis: ``segstream actions send``
decides through the guards, sends each member once, and races a worker safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import orjson

from segmenters.actions import holdout_draw, idempotency_key
from segmenters.actions.campaign import Campaign, campaign_change_id
from segmenters.actions.policy import load_policy
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.store.keys import state_key
from streams.worker.actions import report_data
from streams.worker.pipeline import BatchProcessor
from tests.integration.conftest import ROOT, Deployment
from tests.integration.test_actions import FlakySend, processor, record_of
from tests.unit.factories import T0, Events

POLICY = """
version = "test"
experiment = "camp-{uid}"

[actions.email.offer]
template = "offer_v1"
cooldown_s = 315360000  # 10 years: a member sent it at T0 is still cooling down
holdout = 0.3
max_age_s = 315360000

[[rules]]
dimension = "journey"
previous = "browser"
current = "active_cart"
actions = ["email/offer"]
"""


def cli(d: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "actions", "send", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **d.env},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out


def snapshot(d: Deployment) -> dict[bytes, Any]:
    """Every key of the deployment and its value (what a dry run must leave alone)."""
    out: dict[bytes, Any] = {}
    for key in d.redis.scan_iter(match=f"{d.settings.key_prefix}:*", count=1000):
        kind = d.redis.type(key)
        if kind == b"hash":
            out[key] = d.redis.hgetall(key)
        elif kind == b"set":
            out[key] = d.redis.smembers(key)
        elif kind == b"zset":
            out[key] = d.redis.zrange(key, 0, -1, withscores=True)
        elif kind == b"list":
            out[key] = d.redis.lrange(key, 0, -1)
        else:
            out[key] = d.redis.get(key) if kind == b"string" else kind
    return out


async def test_send_reaches_current_members_once_through_the_guards(services, tmp_path):
    path = tmp_path / "actions.toml"
    path.write_text(POLICY.replace("{uid}", tmp_path.name[-12:]))
    policy = load_policy(path.read_text())
    d = Deployment(
        services, tmp_path, SEGSTREAM_TOPIC_PARTITIONS=2, SEGSTREAM_ACTIONS_FILE=str(path)
    )
    client = async_redis_client(d.settings)
    try:
        # Members of journey:active_cart, seeded through the pipeline in process: fresh
        # ones (a first event into the cart: no transition the rule names), three who got
        # the offer by the rule (browser -> active_cart: cooldown), four who refuse email.
        fresh = [f"f-{i}" for i in range(40)]
        cooled = [f"k-{i}" for i in range(3)]
        refusing = [f"r-{i}" for i in range(4)]
        events: list[dict[str, Any]] = []
        for c in fresh:
            events.append(Events(c).add("A", 0, price=30.0))
        for c in cooled:
            e = Events(c)
            events += [e.browse(0), e.add("A", 1)]
        for c in refusing:
            e = Events(c)
            events += [e.profile(0, marketing_consent=False), e.add("A", 1)]
        seeding = FlakySend(failures=0)
        seeder = processor(d, client, seeding, policy)
        await seeder.process([record_of(d, e, i) for i, e in enumerate(events)])
        await seeder.store.commit([])  # delivered: outboxes emptied, as a next write does
        by_rule = [t for t, _, _ in seeding.sent if t == d.settings.topic("actions.email")]
        assert len(by_rule) <= len(cooled)  # the rule's offers (not on Kafka: in process)
        members = fresh + cooled + refusing
        assert all(d.state(c)["segments"]["journey"][0] == "active_cart" for c in members)

        # The dry run: counts per guard, nothing written, nothing sent.
        before = snapshot(d)
        out = cli(d, "email/offer", "--segment", "journey:active_cart", "--dry-run", "--json")
        dry = json.loads(out.stdout)
        control = [c for c in fresh if holdout_draw(c, "email/offer", policy.experiment) < 0.3]
        treated = [c for c in fresh if c not in control]
        assert dry["dry_run"] and dry["members"] == dry["decided"] == len(members)
        assert dry["sent"] == len(treated) and dry["control"] == len(control)
        assert dry["suppressed"] == {"no_consent": len(refusing), "cooldown": len(cooled)}
        assert snapshot(d) == before
        assert d.read_topic("actions.email", settle=0.3) == []

        # The send: the treated fresh members, keyed by customer, under the campaign's keys.
        out = cli(d, "email/offer", "--segment", "journey:active_cart", "--campaign-id", "spring")
        assert "campaign spring: email/offer to journey:active_cart" in out.stdout
        sent = d.read_topic("actions.email", expect=len(treated), settle=0.5)
        assert sorted(r.key.decode() for r in sent) == sorted(treated)
        keys = {orjson.loads(r.value)["idempotency_key"] for r in sent}
        assert keys == {
            idempotency_key(campaign_change_id("spring", c), "offer", "email") for c in treated
        }
        message = orjson.loads(sent[0].value)
        assert message["change"]["reason"] == "campaign spring"
        assert message["features"]["cart_value"] == 30.0 and message["cart"] is not None
        # outboxes delivered and emptied
        assert not list(d.redis.scan_iter(match=f"{d.settings.key_prefix}:*:outbox"))

        # Again: every member was reached already; nothing new on the topic.
        out = cli(
            d,
            "email/offer",
            "--segment",
            "journey:active_cart",
            "--campaign-id",
            "spring",
            "--json",
        )
        again = json.loads(out.stdout)
        assert again["duplicate"] == len(members) and again["sent"] == 0
        assert len(d.read_topic("actions.email", settle=0.5)) == len(treated)

        # The uplift report counts the campaign's assignments (and the rule's, at T0).
        data = report_data(d.redis, d.settings, policy)
        rows = [a for a in data.assignments if a.action == "email/offer"]
        campaign_rows = [a for a in rows if a.at > T0.timestamp() + 86400]
        assert len(campaign_rows) == len(fresh)
        assert sum(a.group == "control" for a in campaign_rows) == len(control)
        assert len(rows) == len(fresh) + len(cooled)
    finally:
        await client.aclose()
        d.close()


async def test_a_campaign_racing_a_worker_on_a_customer_loses_nothing(services, tmp_path):
    """The campaign's write and a worker's batch on the same customer: whichever writes
    second finds the revision moved, reloads and decides again on what the other wrote."""
    path = tmp_path / "actions.toml"
    path.write_text(POLICY.replace("{uid}", "race").replace("holdout = 0.3", "holdout = 0"))
    policy = load_policy(path.read_text())
    d = Deployment(services, tmp_path, SEGSTREAM_ACTIONS_FILE=str(path))
    client = async_redis_client(d.settings)
    try:
        worker = processor(d, client, FlakySend(failures=0), policy)
        person = Events("x-1")
        await worker.process([record_of(d, person.add("A", 0), 0)])  # cached by the worker
        await worker.store.commit([])  # its outbox delivered and emptied
        sink = FlakySend(failures=0)
        store = StateStore(
            client,
            prefix=d.settings.key_prefix,
            partitions=d.settings.topic_partitions,
            cache_size=0,
        )
        campaign = BatchProcessor(
            store=store,
            config=d.settings.engine,
            topic_prefix=d.settings.topic_prefix,
            max_event_bytes=d.settings.max_event_bytes,
            send_change=sink.to("changes"),
            send_deadletter=sink.to("deadletters"),
            send_action=sink,
            policy=lambda: policy,
        )
        commit = store.commit
        raced = False

        async def commit_after_the_worker(writes: Any, applied: Any = None) -> Any:
            nonlocal raced
            if writes and not raced:  # the worker writes between our load and our write
                raced = True
                await worker.process([record_of(d, person.add("B", 2), 1)])
            return await commit(writes, applied)

        store.commit = commit_after_the_worker  # type: ignore[method-assign]
        spring = Campaign("spring", "email/offer", "journey", "active_cart")
        stats = await campaign.campaign(["x-1"], spring)
        assert raced and stats.conflicts == 1 and stats.actions_sent == 1
        # the worker, whose cached revision is now old, loses the next write and redoes it
        stats = await worker.process([record_of(d, person.add("C", 3), 2)])
        assert stats.conflicts == 1 and stats.applied == 1
        key = state_key(d.settings.key_prefix, d.home("x-1"), "x-1")
        doc = orjson.loads(d.redis.hget(key, "act"))
        assert (
            idempotency_key(campaign_change_id("spring", "x-1"), "offer", "email")
            in (doc["state"]["keys"])
        )
        assert d.state("x-1")["events"] == 3  # no event lost to the campaign's write
        assert [t for t, _, _ in sink.sent] == [d.settings.topic("actions.email")]
    finally:
        await client.aclose()
        d.close()


def test_unknown_actions_and_segments_are_refused_with_a_hint(services, tmp_path):
    path = tmp_path / "actions.toml"
    path.write_text(POLICY.replace("{uid}", "x"))
    env = {
        **os.environ,
        "SEGSTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SEGSTREAM_REDIS_URL": services.redis_url,
        "SEGSTREAM_ACTIONS_FILE": str(path),
    }
    for args, message in [
        (["email/ofer", "--segment", "journey:active_cart"], "did you mean 'email/offer'"),
        (["email/offer", "--segment", "journey:activecart"], "did you mean 'active_cart'"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "streams.cli", "actions", "send", *args, "--dry-run"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 2 and message in out.stderr, out.stderr
