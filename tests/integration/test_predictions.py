"""Predicted value end to end: a real worker fits the value model from the buyers' stored
purchase days, and the customer look-up scores each buyer with the latest snapshot."""

from __future__ import annotations

import json
import random
import time
from datetime import datetime
from typing import Any

import pytest

from segmenters.clv import day_of
from segmenters.clv.model import ClvModel
from segmenters.state import CustomerState
from streams.store.clocks import read_watermarks
from streams.store.clv import read_clv_model, summary_of
from tests.integration.conftest import Deployment
from tests.integration.test_cli import segstream
from tests.integration.test_event_time import until
from tests.integration.test_web import call, web  # noqa: F401 - its fixture
from tests.unit.factories import Events

DAY_MIN = 24 * 60
CUSTOMERS = 50


def history() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Purchases of ``CUSTOMERS`` buyers over 90 days (most come back, some refund), one
    browser who never bought; all in time order. Returns the events and each customer's
    count."""
    rng = random.Random(7)
    events = []
    for i in range(CUSTOMERS):
        e = Events(f"c-val-{i}")
        day = rng.randrange(0, 40)
        for n in range(rng.choice([1, 1, 2, 3, 4, 6])):
            minutes = day * DAY_MIN + rng.randrange(0, 600)
            events.append(e.purchase(f"c-val-{i}-o{n}", ["A"], minutes, price=rng.uniform(5, 90)))
            if rng.random() < 0.1:
                events.append(e.refund(f"c-val-{i}-o{n}", 4.0, minutes + 60))
            day += rng.randrange(1, 15)
    events.append(Events("c-val-browser").browse(95 * DAY_MIN))
    events.sort(key=lambda e: e["occurred_at"])
    counts: dict[str, int] = {}
    for e in events:
        counts[e["customer_id"]] = counts.get(e["customer_id"], 0) + 1
    return events, counts


def at(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


def expected(d: Deployment, customer_id: str, model: ClvModel) -> dict[str, Any] | None:
    """The predictions computed here from the stored state, the saved clock and the model."""
    state = CustomerState.from_doc(d.state(customer_id) or {})
    watermark = read_watermarks(d.redis, d.settings.key_prefix)[d.home(customer_id)]
    summary = summary_of(state, day_of(watermark - d.settings.allowed_lateness_s))
    return None if summary is None else model.predict(summary, 365.0).as_dict()


def test_the_look_up_scores_buyers_with_the_latest_snapshot(web: Deployment) -> None:  # noqa: F811
    d = web
    events, counts = history()
    d.start_worker(SEGSTREAM_CLV_REFIT_S="2")
    d.produce(events)
    d.wait_applied(counts)
    # every partition's saved clock has reached its last event
    last: dict[int, float] = {}
    for e in events:
        p = d.home(e["customer_id"])
        last[p] = max(last.get(p, 0.0), at(e))
    until(lambda: read_watermarks(d.redis, d.settings.key_prefix) == last, "the saved clocks")
    # a snapshot fitted after the last event was applied
    since = time.time()
    first = until(
        lambda: (m := read_clv_model(d.settings)) is not None and m.fitted_at > since and m,
        "a value model fitted after the last event",
    )
    assert first.version >= 1 and first.customers == CUSTOMERS
    assert "published value model v" in d.log()

    checked = 0
    for i in [*range(CUSTOMERS), None]:
        cid = "c-val-browser" if i is None else f"c-val-{i}"
        for _ in range(5):  # the trainer refits every 2 s: retry if it did in between
            status, view = call(d, "GET", f"/customers/{cid}")
            assert status == 200, view
            model = read_clv_model(d.settings)
            assert model is not None
            got = view["predictions"]
            if got is None or got["model_version"] == model.version:
                break
        want = expected(d, cid, model)
        if i is None:
            assert got is None and want is None
            continue
        assert want is not None and got is not None
        assert set(got) == set(want)
        assert got["model_version"] == model.version >= first.version
        assert got == pytest.approx(want, rel=1e-9, abs=0.0), cid
        assert 0.0 <= got["p_alive"] <= 1.0 and got["clv"] >= 0.0
        checked += 1
    assert checked == CUSTOMERS

    # the command line's JSON is the same look-up
    for _ in range(5):
        http = call(d, "GET", "/customers/c-val-3")[1]
        cli = json.loads(segstream(d, "customer", "c-val-3", "--json").stdout)
        if cli["predictions"]["model_version"] == http["predictions"]["model_version"]:
            break
    assert cli == http
    human = segstream(d, "customer", "c-val-3").stdout
    assert f"clv {http['predictions']['clv']:.2f} over 365 days" in human

    # verify recomputes every buyer's state from the topics and scores both with the
    # snapshot: the predictions agree (a snapshot published meanwhile is read once)
    checked_out = segstream(d, "verify")
    assert checked_out.returncode == 0, checked_out.stdout + checked_out.stderr
    line = next(x for x in checked_out.stdout.splitlines() if "predictions (value model v" in x)
    assert f"{CUSTOMERS} of {CUSTOMERS} buyers equal to recomputation" in line, line
