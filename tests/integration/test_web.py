"""The worker's HTTP API against a real worker: probes, auth, look-ups, paging, erase."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segmenters.clv import Summary, day_of, summarize
from segmenters.clv.distribution import distribution
from segmenters.clv.model import ClvModel
from segmenters.state import CustomerState
from streams.kafka.topics import ERASED
from streams.settings import Settings
from streams.store.clv import save_clv_model
from streams.store.documents import encode_state
from streams.store.keys import clock_key, index_key, index_registry_key, state_key
from tests.integration.conftest import Deployment, free_port
from tests.integration.test_cli import segstream
from tests.unit.factories import Events

TOKEN = "s3cret-token"
#: Fader, Hardie and Lee's CDNOW fit (alpha in days), as a stored snapshot would hold it.
CDNOW = ClvModel(
    r=0.243,
    alpha_days=30.895,
    a=0.793,
    b=2.426,
    p=6.25,
    q=3.74,
    v=15.44,
    customers=2357,
    repeat_customers=946,
    log_likelihood=-9582.4,
)
#: Sizes of the value segments :func:`seed_value` writes to the indexes.
VALUE_SIZES = {"top": 3, "high": 5, "medium": 8, "low": 11, "churned": 2}


@pytest.fixture
def web(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
        SEGSTREAM_API_TOKEN=TOKEN,
    )
    yield d
    d.close()


def call(
    d: Deployment, method: str, path: str, token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{d.settings.web_port}{path}"
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def seed_value(d: Deployment, buyers: int = 150) -> tuple[ClvModel, list[Summary]]:
    """A published value model (:data:`CDNOW`, fitted now), then ``buyers`` buyers'
    states with purchase days over the last 300 days, every partition's clock at today,
    and :data:`VALUE_SIZES` in the value indexes. Returns the model and the buyers'
    summaries. The model goes first, so the worker's trainer finds a fresh one and
    does not fit."""
    model = save_clv_model(d.settings, CDNOW.model_copy(update={"fitted_at": time.time()}))
    rng = random.Random(5)
    prefix, partitions = d.settings.key_prefix, d.settings.topic_partitions
    today = day_of(time.time())
    summaries = []
    pipe = d.redis.pipeline(transaction=False)
    for i in range(buyers):
        cid = f"c-value-{i}"
        day, days = today - rng.randrange(0, 300), {}
        while day <= today and len(days) < 12:
            days[day] = round(rng.uniform(5, 90), 2)
            if rng.random() < 0.4:
                break
            day += rng.randrange(1, 45)
        summaries.append(summarize(days, today))
        state = CustomerState(cid, buy_days={str(k): v for k, v in days.items()})
        pipe.hset(state_key(prefix, d.home(cid), cid), "doc", encode_state(state))
    members = iter(range(buyers))
    for segment, size in VALUE_SIZES.items():
        for _ in range(size):
            cid = f"c-value-{next(members)}"
            key = index_key(prefix, d.home(cid), "value", segment)
            pipe.sadd(key, cid)
            pipe.sadd(index_registry_key(prefix, d.home(cid)), key)
    noon = today * 86_400 + 43_200 + d.settings.allowed_lateness_s
    pipe.hset(clock_key(prefix), mapping={str(p): repr(noon) for p in range(partitions)})
    pipe.execute()
    return model, summaries


def test_value_api(web: Deployment) -> None:
    d = web
    d.start_worker(SEGSTREAM_CLV_REFIT_S="86400")
    assert call(d, "GET", "/api/value", token=None)[0] == 401
    status, empty = call(d, "GET", "/api/value")
    assert status == 200, empty
    assert empty["model"] is None and empty["segments"] == dict.fromkeys(VALUE_SIZES, 0)
    assert (empty["customers"], empty["p_alive"], empty["fit"]) == (0, None, None)

    model, summaries = seed_value(d)
    status, body = call(d, "GET", "/api/value")
    assert status == 200, body
    assert body["model"] == model.model_dump() and body["model"]["version"] >= 1
    assert body["segments"] == VALUE_SIZES
    sizes = {
        s["segment"]: s["size"]
        for s in call(d, "GET", "/segments")[1]["segments"]
        if s["dimension"] == "value"
    }
    assert sizes == VALUE_SIZES  # the same indexes as every other dimension's sizes
    want = distribution(summaries, model, horizon_days=d.settings.clv_horizon_days)
    assert body["customers"] == len(summaries) == 150
    assert body["horizon_days"] == d.settings.clv_horizon_days
    assert body["p_alive"] == want.p_alive and sum(body["p_alive"]) == 150
    assert body["clv_deciles"] == pytest.approx(want.clv_deciles, rel=1e-9)
    assert [(r["k"], r["actual"]) for r in body["fit"]] == [(r.k, r.actual) for r in want.fit]
    expected = [r["expected"] for r in body["fit"]]
    assert expected == pytest.approx([r.expected for r in want.fit], rel=1e-9)
    assert sum(expected) == pytest.approx(150.0)

    # the sample's figures are kept a minute per model version: a poll reuses them ...
    again = call(d, "GET", "/api/value")[1]
    assert again["computed_at"] == body["computed_at"] and again["fit"] == body["fit"]
    # ... and a new snapshot is scored afresh
    newer = save_clv_model(d.settings, model.model_copy(update={"r": 0.6, "a": 1.4}))
    third = call(d, "GET", "/api/value")[1]
    assert third["model"]["version"] == newer.version > model.version
    fresh = distribution(summaries, newer, horizon_days=d.settings.clv_horizon_days)
    assert third["p_alive"] == fresh.p_alive
    assert [r["expected"] for r in third["fit"]] == pytest.approx([r.expected for r in fresh.fit])


def test_http_api(web: Deployment) -> None:
    d = web
    customers = [f"c-web-{i}" for i in range(12)]
    events = []
    for cid in customers:
        e = Events(cid)
        events += [
            e.profile(0, country="DE", region="Bavaria"),
            e.add("A", 1, price=20.0),
            e.purchase(f"{cid}-o", ["A"], 2, price=20.0),
        ]
    d.start_worker(SEGSTREAM_HISTORY_EVERY_S="1")
    assert "SEGSTREAM_API_TOKEN is not set" not in d.log()

    # probes: no token needed
    assert call(d, "GET", "/health", token=None) == (200, call(d, "GET", "/health")[1])
    deadline = time.monotonic() + 30
    status, ready = call(d, "GET", "/ready", token=None)
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, ready = call(d, "GET", "/ready", token=None)
    assert (status, ready["ready"], ready["partitions"]) == (200, True, [0, 1, 2, 3]), ready

    # auth
    assert call(d, "GET", "/segments", token=None)[0] == 401
    assert call(d, "GET", "/segments", token="wrong")[0] == 401
    assert call(d, "GET", "/customers/c-web-0", token=None)[0] == 401
    assert call(d, "DELETE", "/customers/c-web-0", token="wrong")[0] == 401
    assert call(d, "GET", "/segments")[0] == 200

    d.produce(events)
    d.wait_applied({c: 3 for c in customers})

    # look-up: the same JSON as the command line
    status, view = call(d, "GET", "/customers/c-web-3")
    assert status == 200
    assert view == json.loads(segstream(d, "customer", "c-web-3", "--json").stdout)
    assert view["state"]["orders"] == 1 and view["segments"]["geographic"] == "DE/Bavaria"
    assert call(d, "GET", "/customers/nobody")[0] == 404

    # segments and sizes
    status, body = call(d, "GET", "/segments")
    sizes = {(s["dimension"], s["segment"]): s["size"] for s in body["segments"]}
    assert sizes[("geographic", "DE/Bavaria")] == 12
    assert sum(n for (dim, _), n in sizes.items() if dim == "journey") == 12

    # operating history: the worker's records, every event counted once over the buckets
    assert call(d, "GET", "/api/history", token=None)[0] == 401
    assert call(d, "GET", "/api/history?since=soon")[0] == 400

    def history() -> dict[str, Any]:
        status, ops = call(d, "GET", "/api/history?since=10m&every=1s")
        assert status == 200 and ops["every"] == 1.0, ops
        return ops

    def recorded(ops: dict[str, Any]) -> float:
        return round(sum(ops["rates"]["events"]) * ops["every"], 2)

    deadline = time.monotonic() + 30
    while recorded(ops := history()) < len(events) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert recorded(ops) == len(events), ops
    assert set(ops["events"]) == {"profile", "cart", "purchase"}, ops["events"]
    assert max(ops["workers"]) == 1 and ops["lag"][-1] == 0, ops
    assert call(d, "GET", "/api/history?since=10m")[1]["every"] == 60.0  # at most 200 points

    # members, paged: every member exactly once over the pages (the segment has a slash)
    for path in ("geographic/DE/Bavaria", "geographic/DE%2FBavaria"):
        seen: list[str] = []
        cursor = "0"
        pages = 0
        while cursor is not None:
            status, page = call(d, "GET", f"/segments/{path}/members?cursor={cursor}&count=3")
            assert status == 200, page
            seen += page["members"]
            cursor = page["next_cursor"]
            pages += 1
            assert pages < 50
        assert sorted(set(seen)) == sorted(customers), path
    assert call(d, "GET", "/segments/geographic/XX/members")[0] == 404
    assert call(d, "GET", "/segments/geographic/DE/Bavaria/members?count=0")[0] == 400
    assert call(d, "GET", "/segments/geographic/DE/Bavaria/members?cursor=x")[0] == 400

    # erase
    status, erased = call(d, "DELETE", "/customers/c-web-3")
    assert status == 200 and erased["existed"] is True, erased
    assert call(d, "GET", "/customers/c-web-3")[0] == 404
    status, page = call(d, "GET", "/segments/geographic/DE/Bavaria/members?count=1000")
    assert "c-web-3" not in page["members"] and len(page["members"]) == 11
    assert not [k for k in d.redis.scan_iter(match=f"{d.settings.key_prefix}:*c-web-3*")]
    records = d.read_topic(ERASED, expect=1)
    assert [(r.key, r.value) for r in records] == [(b"c-web-3", None)]

    # a later event: a fresh profile (its event id is one the worker saw before the erase)
    e = Events("c-web-3")
    d.produce([e.browse(10)])
    d.wait_applied({"c-web-3": 1})
    status, view = call(d, "GET", "/customers/c-web-3")
    assert status == 200 and view["state"]["orders"] == 0 and view["state"]["events"] == 1
