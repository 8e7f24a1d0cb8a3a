"""Human descriptions of clusters: words for a centroid, relative to the population.

Separate from the model: only a snapshot writes descriptions, scoring only reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from segmenters.clustering.model import _to_units

#: Population values used by :func:`describe` when none are given (a small online shop).
DEFAULT_POPULATION: dict[str, float] = {"avg_order_value": 60.0, "browsing": 5.0}


#: How far (a share of the threshold) a value must pass a word's threshold to change the
#: word a cluster already has: a centroid that wobbles around a threshold keeps its words.
BAND = 0.2


def _above(value: float, threshold: float, was: bool | None, band: float) -> bool:
    """``value >= threshold``, with hysteresis: what was true stays true down to
    ``threshold * (1 - band)``, what was false stays false up to ``threshold * (1 + band)``."""
    if was is None:
        return value >= threshold
    return value >= threshold * (1.0 - band if was else 1.0 + band)


def _below(value: float, threshold: float, was: bool | None, band: float) -> bool:
    """``value <= threshold``, with the hysteresis of :func:`_above`."""
    if was is None:
        return value <= threshold
    return value <= threshold * (1.0 + band if was else 1.0 - band)


def _level(value: float, thresholds: tuple[float, ...], was: int | None, band: float) -> int:
    """How many of the increasing ``thresholds`` ``value`` reaches; a previous level ``was``
    is kept while ``value`` stays within ``band`` of that level's range."""
    level = sum(value >= t for t in thresholds)
    if was is None or was == level:
        return level
    lo = thresholds[was - 1] * (1.0 - band) if was > 0 else -math.inf
    hi = thresholds[was] * (1.0 + band) if was < len(thresholds) else math.inf
    return was if lo <= value < hi else level


def _words_of(description: str) -> set[str]:
    """The words and phrases of a description of :func:`describe` (for its hysteresis)."""
    phrases = description.split(", ")
    return set(phrases[0].split(" ")) | set(phrases[1:])


def describe(
    centroid_units: Mapping[str, float],
    population: Mapping[str, float] | None = None,
    previous: str | None = None,
    band: float = BAND,
) -> str:
    """A short human description of a centroid given in original units.

    A feature missing from ``centroid_units`` counts as 0 (browsing: as unknown).

    Orders, recency, device and cart words use fixed thresholds (the journey dimension's
    30 and 90 days); basket size and browsing are relative to ``population`` (typical
    ``avg_order_value`` of buyers and ``browsing`` of everyone, in units), so the words
    fit the shop. Deterministic: the same centroid gives the same words.

    ``previous`` is the description the cluster had in the snapshot in force: a word it
    has changes only once the value is more than ``band`` (a share of the threshold)
    past the threshold, so a centroid that moves a little keeps its description.

    >>> describe({"frequency": 6, "mobile_share": 0.8, "avg_order_value": 150, "recency": 3})
    'frequent mobile buyers, high basket'
    >>> describe({"frequency": 0, "cart_abandon": 0.0, "browsing": 6})
    'window shoppers, no orders'
    >>> describe({"frequency": 1, "recency": 120, "avg_order_value": 60, "browsing": 1})
    'lapsed one-time buyers, rarely visit'
    >>> describe({"frequency": 3.3, "avg_order_value": 60, "browsing": 5})
    'repeat buyers'
    >>> describe({"frequency": 3.7, "avg_order_value": 60, "browsing": 5}, previous="repeat buyers")
    'repeat buyers'
    >>> describe({"frequency": 4.3, "avg_order_value": 60, "browsing": 5}, previous="repeat buyers")
    'frequent buyers'
    """
    ref = {**DEFAULT_POPULATION, **(population or {})}
    had = None if previous is None else _words_of(previous)

    def get(name: str) -> float:
        return float(centroid_units.get(name, 0.0))

    def was(word: str, buyers: bool | None = None) -> bool | None:
        """Whether the previous description had ``word`` (None without one, or when it
        described the other kind of cluster, buyers or not, than ``buyers``)."""
        if had is None or (buyers is not None and ("no orders" not in had) != buyers):
            return None
        return word in had

    orders, browsing = get("frequency"), centroid_units.get("browsing")
    rare_before, heavy_before = was("rarely visit"), was("heavy browsing")
    visits = ""
    if _above(get("inactivity"), 30.0, rare_before, band) or (
        browsing is not None and _below(browsing, 0.4 * ref["browsing"], rare_before, band)
    ):
        visits = "rarely visit"
    elif browsing is not None and _above(browsing, 2.0 * ref["browsing"], heavy_before, band):
        visits = "heavy browsing"
    order_level = None
    if had is not None:
        names = ("no orders", "one-time", "repeat", "frequent")
        order_level = next((i for i, w in enumerate(names) if w in had), None)
    order_level = _level(orders, (0.5, 1.5, 3.5), order_level, band)
    if order_level == 0:
        before = was("abandoners", buyers=False)
        abandons = _above(get("cart_abandon"), 0.5, before, band) or _above(
            get("cart_intensity"), 1.0, before, band
        )
        words = ["cart abandoners" if abandons else "window shoppers", "no orders", visits]
        return ", ".join(w for w in words if w)
    adjectives = []
    recency_before = None
    if was("lapsed", buyers=True) is not None:
        recency_before = 2 if was("lapsed") else 1 if was("at-risk") else 0
    recency = _level(get("recency"), (30.0, 90.0), recency_before, band)
    if recency == 2:
        adjectives.append("lapsed")
    elif recency == 1:
        adjectives.append("at-risk")
    adjectives.append(("one-time", "repeat", "frequent")[order_level - 1])
    if _above(get("mobile_share"), 0.6, was("mobile", buyers=True), band):
        adjectives.append("mobile")
    words = [" ".join([*adjectives, "buyers"])]
    basket_before = None
    if was("high basket", buyers=True) is not None:
        basket_before = 2 if was("high basket") else 0 if was("low basket") else 1
    typical = ref["avg_order_value"]
    basket = _level(get("avg_order_value"), (typical / 1.5, 1.5 * typical), basket_before, band)
    if basket == 2:
        words.append("high basket")
    elif basket == 0:
        words.append("low basket")
    if _above(get("cart_abandon"), 0.3, was("leave carts", buyers=True), band):
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
