"""Sessions: a customer's browse, cart and purchase events, planned in event time."""

from __future__ import annotations

import random
from typing import Any

from streams.tools.simulate.catalog import CATALOG, CATEGORIES, CURRENCY, DEVICES, REFUND_SHARE
from streams.tools.simulate.customers import _Customer


class _Planner:
    """Plans a customer's next visit as a list of event bodies (no envelope yet)."""

    def __init__(self, rng: random.Random, seed: int) -> None:
        self.rng = rng
        self.seed = seed
        self.orders = 0

    def _category(self, c: _Customer) -> str:
        if self.rng.random() < 0.75:
            return self.rng.choice(c.favourites)
        return self.rng.choice(list(CATEGORIES))

    def _sku(self, c: _Customer, category: str) -> tuple[str, float]:
        skus = CATALOG[category]
        third = len(skus) // 3
        tier = c.behaviour.tier
        if tier == "budget" and self.rng.random() < 0.85:
            return self.rng.choice(skus[:third])
        if tier == "premium" and self.rng.random() < 0.85:
            return self.rng.choice(skus[-third:])
        return self.rng.choice(skus)

    def _kind(self, c: _Customer) -> str:
        """browse, cart (add and leave) or buy."""
        r = self.rng.random()
        bought = len(c.orders)
        match c.persona:
            case "window_shopper":
                return "browse"
            case "cart_abandoner":
                if not c.cart:
                    return "cart"
                return "cart" if r < 0.35 and len(c.cart) < 8 else "browse"
            case "one_time_buyer":
                if bought:
                    return "browse"
                return "buy" if c.sessions > 0 or r < 0.6 else "browse"
            case "loyal_big_spender":
                return "buy" if r < 0.7 else "browse"
            case "bargain_hunter":
                if r < 0.35:
                    return "buy"
                return "cart" if r < 0.55 and len(c.cart) < 8 else "browse"
            case "lapsing_buyer":
                return "browse" if c.lapsed else "buy"
        raise AssertionError(c.persona)  # pragma: no cover

    def session(self, c: _Customer) -> list[dict[str, Any]]:
        rng, b = self.rng, c.behaviour
        out: list[dict[str, Any]] = []
        if c.refund_pending:
            c.refund_pending = False
            refund = self._refund(c)
            if refund is not None:
                out.append(refund)
        kind = self._kind(c)
        c.sessions += 1
        device = c.device if rng.random() < 0.85 else rng.choices(DEVICES, weights=b.devices)[0]
        channel = "app" if device != "desktop" and c.app_user else "web"
        session = {
            "session_id": f"s-{self.seed}-{c.index:05d}-{c.sessions}",
            "device": device,
            "channel": channel,
        }

        def browse(page_type: str, **fields: Any) -> None:
            out.append({**session, "type": "browse", "page_type": page_type, **fields})

        def view(category: str) -> tuple[str, float]:
            sku, price = self._sku(c, category)
            browse("product", sku=sku, category=category, price=price)
            return sku, price

        entry = rng.choices(("home", "search", "category"), weights=(5, 3, 2))[0]
        if entry == "category":
            browse("category", category=self._category(c))
        else:
            browse(entry)
        views = rng.randint(*b.views)
        if c.persona == "lapsing_buyer" and c.lapsed:
            views = rng.randint(0, 2)
        viewed: list[tuple[str, str, float]] = []
        for _ in range(views):
            r = rng.random()
            category = self._category(c)
            if r < b.search_share:
                browse("search")
            elif r < b.search_share + 0.2:
                browse("category", category=category)
            else:
                sku, price = view(category)
                viewed.append((sku, category, price))
        if kind == "browse":
            return out

        for _ in range(rng.randint(max(1, b.adds[0]), max(1, b.adds[1]))):
            if viewed and rng.random() < 0.7:
                sku, category, price = rng.choice(viewed)
            else:
                category = self._category(c)
                sku, price = view(category)
                viewed.append((sku, category, price))
            quantity = rng.randint(*b.quantity)
            out.append(
                {
                    **session,
                    "type": "cart",
                    "action": "add",
                    "sku": sku,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": price,
                }
            )
            line = c.cart.get(sku)
            if line is None:
                c.cart[sku] = {
                    "sku": sku,
                    "category": category,
                    "quantity": quantity,
                    "unit_price": price,
                }
            else:
                line["quantity"] += quantity
        if len(c.cart) >= 2 and rng.random() < b.remove_share:
            sku = rng.choice(list(c.cart))
            line = c.cart.pop(sku)
            out.append(
                {
                    **session,
                    "type": "cart",
                    "action": "remove",
                    "sku": sku,
                    "category": line["category"],
                    "quantity": line["quantity"],
                    "unit_price": line["unit_price"],
                }
            )
        if kind == "buy":
            out.append(self._purchase(c, session))
        return out

    def _purchase(self, c: _Customer, session: dict[str, Any]) -> dict[str, Any]:
        rng, b = self.rng, c.behaviour
        lines = [dict(line) for line in c.cart.values()]
        c.cart.clear()
        subtotal = round(sum(ln["quantity"] * ln["unit_price"] for ln in lines), 2)
        self.orders += 1
        event: dict[str, Any] = {
            **session,
            "type": "purchase",
            "order_id": f"o-{self.seed}-{self.orders:07d}",
            "lines": lines,
            "currency": CURRENCY,
        }
        discount = 0.0
        if rng.random() < b.discount_share:
            discount = round(subtotal * rng.uniform(*b.discount), 2)
            event["discount"] = discount
        event["total"] = round(subtotal - discount, 2)
        c.orders.append(
            {
                "order_id": event["order_id"],
                "total": event["total"],
                "lines": [dict(line) for line in lines],
            }
        )
        if rng.random() < REFUND_SHARE:
            c.refund_pending = True
        return event

    def _refund(self, c: _Customer) -> dict[str, Any] | None:
        open_orders = [o for o in c.orders if o["order_id"] not in c.refunded]
        if not open_orders:
            return None
        order = self.rng.choice(open_orders)
        c.refunded.add(order["order_id"])
        if len(order["lines"]) > 1 and self.rng.random() < 0.5:
            line = self.rng.choice(order["lines"])
            lines = [dict(line)]
            total = round(line["quantity"] * line["unit_price"], 2)
            total = min(total, order["total"])
        else:
            lines = [dict(line) for line in order["lines"]]
            total = order["total"]
        return {"type": "refund", "order_id": order["order_id"], "total": total, "lines": lines}
