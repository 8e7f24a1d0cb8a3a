"""No action for history, on the real broker and Redis: a year-old shop history replayed
through a worker with the default policy sends nothing and counts every decision it would
have taken as ``stale``, while live traffic in the same run still gets its actions."""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from segmenters.actions import ActionState, holdout_draw, plan
from segmenters.actions.policy import DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Policy, load_policy
from segmenters.changes import SegmentChange
from streams.kafka.topics import ACTION_TOPICS
from streams.tools.replay import replay
from streams.worker.actions import report_data
from tests.integration.conftest import Deployment, free_port
from tests.unit.factories import Events

#: The default policy without its quiet hours, so that the live emails of this test go out
#: whatever the time of day it runs at; every max_age_s is the default one.
POLICY_TEXT = DEFAULT_POLICY_TEXT.replace(
    '[quiet_hours]\nstart_hour = 21\nend_hour = 8\ntimezone = "Europe/Berlin"\n', ""
)


def year_old_history(
    start: datetime, names: list[str], seed: int, clock: str
) -> list[dict[str, Any]]:
    """A small shop's 150 days from ``start``: carts left, buyers who stop buying (at_risk
    after 30 days, lapsed after 90), and a browser ``clock`` whose visits move the clock."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        c = Events(name, start=start)
        day = rng.uniform(0, 40) * 1440  # minutes
        events.append(c.profile(day, marketing_consent=True, country="GB"))
        events.append(c.browse(day + 1))
        if i % 3 == 0:  # a cart left behind
            events.append(c.add(f"S-{i}", day + 2, price=12.5, qty=2))
            continue
        for n in range(1 + rng.randrange(5)):
            t = day + 3 + n * rng.uniform(1, 5) * 1440
            events.append(c.add(f"S-{i}-{n}", t, price=20.0))
            events.append(c.purchase(f"o-{i}-{n}", [f"S-{i}-{n}"], t + 5, price=20.0))
    ticker = Events(clock, start=start)
    events += [ticker.browse(d * 1440) for d in range(0, 151, 5)]
    return sorted(events, key=lambda e: e["occurred_at"])


def on(d: Deployment, prefix: str, partitions: set[int], n: int) -> list[str]:
    """``n`` customer ids whose home partition is in ``partitions``."""
    names = (f"{prefix}{i}" for i in range(10_000))
    return [c for c in names if d.home(c) in partitions][:n]


@pytest.fixture
def shop(services, tmp_path):
    policy = tmp_path / "actions.toml"
    policy.write_text(POLICY_TEXT)
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_TOPIC_PARTITIONS=4,
        SEGSTREAM_ACTIONS_FILE=str(policy),
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
    )
    yield d
    d.close()


def changes_of(d: Deployment) -> list[SegmentChange]:
    return [
        SegmentChange.model_validate_json(r.value)
        for r in d.read_topic("segments.changes", settle=1.0)
    ]


def would_decide(policy: Policy, changes: list[SegmentChange]) -> Counter[str]:
    """The decisions the changes would have had, each decided as it happened (the wall
    clock at the change's own time) with consent: what a history replay used to send."""
    out: Counter[str] = Counter()
    states: dict[str, ActionState] = {}
    for c in changes:
        at = c.changed_at.timestamp()
        live = c.model_copy(update={"no_actions": False})
        state = states.get(c.customer_id, ActionState(c.customer_id))
        states[c.customer_id], ds = plan(policy, live, state, now=at, consent=True, wall=at)
        out.update(f"{x.action} {x.outcome}" for x in ds)
    return out


def triggered(policy: Policy, changes: list[SegmentChange]) -> Counter[str]:
    """Action id -> how many decisions the changes call for (one per matching action)."""
    return Counter(
        a.id for c in changes for a in policy.matching(c.dimension, c.previous, c.current)
    )


def test_a_year_old_history_sends_nothing_and_counts_stale_while_live_traffic_acts(shop, tmp_path):
    d = shop
    policy = load_policy(POLICY_TEXT)
    assert policy.actions == DEFAULT_POLICY.actions and policy.rules == DEFAULT_POLICY.rules
    d.start_worker()
    now = datetime.now(UTC).replace(microsecond=0)
    year_ago = now - timedelta(days=365)
    # History A on partitions 0-1, sent as it is: its clocks stay a year back.
    old = on(d, "h-", {0, 1}, 60)
    old_clock = on(d, "h-clock-", {0, 1}, 1)[0]
    history = year_old_history(year_ago, old, seed=14, clock=old_clock)
    # History B on partitions 2-3, which live traffic shares, replayed with --no-actions.
    marked = on(d, "m-", {2, 3}, 45)
    mark_clock = on(d, "m-clock-", {2, 3}, 1)[0]
    replayed = year_old_history(year_ago, marked, seed=15, clock=mark_clock)
    assert 250 <= len(history) <= 600 and 200 <= len(replayed) <= 500
    d.produce(history)
    path = tmp_path / "history-b.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in replayed))
    said: list[str] = []
    stats = replay(d.settings, path, "jsonl", progress=False, no_actions=True, announce=said.append)
    assert stats.events == len(replayed) and "marked no-actions" in said[0]
    d.wait_caught_up(d.settings.app_id)

    # Live traffic in the same run, on partitions 2-3: carts left 45 minutes ago, and a
    # visit a minute ago on each partition moves its clock past their 30-minute timers.
    live = on(d, "l-", {2, 3}, 10)
    carts = [Events(c, start=now - timedelta(minutes=45)) for c in live]
    live_events = [c.add("L-1", 0, price=30.0, qty=3) for c in carts]
    for p in (2, 3):
        live_events.append(Events(on(d, "l-clock-", {p}, 1)[0], start=now).browse(-1))
    d.produce(live_events)
    treated = [c for c in live if holdout_draw(c, "email/abandoned_cart", policy.experiment) >= 0.1]
    sent = d.read_topic("actions.email", expect=len(treated), timeout=60, settle=2.0)
    d.wait_caught_up(d.settings.app_id)

    # Every message on actions.* is for a live customer: neither history sent anything.
    messages = [orjson.loads(r.value) for t in ACTION_TOPICS for r in d.read_topic(t, settle=0.5)]
    assert sorted(m["customer_id"] for m in messages) == sorted(treated)
    assert len(sent) == len(treated) > 0
    for m in messages:
        assert m["action"] == "abandoned_cart" and m["consent"] is None  # no profile given
        assert m["cart"] == [{"sku": "L-1", "quantity": 3, "unit_price": 30.0}]
        changed = datetime.fromisoformat(m["change"]["changed_at"])
        assert datetime.fromisoformat(m["expires_at"]) == changed + timedelta(hours=6)
        assert changed > now - timedelta(minutes=16)

    # The decisions the histories' changes call for, and what they would have been had
    # they been decided as they happened: history A's are all `stale`, B's all `replay`.
    changes = changes_of(d)
    of_a = [c for c in changes if c.customer_id in {*old, old_clock}]
    of_b = [c for c in changes if c.customer_id in {*marked, mark_clock}]
    assert of_a and not any(c.no_actions for c in of_a)
    unmarked = [c for c in of_b if not c.no_actions]
    assert of_b and not unmarked, unmarked  # timers and rescoring included
    for would in (would_decide(policy, of_a), would_decide(policy, of_b)):
        assert would["email/abandoned_cart send"] > 0 and would["email/win_back send"] > 0
        assert would["ads/reactivation send"] > 0  # lapsed buyers: 90 days were reached
    expected = {"stale": triggered(policy, of_a), "replay": triggered(policy, of_b)}
    ends = time.monotonic() + 60
    while True:
        data = report_data(d.redis, d.settings, policy)
        got = {
            why: Counter(a for a, reason in data.suppressions if reason == why) for why in expected
        }
        if got == expected or time.monotonic() > ends:
            break
        time.sleep(0.5)
    assert got == expected
    assert sum(expected["stale"].values()) > 0 and sum(expected["replay"].values()) > 0
    # No history customer was assigned to a group either (a control is a decision too).
    assert {a.customer_id for a in data.assignments} == set(live)
    # The worker's metrics count them too.
    url = f"http://127.0.0.1:{d.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    counted: dict[str, Counter[str]] = {why: Counter() for why in expected}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "segstream_action_decisions_total":
                why = sample.labels["reason"]
                if why in counted:
                    counted[why][sample.labels["action"]] += int(sample.value)
    assert counted == expected
    print(
        f"\nhistory A: {len(history)} events, {len(of_a)} changes, would have decided "
        f"{dict(sorted(would_decide(policy, of_a).items()))}, stale "
        f"{dict(sorted(got['stale'].items()))}\nhistory B (--no-actions): {len(replayed)} "
        f"events, {len(of_b)} changes, replay {dict(sorted(got['replay'].items()))}\n"
        f"live: {len(sent)} emails for {len(live)} carts (the rest held out)"
    )
