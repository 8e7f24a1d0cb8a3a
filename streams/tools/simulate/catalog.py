"""What the simulated shop sells and who its customers are: personas and their mix,
the catalog, places, incomes, genders and devices."""

from __future__ import annotations

import math
import random

#: Share of customers per persona (sums to 1).
PERSONA_MIX: dict[str, float] = {
    "window_shopper": 0.30,
    "cart_abandoner": 0.20,
    "one_time_buyer": 0.15,
    "loyal_big_spender": 0.10,
    "bargain_hunter": 0.15,
    "lapsing_buyer": 0.10,
}
PERSONAS = tuple(PERSONA_MIX)

#: Event rate used to space event times when :func:`simulate` runs with ``rate=0``.
UNPACED_RATE = 1000.0

CURRENCY = "EUR"
REFUND_SHARE = 0.01

#: category -> (sku prefix, cheapest price, dearest price)
CATEGORIES: dict[str, tuple[str, float, float]] = {
    "electronics": ("EL", 25.0, 1500.0),
    "apparel": ("AP", 9.0, 250.0),
    "shoes": ("SH", 20.0, 320.0),
    "home": ("HO", 5.0, 700.0),
    "beauty": ("BE", 3.0, 120.0),
    "sports": ("SP", 8.0, 450.0),
    "toys": ("TO", 4.0, 150.0),
    "books": ("BO", 4.0, 60.0),
    "grocery": ("GR", 1.0, 40.0),
    "jewellery": ("JE", 30.0, 2500.0),
}
SKUS_PER_CATEGORY = 30


def _build_catalog() -> dict[str, list[tuple[str, float]]]:
    """Skus of every category as (sku, price), cheapest first. Fixed, independent of seed."""
    rng = random.Random("segstream-catalog-v1")
    catalog = {}
    for category, (prefix, lo, hi) in CATEGORIES.items():
        prices = sorted(
            math.exp(rng.uniform(math.log(lo), math.log(hi))) for _ in range(SKUS_PER_CATEGORY)
        )
        catalog[category] = [
            (f"{prefix}-{k:04d}", max(0.99, round(p) - 0.01)) for k, p in enumerate(prices)
        ]
    return catalog


CATALOG = _build_catalog()

#: (country, region, city, language); a customer lives in one place.
PLACES: tuple[tuple[str, str, str, str], ...] = (
    ("GB", "England", "London", "en"),
    ("GB", "England", "Manchester", "en"),
    ("GB", "Scotland", "Edinburgh", "en"),
    ("DE", "Bavaria", "Munich", "de"),
    ("DE", "Berlin", "Berlin", "de"),
    ("DE", "Hamburg", "Hamburg", "de"),
    ("FR", "Île-de-France", "Paris", "fr"),
    ("FR", "Auvergne-Rhône-Alpes", "Lyon", "fr"),
    ("US", "California", "San Francisco", "en"),
    ("US", "New York", "New York", "en"),
    ("PL", "Masovia", "Warsaw", "pl"),
    ("PL", "Lesser Poland", "Kraków", "pl"),
    ("ES", "Community of Madrid", "Madrid", "es"),
    ("IT", "Lombardy", "Milan", "it"),
    ("NL", "North Holland", "Amsterdam", "nl"),
)
PLACE_WEIGHTS = (14, 5, 3, 8, 8, 4, 10, 4, 6, 6, 8, 4, 7, 7, 6)

INCOME_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
GENDERS = ("female", "male", "non_binary", "undisclosed")
DEVICES = ("desktop", "mobile", "tablet")
