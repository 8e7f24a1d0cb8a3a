"""Retention actions on the real broker and Redis: exactly one action per change, and an
uplift report that measures a known effect."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from typing import Any

import orjson
import pytest

from segmenters.actions import holdout_draw
from segmenters.actions.policy import DEFAULT_POLICY, Policy, load_policy
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.store.keys import state_key
from streams.worker.actions import report_data
from streams.worker.clocks import Clocks
from streams.worker.metrics import Metrics
from streams.worker.pipeline import BatchProcessor, Record
from tests.integration.conftest import ROOT, Deployment, free_port
from tests.unit.factories import T0, Events

DAY = 86400.0
POLICY = """
version = "test"
experiment = "exp-{uid}"
conversion_window_s = 604800

[actions.email.abandoned_cart]
template = "abandoned_cart_v1"
cooldown_s = 3600
holdout = 0.5
max_age_s = 315360000  # 10 years: the events are dated 2026-01-01 (T0)

[actions.ads.abandoned_cart]
audience = "cart"
holdout = 0.2
max_age_s = 315360000  # 10 years: the events are dated 2026-01-01 (T0)

[[rules]]
dimension = "journey"
current = "cart_abandoner"
actions = ["email/abandoned_cart", "ads/abandoned_cart"]
"""


@pytest.fixture
def shop(services, tmp_path):
    policy = tmp_path / "actions.toml"
    policy.write_text(POLICY.replace("{uid}", tmp_path.name[-12:]))
    d = Deployment(
        services, tmp_path, SEGSTREAM_TOPIC_PARTITIONS=1, SEGSTREAM_ACTIONS_FILE=str(policy)
    )
    d.policy_path = policy  # type: ignore[attr-defined]
    yield d
    d.close()


def keys_on(d: Deployment, channel: str, **kw: Any) -> list[str]:
    return [
        orjson.loads(r.value)["idempotency_key"] for r in d.read_topic(f"actions.{channel}", **kw)
    ]


def test_replaying_the_same_events_twice_gives_each_action_once(shop):
    d = shop
    d.start_worker()
    people = [Events(f"c-{i}") for i in range(12)]
    clock = Events("c-clock")
    events = [p.add("A", 0, price=25.0) for p in people] + [clock.browse(1), clock.browse(40)]
    d.produce(events)  # 30 min later every cart is abandoned (the timers fire)
    d.wait_applied({p.customer_id: 1 for p in people})
    policy = load_policy(d.policy_path.read_text())
    treated = sum(
        holdout_draw(p.customer_id, "email/abandoned_cart", policy.experiment) >= 0.5
        for p in people
    )
    email = keys_on(d, "email", expect=treated, timeout=40)
    assert len(email) == treated and len(set(email)) == treated
    ads = keys_on(d, "ads", settle=0.5)
    assert len(set(ads)) == len(ads) > 0

    # The same events again (a replay): already applied, so nothing is decided again.
    # The engine never reads segments.changes back: a change written there by hand is
    # published news for subscribers, not a trigger.
    d.produce(events)
    for r in d.read_topic("segments.changes", settle=0.5):
        d.produce_raw("segments.changes", r.key, r.value)
    d.wait_caught_up(d.settings.app_id)
    time.sleep(2.0)
    again = keys_on(d, "email", settle=1.0)
    assert sorted(again) == sorted(email)
    assert sorted(keys_on(d, "ads", settle=0.5)) == sorted(ads)

    message = orjson.loads(d.read_topic("actions.email", settle=0.2)[0].value)
    assert message["change"]["current"] == "cart_abandoner"
    assert message["features"]["cart_value"] == 25.0 and message["features"]["orders"] == 0
    data = report_data(d.redis, d.settings, policy)
    email_rows = [a for a in data.assignments if a.action == "email/abandoned_cart"]
    assert len(email_rows) == len(people)
    assert sum(a.group == "treated" for a in email_rows) == treated
    assert data.suppressions == []  # redeliveries are not suppressions


def test_a_simulated_shop_where_the_email_works_shows_its_uplift(shop):
    d = shop
    d.start_worker()
    policy = load_policy(d.policy_path.read_text())
    rng = random.Random(5)
    customers = [f"s-{i}" for i in range(500)]
    refusing = customers[:40]
    # Consent is read from the customer's state: let the profiles land first.
    shop = {c: Events(c) for c in customers}  # one per customer: event ids stay unique
    d.produce([shop[c].profile(0, marketing_consent=False) for c in refusing])
    d.wait_applied(dict.fromkeys(refusing, 1))

    # Every cart is left at T0; a later event moves the partition's clock past the
    # 30-minute deadline, the timers make everyone a cart abandoner and the actions are
    # decided in the same write.
    carts = [shop[c].add("C", 0, price=25.0) for c in customers]
    d.produce([*carts, Events("s-clock").browse(60)])
    ends = time.monotonic() + 60
    expected_assigned = len(customers) - len(refusing)
    while time.monotonic() < ends:
        data = report_data(d.redis, d.settings, policy)
        email = [a for a in data.assignments if a.action == "email/abandoned_cart"]
        if len(email) == expected_assigned:
            break
        time.sleep(0.5)
    assert len(email) == expected_assigned
    decided = email[0].at
    assert {a.at for a in email} == {decided}  # at the change's changed_at

    truth: dict[str, tuple[str, bool]] = {}
    purchases = []
    for c in customers:
        control = holdout_draw(c, "email/abandoned_cart", policy.experiment) < 0.5
        group = "suppressed" if c in refusing else ("control" if control else "treated")
        bought = rng.random() < (0.6 if group == "treated" else 0.3)
        truth[c] = (group, bought)
        if bought:
            purchases.append(shop[c].purchase(f"o-{c}", ["A"], 2 * 1440, price=50.0))
        # A purchase before the email does not count for it (it arrives late).
        purchases.append(shop[c].purchase(f"early-{c}", ["B"], 1, price=9.0))
    d.produce(purchases)
    d.wait_caught_up(d.settings.app_id)
    ends = time.monotonic() + 30
    want = len(purchases)
    while time.monotonic() < ends:
        data = report_data(d.redis, d.settings, policy)
        if len(data.purchases) >= want:
            break
        time.sleep(0.5)
    results = {r.action: r for r in data.results(min_group=d.settings.uplift_min_group)}
    r = results["email/abandoned_cart"]
    n = {g: sum(1 for gg, _ in truth.values() if gg == g) for g in ("treated", "control")}
    bought = {g: sum(1 for gg, b in truth.values() if gg == g and b) for g in n}
    assert (r.treated.customers, r.control.customers) == (n["treated"], n["control"])
    assert (r.treated.converted, r.control.converted) == (bought["treated"], bought["control"])
    expected = bought["treated"] / n["treated"] - bought["control"] / n["control"]
    assert r.conversion is not None and r.conversion.estimate == pytest.approx(expected)
    assert 0 < r.conversion.low < 0.3 < r.conversion.high  # right sign, covers the truth
    assert r.revenue is not None and 0 < r.revenue.low < 15.0 < r.revenue.high
    assert r.treated.revenue_mean == pytest.approx(50.0 * bought["treated"] / n["treated"])
    assert r.suppressed == {"no_consent": len(refusing)}
    # Ads need no consent: everyone is assigned.
    assert results["ads/abandoned_cart"].treated.customers + results[
        "ads/abandoned_cart"
    ].control.customers == len(customers)
    sent = d.read_topic("actions.email", expect=n["treated"], timeout=30, settle=0.5)
    assert len(sent) == n["treated"]

    # The report as numbers (as /api/actions gives it), and for windows of decision times:
    # every decision here was made at the change's changed_at (``decided``).
    row = next(x for x in data.to_json(d.settings)["rows"] if x["action"] == r.action)
    assert row["status"] == "ok" and row["currency"] == "EUR" and row["revenue_note"] is None
    assert row["treated"]["customers"] == n["treated"]
    assert row["conversion_diff"]["low"] == pytest.approx(r.conversion.low)
    assert row["revenue_diff"]["high"] == pytest.approx(r.revenue.high)
    later = data.to_json(d.settings, since=decided + 1)["rows"]
    assert {x["treated"]["customers"] + x["control"]["customers"] for x in later} == {0}
    assert {x["status"] for x in later} == {"too_few"}
    (same,) = [x for x in data.results(min_group=30, until=decided + 1) if x.action == r.action]
    assert (same.treated, same.control) == (r.treated, r.control)
    # The command line: a window by ISO date, a currency, and "too few" below --min-group.
    day = T0.date().isoformat()
    env = {**os.environ, **d.env, "SEGSTREAM_CURRENCY": "GBP"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "actions",
            "report",
            "--since",
            day,
            "--until",
            day,
            "--min-group",
            str(n["control"] + 1),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("email/abandoned_cart"))
    assert f"too few ({n['treated']} treated, {n['control']} control;" in line
    assert "rev T (GBP)" in out.stdout and f"decisions {day}T00:00:00+00:00" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "actions", "report", "--json", "--until", day],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rows = {x["action"]: x for x in json.loads(out.stdout)["rows"]}
    assert rows[r.action]["conversion_diff"]["estimate"] == pytest.approx(r.conversion.estimate)
    assert rows[r.action]["currency"] == "GBP" and rows[r.action]["min_group"] == 30


class FlakySend:
    """Sends to Kafka-like lists; fails the first ``failures`` sends (a broker outage)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value))
        acked = asyncio.get_running_loop().create_future()  # as the producer's: a future
        acked.set_result(None)
        return acked

    def to(self, topic: str) -> Any:
        """A single-topic sender (segment changes, dead letters) into the same list."""

        async def send(key: bytes, value: bytes) -> Any:
            return await self(topic, key, value)

        return send


def processor(d: Deployment, client: Any, send: FlakySend, policy: Policy) -> BatchProcessor:
    """The worker's pipeline in-process, every output into ``send``; a cold cache each time."""
    s = d.settings
    return BatchProcessor(
        store=StateStore(
            client, prefix=s.key_prefix, partitions=s.topic_partitions, cache_size=100
        ),
        config=s.engine,
        topic_prefix=s.topic_prefix,
        max_event_bytes=s.max_event_bytes,
        send_change=send.to(s.topic("segments.changes")),
        send_deadletter=send.to(s.topic("events.deadletter")),
        send_action=send,
        policy=lambda: policy,
        currency=s.currency,
        clock=lambda: T0.timestamp() + 60,
    )


def record_of(d: Deployment, event: dict[str, Any], offset: int) -> Record:
    topic = d.settings.topic(
        f"events.{'purchase' if event['type'] == 'purchase' else event['type']}"
    )
    cid = event["customer_id"]
    return Record(topic, d.home(cid), offset, cid.encode(), orjson.dumps(event))


async def test_a_write_whose_send_failed_is_resent_from_the_outbox_never_decided_again(
    services, tmp_path
):
    d = Deployment(services, tmp_path)
    client = async_redis_client(d.settings)
    try:
        policy = load_policy(
            POLICY.replace("{uid}", "x")
            .replace("holdout = 0.5", "holdout = 0")
            .replace('current = "cart_abandoner"', 'current = "active_cart"')
        )
        # The changes go out, the first action message fails (the broker went away).
        send = FlakySend(failures=0)
        flaky = FlakySend(failures=1)
        first = processor(d, client, send, policy)
        first.send_action = flaky
        record = record_of(d, Events("c-9").add("A"), 0)
        with pytest.raises(ConnectionError):
            await first.process([record])  # state, actions and outbox written; a send failed
        assert flaky.sent == []
        # The batch is retried (as the agent does), by a worker with a cold cache: the
        # event is already applied, so nothing is decided again; the outbox is re-sent.
        second = processor(d, client, send, policy)
        stats = await second.process([record])
        assert stats.applied == 0 and stats.actions_sent == 0 and stats.resent >= 2
        actions = [orjson.loads(v) for t, _, v in send.sent if ".actions." in f".{t}"]
        keys = [a["idempotency_key"] for a in actions]
        assert len(keys) == 2 and len(set(keys)) == 2  # email and ads, once each
        # Delivered: the outbox goes with the next write; a third try sends nothing.
        await second.process([record_of(d, Events("c-other").browse(), 0)])
        before = len(send.sent)
        stats = await processor(d, client, send, policy).process([record])
        assert stats.resent == 0 and len(send.sent) == before
        doc = orjson.loads(
            d.redis.hget(state_key(d.settings.key_prefix, d.home("c-9"), "c-9"), "act")
        )
        assert doc["first"]["exp-x"]["email/abandoned_cart"][0] == "treated"
    finally:
        await client.aclose()
        d.close()


async def test_a_purchase_in_another_currency_is_kept_and_named(services, tmp_path, caplog):
    """Totals are never converted: the report keeps the purchase and the worker says once
    that it mixes currencies."""
    d = Deployment(services, tmp_path, SEGSTREAM_CURRENCY="GBP")
    client = async_redis_client(d.settings)
    try:
        pipeline = processor(d, client, FlakySend(failures=0), DEFAULT_POLICY)
        records = [
            record_of(d, Events(c).purchase(f"o-{c}-{i}", ["A"], i, price=20.0), i)
            for i, c in enumerate(["c-eur", "c-eur", "c-eur2"])
        ]
        stats = await pipeline.process(records)
        assert stats.by_type["purchase"] == 3 and pipeline.other_currencies == {"EUR"}
        warned = [r for r in caplog.records if "purchases in EUR" in r.getMessage()]
        assert len(warned) == 1 and "GBP" in warned[0].getMessage()
        doc = orjson.loads(
            d.redis.hget(state_key(d.settings.key_prefix, d.home("c-eur"), "c-eur"), "act")
        )
        assert [b[2] for b in doc["buys"]] == [20.0, 20.0]
    finally:
        await client.aclose()
        d.close()


def metrics_of(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` in a Prometheus text exposition, by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_action_metrics_count_what_the_pipeline_decided_sent_and_failed(services, tmp_path):
    d = Deployment(services, tmp_path)
    client = async_redis_client(d.settings)
    try:
        policy = load_policy(
            POLICY.replace("{uid}", "m")
            .replace("holdout = 0.5", "holdout = 0")
            .replace('current = "cart_abandoner"', 'current = "active_cart"')
        )
        metrics = Metrics(
            Clocks(), prefix="t", stall_after_s=30, assignment=list, highwater=lambda t, p: None
        )

        def wired(send_action: FlakySend) -> BatchProcessor:
            p = processor(d, client, FlakySend(failures=0), policy)
            p.send_action = send_action
            p.on_decided = metrics.actions_decided
            p.on_delivery = metrics.action_delivery
            return p

        willing, refusing = Events("c-yes"), Events("c-no")
        records = [
            record_of(d, refusing.profile(0, marketing_consent=False), 0),
            record_of(d, willing.add("A", 1), 1),
            record_of(d, refusing.add("A", 1), 2),
        ]
        # Decided and written; the first action message's send fails (the batch is retried).
        with pytest.raises(ConnectionError):
            await wired(FlakySend(failures=1)).process(records)
        # The retry decides nothing again and sends the outboxes: every message acknowledged.
        sent = FlakySend(failures=0)
        await wired(sent).process(records)
        assert len(sent.sent) == 3
        text = metrics.exposition().decode()
        email = (("action", "email/abandoned_cart"), ("channel", "email"))
        ads = (("action", "ads/abandoned_cart"), ("channel", "ads"))
        decided = metrics_of(text, "segstream_actions_decided_total")
        assert decided == {
            (*ads, ("outcome", "send")): 2,
            (*email, ("outcome", "send")): 1,
            (*email, ("outcome", "suppressed")): 1,
        }
        suppressed = metrics_of(text, "segstream_actions_suppressed_total")
        assert suppressed == {(*email, ("reason", "no_consent")): 1}
        assert metrics_of(text, "segstream_actions_sent_total") == {ads: 2, email: 1}
        assert sum(metrics_of(text, "segstream_actions_failed_total").values()) == 1
        status = metrics.refresh()["actions"]
        assert status["email/abandoned_cart"]["suppressed"] == {"no_consent": 1}
        assert status["ads/abandoned_cart"]["sent"] == 2
    finally:
        await client.aclose()
        d.close()


def get(d: Deployment, path: str) -> bytes:
    url = f"http://127.0.0.1:{d.settings.web_port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_a_worker_reports_its_actions_and_a_broken_policy_file_in_metrics(services, tmp_path):
    policy_path = tmp_path / "actions.toml"
    policy_path.write_text(POLICY.replace("{uid}", tmp_path.name[-12:]))
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_TOPIC_PARTITIONS=1,
        SEGSTREAM_ACTIONS_FILE=str(policy_path),
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
    )
    try:
        d.start_worker()
        people = [Events(f"c-{i}") for i in range(12)]
        refusing = people[:3]
        d.produce([p.profile(0, marketing_consent=False) for p in refusing])
        d.wait_applied({p.customer_id: 1 for p in refusing})
        clock = Events("c-clock")
        d.produce([p.add("A", 1, price=25.0) for p in people] + [clock.browse(2), clock.browse(40)])
        policy = load_policy(policy_path.read_text())
        treated = sum(
            holdout_draw(p.customer_id, "email/abandoned_cart", policy.experiment) >= 0.5
            for p in people[3:]
        )
        keys_on(d, "email", expect=treated, timeout=40)
        email = (("action", "email/abandoned_cart"), ("channel", "email"))
        ends = time.monotonic() + 20
        while True:  # the acknowledgements are counted as they arrive
            text = get(d, "/metrics").decode()
            if metrics_of(text, "segstream_actions_sent_total").get(email) == treated:
                break
            assert time.monotonic() < ends, text
            time.sleep(0.2)
        assert treated > 0
        suppressed = metrics_of(text, "segstream_actions_suppressed_total")
        assert suppressed == {(*email, ("reason", "no_consent")): len(refusing)}  # consent first
        decided = metrics_of(text, "segstream_actions_decided_total")
        assert decided[(*email, ("outcome", "control"))] == 12 - len(refusing) - treated
        assert metrics_of(text, "segstream_actions_failed_total") == {}
        loaded = metrics_of(text, "segstream_config_reload_success_timestamp_seconds")
        at = loaded[(("file", "actions"), ("path", str(policy_path)))]
        assert at > 0
        status = json.loads(get(d, "/api/status"))
        assert status["actions"]["email/abandoned_cart"]["sent"] == treated
        assert status["config"]["actions"]["last_error"] is None

        # A broken file: the error shows, the last success and its version stay.
        policy_path.write_text(POLICY.replace('current = "cart_abandoner"', 'current = "nope"'))
        ends = time.monotonic() + 30
        while True:  # read again at the next timer scan
            text = get(d, "/metrics").decode()
            if metrics_of(text, "segstream_config_last_error"):
                break
            assert time.monotonic() < ends, d.log()
            time.sleep(0.3)
        ((labels, value),) = metrics_of(text, "segstream_config_last_error").items()
        assert value == 1 and dict(labels)["file"] == "actions"
        assert "unknown segment" in dict(labels)["error"]
        assert metrics_of(text, "segstream_config_reload_errors_total") == {
            (("file", "actions"),): 1
        }
        assert metrics_of(text, "segstream_config_reload_success_timestamp_seconds") == loaded
        config = json.loads(get(d, "/api/status"))["config"]["actions"]
        assert config["failing"] and "unknown segment" in config["last_error"]
        assert config["loaded_at"] == at and config["version"] == "test"
        assert f"retention policy {policy_path}: line" in d.log()  # the log line stays
    finally:
        d.close()
