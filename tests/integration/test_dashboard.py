"""/metrics, the dashboard's JSON and the dashboard page in a real browser, on a real
worker fed simulated traffic.

One worker and one page serve the panel tests (module fixture ``run``): the worker gets a
custom-segments file, a published behaviour-cluster model, simulated traffic (part of it
still flowing while the page is open) and two bad messages; each test then checks one
panel against the worker's own JSON.

The browser is Debian's chromium (``scripts/install-chromium.sh``, run by ``make test``;
this test runs it too), driven by Playwright with ``executable_path``: no browser is
downloaded. With ``SEGSTREAM_DASHBOARD_SCREENSHOT=path`` the test saves the page there
(docs/dashboard.png was made so).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from segmenters.clv.distribution import distribution
from streams.kafka.topics import CART
from streams.settings import Settings
from streams.store.keys import model_key
from streams.tools.simulate import generate
from tests.integration.conftest import ROOT, Deployment, free_port
from tests.integration.test_change_ids import first_model
from tests.integration.test_web import VALUE_SIZES, seed_value

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
VIEWPORT = {"width": 1400, "height": 1500}
CUSTOMERS = 300


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


def web_env(port: int) -> dict[str, Any]:
    return {
        "SEGSTREAM_WEB_ENABLED": "true",
        "SEGSTREAM_WEB_PORT": port,
        "SEGSTREAM_API_TOKEN": TOKEN,
        "SEGSTREAM_SIZES_EVERY_S": "1",
        "SEGSTREAM_HISTORY_EVERY_S": "1",
        "SEGSTREAM_BATCH_WINDOW_S": "0.2",
    }


@dataclass
class Run:
    """The module's worker, its traffic and one dashboard page on it."""

    d: Deployment
    page: Any
    browser: Any
    base: str
    first: list[dict[str, Any]]
    sender: threading.Thread
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    decided_at: float = 0.0


@pytest.fixture(scope="module")
def run(
    services: Settings, chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("dashboard")
    segments = tmp / "segments.toml"
    shutil.copy(ROOT / "config" / "segments.toml", segments)
    d = Deployment(services, tmp, **web_env(free_port()), SEGSTREAM_SEGMENTS_FILE=str(segments))
    now = datetime.now(UTC)
    events = list(
        generate(CUSTOMERS, seed=11, start=now - timedelta(hours=2), duration_s=7200, rate=0.5)
    )
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    d.redis.set(model_key(d.settings.key_prefix), orjson.dumps(first_model()))
    stop = threading.Event()

    def trickle() -> None:
        for i in range(0, len(rest), 20):
            if stop.is_set():
                return
            d.produce(rest[i : i + 20])
            time.sleep(0.3)

    sender = threading.Thread(target=trickle, daemon=True)
    pw = sync_playwright().start()
    browser = None
    try:
        d.start_worker()
        d.produce(first)
        d.produce_raw(CART, b"c-bad", b"{not json")
        d.produce_raw(CART, b"c-bad", b'{"schema_version": 1}')
        d.wait_caught_up(d.settings.app_id)
        decided = (now - timedelta(days=2)).timestamp()
        seed_decisions(d, decided)
        wait_for("sizes", lambda: get_json(d, "/api/sizes?since=1h")["at"])
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
        r = Run(d, page, browser, f"http://127.0.0.1:{d.settings.web_port}", first, sender)
        r.decided_at = decided
        page.on(
            "console",
            lambda m: r.console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: r.console.append(f"pageerror: {e}"))
        page.on("request", lambda q: r.requests.append(q.url))
        sender.start()
        page.goto(f"{r.base}/dashboard?token={TOKEN}")
        wait_js(page, "window.segstream && window.segstream.ready")
        assert "token" not in page.url  # taken out of the address bar
        yield r
        assert r.console == [], r.console
        hosts = {urlsplit(u).hostname for u in r.requests if not u.startswith(("data:", "blob:"))}
        assert hosts <= LOOPBACK, hosts
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(30)
        if browser is not None:
            browser.close()
        pw.stop()
        d.close()


def status_of(r: Run) -> Any:
    return get_json(r.d, "/api/status")


def test_api_metrics_and_auth(run: Run) -> None:
    d, first = run.d, run.first
    # --- auth: probes and the page are open, data is not ----------------------------------
    assert get(d, "/metrics", token=None)[0] == 401
    assert get(d, "/api/status", token="wrong")[0] == 401
    assert get(d, "/api/deadletters", token=None)[0] == 401
    assert get(d, "/segments/journey/new/members.csv", token=None)[0] == 401
    assert get(d, "/dashboard", token=None)[0] == 200
    assert get(d, "/static/chart.umd.min.js", token=None)[0] == 200
    assert get(d, "/static/../web.py", token=None)[0] == 404
    assert get(d, "/api/flows?window=9d")[0] == 400
    assert get(d, "/api/deadletters?since=yesterday")[0] == 400
    assert get(d, "/api/deadletters?limit=0")[0] == 400

    status, body, ctype = get(d, "/metrics")
    assert status == 200 and ctype.startswith("text/plain"), ctype
    found = samples(body.decode())
    assert total(found, "segstream_messages_total") >= len(first) + 2
    assert found[("segstream_deadletters_total", ())] == 2
    assert total(found, "segstream_segment_changes_total") > 0
    lags = {dict(k[1])["partition"] for k, v in found.items() if k[0] == "segstream_consumer_lag"}
    assert lags == {"0", "1", "2", "3"}, lags
    assert total(found, "segstream_redis_errors_total") == 0
    api = status_of(run)
    assert [p["partition"] for p in api["partitions"]] == [0, 1, 2, 3]
    assert api["totals"]["deadletters"] == 2
    # actions telemetry: /metrics and /api/status count the same decisions
    decided = total(found, "segstream_actions_decided_total")
    assert decided > 0, "the simulated traffic decided no retention action"
    assert api["config"]["segments"]["failing"] is False


def test_rates_and_totals_are_apart(run: Run) -> None:
    page = run.page
    wait_js(page, "window.segstream.polls >= 4 && window.segstream.rates !== null")
    rates = page.locator("#rates").inner_text()
    totals = page.locator("#totals").inner_text()
    for label in (
        "events / s",
        "dead letters / s",
        "segment changes / s",
        "timers fired / s",
        "actions sent / s",
    ):
        assert label in rates, (label, rates)
    assert "per second" in rates and "total" not in rates.lower(), rates
    assert "Totals" in totals and "since the worker started" in totals
    for label in (
        "messages (total)",
        "dead letters (total)",
        "timers fired (total)",
        "actions sent (total)",
    ):
        assert label in totals, (label, totals)
    # totals are the worker's counters as the page last read them
    shown_status = page.evaluate("window.segstream.previous")
    assert page.locator("#t-deadletters").inner_text() == "2"
    assert page.locator("#t-messages").inner_text() == shown(shown_status["totals"]["messages"], 0)
    # rates are counter deltas over the poll interval: never a running total
    wait_js(page, "window.segstream.history.filter(h => h.rates && h.rates.events > 0).length")
    peak = page.evaluate(
        "Math.max(...window.segstream.history.filter(h => h.rates).map(h => h.rates.events))"
    )
    assert 0 < peak < shown_status["totals"]["messages"], peak


TICKS = """() => Object.fromEntries(Object.entries(window.segstream.charts).map(([id, c]) => [id, {
    labels: c.scales.x.ticks.map(t => t.label),
    values: c.scales.x.ticks.map(t => t.value),
    xs: c.data.datasets.map(s => s.data.map(p => p.x)),
    tension: c.data.datasets.map(s => c.options.elements.line.tension + (s.tension || 0)),
    cubic: c.options.elements.line.cubicInterpolationMode,
    type: c.options.scales.x.type }]))"""


def test_charts_have_a_time_axis_and_no_smoothing(run: Run) -> None:
    page = run.page
    page.select_option("#sizes-window", "15m")  # a point per 5 s
    wait_js(page, "window.segstream.polls >= 6 && window.segstream.sizes.at.length >= 3")
    charts = page.evaluate(TICKS)
    assert set(charts) == {"c-throughput", "c-lag", "c-fresh", "c-sizes"}, charts
    now = time.time()
    for chart_id, c in charts.items():
        assert c["type"] == "linear" and c["cubic"] == "default", (chart_id, c)
        assert all(t == 0 for t in c["tension"]), (chart_id, c["tension"])
        xs = [x for series in c["xs"] for x in series]
        assert xs and max(len(s) for s in c["xs"]) >= 2, (chart_id, c["xs"])
        assert all(now - 7200 < x < now + 60 for x in xs), (chart_id, xs[:5])  # timestamps
        labels = [label for label in c["labels"] if label]
        assert len(labels) >= 2 and len(labels) == len(set(labels)), (chart_id, labels)
        steps = {round(b - a, 6) for a, b in zip(c["values"], c["values"][1:], strict=False)}
        assert len(steps) == 1, (chart_id, c["values"])  # ticks at one round step
    inked = page.evaluate(
        """() => Object.keys(window.segstream.charts).map(id => {
            const c = document.getElementById(id);
            const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
            return n; })"""
    )
    assert len(inked) == 4 and all(n > 500 for n in inked), inked
    assert page.locator("#partitions tbody tr").count() == 4
    assert page.locator("#health").inner_text() == "running"


def test_size_history_survives_a_reload(run: Run) -> None:
    page = run.page
    wait_js(page, "window.segstream.sizes && window.segstream.sizes.at.length >= 3")
    before = page.evaluate("window.segstream.sizes.at")
    loaded = time.time()
    time.sleep(1.0)
    page.reload()
    wait_js(page, "window.segstream && window.segstream.ready")
    after = page.evaluate("window.segstream.sizes.at")
    # the first page load's points come back from Redis, not from the new page's polls
    assert after[0] <= before[0] + 15 and after[0] < loaded, (before[:3], after[:3])
    assert len(after) >= len(before) - 1, (len(before), len(after))
    points = page.evaluate(
        "window.segstream.charts['c-sizes'].data.datasets.map(s => s.data.length)"
    )
    assert points and min(points) == len(after), points


OPS_POINTS = """(id) => window.segstream.charts[id].data.datasets
    .flatMap(s => s.data.map(p => p.x))"""


def test_throughput_lag_and_freshness_survive_a_reload(run: Run) -> None:
    page = run.page

    def stored_points() -> Any:
        doc = get_json(run.d, "/api/history?since=15m&every=10s")
        return doc if len(doc["at"]) >= 3 else None

    stored = wait_for("three stored buckets", stored_points, 60)
    assert stored["every"] == 10.0 and max(stored["workers"]) == 1, stored
    assert any(r > 0 for r in stored["rates"]["events"]), stored["rates"]
    assert set(stored["events"]) <= {"browse", "cart", "purchase", "profile", "refund"}
    loaded = time.time()
    time.sleep(1.0)
    page.reload()
    wait_js(page, "window.segstream && window.segstream.ready")
    # points older than the reload come back from Redis, not from the new page's polls
    for chart in ("c-throughput", "c-lag", "c-fresh"):
        xs = page.evaluate(OPS_POINTS, chart)
        assert xs and min(xs) < loaded - 10, (chart, xs[:5], loaded)
    after = page.evaluate("window.segstream.ops.at")
    assert after[0] <= stored["at"][0] + 10, (stored["at"][:3], after[:3])
    assert "since page load" not in page.locator("main").inner_text()
    # every throughput series has the stored buckets, then the new page's polls
    wait_js(page, "window.segstream.polls >= 3")
    xs = page.evaluate(OPS_POINTS, "c-throughput")
    assert max(xs) > loaded, xs[-3:]
    assert "/api/history?since=15m&every=10s" in " ".join(run.requests)


def test_flows_are_limited_to_the_top_segments(run: Run) -> None:
    page = run.page
    flows = page.evaluate("window.segstream.flows.flows")
    widest = max(flows, key=lambda dim: len({f["to"] for f in flows[dim]}))
    page.select_option("#flows-dim", widest)
    # one read of what the page holds and drew (it polls /api/flows every 10 s)
    got = page.evaluate(
        """() => ({rows: window.segstream.flows.flows[window.segstream.flowsShown.dimension],
            shown: window.segstream.flowsShown,
            heads: [...document.querySelectorAll('#flows thead th')].map(th => th.textContent),
            cells: [...document.querySelectorAll('#flows tbody td')].map(td => td.textContent)})"""
    )
    rows, shown_flows, heads = got["rows"], got["shown"], got["heads"]
    many = len({f["to"] for f in rows} | {f["from"] for f in rows} - {None})
    assert many > 8, (widest, many)  # the simulated traffic has a high-cardinality dimension
    assert shown_flows["dimension"] == widest and len(shown_flows["segments"]) == 8
    assert shown_flows["other"] == many - 8
    assert heads[-1] == "other" and len(heads) == 1 + 8 + 1, heads
    assert '"other" groups the remaining' in page.locator("#flows-note").inner_text()
    # the moves add up: nothing is lost by grouping
    assert sum(int(c.replace(",", "")) for c in got["cells"] if c) == sum(f["count"] for f in rows)
    width = page.evaluate("document.querySelector('#flows').getBoundingClientRect().width")
    assert width <= VIEWPORT["width"], width
    page_width = page.evaluate("document.documentElement.scrollWidth")
    assert page_width <= VIEWPORT["width"], page_width


def test_descriptions_where_ids_appear(run: Run) -> None:
    page, d = run.page, run.d
    vocabulary = get_json(d, "/api/vocabulary")
    published = orjson.loads(d.redis.get(model_key(d.settings.key_prefix)))["model"]
    assert vocabulary["segments"]["behaviour"] == {
        f"cluster_{c['id']}": c["description"] for c in published["clusters"]
    }
    assert vocabulary["dimensions"]["custom:big_spenders"]["description"] == (
        "Customers worth a VIP perk"
    )
    wait_js(page, "window.segstream.vocabulary.segments.behaviour !== undefined")
    clusters = page.evaluate("window.segstream.vocabulary.segments.behaviour")
    page.fill("#sizes-search", "behaviour")
    page.dispatch_event("#sizes-search", "input")
    # the table fills from the next poll of /segments: wait for the clusters' rows
    wait_js(
        page,
        "[...document.querySelectorAll('#sizes-table tbody tr')]"
        ".some(r => r.innerText.startsWith('behaviour'))",
    )
    rows = page.locator("#sizes-table tbody tr").all_inner_texts()
    assert rows and all(r.startswith("behaviour\t") for r in rows), rows
    described = [r for r in rows if r.split("\t")[1] in clusters]  # ids of the model now
    assert described, (rows, clusters)
    for row in described:
        assert f"\t{clusters[row.split(chr(9))[1]]}\t" in row, (row, clusters)
    custom = sorted(
        {s["dimension"] for s in get_json(d, "/segments")["segments"]}
        & set(vocabulary["dimensions"])
    )
    assert custom, "no custom segment has members"
    description = vocabulary["dimensions"][custom[0]]["description"]
    page.fill("#sizes-search", description.lower())  # search reaches descriptions
    page.dispatch_event("#sizes-search", "input")
    # the page shows its last /segments poll, which may predate the segment's first member
    wait_js(
        page,
        "[...document.querySelectorAll('#sizes-table tbody tr')]"
        f".some(r => r.innerText.startsWith({custom[0]!r}))",
    )
    rows = page.locator("#sizes-table tbody tr").all_inner_texts()
    assert rows and all(r.startswith(custom[0] + "\t") for r in rows), rows
    assert all(description in r for r in rows), rows
    # the sizes chart's legend and the flows' legend carry the clusters' descriptions
    page.select_option("#sizes-dim", "behaviour")
    wait_js(page, "window.segstream.sizes.dimension === 'behaviour'")
    # the clusters appear in the size records once a record follows their first members
    wait_js(page, "window.segstream.charts['c-sizes'].data.datasets.length > 0", timeout=60)
    legend = page.evaluate("window.segstream.charts['c-sizes'].data.datasets.map(s => s.label)")
    assert legend, legend
    for label in legend:
        segment = label.split(" ")[0]
        if segment in clusters:
            assert label.startswith(f"{segment} ({clusters[segment][:20]}"), (label, clusters)
    page.select_option("#flows-dim", "behaviour")
    flows_legend = page.locator("#flows-legend").inner_text()
    shown_flows = page.evaluate("window.segstream.flowsShown.segments")
    assert shown_flows, flows_legend
    for segment in set(shown_flows) & set(clusters):
        assert f"{segment}: {clusters[segment]}" in flows_legend, (segment, flows_legend)


def test_sizes_table_members_and_export(run: Run) -> None:
    page, d = run.page, run.d
    page.fill("#sizes-search", "journey")
    page.dispatch_event("#sizes-search", "input")
    # the table shows the page's last /segments answer (sizes move while traffic flows)
    shown_sizes = page.evaluate("window.segstream.segments")
    sizes = {(s["dimension"], s["segment"]): s["size"] for s in shown_sizes}
    rows = page.locator("#sizes-table tbody tr")
    assert rows.count() == sum(1 for k in sizes if k[0] == "journey"), rows.count()
    first = rows.first
    segment = first.get_attribute("data-segment")
    size = sizes[("journey", segment)]
    journey_total = sum(v for k, v in sizes.items() if k[0] == "journey")
    cells = first.locator("td").all_inner_texts()
    assert cells[:4] == ["journey", segment, shown(size, 0), f"{100 * size / journey_total:.1f}%"]
    assert size == max(v for k, v in sizes.items() if k[0] == "journey")  # largest first
    with page.expect_response(lambda r: "/members?count=100" in r.url) as answer:
        first.locator("button.members-link").click()
    wait_js(page, "window.segstream.members !== null")
    members = page.evaluate("window.segstream.members.members")
    assert members and members == answer.value.json()["members"]  # SSCAN: about 100
    listed = page.locator("#members-list li").all_inner_texts()
    assert listed == members[: len(listed)] and listed
    with page.expect_download() as info:
        first.locator("a.csv-link").click()
    text = Path(info.value.path()).read_text()
    rows_csv = list(csv.reader(io.StringIO(text)))
    assert rows_csv[0] == ["customer_id", "dimension", "segment"]
    ids = [r[0] for r in rows_csv[1:]]
    assert len(ids) == len(set(ids)) and {r[2] for r in rows_csv[1:]} == {segment}
    # what the export holds is the segment now (it moves while traffic flows)
    now = {
        s["segment"]: s["size"]
        for s in get_json(d, "/segments")["segments"]
        if s["dimension"] == "journey"
    }
    assert abs(len(ids) - now[segment]) <= max(size, now[segment]) * 0.5 + 5, (len(ids), now)


def test_customer_lookup(run: Run) -> None:
    page, d = run.page, run.d
    buyer = next(e["customer_id"] for e in run.first if e["type"] == "purchase")
    page.fill("#lookup-id", buyer)
    page.click("#lookup button")
    wait_js(
        page, f"window.segstream.customer && window.segstream.customer.customer_id === '{buyer}'"
    )
    view = get_json(d, f"/customers/{buyer}")
    activity = view["activity"]
    assert activity["entries"] and {"last", "pending", "assigned"} <= set(activity["actions"])
    text = page.locator("#customer").inner_text()
    assert f"Segments of {buyer}" in text
    for dim, seg in view["segments"].items():
        assert f"{dim}\t{seg}" in text, (dim, seg, text)
    assert f"orders\t{view['state']['orders']}" in text, text
    assert "Latest segment entries" in text and "Actions" in text and "Predictions" in text
    newest = activity["entries"][0]
    assert (
        f"{newest['dimension']}\t{newest['segment']}\t{newest['at'][:19].replace('T', ' ')}" in text
    )
    page.fill("#lookup-id", "no-such-customer")
    page.click("#lookup button")
    wait_js(page, "window.segstream.customer.missing === true")
    assert "No state for customer no-such-customer" in page.locator("#customer").inner_text()
    # the browser logs the (expected) 404 of that look-up as a console error
    assert sum("status of 404" in m for m in run.console) == 1, run.console
    run.console[:] = [m for m in run.console if "status of 404" not in m]
    page.fill("#lookup-id", buyer)
    page.click("#lookup button")
    wait_js(page, f"window.segstream.customer.customer_id === '{buyer}'")


def test_deadletter_panel(run: Run) -> None:
    page, d = run.page, run.d
    doc = get_json(d, "/api/deadletters?since=24h&limit=20")
    assert doc["total"] == 2 and len(doc["kinds"]) == 2, doc
    wait_js(page, "window.segstream.deadletters && window.segstream.deadletters.total === 2")
    rows = page.locator("#deadletters tbody tr").all_inner_texts()
    assert len(rows) == 2, rows
    for kind, row in zip(doc["kinds"], rows, strict=True):
        assert row.startswith(f"{kind['kind']}\t1\t{kind['example']['reason']}\t"), row
        assert kind["example"]["deadletter"] in row and d.settings.topic(CART) in row
    assert "2 dead letters" in page.locator("#deadletters-note").inner_text()


def test_report_panel(run: Run) -> None:
    page = run.page
    wait_js(page, "window.segstream.report !== null")
    page.select_option("#report-dim", "journey")
    doc = page.evaluate("window.segstream.report")
    journey = next(x for x in doc["dimensions"] if x["dimension"] == "journey")
    rows = page.locator("#report tbody tr").all_inner_texts()
    assert len(rows) == len(journey["segments"]), rows
    for r, row in zip(journey["segments"], rows, strict=True):
        assert row.startswith(f"{r['segment']}\t"), row
        assert f"\t{shown(r['size'], 0)}\t{r['share'] * 100:.1f}%\t" in row, (r, row)


def test_uplift_panel(run: Run) -> None:
    page = run.page
    wait_js(page, "window.segstream.actions && window.segstream.actions.rows.length")
    table = page.locator("#actions").inner_text()
    assert "too few (19 treated, 2 control; 30 each needed)" in table, table
    assert "Δ revenue/customer (EUR, 95% CI)" in table and " pp [" in table, table
    after = (datetime.fromtimestamp(run.decided_at, UTC) + timedelta(days=1)).date().isoformat()
    page.fill("#actions-since", after)
    page.dispatch_event("#actions-since", "change")
    wait_js(page, "window.segstream.actions.since !== null")
    assert "too few (0 treated, 0 control;" in page.locator("#actions").inner_text()
    page.fill("#actions-since", "")
    page.dispatch_event("#actions-since", "change")
    wait_js(page, "window.segstream.actions.since === null")


def test_screenshot(run: Run) -> None:
    page = run.page
    run.sender.join(60)
    wait_js(page, "window.segstream.previous.partitions.every(p => p.lag === 0)")
    page.fill("#sizes-search", "")
    page.dispatch_event("#sizes-search", "input")
    page.select_option("#flows-dim", "journey")
    page.select_option("#sizes-dim", "journey")
    wait_js(page, "window.segstream.sizes.dimension === 'journey'")
    assert page.evaluate("window.segstream.errors") == []
    shot = os.environ.get("SEGSTREAM_DASHBOARD_SCREENSHOT")
    page.screenshot(path=shot or str(run.d.tmp / "dashboard.png"), full_page=True)


def test_actions_telemetry_and_config_reload(run: Run) -> None:
    page = run.page
    api = status_of(run)
    wait_js(page, "Object.keys(window.segstream.previous.actions).length > 0")
    status = page.evaluate("window.segstream.previous")
    rows = page.locator("#telemetry tbody tr").all_inner_texts()
    heads = page.locator("#telemetry thead th").all_inner_texts()
    assert heads[:2] == ["action", "channel"] and heads[-3:] == [
        "sent",
        "suppressed by reason",
        "failed",
    ], heads
    assert len(rows) == len(status["actions"]) and set(api["actions"]) == set(status["actions"])
    for (action, t), row in zip(sorted(status["actions"].items()), rows, strict=True):
        cells = row.split("\t")
        assert cells[:2] == [action, t["channel"]], cells
        assert cells[-3] == shown(t["sent"], 0) and cells[-1] == shown(t["failed"], 0), cells
        for outcome, n in t["decided"].items():
            assert cells[heads.index(f"decided: {outcome}")] == shown(n, 0), (outcome, cells)
        for reason, n in t["suppressed"].items():
            assert f"{reason} {shown(n, 0)}" in cells[-2], (reason, cells)
    config = page.locator("#config").inner_text()
    assert "segments" in config and "ok" in config and page.locator("#config-alert").is_hidden()

    # a segments file that no longer loads: the page says so prominently
    path = Path(api["config"]["segments"]["path"])
    path.write_text(path.read_text() + "\n[segments.broken]\nrule = 'revenue >>> 1'\n")
    wait_for("reload failure", lambda: status_of(run)["config"]["segments"]["failing"], 60)
    wait_js(page, "!document.getElementById('config-alert').hidden")
    alert = page.locator("#config-alert").inner_text()
    assert alert.startswith(f"The segments file ({path}) failed to reload at "), alert
    assert "stays in force" in alert
    assert page.locator("#health").inner_text() == "config reload failing: segments"
    assert "failing" in page.locator("#config").inner_text()


def test_login_without_token(run: Run) -> None:
    other = run.browser.new_page()
    try:
        other.on("request", lambda q: run.requests.append(q.url))
        other.goto(f"{run.base}/dashboard")
        other.wait_for_selector("#login:not([hidden])", timeout=10000)
        other.fill("#token", TOKEN)
        other.click("#login button")
        wait_js(other, "window.segstream.polls >= 1", 10)
    finally:
        other.close()


def shown(x: float, digits: int) -> str:
    """A number as the page's ``fmt`` shows it (en-US grouping, at most ``digits``
    decimals, no trailing zeros)."""
    text = f"{x:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if digits else text


@pytest.fixture
def web(services: Settings, tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(services, tmp_path, **web_env(free_port()))
    yield d
    d.close()


def test_value_panel(web: Deployment, run: Run) -> None:
    """A worker of its own (no value model at first), in the module's browser."""
    d = web
    d.start_worker(SEGSTREAM_CLV_REFIT_S="86400")
    console: list[str] = []
    base = f"http://127.0.0.1:{d.settings.web_port}"
    page = run.browser.new_page(viewport={"width": 1400, "height": 2200})
    try:
        page.on(
            "console",
            lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(f"{base}/dashboard?token={TOKEN}")
        wait_js(page, "window.segstream && window.segstream.value !== null")
        assert page.locator("#value-model").inner_text().startswith("No value model yet")
        assert page.locator("#value-body").is_hidden()

        model, summaries = seed_value(d)
        want = distribution(summaries, model, horizon_days=d.settings.clv_horizon_days)
        page.reload()
        wait_js(page, "window.segstream.value && window.segstream.value.model !== null")
        line = page.locator("#value-model").inner_text()
        assert line.startswith(f"Model version {model.version}, fitted "), line
        for part in (
            "2,357 customers, 946 repeat customers",
            "log-likelihood -9,582.4",
            "BG/NBD r 0.243, alpha 30.895 days, a 0.793, b 2.426",
            "Gamma-Gamma p 6.25, q 3.74, v 15.44",
        ):
            assert part in line, (part, line)
        fit = page.locator("#value-fit").inner_text()
        rows = [r.split("\t") for r in fit.splitlines()]
        assert rows[0] == ["x (repeat days)", "0", "1", "2", "3", "4", "5", "6", "7+"]
        assert rows[1] == ["actual"] + [shown(r.actual, 0) for r in want.fit], rows
        assert rows[2] == ["expected"] + [shown(r.expected, 1) for r in want.fit], rows
        sample = page.locator("#value-sample").inner_text()
        assert sample.startswith("Sample of 150 buyers, scored "), sample
        deciles = page.locator("#value-deciles").inner_text()
        assert [f"{v:,.2f}" for v in want.clv_deciles] == deciles.splitlines()[1].split("\t")[1:], (
            deciles
        )
        charts = page.evaluate(
            """() => Object.fromEntries(Object.entries(window.segstream.valueCharts).map(
                ([id, c]) => [id, c.data.datasets.map(s => s.data)]))"""
        )
        assert charts["c-value"] == [list(VALUE_SIZES.values())], charts
        assert charts["c-alive"] == [want.p_alive], charts
        assert charts["c-fit"][0] == [r.actual for r in want.fit]
        assert charts["c-fit"][1] == pytest.approx([r.expected for r in want.fit])
        inked = page.evaluate(
            """() => ['c-value', 'c-alive', 'c-fit'].map(id => {
                const c = document.getElementById(id);
                const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
                return n; })"""
        )
        assert all(n > 500 for n in inked), inked
        shot = os.environ.get("SEGSTREAM_VALUE_SCREENSHOT")
        page.locator("#value").screenshot(path=shot or str(d.tmp / "value.png"))
    finally:
        page.close()
    assert console == [], console
