"""The behavioural feature vector: what the clustering dimension sees of a customer.

Each feature is one number computed from :class:`~segmenters.state.CustomerState` at
event time ``now``. Counts and amounts are heavy-tailed (one customer orders 40 times,
most never), so they go through ``log1p``: on raw values a handful of big spenders would
decide every distance. Ratios already lie in [0, 1] and are kept as they are. The
clusterer standardises every feature afterwards, so the scales below only have to be
comparable in shape, not in size.

==================  =============================================================  =========
name                meaning                                                        transform
==================  =============================================================  =========
recency             days since the last order; ``recency_cap_days`` (365) if the   log1p
                    customer never bought (or bought longer ago than that)
frequency           orders                                                         log1p
monetary            revenue net of refunds (never below 0)                         log1p
avg_order_value     ``monetary / orders``; 0 without orders                        log1p
browsing            browse events, decayed with a half-life of ``half_life_days``  log1p
cart_intensity      cart additions, decayed with the same half-life                log1p
cart_abandon        units in the open cart / (units in the cart + units bought):   none
                    the share of what went into a cart that is not (yet) bought;
                    0 when nothing was ever put in a cart or bought
category_breadth    distinct categories seen (browsed, carted or bought)           log1p
mobile_share        share of events sent from a mobile device; 0 with no device    none
inactivity          days since the last event of any kind (0 for a new state)      log1p
tenure              days since the first event (0 for a new state)                 log1p
==================  =============================================================  =========

``browsing`` and ``inactivity`` are what tell a lapsing buyer (bought once or twice,
then went quiet) from a one-time buyer (bought once, still visits): their order counts
and recency are alike, their visits are not. ``mobile_share`` counts less than the
others in distances (:data:`WEIGHTS`). ``tenure`` only helps when customers arrived at
different times; when they did not, the clusterer's floor on the standard deviation
keeps it from turning into noise.

>>> s = CustomerState("c-1", first_seen=0.0, last_seen=86400.0, orders=1, revenue=99.0,
...                   last_order_at=86400.0, items=1, devices={"mobile": 3, "desktop": 1})
>>> v = feature_vector(s, now=86400.0)
>>> round(v["frequency"], 4), round(v["avg_order_value"], 4), v["mobile_share"], v["recency"]
(0.6931, 4.6052, 0.75, 0.0)
>>> feature_vector(CustomerState("new"), now=0.0)["recency"] == math.log1p(365.0)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from segmenters.state import CustomerState

DAY = 86400.0

#: Feature names, in the order every vector, scaler and centroid uses.
FEATURES: tuple[str, ...] = (
    "recency",
    "frequency",
    "monetary",
    "avg_order_value",
    "browsing",
    "cart_intensity",
    "cart_abandon",
    "category_breadth",
    "mobile_share",
    "inactivity",
    "tenure",
)

#: Features that went through ``log1p`` (the others are ratios kept as they are).
LOG_FEATURES: frozenset[str] = frozenset(FEATURES) - {"cart_abandon", "mobile_share"}


#: How much a feature counts in distances, if not 1 (the clusterer divides its scale by it).
#: ``mobile_share`` is bimodal per customer (most shop from one main device), and only
#: about a tenth of its spread tells behaviours apart: at full weight, k-means would rather
#: split every group into phone and desktop users than separate behaviours.
WEIGHTS: dict[str, float] = {"mobile_share": 0.7}


def _days(since: float | None, now: float) -> float:
    return 0.0 if since is None else max(0.0, now - since) / DAY


#: The largest value ``_log`` takes as it is (an infinite one saturates here).
_LOG_CAP = 1e300


def _log(value: float) -> float:
    """``log1p`` of a non-negative finite value; anything else counts as 0 or saturates."""
    if math.isnan(value) or value <= 0.0:
        return 0.0
    return math.log1p(min(value, _LOG_CAP))


def feature_vector(
    state: CustomerState,
    now: float,
    *,
    half_life_days: float = 7.0,
    recency_cap_days: float = 365.0,
) -> dict[str, float]:
    """The features of :data:`FEATURES` for ``state`` at event time ``now``.

    Every value is finite, whatever the state holds: a brand-new customer gets a valid
    vector (a never-bought customer sits at the recency cap, everything else at 0).
    ``now`` is passed in (never read from a clock), so a replay gives the same vector.
    """
    row = feature_row(state, now, half_life_days=half_life_days, recency_cap_days=recency_cap_days)
    return dict(zip(FEATURES, row, strict=True))


def feature_row(
    state: CustomerState,
    now: float,
    *,
    half_life_days: float = 7.0,
    recency_cap_days: float = 365.0,
) -> list[float]:
    """:func:`feature_vector` as a list in :data:`FEATURES` order: what scoring reads,
    once per evaluation, without building the dict."""
    half_life_s = half_life_days * DAY
    orders = max(0, state.orders)
    revenue = max(0.0, state.revenue) if math.isfinite(state.revenue) else 0.0
    if orders and state.last_order_at is not None:
        recency = min(recency_cap_days, _days(state.last_order_at, now))
    else:
        recency = recency_cap_days
    in_cart = max(0, state.cart_items) if state.cart else 0
    put_in_cart = in_cart + max(0, state.items)
    devices = state.devices
    events_by_device = sum(devices.values()) if devices else 0
    last_seen, first_seen = state.last_seen, state.first_seen
    # ``_log`` and ``decayed_value`` inline (this runs on every event): the same values
    exp2, log1p = math.exp2, math.log1p
    browsing = cart_intensity = 0.0
    if state.views is not None:
        value, as_of = state.views
        browsing = value * exp2(-max(0.0, now - as_of) / half_life_s)
    if state.cart_adds is not None:
        value, as_of = state.cart_adds
        cart_intensity = value * exp2(-max(0.0, now - as_of) / half_life_s)
    (
        recency,
        frequency,
        monetary,
        avg_order_value,
        browsing,
        cart_intensity,
        category_breadth,
        inactivity,
        tenure,
    ) = [
        log1p(v if v <= _LOG_CAP else _LOG_CAP) if v > 0.0 else 0.0
        for v in (
            recency,
            float(orders),
            revenue,
            revenue / orders if orders else 0.0,
            browsing,
            cart_intensity,
            float(len(state.categories)),
            0.0 if last_seen is None else max(0.0, now - last_seen) / DAY,
            0.0 if first_seen is None else max(0.0, now - first_seen) / DAY,
        )
    ]
    return [
        recency,
        frequency,
        monetary,
        avg_order_value,
        browsing,
        cart_intensity,
        in_cart / put_in_cart if put_in_cart else 0.0,
        category_breadth,
        devices.get("mobile", 0) / events_by_device if events_by_device > 0 else 0.0,
        inactivity,
        tenure,
    ]


#: How far (Euclidean, in the trainer's scaled space: standard deviations) a customer's
#: vector must move from the last one sent before the trainer gets another one.
MIN_MOVE = 0.25


def as_row(vector: Mapping[str, float]) -> tuple[float, ...]:
    """``vector`` as a tuple in :data:`FEATURES` order (a missing feature counts as 0)."""
    return tuple(float(vector.get(f, 0.0)) for f in FEATURES)


def moved_enough(
    last: Sequence[float] | None,
    new: Sequence[float],
    scale: Sequence[float] | None = None,
    min_move: float = MIN_MOVE,
) -> bool:
    """Whether the trainer needs ``new``: there is no ``last`` vector sent for this
    customer, or ``new`` lies at least ``min_move`` from it once each feature is divided by
    its ``scale`` (the model's standard deviations; 1 without a model).

    The trainer keeps the latest vector per customer and refits the clusters to those
    (:class:`segmenters.clustering.Trainer`); a vector a fraction of a standard
    deviation from the one it holds changes no centroid that matters, so sending it
    would only fill ``segments.features``. An idle customer's vector does not move at all.

    >>> moved_enough(None, (1.0, 2.0))
    True
    >>> moved_enough((1.0, 2.0), (1.1, 2.1))
    False
    >>> moved_enough((1.0, 2.0), (1.1, 2.1), scale=(0.1, 0.1))
    True
    """
    if last is None or len(last) != len(new):
        return True
    total = 0.0
    for i, (a, b) in enumerate(zip(last, new, strict=True)):
        s = scale[i] if scale is not None and scale[i] > 0 else 1.0
        d = (b - a) / s
        if not math.isfinite(d):
            return True
        total += d * d
    return math.sqrt(total) >= min_move
