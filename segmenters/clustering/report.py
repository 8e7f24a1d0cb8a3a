"""A cluster model for people: centroids in the features' own units, rounded, with units.

Centroids are stored in scaled space (mean 0, std 1, after ``log1p`` for counts and
amounts); a marketer reads "3 orders, 120 EUR, 14 days", not ``monetary 4.44e-16``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segmenters.clustering.model import ClusterModel

#: The unit of each feature of :data:`segmenters.features.FEATURES` once unscaled
#: (``CURRENCY`` is replaced by the deployment's currency; ``%`` features are shares).
CURRENCY = "{currency}"
UNITS: dict[str, str] = {
    "recency": "days",
    "frequency": "orders",
    "monetary": CURRENCY,
    "avg_order_value": CURRENCY,
    "browsing": "views",
    "cart_intensity": "cart adds",
    "cart_abandon": "%",
    "category_breadth": "categories",
    "mobile_share": "%",
    "inactivity": "days",
    "tenure": "days",
}


def unit(feature: str, currency: str = "") -> str:
    """The unit of ``feature`` (empty if unknown)."""
    u = UNITS.get(feature, "")
    return currency if u == CURRENCY else u


def rounded(feature: str, value: float) -> float | int:
    """``value`` (in units) rounded for reading: shares as whole percent; other values
    to one decimal below 10 and to whole units from 10; anything within 0.05 of 0 is 0
    (so an expm1 of a rounding error prints as 0, not 4.44e-16).

    >>> rounded("monetary", 4.44e-16), rounded("mobile_share", 0.734), rounded("recency", 3.26)
    (0, 73, 3.3)
    >>> rounded("avg_order_value", 118.6), rounded("frequency", -1e-12)
    (119, 0)
    """
    if UNITS.get(feature) == "%":
        return round(value * 100)
    if abs(value) < 0.05:
        return 0
    if abs(value) < 10:
        return round(value, 1)
    return round(value)


def centroid_rows(
    model: ClusterModel, members: Mapping[int, int] | None = None, currency: str = ""
) -> list[dict[str, Any]]:
    """One JSON-ready row per cluster: id, segment, description, ``members`` (the
    segment's customers, from the segment indexes; None when not given), ``window``
    (the trainer-window vectors the cluster held when the snapshot was made), and the
    centroid in units, rounded, with each feature's unit."""
    rows = []
    for c in model.clusters:
        units = model.centroid_in_units(c)
        rows.append(
            {
                "id": c.id,
                "segment": f"cluster_{c.id}",
                "description": c.description,
                "members": None if members is None else int(members.get(c.id, 0)),
                "window": c.size,
                "centroid": {
                    f: {"value": rounded(f, v), "unit": unit(f, currency)} for f, v in units.items()
                },
            }
        )
    return rows
