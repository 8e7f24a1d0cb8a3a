"""The worker's HTTP API against a real worker: probes, auth, look-ups, paging, erase."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.topics import ERASED
from streams.settings import Settings
from tests.integration.conftest import Deployment, free_port
from tests.integration.test_cli import segstream
from tests.unit.factories import Events

TOKEN = "s3cret-token"


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
    d.start_worker()
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
