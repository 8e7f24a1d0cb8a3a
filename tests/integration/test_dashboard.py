"""/metrics, the dashboard's JSON and the dashboard page in a real browser, on a real
worker fed simulated traffic.

The browser is Debian's chromium (``scripts/install-chromium.sh``, run by ``make test``;
this test runs it too), driven by Playwright with ``executable_path``: no browser is
downloaded. With ``SEGSTREAM_DASHBOARD_SCREENSHOT=path`` the test saves the page there
(docs/dashboard.png was made so).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka.topics import CART
from streams.settings import Settings
from streams.tools.simulate import generate
from tests.integration.conftest import ROOT, Deployment, free_port

TOKEN = "dash-t0ken"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def chromium() -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-chromium.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"no chromium for the browser test:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def web(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(
        services,
        tmp_path,
        SEGSTREAM_WEB_ENABLED="true",
        SEGSTREAM_WEB_PORT=free_port(),
        SEGSTREAM_API_TOKEN=TOKEN,
        SEGSTREAM_SIZES_EVERY_S="1",
        SEGSTREAM_BATCH_WINDOW_S="0.2",
    )
    yield d
    d.close()


def get(d: Deployment, path: str, token: str | None = TOKEN) -> tuple[int, bytes, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{d.settings.web_port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def get_json(d: Deployment, path: str) -> Any:
    status, body, _ = get(d, path)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


def wait_for(what: str, check: Any, timeout: float = 30) -> Any:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def wait_js(page: Any, expression: str, timeout: float = 30) -> None:
    """Poll a JavaScript expression (``wait_for_function`` would need eval, which the
    page's Content-Security-Policy forbids)."""
    wait_for(expression, lambda: page.evaluate(expression), timeout)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(found: dict[tuple[str, Any], float], name: str) -> float:
    return sum(v for (n, _), v in found.items() if n == name)


def seed_decisions(d: Deployment, at: float) -> None:
    """Decision records of the default experiment, as the pipeline writes them:
    ``email/win_back`` with 19 treated and 2 control customers (11 treated bought),
    ``ads/win_back`` with 60 and 40 (30 % against 20 % bought)."""
    from segmenters.actions import ActionState
    from segmenters.actions.document import ActionDoc
    from segmenters.actions.policy import DEFAULT_POLICY
    from streams.kafka.partitioner import partition_for
    from streams.store.keys import assigned_key, experiment_actions_key, state_key

    prefix, parts, exp = (
        d.settings.key_prefix,
        d.settings.topic_partitions,
        DEFAULT_POLICY.experiment,
    )
    pipe = d.redis.pipeline(transaction=False)
    for action, groups in {
        "email/win_back": {"treated": (19, 11), "control": (2, 0)},
        "ads/win_back": {"treated": (60, 18), "control": (40, 8)},
    }.items():
        for group, (n, bought) in groups.items():
            for i in range(n):
                cid = f"u-{action[0]}{group[0]}{i}"
                p = partition_for(cid, parts)
                pipe.hset(assigned_key(prefix, p, exp, action), cid, f"{group} {at!r}")
                pipe.sadd(experiment_actions_key(prefix, p, exp), action)
                doc = ActionDoc(ActionState(cid))
                if i < bought:
                    doc.add_purchase(f"o-{cid}", at + 3600.0, 40.0 + 7 * i)
                pipe.hset(state_key(prefix, p, cid), "act", json.dumps(doc.to_doc()))
    pipe.execute()


def test_metrics_and_dashboard(web: Deployment, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    d = web
    now = datetime.now(UTC)
    events = list(
        generate(80, seed=11, start=now - timedelta(seconds=900), duration_s=900, rate=1.0)
    )
    first, rest = events[:500], events[500:]
    d.start_worker()

    # --- auth: probes and the page are open, data is not ----------------------------------
    assert get(d, "/metrics", token=None)[0] == 401
    assert get(d, "/api/status", token="wrong")[0] == 401
    assert get(d, "/dashboard", token=None)[0] == 200
    assert get(d, "/static/chart.umd.min.js", token=None)[0] == 200
    assert get(d, "/static/../web.py", token=None)[0] == 404
    assert get(d, "/api/flows?window=9d")[0] == 400

    d.produce(first)
    d.produce_raw(CART, b"c-bad", b"{not json")
    d.produce_raw(CART, b"c-bad", b'{"schema_version": 1}')
    d.wait_caught_up(d.settings.app_id)
    wait_for("sizes", lambda: get_json(d, "/api/sizes")["at"])

    # --- /metrics -------------------------------------------------------------------------
    status, body, ctype = get(d, "/metrics")
    (d.tmp / "metrics.txt").write_bytes(body)
    assert status == 200 and ctype.startswith("text/plain"), ctype
    found = samples(body.decode())
    assert total(found, "segstream_messages_total") == len(first) + 2
    assert total(found, "segstream_events_total") == len(first)
    assert found[("segstream_deadletters_total", ())] == 2
    by_type = {dict(k[1])["type"]: v for k, v in found.items() if k[0] == "segstream_events_total"}
    assert by_type["profile"] == sum(1 for e in first if e["type"] == "profile")
    assert total(found, "segstream_segment_changes_total") > 0
    assert found[("segstream_broker_to_state_seconds_count", ())] == len(first) + 2
    assert found[("segstream_batch_size_sum", ())] == len(first) + 2
    lags = {dict(k[1])["partition"] for k, v in found.items() if k[0] == "segstream_consumer_lag"}
    assert lags == {"0", "1", "2", "3"}, lags
    assert total(found, "segstream_consumer_lag") == 0
    assert total(found, "segstream_partition_stalled") == 0
    ages = [v for k, v in found.items() if k[0] == "segstream_partition_event_age_seconds"]
    assert ages and all(0 <= a < 3600 for a in ages), ages
    assert total(found, "segstream_redis_errors_total") == 0

    api = get_json(d, "/api/status")
    assert [p["partition"] for p in api["partitions"]] == [0, 1, 2, 3]
    assert api["totals"]["deadletters"] == 2 and api["totals"]["messages"] == len(first) + 2
    empty = get_json(d, "/api/actions")
    assert empty["rows"] == [] and empty["currency"] == "EUR" and empty["min_group"] == 30
    assert get(d, "/api/actions?since=last-week")[0] == 400
    assert get(d, "/api/actions?since=2026-11-02&until=2026-11-01")[0] == 400
    decided = now - timedelta(days=2)
    seed_decisions(d, decided.timestamp())
    report = get_json(d, "/api/actions")
    rows = {r["action"]: r for r in report["rows"]}
    few, ok = rows["email/win_back"], rows["ads/win_back"]
    assert (few["status"], few["treated"]["customers"], few["control"]["customers"]) == (
        "too_few",
        19,
        2,
    )
    assert few["conversion_diff"] is None and few["treated"]["converted"] == 11
    assert ok["status"] == "ok" and ok["currency"] == "EUR"
    assert ok["conversion_diff"]["estimate"] == pytest.approx(0.3 - 0.2)
    assert ok["conversion_diff"]["low"] < 0 < ok["conversion_diff"]["high"]
    assert isinstance(ok["revenue_diff"]["high"], float)
    after = (decided + timedelta(days=1)).date().isoformat()
    later = get_json(d, f"/api/actions?since={after}")
    assert later["since"] is not None and later["until"] is None
    assert all(r["treated"]["customers"] == r["control"]["customers"] == 0 for r in later["rows"])

    def entered() -> int:  # flows are added to Redis every few seconds
        flows = get_json(d, "/api/flows?window=1h")["flows"]
        return sum(f["count"] for f in flows.get("journey", []) if f["from"] is None)

    customers = len({e["customer_id"] for e in first})
    wait_for("flows", lambda: entered() == customers, timeout=20)

    # --- the page, while traffic flows -----------------------------------------------------
    stop = threading.Event()

    def trickle() -> None:
        for i in range(0, len(rest), 10):
            if stop.is_set():
                return
            d.produce(rest[i : i + 10])
            time.sleep(0.5)

    sender = threading.Thread(target=trickle, daemon=True)
    console: list[str] = []
    requests: list[str] = []
    base = f"http://127.0.0.1:{d.settings.web_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.on(
                "console",
                lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            sender.start()
            page.goto(f"{base}/dashboard?token={TOKEN}")
            wait_js(page, "window.segstream && window.segstream.ready")
            assert "token" not in page.url  # taken out of the address bar
            wait_js(page, "window.segstream.polls >= 8")  # traffic still flows

            charts = page.evaluate(
                """() => Object.fromEntries(Object.entries(window.segstream.charts).map(
                    ([id, c]) => [id, c.data.datasets.map(
                        s => s.data.filter(v => v !== null).length)]))"""
            )
            assert set(charts) == {"c-throughput", "c-lag", "c-fresh", "c-sizes"}, charts
            for chart_id, lengths in charts.items():
                assert lengths and max(lengths) >= 2, (chart_id, lengths)
            inked = page.evaluate(
                """() => [...document.querySelectorAll('canvas')].map(c => {
                    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
                    return n; })"""
            )
            assert len(inked) == 4 and all(n > 500 for n in inked), inked
            assert page.locator("#partitions tbody tr").count() == 4
            assert page.locator("#flows thead th").count() >= 2
            assert page.locator("#health").inner_text() == "running"
            wait_js(page, "window.segstream.actions && window.segstream.actions.rows.length")
            table = page.locator("#actions").inner_text()
            assert "too few (19 treated, 2 control; 30 each needed)" in table, table
            assert "Δ revenue/customer (EUR, 95% CI)" in table and " pp [" in table, table
            assert page.evaluate("window.segstream.errors") == []
            rates = page.evaluate("window.segstream.history.map(h => h.rates && h.rates.all)")
            assert max(r or 0 for r in rates) > 0, rates
            shot = os.environ.get("SEGSTREAM_DASHBOARD_SCREENSHOT")
            page.screenshot(path=shot or str(d.tmp / "dashboard.png"), full_page=True)
            sender.join(60)
            wait_js(page, "window.segstream.previous.partitions.every(p => p.lag === 0)")
            # a window of decision dates: nothing was decided after the seeded records
            page.fill("#actions-since", after)
            page.dispatch_event("#actions-since", "change")
            wait_js(page, "window.segstream.actions.since !== null")
            assert "too few (0 treated, 0 control;" in page.locator("#actions").inner_text()

            # without a token: the page asks for one, and shows no data
            other = browser.new_page()
            other.on("request", lambda r: requests.append(r.url))
            other.goto(f"{base}/dashboard")
            other.wait_for_selector("#login:not([hidden])", timeout=10000)
            other.fill("#token", TOKEN)
            other.click("#login button")
            wait_js(other, "window.segstream.polls >= 1", 10)
        finally:
            stop.set()
            if sender.is_alive():
                sender.join(30)
            browser.close()

    assert console == [], console
    hosts = {urlsplit(u).hostname for u in requests if not u.startswith("data:")}
    assert hosts <= LOOPBACK, hosts
