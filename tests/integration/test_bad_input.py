"""Bad input at volume: 10,000 Hypothesis-generated bad messages mixed into good traffic.

The bad messages come from Hypothesis strategies (random bytes, wrong types, missing
fields, unknown types, oversized bodies, wrong or missing keys, NaN and infinity, wrong
topics, wrong schema versions, no value). Hypothesis is driven by ``@given`` with
``derandomize=True`` (the same messages every run): each example draws 50 messages, and
the examples are collected until 10,000 messages were drawn. A candidate the parser
happens to accept (a mutation can leave an event valid) is dropped, so every message
sent is bad.
"""

from __future__ import annotations

import base64
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from segmenters.events import InvalidEvent
from streams.settings import Settings
from streams.tools.simulate import generate
from streams.worker.pipeline import Record, parse_record
from tests.integration.conftest import Deployment
from tests.integration.faults import Traffic, read_topics
from tests.unit.factories import Events

BAD = 10_000
#: A small limit keeps the oversized messages (and the dead letters holding them) small.
MAX_BYTES = 4096
TOPIC_OF = {
    "browse": "events.browse",
    "cart": "events.cart",
    "purchase": "events.purchase",
    "refund": "events.purchase",
    "profile": "events.profile",
}
REQUIRED = ("schema_version", "event_id", "type", "customer_id", "occurred_at")
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=12),
    st.lists(st.integers(-1000, 1000), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-1000, 1000), max_size=2),
)


def templates() -> list[dict[str, Any]]:
    e = Events("c-h")
    return [
        e.browse(1, price=12.5),
        e.add("A", 2),
        e.purchase("o-1", ["A"], 3),
        e.refund("o-1", 5.0, 4),
        e.profile(5, birth_year=1990, country="DE"),
    ]


@st.composite
def bad_message(draw: st.DrawFn) -> tuple[str, bytes | None, bytes | None]:
    """(topic, key, value) of one message that should be dead-lettered."""
    event = dict(draw(st.sampled_from(templates())))
    event["event_id"] = f"bad-{draw(st.integers(0, 10**9))}"
    topic = TOPIC_OF[event["type"]]
    key: bytes | None = event["customer_id"].encode()
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "wrong type",
                "missing",
                "unknown type",
                "oversized",
                "wrong key",
                "no key",
                "nan",
                "wrong topic",
                "version",
                "no value",
                "not an object",
            ]
        )
    )
    if kind == "bytes":
        return topic, key, draw(st.binary(min_size=0, max_size=200))
    if kind == "no value":
        return topic, key, None
    if kind == "not an object":
        return topic, key, orjson.dumps(draw(st.one_of(junk, st.lists(junk, max_size=3))))
    if kind == "wrong type":
        name = draw(st.sampled_from(sorted(event)))
        event[name] = draw(junk.filter(lambda v, old=event[name]: type(v) is not type(old)))
    elif kind == "missing":
        del event[draw(st.sampled_from(REQUIRED))]
    elif kind == "unknown type":
        event["type"] = draw(st.text(min_size=1, max_size=10).filter(lambda t: t not in TOPIC_OF))
    elif kind == "oversized":
        event["padding"] = "x" * draw(st.integers(MAX_BYTES + 1, 2 * MAX_BYTES))
    elif kind == "wrong key":
        key = draw(st.binary(min_size=1, max_size=12).filter(lambda k: k != key))
    elif kind == "no key":
        key = None
    elif kind == "wrong topic":
        topic = draw(st.sampled_from(sorted(set(TOPIC_OF.values()) - {topic})))
    elif kind == "version":
        event["schema_version"] = draw(st.integers(-(2**63), 2**63 - 1).filter(lambda v: v != 1))
    else:  # NaN or infinity where a number belongs (orjson would write null: splice it in)
        number = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        numeric = [k for k, v in event.items() if isinstance(v, float)] or ["schema_version"]
        name = draw(st.sampled_from(numeric))
        old = orjson.dumps({name: event[name]})[1:-1]
        return topic, key, orjson.dumps(event).replace(old, b'"%s":%s' % (name.encode(), number))
    return topic, key, orjson.dumps(event)


class _Enough(Exception):
    """Raised once enough messages were drawn: ends Hypothesis's run early."""


def hypothesis_bad_messages(n: int, max_bytes: int) -> list[tuple[str, bytes | None, bytes | None]]:
    bad: list[tuple[str, bytes | None, bytes | None]] = []

    @settings(
        max_examples=4 * n // 50,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(bad_message(), min_size=50, max_size=50))
    def collect(batch: list) -> None:
        for topic, key, value in batch:
            try:
                parse_record(Record(topic, 0, 0, key, value), topic_prefix="", max_bytes=max_bytes)
            except InvalidEvent:
                bad.append((topic, key, value))
        if len(bad) >= n:
            raise _Enough

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hypothesis warns about the oversized reprs
        try:
            collect()
        except _Enough:
            pass
    assert len(bad) >= n, f"only {len(bad)} bad messages drawn"
    return bad[:n]


@pytest.mark.same_on_cluster
def test_ten_thousand_bad_messages_mixed_into_good_traffic(
    services: Settings, tmp_path: Path
) -> None:
    d = Deployment(services, tmp_path, SEGSTREAM_MAX_EVENT_BYTES=str(MAX_BYTES))
    try:
        run(d)
    finally:
        d.close()


def run(d: Deployment) -> None:
    rng = random.Random(31)
    bad = hypothesis_bad_messages(BAD, d.settings.max_event_bytes)
    good = list(generate(100, seed=31, start=Events().start, duration_s=60, rate=50))
    d.start_worker()
    started = time.monotonic()
    traffic = Traffic()
    traffic.produce(d, good, bad, rng)
    d.wait_applied(traffic.per_customer(), timeout=120)
    seconds = time.monotonic() - started

    letters = read_topics(d.settings.kafka_bootstrap, [d.settings.topic("events.deadletter")])
    by_source = {}
    for r in letters:
        letter = orjson.loads(r.value)
        assert letter["reason"], letter
        by_source[(letter["topic"], letter["partition"], letter["offset"])] = letter
    sent = {(s.topic, s.partition, s.offset): s for s in traffic.bad}
    missing = set(sent) - set(by_source)
    assert not missing, f"{len(missing)} bad messages not dead-lettered"
    assert set(by_source) == set(sent), "a good message was dead-lettered"
    originals = {
        (s.topic, s.partition, s.offset): v for s, (_, _, v) in zip(traffic.bad, bad, strict=True)
    }
    for src, letter in by_source.items():
        kept = None if letter["value_b64"] is None else base64.b64decode(letter["value_b64"])
        assert kept == originals[src]
    assert d.workers[0].poll() is None, "worker stopped"
    assert "Traceback" not in d.log(0), d.log(0)[-3000:]
    reasons = {letter["reason"].split(":")[0][:40] for letter in by_source.values()}
    print(
        f"\nBAD INPUT good={len(traffic.good)} bad={len(traffic.bad)} "
        f"dead-lettered={len(by_source)} seconds={seconds:.1f} reason kinds={len(reasons)}"
    )
    assert not math.isnan(seconds)
