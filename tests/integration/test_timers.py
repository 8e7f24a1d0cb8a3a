"""Timers on the real broker and Redis: in an event-time replay, and live."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.integration.conftest import Deployment
from tests.unit.factories import T0, Events

DAY = 86400.0


@pytest.fixture
def one_partition(services, tmp_path):
    d = Deployment(services, tmp_path, SEGSTREAM_TOPIC_PARTITIONS=1)
    yield d
    d.close()


def changes_of(records: list, customer: str) -> list[tuple]:
    out = []
    for r in sorted(records, key=lambda r: r.offset):
        c = orjson.loads(r.value)
        if c["customer_id"] == customer:
            out.append((c["dimension"], c["previous"], c["current"], c["changed_at"]))
    return out


def test_timers_fire_as_the_event_time_clock_passes_their_deadlines(one_partition):
    d = one_partition
    ann, bob, clock = Events("c-ann"), Events("c-bob"), Events("c-clock")
    d.start_worker()
    d.produce([ann.add("A", 0), bob.purchase("o-1", ["B"], 0), clock.browse(1)])
    d.wait_applied({"c-ann": 1, "c-bob": 1, "c-clock": 1})
    d.produce([clock.browse(40)])  # the partition's clock passes 30 min (less 5 s lateness)
    deadline = (T0 + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    records = d.read_topic("segments.changes", expect=6, timeout=30)
    journey = [c for c in changes_of(records, "c-ann") if c[0] == "journey"]
    assert journey[-1][1:] == ("active_cart", "cart_abandoner", deadline)
    assert all(c[2] != "at_risk" for c in changes_of(records, "c-bob"))

    d.produce([clock.browse(100 * 24 * 60)])  # 100 days later
    at_risk = (T0 + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    lapsed = (T0 + timedelta(days=90)).isoformat().replace("+00:00", "Z")
    ends = time.monotonic() + 30
    while time.monotonic() < ends:
        bob_journey = [
            c
            for c in changes_of(d.read_topic("segments.changes", settle=0.5), "c-bob")
            if c[0] == "journey"
        ]
        if len(bob_journey) >= 3:
            break
        time.sleep(0.5)
    assert [c[1:] for c in bob_journey] == [
        (None, "first_time_buyer", "2026-01-01T10:00:00Z"),
        ("first_time_buyer", "at_risk", at_risk),
        ("at_risk", "lapsed", lapsed),
    ]
    state = d.state("c-bob")
    assert state["segments"]["journey"][0] == "lapsed"
    # Bob is the only buyer, so the RFM quantiles are his own recency. Scored against
    # quantiles refreshed before the clock jumped he is older than all of them; against
    # ones refreshed after it he ties with them within the histogram's hour (R5, "new"):
    # which of the two the state shows depends on when the 5 s refresh ran.
    assert state["segments"]["rfm"][0] in {"hibernating", "about_to_sleep", "new"}


def test_live_timers_fire_within_a_second_of_their_deadline(one_partition):
    d = one_partition
    d.start_worker(SEGSTREAM_CLOCK="live", SEGSTREAM_JOURNEY__CART_ABANDON_MINUTES="0.05")
    e = Events("c-live", start=datetime.now(UTC))
    d.produce([e.add("A", 0)])
    due = e.start.timestamp() + 3.0
    lateness = None
    consumer_deadline = time.monotonic() + 20
    while time.monotonic() < consumer_deadline:
        records = d.read_topic("segments.changes", settle=0.1, timeout=1)
        got = [c for c in changes_of(records, "c-live") if c[2] == "cart_abandoner"]
        if got:
            # time the change reached the topic, against the deadline it fired for
            arrived = (
                max(
                    r.timestamp
                    for r in records
                    if orjson.loads(r.value)["current"] == "cart_abandoner"
                )
                / 1000
            )
            lateness = arrived - due
            break
        time.sleep(0.1)
    assert lateness is not None, "cart_abandoner never fired"
    assert 0 <= lateness < 1.0, lateness
