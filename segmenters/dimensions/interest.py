"""The interest dimension: the product category a customer's behaviour leans to.

A psychographic segment from behaviour. Every view, cart addition and purchase line with a
category adds its weight (``StateConfig.interest_*_weight``) to that category's affinity,
which decays with a half-life (``StateConfig.interest_half_life_days``). All categories
decay at the same rate, so their shares change only when an event arrives: the segment
needs no timer.

The segment is the category with the highest affinity when it holds at least
``InterestConfig.min_share`` of the customer's affinity and at least ``min_events`` of
their categorized events; otherwise ``mixed``. There is no segment before ``min_events``
categorized events in all.

>>> from segmenters.config import InterestConfig
>>> s = CustomerState("c", categories={"shoes": 4, "bags": 1},
...                   interests={"shoes": 9.0, "bags": 1.0}, interests_at=0.0)
>>> interest(s, InterestConfig(), half_life_days=30.0)
('shoes', 'shoes: 90 % of decayed interest (4 events; half-life 30 d)')
>>> interest(s, InterestConfig(min_share=0.95), half_life_days=30.0)
('mixed', 'mixed: top shoes 90 % < 95 %')
"""

from __future__ import annotations

from operator import countOf

from segmenters.config import InterestConfig
from segmenters.state import CustomerState

DIMENSION = "interest"
MIXED = "mixed"


def _g(value: float) -> str:
    return f"{value:g}"


def _top(interests: dict[str, float], best: float) -> str:
    """The category with the highest affinity ``best`` (ties: the smallest name)."""
    values = interests.values()
    if countOf(values, best) == 1:
        return max(interests, key=interests.__getitem__)
    return min(k for k, v in interests.items() if v == best)


def segment_name(category: str) -> str:
    """The segment of a category: its name, control characters replaced by ``_`` (segment
    names are joined with ``\\x1f`` in the flow counters).

    >>> segment_name("electronics.audio.headphone"), segment_name("a\\x1fb")
    ('electronics.audio.headphone', 'a_b')
    """
    if category.isprintable():
        return category
    return "".join(c if c >= " " and c != "\x7f" else "_" for c in category)


def interest_segment(state: CustomerState, cfg: InterestConfig) -> str | None:
    """The segment of :func:`interest` alone: the reason is only written for a change."""
    counts = state.categories
    if not counts:
        return None
    if sum(counts.values()) < cfg.min_events:
        return None
    # evaluated at every event of a customer with categories: the share first, the top
    # category's name only when it may qualify
    interests = state.interests
    total = sum(interests.values())
    if total <= 0.0:
        return MIXED
    best = max(interests.values())
    if best / total < cfg.min_share:
        return MIXED
    top = _top(interests, best)
    if counts.get(top, 0) >= cfg.min_events:
        return segment_name(top)
    return MIXED


def _pct(share: float, threshold: float | None = None) -> str:
    """A share in per cent; with one decimal where whole numbers would hide that it is
    below ``threshold``."""
    if threshold is not None and share < threshold and round(share * 100) >= threshold * 100:
        return f"{share * 100:.1f} %"
    return f"{share * 100:.0f} %"


def interest_reason(
    segment: str, state: CustomerState, cfg: InterestConfig, *, half_life_days: float
) -> str:
    """Why ``state`` is in ``segment`` (the figures :func:`interest_segment` compared)."""
    interests = state.interests
    total = sum(interests.values())
    if total <= 0.0:
        return f"{MIXED}: no recent interest"
    best = max(interests.values())
    top = _top(interests, best)
    share = best / total
    count = state.categories.get(top, 0)
    if share >= cfg.min_share and count >= cfg.min_events:
        return (
            f"{segment}: {_pct(share)} of decayed interest ({count} events; "
            f"half-life {_g(half_life_days)} d)"
        )
    name = segment_name(top)
    if share < cfg.min_share:
        return f"{MIXED}: top {name} {_pct(share, cfg.min_share)} < {_g(cfg.min_share * 100)} %"
    return f"{MIXED}: top {name} {_pct(share)} but {count} events < {cfg.min_events}"


def interest(
    state: CustomerState, cfg: InterestConfig, *, half_life_days: float
) -> tuple[str, str] | None:
    """The customer's interest segment and why; None before ``min_events`` categorized
    events."""
    segment = interest_segment(state, cfg)
    if segment is None:
        return None
    return segment, interest_reason(segment, state, cfg, half_life_days=half_life_days)
