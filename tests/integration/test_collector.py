"""The HTTP collector against the real Kafka and Redis: events land on their topics under
their customer, rejects carry reasons, identify merges an anonymous history, and the
protections answer 4xx. The collector runs as ``segstream collector`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.kafka.topics import BROWSE, CART, CHANGES, PROFILE, PURCHASE
from streams.store.identity import history_key, link_key
from tests.integration.conftest import ROOT, Deployment, free_port

KEY = "k-shop-de"


class CollectorProcess:
    """``segstream collector`` for one deployment, on a free port."""

    def __init__(self, d: Deployment, tmp: Path, **env: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"collector-{self.port}.log"
        settings = {
            "SEGSTREAM_COLLECTOR__PORT": self.port,
            "SEGSTREAM_COLLECTOR__WRITE_KEYS": json.dumps({"shop-de": KEY}),
            **env,
        }
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "collector"],
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                **d.env,
                **{k: str(v) for k, v in settings.items()},
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ends = time.monotonic() + 30
        while time.monotonic() < ends:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited:\n{self.log()}")
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"collector not up in 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = body if isinstance(body, bytes) or body is None else orjson.dumps(body)
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as r:
                status, raw, got = r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers)
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        return status, parsed, got

    def post(self, path: str, body: Any, key: str | None = KEY, **headers: str) -> Any:
        h = {"Content-Type": "application/json", **headers}
        if key is not None:
            h["X-Write-Key"] = key
        return self.request("POST", path, body, h)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def collectors(deployment: Deployment, tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    started: list[CollectorProcess] = []

    def start(**env: Any) -> CollectorProcess:
        c = CollectorProcess(deployment, tmp_path, **env)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def by_key(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r.key.decode(), []).append(orjson.loads(r.value))
    return out


def test_events_land_on_their_topics_keyed_by_customer(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    d = deployment
    c = collectors()
    line = {"sku": "A-7", "category": "shoes", "quantity": 1, "unit_price": 59.9}
    batch = [
        {"type": "browse", "customer_id": "c-1", "page_type": "product", "sku": "A-7"},
        {"type": "cart", "customer_id": "c-1", "action": "add", **line},
        {
            "type": "purchase",
            "customer_id": "c-2",
            "order_id": "o-1",
            "lines": [line],
            "total": 59.9,
            "currency": "EUR",
            "event_id": "mine-1",
            "occurred_at": "2026-11-22T10:00:00Z",
        },
        {"type": "refund", "customer_id": "c-2", "order_id": "o-1", "total": 59.9},
        {"type": "profile", "customer_id": "c-3", "attributes": {"country": "DE"}},
        {"type": "cart", "customer_id": "c-1", "action": "add"},  # no sku
        {"type": "browse", "page_type": "home"},  # nobody
        {"type": "teleport", "customer_id": "c-1"},
        "not an event",
        {"type": "browse", "customer_id": "anon:x", "page_type": "home"},
    ]
    before = datetime.now(UTC)
    status, body, _ = c.post("/v1/events", {"batch": batch})
    assert status == 200, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (5, 5, 0), body
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(batch)))
    assert [r["status"] for r in results] == ["accepted"] * 5 + ["rejected"] * 5
    assert results[2]["event_id"] == "mine-1"
    reasons = [r["reason"] for r in results[5:]]
    assert "sku is required" in reasons[0]
    assert reasons[1] == "customer_id or anonymous_id is required"
    assert "type" in reasons[2] and "must be a JSON object" in reasons[3]
    assert "anon:" in reasons[4]

    # one event as the body, an array body and the pixel
    assert (
        c.post("/v1/events", {"type": "browse", "customer_id": "c-4", "page_type": "home"})[0]
        == 200
    )
    status, body, _ = c.post(
        "/v1/events", [{"type": "browse", "customer_id": "c-4", "page_type": "search"}]
    )
    assert status == 200 and body["accepted"] == 1
    status, gif, headers = c.request(
        "GET",
        f"/v1/pixel.gif?writeKey={KEY}&type=cart&customer_id=c-5&action=add&sku=B-2"
        "&quantity=2&unit_price=9.5&geo.country=DE",
    )
    assert status == 200 and headers["Content-Type"] == "image/gif" and gif[:6] == b"GIF89a"
    status, body, _ = c.request("GET", f"/v1/pixel.gif?writeKey={KEY}&type=cart&customer_id=c-5")
    assert status == 400 and body["results"][0]["status"] == "rejected", body

    browse = by_key(d.read_topic(BROWSE, expect=3, settle=0.5))
    cart_records = d.read_topic(CART, expect=2, settle=0.5)
    cart = by_key(cart_records)
    purchase = by_key(d.read_topic(PURCHASE, expect=2, settle=0.5))
    profile = by_key(d.read_topic(PROFILE, expect=1, settle=0.5))
    assert {k: len(v) for k, v in browse.items()} == {"c-1": 1, "c-4": 2}
    assert {k: len(v) for k, v in cart.items()} == {"c-1": 1, "c-5": 1}
    assert [e["type"] for e in purchase["c-2"]] == ["purchase", "refund"]
    assert list(profile) == ["c-3"]
    assert cart["c-5"][0]["quantity"] == 2 and cart["c-5"][0]["geo"] == {"country": "DE"}
    first = cart["c-1"][0]
    assert first["schema_version"] == 1 and first["event_id"] == results[1]["event_id"]
    assert before <= datetime.fromisoformat(first["occurred_at"]) <= datetime.now(UTC)
    assert purchase["c-2"][0]["occurred_at"] == "2026-11-22T10:00:00Z"  # no sent_at: kept
    headers = dict(cart_records[0].headers)
    assert headers["site"] == b"shop-de"
    received = datetime.fromisoformat(headers["received_at"].decode())
    assert before <= received <= datetime.now(UTC)


def test_clock_skew_of_a_batch_is_corrected(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    c = collectors()
    now = datetime.now(UTC)
    behind = now.replace(year=now.year - 1)  # a client clock a year behind
    event = {
        "type": "browse",
        "customer_id": "c-1",
        "page_type": "home",
        "occurred_at": behind.isoformat(),
    }
    status, body, _ = c.post("/v1/events", {"batch": [event], "sent_at": behind.isoformat()})
    assert status == 200, body
    [stored] = by_key(deployment.read_topic(BROWSE, expect=1, settle=0.2))["c-1"]
    assert abs((datetime.fromisoformat(stored["occurred_at"]) - now).total_seconds()) < 30


def test_events_dated_ahead_are_rejected_and_skew_never_moves_past_receipt(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    c = collectors()
    now = datetime.now(UTC)
    sent = now - timedelta(hours=1)  # a client clock an hour behind
    base = {"type": "browse", "page_type": "home"}
    batch = [
        {**base, "customer_id": "c-2099", "occurred_at": "2099-01-01T00:00:00Z"},
        # 30 min after the client's sent_at: the hour of correction would put it 30 min
        # after the collector received it.
        {
            **base,
            "customer_id": "c-skew",
            "occurred_at": (sent + timedelta(minutes=30)).isoformat(),
        },
        {**base, "customer_id": "c-late", "occurred_at": "2010-12-01T08:26:00Z"},
    ]
    status, body, _ = c.post("/v1/events", {"batch": batch, "sent_at": sent.isoformat()})
    assert status == 200 and (body["accepted"], body["rejected"]) == (2, 1), body
    rejected = body["results"][0]
    assert rejected["status"] == "rejected"
    assert rejected["reason"].startswith("occurred_at 2099-01-01T00:00:00Z is ")
    assert "days ahead of its receive time" in rejected["reason"]
    assert rejected["reason"].endswith("limit SEGSTREAM_MAX_FUTURE_S=300")
    records = deployment.read_topic(BROWSE, expect=2, settle=0.5)
    stored = by_key(records)
    assert "c-2099" not in stored
    [skewed] = [r for r in records if r.key == b"c-skew"]
    received = datetime.fromisoformat(dict(skewed.headers)["received_at"].decode())
    assert datetime.fromisoformat(stored["c-skew"][0]["occurred_at"]) == received  # clamped
    assert stored["c-late"][0]["occurred_at"].startswith("2010-12-01T09:2")  # late data is kept


def test_identify_moves_the_anonymous_history_onto_the_customer(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    d = deployment
    c = collectors()
    d.start_worker()
    aid, customer = "a-7f3e", "c-77"
    item = {"sku": "A-7", "category": "shoes", "unit_price": 59.9}
    anon = [
        {"type": "browse", "anonymous_id": aid, "page_type": "product", "sku": "A-7"},
        {"type": "cart", "anonymous_id": aid, "action": "add", **item},
    ]
    status, body, _ = c.post("/v1/events", anon)
    assert status == 200 and body["accepted"] == 2, body
    ids = [r["event_id"] for r in body["results"]]
    d.wait_applied({f"anon:{aid}": 2}, timeout=30)
    prefix = d.settings.key_prefix
    assert d.redis.llen(history_key(prefix, aid)) == 2

    status, body, _ = c.post("/v1/identify", {"anonymous_id": aid, "customer_id": customer})
    assert (status, body) == (200, {"status": "linked", "republished": 2})
    assert d.redis.get(link_key(prefix, aid)) == customer.encode()
    assert d.redis.ttl(link_key(prefix, aid)) > 86400
    assert not d.redis.exists(history_key(prefix, aid))
    d.wait_applied({customer: 2}, timeout=30)

    # later anonymous events land on the customer; a second identify moves nothing again
    status, body, _ = c.post(
        "/v1/events",
        {
            "type": "purchase",
            "anonymous_id": aid,
            "order_id": "o-9",
            "lines": [item],
            "total": 59.9,
            "currency": "EUR",
        },
    )
    assert status == 200, body
    status, body, _ = c.post("/v1/identify", {"anonymous_id": aid, "customer_id": customer})
    assert (status, body["republished"]) == (200, 0)
    d.wait_applied({customer: 3}, timeout=30)

    state = d.state(customer) or {}
    assert state["events"] == 3 and state["orders"] == 1
    assert (d.state(f"anon:{aid}") or {})["events"] == 2  # keeps its own history
    cart = by_key(d.read_topic(CART, expect=2, settle=0.3))
    assert [e["event_id"] for e in cart[customer]] == [f"{ids[1]}@{customer}"]
    assert cart[customer][0]["merged_from"] == f"anon:{aid}"
    assert [
        e["customer_id"] for e in by_key(d.read_topic(PURCHASE, expect=1, settle=0.3))[customer]
    ] == [customer]

    changes = [orjson.loads(r.value) for r in d.read_topic(CHANGES, expect=4, settle=1.0)]
    journey = [
        x["current"]
        for x in changes
        if x["customer_id"] == customer and x["dimension"] == "journey"
    ]
    assert journey[-2:] == ["active_cart", "first_time_buyer"], journey
    anon_journey = [
        x["current"]
        for x in changes
        if x["customer_id"] == f"anon:{aid}" and x["dimension"] == "journey"
    ]
    assert anon_journey[-1] == "active_cart", anon_journey


def test_protection_answers_4xx_as_json(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    c = collectors(
        SEGSTREAM_COLLECTOR__ALLOWED_ORIGINS='["https://shop.example"]',
        SEGSTREAM_COLLECTOR__MAX_BODY_BYTES=4096,
        SEGSTREAM_COLLECTOR__MAX_BATCH=5,
    )
    event = {"type": "browse", "customer_id": "c-1", "page_type": "home"}

    status, body, _ = c.post("/v1/events", event, key=None)
    assert (status, body["error"]) == (401, "invalid_write_key")
    assert c.post("/v1/events", event, key="wrong")[0] == 401
    assert c.request("GET", "/v1/pixel.gif?type=browse&customer_id=c&page_type=home")[0] == 401
    assert c.post("/v1/identify", {"anonymous_id": "a", "customer_id": "c"}, key=None)[0] == 401

    # CORS: the allowed origin is echoed, others are refused (also their preflight)
    status, body, headers = c.post("/v1/events", event, Origin="https://shop.example")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://shop.example"
    status, body, headers = c.post("/v1/events", event, Origin="https://evil.example")
    assert (status, body["error"]) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in headers
    status, _, headers = c.request(
        "OPTIONS",
        "/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-write-key",
        },
    )
    assert status == 204
    assert "X-Write-Key" in headers["Access-Control-Allow-Headers"]
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert c.request("OPTIONS", "/v1/events", headers={"Origin": "https://evil.example"})[0] == 403

    # sizes, bad bodies
    status, body, _ = c.post("/v1/events", b"x" * 5000)
    assert (status, body["error"]) == (413, "body_too_large")
    status, body, _ = c.post("/v1/events", [event] * 6)
    assert (status, body["error"]) == (413, "too_many_events")
    status, body, _ = c.post("/v1/events", b"{not json")
    assert (status, body["error"]) == (400, "invalid_json")
    status, body, _ = c.post("/v1/events", {"batch": []})
    assert (status, body["error"]) == (400, "empty_batch")
    status, body, _ = c.post("/v1/events", [{"type": "browse"}])
    assert status == 400 and body["rejected"] == 1, body
    status, body, _ = c.post("/v1/identify", {"anonymous_id": "a", "customer_id": "anon:b"})
    assert (status, body["error"]) == (400, "invalid_customer_id")

    # rate limit: a bucket of 8 events, refilled at 1 event/s
    r = collectors(SEGSTREAM_COLLECTOR__RATE_PER_S=1, SEGSTREAM_COLLECTOR__RATE_BURST=8)
    assert r.post("/v1/events", [event] * 5)[0] == 200
    assert r.post("/v1/events", [event] * 3)[0] == 200
    status, body, headers = r.post("/v1/events", [event] * 2)
    assert (status, body["error"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1
    time.sleep(1.2)
    assert r.post("/v1/events", event)[0] == 200

    # nothing identifying in the logs (there is no access log)
    for proc in (c, r):
        proc.stop()
        text = proc.log_path.read_text()
        assert "c-1" not in text and "Traceback" not in text, text


def test_a_wrong_method_answers_405_with_allow(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    c = collectors()
    status, body, headers = c.request("GET", "/v1/events", headers={"X-Write-Key": KEY})
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert "POST" in headers["Allow"].split(", ")
    status, body, headers = c.post("/v1/pixel.gif", {})
    assert status == 405 and "GET" in headers["Allow"].split(", ")
    assert c.request("GET", "/v1/identify", headers={"X-Write-Key": KEY})[0] == 405
    assert c.request("GET", "/v1/events")[0] == 401  # the write key is checked first


def test_ready_checks_redis_and_anonymous_events_get_503_without_it(
    deployment: Deployment, collectors: Callable[..., CollectorProcess]
) -> None:
    ok = collectors()
    status, body, _ = ok.request("GET", "/ready")
    assert (status, body) == (200, {"ready": True, "reasons": []})

    down = collectors(SEGSTREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert "Redis does not answer" in down.log()  # said at start, not "healthy"
    status, body, _ = down.request("GET", "/ready")
    assert status == 503 and not body["ready"]
    assert [r.split(":")[0] for r in body["reasons"]] == ["redis"]

    now = datetime.now(UTC).isoformat()
    anonymous = {
        "type": "browse",
        "anonymous_id": "a-down",
        "page_type": "home",
        "occurred_at": now,
    }
    known = {"type": "browse", "customer_id": "c-up", "page_type": "home", "occurred_at": now}
    status, body, headers = down.post("/v1/events", [anonymous, known])
    assert status == 503 and headers["Retry-After"].isdigit()
    assert [r["status"] for r in body["results"]] == ["failed", "accepted"]
    assert "Redis" in body["results"][0]["reason"]
    status, body, headers = down.post(
        "/v1/identify", {"anonymous_id": "a-down", "customer_id": "c-up"}
    )
    assert (status, body["error"]) == (503, "redis_unavailable") and "Retry-After" in headers
    browse = [r for r in deployment.read_topic(BROWSE, expect=1) if r.key]
    assert [r.key for r in browse] == [b"c-up"]
