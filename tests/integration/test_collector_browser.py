"""The browser snippet in Debian's chromium (headless, driven by Playwright with
``executable_path``; see test_dashboard.py): clicks on the collector's demo shop page
become events on Kafka, a real worker applies them, and segment changes follow, for the
anonymous visitor and, after logging in, for the customer. What is left when the page is
left goes with sendBeacon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from streams.kafka.topics import BROWSE, CART, CHANGES, PURCHASE
from tests.integration.conftest import Deployment
from tests.integration.test_collector import KEY, CollectorProcess, by_key, collectors
from tests.integration.test_dashboard import CHROMIUM_ARGS, LOOPBACK, chromium, wait_for, wait_js

__all__ = ["chromium", "collectors"]  # fixtures


def journeys(d: Deployment, customer: str, expect: int) -> list[str]:
    changes = [orjson.loads(r.value) for r in d.read_topic(CHANGES, expect=expect, settle=0.5)]
    return [
        c["current"]
        for c in changes
        if c["customer_id"] == customer and c["dimension"] == "journey"
    ]


@pytest.mark.same_on_cluster
def test_demo_shop_clicks_become_segment_changes(
    deployment: Deployment, collectors: Callable[..., CollectorProcess], chromium: str
) -> None:
    from playwright.sync_api import sync_playwright

    d = deployment
    c = collectors(SEGSTREAM_COLLECTOR__DEMO="true")
    d.start_worker()
    customer = "c-browser-1"
    console: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"{c.base}/demo?writeKey={KEY}")
            wait_js(page, "window.segstream && segstream.stats.accepted >= 1", 15)
            aid = page.evaluate("segstream.anonymousId()")
            anon = f"anon:{aid}"

            # anonymous: view a product and add it to the cart
            page.locator(".product[data-sku='A-7'] .view").click()
            page.locator(".product[data-sku='A-7'] .add").click()
            wait_js(page, "segstream.stats.accepted >= 3", 15)
            wait_for("anonymous cart", lambda: "active_cart" in journeys(d, anon, 2), 30)

            # log in (identify), then buy
            page.fill("#customer", customer)
            page.click("#login")
            wait_js(page, "segstream.stats.identified === 1", 15)
            page.click("#buy")
            wait_js(page, "segstream.stats.accepted >= 4 && segstream.pending() === 0", 15)
            assert page.evaluate("segstream.stats.rejected") == 0
            wait_for(
                "customer purchase",
                lambda: journeys(d, customer, 4)[-1:] == ["first_time_buyer"],
                30,
            )

            # an item added right before leaving the page goes with sendBeacon
            page.locator(".product[data-sku='B-2'] .add").click()
            page.goto("about:blank")
            wait_for(
                "beaconed cart",
                lambda: journeys(d, customer, 5)[-1:] == ["active_cart"],
                30,
            )
        finally:
            browser.close()

    assert console == [], console
    assert {urlsplit(u).hostname for u in requests if u.startswith("http")} <= LOOPBACK
    assert journeys(d, customer, 5)[-3:] == ["active_cart", "first_time_buyer", "active_cart"]

    browse = by_key(d.read_topic(BROWSE, expect=2, settle=0.2))
    cart = by_key(d.read_topic(CART, expect=3, settle=0.2))
    purchase = by_key(d.read_topic(PURCHASE, expect=1, settle=0.2))
    # the anonymous history went to anon:<id> and was re-published onto the customer
    assert [e["page_type"] for e in browse[anon]] == ["home", "product"]
    assert [e["page_type"] for e in browse[customer]] == ["home", "product"]
    assert [e["sku"] for e in cart[anon]] == ["A-7"]
    assert [e["sku"] for e in cart[customer]] == ["A-7", "B-2"]
    [order] = purchase[customer]
    assert order["lines"][0]["sku"] == "A-7" and order["currency"] == "EUR"
    assert all(e["anonymous_id"] == aid for e in browse[customer] + cart[customer])
    assert all(e["channel"] == "web" and e["device"] == "desktop" for e in cart[customer])
    state: dict[str, Any] = d.state(customer) or {}
    assert state["orders"] == 1 and state["events"] == 5
