"""How each event type changes a customer's state.

``apply_event`` changes a working copy in place; callers own that copy (``core.fold``
makes one per customer per batch, so a batch costs one copy, not one per event).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from segmenters.config import StateConfig
from segmenters.events import Browse, Cart, Event, Line, Profile, Purchase, Refund
from segmenters.state import CustomerState, decayed_add, short_hash

DAY = 86400.0


def _bump(counts: dict[str, int], key: str, limit: int | None = None) -> None:
    counts[key] = counts.get(key, 0) + 1
    if limit is not None and len(counts) > limit:
        # Evict the least-seen other key (ties: the first inserted), keeping the state bounded.
        victim = min((k for k in counts if k != key), key=lambda k: counts[k])
        del counts[victim]


def _interest(
    state: CustomerState, category: str, weight: float, at: float, cfg: StateConfig
) -> None:
    """Add ``weight`` at ``at`` to ``category``'s decayed affinity.

    Every affinity is kept as of one time (``interests_at``), so shares compare without
    decaying: a later event decays them all to its time first; an earlier one adds its
    weight already decayed (as ``decayed_add`` does), so the order events arrive in does
    not matter.
    """
    interests = state.interests
    as_of = state.interests_at
    if as_of is None:
        state.interests_at = at
    elif at > as_of:
        factor = math.exp2(-(at - as_of) / (cfg.interest_half_life_days * DAY))
        for key in interests:
            interests[key] *= factor
        state.interests_at = at
    elif at < as_of:
        weight *= math.exp2(-(as_of - at) / (cfg.interest_half_life_days * DAY))
    interests[category] = interests.get(category, 0.0) + weight
    if len(interests) > cfg.max_categories:
        # evict the weakest affinity (ties: the smallest name), keeping the state bounded
        del interests[min(interests, key=lambda k: (interests[k], k))]


def _remember(ids: list[str], value: str, limit: int) -> None:
    ids.append(value)
    if len(ids) > limit:
        del ids[: len(ids) - limit]


def _touch(state: CustomerState, event: Event, at: float, cfg: StateConfig) -> None:
    state.events += 1
    # ``min``/``max`` spelled out (this runs on every event): a tie keeps the held value
    first_seen, last_seen = state.first_seen, state.last_seen
    if first_seen is None or at < first_seen:
        state.first_seen = at
    if last_seen is None or at > last_seen:
        state.last_seen = at
    device, channel = event.device, event.channel
    if device:
        devices = state.devices
        devices[device] = devices.get(device, 0) + 1
    if channel:
        channels = state.channels
        channels[channel] = channels.get(channel, 0) + 1
    if event.geo is not None and (state.geo_at is None or at >= state.geo_at):
        # the latest location by event time wins, whatever order events arrive in
        state.geo_at = at
        geo = event.geo
        if geo.country:
            state.geo["country"] = geo.country
        if geo.region:
            state.geo["region"] = geo.region
        if geo.city:
            state.geo["city"] = geo.city


def _browse(state: CustomerState, e: Browse, at: float, cfg: StateConfig) -> None:
    state.views = decayed_add(state.views, 1.0, at, half_life_s=cfg.decay_half_life_days * DAY)
    if e.category:
        _bump(state.categories, e.category, cfg.max_categories)
        _interest(state, e.category, cfg.interest_view_weight, at, cfg)


def _cart(state: CustomerState, e: Cart, at: float, cfg: StateConfig) -> None:
    state.cart_at = at if state.cart_at is None else max(state.cart_at, at)
    if e.action == "clear":
        state.cart.clear()
        return
    assert e.sku is not None  # guaranteed by the contract for add and remove
    if e.action == "add":
        state.cart_adds = decayed_add(
            state.cart_adds, 1.0, at, half_life_s=cfg.decay_half_life_days * DAY
        )
        if e.category:
            _bump(state.categories, e.category, cfg.max_categories)
            _interest(state, e.category, cfg.interest_cart_weight, at, cfg)
        bought_at = state.bought.get(e.sku)
        if bought_at is not None and bought_at >= at:
            return  # bought after this addition (the purchase arrived first): not in the cart
        line = state.cart.get(e.sku)
        if line is None:
            line = state.cart[e.sku] = [0, None, []]
        if e.unit_price is not None:
            line[1] = e.unit_price
        line[2].append([at, e.quantity])
        line[2].sort()
        line[0] += e.quantity
        while len(state.cart) > cfg.max_cart_lines:
            # evict the line touched least recently (by event time, not arrival)
            del state.cart[min(state.cart, key=lambda sku: (state.cart[sku][2][-1][0], sku))]
    else:
        line = state.cart.get(e.sku)
        if line is not None:
            _take(line, e.quantity, newest_first=True)
            if line[0] <= 0:
                del state.cart[e.sku]


def _take(line: list[Any], quantity: int, *, newest_first: bool) -> None:
    """Take ``quantity`` units out of a cart line's additions."""
    adds = line[2]
    while quantity > 0 and adds:
        i = -1 if newest_first else 0
        take = min(quantity, adds[i][1])
        adds[i][1] -= take
        quantity -= take
        line[0] -= take
        if adds[i][1] == 0:
            del adds[i]


def _lines(state: CustomerState, lines: list[Line], at: float, cfg: StateConfig) -> None:
    """A purchase empties its skus from the cart: the units added before it."""
    for line in lines:
        in_cart = state.cart.get(line.sku)
        if in_cart is not None:
            in_cart[2] = [a for a in in_cart[2] if a[0] > at]
            in_cart[0] = sum(q for _, q in in_cart[2])
            if in_cart[0] <= 0:
                del state.cart[line.sku]
        latest = max(at, state.bought.pop(line.sku, at))  # re-insert: most recent last
        state.bought[line.sku] = latest
        if line.category:
            _bump(state.categories, line.category, cfg.max_categories)
            _interest(state, line.category, cfg.interest_purchase_weight, at, cfg)
    _keep_latest(state.bought, cfg.recent_bought_skus)


def _keep_latest(bought: dict[str, float], limit: int) -> None:
    """Drop the oldest skus (ties: the smallest) beyond ``limit``, keeping the order.

    Once per purchase, not per line: evicting the oldest after each line leaves the same
    skus, since a line never brings back one evicted before it (its time is the latest).

    >>> b = {"a": 3.0, "b": 1.0, "c": 2.0, "d": 1.0}
    >>> _keep_latest(b, 2); b
    {'a': 3.0, 'c': 2.0}
    """
    excess = len(bought) - limit
    if excess > 0:
        for sku in sorted(bought, key=lambda sku: (bought[sku], sku))[:excess]:
            del bought[sku]


def _purchase(state: CustomerState, e: Purchase, at: float, cfg: StateConfig) -> None:
    order = short_hash(e.order_id)
    if order in state.order_ids:
        return  # the same order sent again (another event_id): it counts once
    _remember(state.order_ids, order, cfg.recent_order_ids)
    state.orders += 1
    state.revenue = round(state.revenue + e.total, 2)
    state.items += sum(line.quantity for line in e.lines)
    state.first_order_at = at if state.first_order_at is None else min(state.first_order_at, at)
    state.last_order_at = at if state.last_order_at is None else max(state.last_order_at, at)
    _add_on_day(state.buy_days, at, e.total)
    _lines(state, e.lines, at, cfg)


def _add_on_day(days: dict[str, float], at: float, amount: float) -> None:
    """Add ``amount`` to the UTC day of ``at`` (rounded to cents, as revenue is)."""
    day = str(int(at // 86_400))
    days[day] = round(days.get(day, 0.0) + amount, 2)


def _refund(state: CustomerState, e: Refund, at: float, cfg: StateConfig) -> None:
    state.refunds += 1
    state.refunded = round(state.refunded + e.total, 2)
    state.revenue = round(state.revenue - e.total, 2)
    _add_on_day(state.refund_days, at, e.total)


def _profile(state: CustomerState, e: Profile, at: float, cfg: StateConfig) -> None:
    # the fields in declaration order, as ``model_dump(exclude_none=True)`` gives them (a
    # flat model of scalars: the same values, without the serializer's cost)
    profile = state.profile
    for key, value in e.attributes.__dict__.items():
        if value is not None:
            profile[key] = value


_HANDLERS: dict[str, Callable[[CustomerState, Any, float, StateConfig], None]] = {
    "browse": _browse,
    "cart": _cart,
    "purchase": _purchase,
    "refund": _refund,
    "profile": _profile,
}


def apply_event(
    state: CustomerState, event: Event, cfg: StateConfig, *, at: float | None = None
) -> None:
    """Apply one (already de-duplicated) event to a working copy of the state.

    ``at`` is ``event.occurred_at.timestamp()``, when the caller has it already.
    """
    if at is None:
        at = event.occurred_at.timestamp()
    _touch(state, event, at, cfg)
    _HANDLERS[event.type](state, event, at, cfg)
