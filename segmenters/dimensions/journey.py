"""The journey dimension: where a customer stands between first visit and lapse.

Rules are tried in order and the first match wins (DESIGN.md section 4). Each returns
the segment and a human-readable reason that is published with the change.

>>> from segmenters.config import JourneyConfig
>>> s = CustomerState("c-1", orders=2, last_order_at=0.0)
>>> journey(s, now=3600.0, cfg=JourneyConfig())
('repeat_buyer', '2 orders (>= 2)')
>>> journey(s, now=31 * 86400.0, cfg=JourneyConfig())
('at_risk', 'last purchase 31.0 days ago (>= 30)')
"""

from __future__ import annotations

from segmenters.config import JourneyConfig
from segmenters.state import CustomerState

DIMENSION = "journey"
SEGMENTS = (
    "cart_abandoner",
    "active_cart",
    "lapsed",
    "at_risk",
    "loyal",
    "repeat_buyer",
    "first_time_buyer",
    "browser",
)
DAY = 86400.0


def _g(value: float) -> str:
    return f"{value:g}"


def journey(state: CustomerState, now: float, cfg: JourneyConfig) -> tuple[str, str]:
    """The journey segment of ``state`` at event time ``now``, and why."""
    segment = journey_segment(state, now, cfg)
    return segment, journey_reason(segment, state, now, cfg)


def journey_segment(state: CustomerState, now: float, cfg: JourneyConfig) -> str:
    """The segment of :func:`journey` alone: the reason is only written for a change."""
    if state.cart:
        cart_at = state.cart_at if state.cart_at is not None else now
        idle_min = (now - cart_at) / 60.0
        bought_since = state.last_order_at is not None and state.last_order_at >= cart_at
        if idle_min >= cfg.cart_abandon_minutes and not bought_since:
            return "cart_abandoner"
        return "active_cart"
    if state.orders > 0 and state.last_order_at is not None:
        days = (now - state.last_order_at) / DAY
        if days >= cfg.lapsed_days:
            return "lapsed"
        if days >= cfg.at_risk_days:
            return "at_risk"
    if state.orders >= cfg.loyal_orders:
        return "loyal"
    if state.orders >= cfg.repeat_orders:
        return "repeat_buyer"
    if state.orders == 1:
        return "first_time_buyer"
    return "browser"


def journey_reason(segment: str, state: CustomerState, now: float, cfg: JourneyConfig) -> str:
    """Why ``state`` is in ``segment`` (the rule of :func:`journey_segment` that matched)."""
    if segment == "cart_abandoner":
        cart_at = state.cart_at if state.cart_at is not None else now
        idle_min = (now - cart_at) / 60.0
        return (
            f"{state.cart_items} item(s) in cart, no cart activity for {idle_min:.1f} min "
            f"(>= {_g(cfg.cart_abandon_minutes)}), nothing bought since"
        )
    if segment == "active_cart":
        return f"{state.cart_items} item(s) in cart"
    if segment in ("lapsed", "at_risk"):
        assert state.last_order_at is not None
        days = (now - state.last_order_at) / DAY
        limit = cfg.lapsed_days if segment == "lapsed" else cfg.at_risk_days
        return f"last purchase {days:.1f} days ago (>= {_g(limit)})"
    if segment == "loyal":
        return f"{state.orders} orders (>= {cfg.loyal_orders})"
    if segment == "repeat_buyer":
        return f"{state.orders} orders (>= {cfg.repeat_orders})"
    if segment == "first_time_buyer":
        return "1 order"
    return "no order and an empty cart"


def next_deadline(state: CustomerState, after: float, cfg: JourneyConfig) -> float | None:
    """The first event time after ``after`` at which the segment may change with no new event.

    Timers (the time-driven transitions) are scheduled at this instant.
    """
    due: float | None = None
    if state.cart and state.cart_at is not None:
        bought_since = state.last_order_at is not None and state.last_order_at >= state.cart_at
        if not bought_since:
            c = state.cart_at + cfg.cart_abandon_minutes * 60.0
            if c > after:
                due = c
    if state.orders > 0 and state.last_order_at is not None:
        for c in (
            state.last_order_at + cfg.at_risk_days * DAY,
            state.last_order_at + cfg.lapsed_days * DAY,
        ):
            if c > after and (due is None or c < due):
                due = c
    return due
