"""Human descriptions of clusters: words for a centroid, relative to the population.

Separate from the model: only a snapshot writes descriptions, scoring only reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from segmenters.clustering.model import _to_units

#: Population values used by :func:`describe` when none are given (a small online shop).
DEFAULT_POPULATION: dict[str, float] = {"avg_order_value": 60.0, "browsing": 5.0}


def describe(
    centroid_units: Mapping[str, float], population: Mapping[str, float] | None = None
) -> str:
    """A short human description of a centroid given in original units.

    A feature missing from ``centroid_units`` counts as 0 (browsing: as unknown).

    Orders, recency, device and cart words use fixed thresholds (the journey dimension's
    30 and 90 days); basket size and browsing are relative to ``population`` (typical
    ``avg_order_value`` of buyers and ``browsing`` of everyone, in units), so the words
    fit the shop. Deterministic: the same centroid gives the same words.

    >>> describe({"frequency": 6, "mobile_share": 0.8, "avg_order_value": 150, "recency": 3})
    'frequent mobile buyers, high basket'
    >>> describe({"frequency": 0, "cart_abandon": 0.0, "browsing": 6})
    'window shoppers, no orders'
    >>> describe({"frequency": 1, "recency": 120, "avg_order_value": 60, "browsing": 1})
    'lapsed one-time buyers, rarely visit'
    """
    ref = {**DEFAULT_POPULATION, **(population or {})}

    def get(name: str) -> float:
        return float(centroid_units.get(name, 0.0))

    orders, browsing = get("frequency"), centroid_units.get("browsing")
    visits = ""
    if get("inactivity") >= 30 or (browsing is not None and browsing <= 0.4 * ref["browsing"]):
        visits = "rarely visit"
    elif browsing is not None and browsing >= 2.0 * ref["browsing"]:
        visits = "heavy browsing"
    if orders < 0.5:
        abandons = get("cart_abandon") >= 0.5 or get("cart_intensity") >= 1.0
        words = ["cart abandoners" if abandons else "window shoppers", "no orders", visits]
        return ", ".join(w for w in words if w)
    adjectives = []
    recency = get("recency")
    if recency >= 90:
        adjectives.append("lapsed")
    elif recency >= 30:
        adjectives.append("at-risk")
    adjectives.append("one-time" if orders < 1.5 else "repeat" if orders < 3.5 else "frequent")
    if get("mobile_share") >= 0.6:
        adjectives.append("mobile")
    words = [" ".join([*adjectives, "buyers"])]
    aov = get("avg_order_value")
    if aov >= 1.5 * ref["avg_order_value"]:
        words.append("high basket")
    elif aov <= ref["avg_order_value"] / 1.5:
        words.append("low basket")
    if get("cart_abandon") >= 0.3:
        words.append("leave carts")
    words.append(visits)
    return ", ".join(w for w in words if w)


def _population(
    units: list[dict[str, float]], sizes: list[int], mean: Mapping[str, float]
) -> dict[str, float]:
    """Typical values for :func:`describe`: the scaler mean, and the basket of buyers only.

    Both are geometric means (means in ``log1p`` space), so one big spender does not
    make every other basket look small.
    """
    population = {f: _to_units(f, m) for f, m in mean.items()}
    buyers = [
        (math.log1p(u["avg_order_value"]), n)
        for u, n in zip(units, sizes, strict=True)
        if u.get("frequency", 0.0) >= 0.5 and "avg_order_value" in u
    ]
    weight = sum(n for _, n in buyers)
    if weight > 0:
        population["avg_order_value"] = math.expm1(sum(v * n for v, n in buyers) / weight)
    return population
