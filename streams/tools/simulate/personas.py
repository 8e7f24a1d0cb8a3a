"""How each persona behaves (visits, carts, orders, lapses), and which customer is which."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from streams.tools.simulate.catalog import PERSONA_MIX, PERSONAS


@dataclass(frozen=True)
class _Behaviour:
    """How a persona behaves; every range is inclusive."""

    activity: float  # relative chance of being the next customer to act
    devices: tuple[float, float, float]  # weights of DEVICES
    app_share: float  # chance that a mobile/tablet user shops in the app
    favourites: tuple[str, ...]  # categories this persona leans to
    tier: str  # "budget", "premium" or "any": which skus it looks at
    views: tuple[int, int]  # browse events per session after the entry page
    adds: tuple[int, int]  # cart adds in a session with a cart
    quantity: tuple[int, int]
    search_share: float  # share of browses that are searches
    remove_share: float  # chance of removing an item in a session with a cart
    discount_share: float  # chance that an order carries a discount
    discount: tuple[float, float]  # discount as a share of the subtotal
    birth_years: tuple[int, int]
    income: tuple[float, float, float, float, float]  # weights of INCOME_BANDS
    consent: float  # chance of marketing consent


BEHAVIOURS: dict[str, _Behaviour] = {
    "window_shopper": _Behaviour(
        activity=1.0,
        devices=(0.40, 0.50, 0.10),
        app_share=0.30,
        favourites=("apparel", "shoes", "home", "books", "electronics"),
        tier="any",
        views=(3, 9),
        adds=(0, 0),
        quantity=(1, 1),
        search_share=0.15,
        remove_share=0.0,
        discount_share=0.0,
        discount=(0.0, 0.0),
        birth_years=(1960, 2006),
        income=(1, 2, 3, 2, 1),
        consent=0.40,
    ),
    "cart_abandoner": _Behaviour(
        activity=0.9,
        devices=(0.35, 0.55, 0.10),
        app_share=0.40,
        favourites=("apparel", "shoes", "electronics", "beauty"),
        tier="any",
        views=(2, 6),
        adds=(1, 3),
        quantity=(1, 2),
        search_share=0.15,
        remove_share=0.25,
        discount_share=0.0,
        discount=(0.0, 0.0),
        birth_years=(1970, 2004),
        income=(1, 2, 3, 2, 1),
        consent=0.55,
    ),
    "one_time_buyer": _Behaviour(
        activity=0.8,
        devices=(0.45, 0.45, 0.10),
        app_share=0.20,
        favourites=("home", "toys", "books", "sports", "electronics"),
        tier="any",
        views=(2, 6),
        adds=(1, 2),
        quantity=(1, 2),
        search_share=0.25,
        remove_share=0.10,
        discount_share=0.10,
        discount=(0.05, 0.10),
        birth_years=(1955, 2004),
        income=(1, 2, 3, 2, 1),
        consent=0.35,
    ),
    "loyal_big_spender": _Behaviour(
        activity=1.6,
        devices=(0.70, 0.20, 0.10),
        app_share=0.60,
        favourites=("electronics", "jewellery", "apparel", "home", "shoes"),
        tier="premium",
        views=(2, 5),
        adds=(2, 4),
        quantity=(1, 2),
        search_share=0.10,
        remove_share=0.05,
        discount_share=0.05,
        discount=(0.05, 0.10),
        birth_years=(1962, 1992),
        income=(0, 0, 1, 4, 6),
        consent=0.75,
    ),
    "bargain_hunter": _Behaviour(
        activity=1.4,
        devices=(0.15, 0.75, 0.10),
        app_share=0.70,
        favourites=("grocery", "apparel", "beauty", "toys", "home"),
        tier="budget",
        views=(4, 11),
        adds=(1, 4),
        quantity=(1, 3),
        search_share=0.35,
        remove_share=0.35,
        discount_share=0.70,
        discount=(0.10, 0.30),
        birth_years=(1978, 2006),
        income=(4, 4, 2, 1, 0),
        consent=0.85,
    ),
    "lapsing_buyer": _Behaviour(
        activity=0.9,
        devices=(0.45, 0.45, 0.10),
        app_share=0.30,
        favourites=("home", "sports", "apparel", "books"),
        tier="any",
        views=(2, 5),
        adds=(1, 3),
        quantity=(1, 2),
        search_share=0.20,
        remove_share=0.10,
        discount_share=0.10,
        discount=(0.05, 0.15),
        birth_years=(1950, 2000),
        income=(1, 2, 3, 2, 1),
        consent=0.45,
    ),
}

#: Chance that a lapsing buyer who has made their early orders acts when picked.
LAPSED_ACTIVITY = 0.15


def customer_id(index: int, seed: int) -> str:
    return f"c-{seed}-{index:05d}"


_persona_cache: dict[tuple[int, int], tuple[str, ...]] = {}


def personas(customers: int, seed: int) -> tuple[str, ...]:
    """Persona of every customer index: exact quotas of :data:`PERSONA_MIX`, seeded shuffle."""
    key = (customers, seed)
    cached = _persona_cache.get(key)
    if cached is not None:
        return cached
    exact = [share * customers for share in PERSONA_MIX.values()]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: customers - sum(counts)]:
        counts[i] += 1
    assigned = [p for p, n in zip(PERSONAS, counts, strict=True) for _ in range(n)]
    random.Random(f"segstream-personas-{seed}").shuffle(assigned)
    result = tuple(assigned)
    if len(_persona_cache) > 16:
        _persona_cache.clear()
    _persona_cache[key] = result
    return result


def persona_of(customer: str, customers: int, seed: int) -> str:
    """The persona :func:`generate` gave ``customer`` (an id like ``c-7-00042``)."""
    prefix = f"c-{seed}-"
    if not customer.startswith(prefix):
        raise ValueError(f"{customer!r} is not a customer of seed {seed}")
    index = int(customer[len(prefix) :])
    if not 0 <= index < customers:
        raise ValueError(f"{customer!r} is not one of {customers} customers")
    return personas(customers, seed)[index]
