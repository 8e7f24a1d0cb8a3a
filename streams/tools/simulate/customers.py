"""One simulated customer: profile, device, cart and history."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from streams.tools.simulate.catalog import DEVICES, GENDERS, INCOME_BANDS, PLACE_WEIGHTS, PLACES
from streams.tools.simulate.personas import BEHAVIOURS, _Behaviour, customer_id


@dataclass(slots=True)
class _Customer:
    index: int
    id: str
    persona: str
    behaviour: _Behaviour
    place: tuple[str, str, str, str]
    device: str
    app_user: bool
    favourites: list[str]
    profile: dict[str, Any]
    early_orders: int = 0  # lapsing buyers: orders before they drift away
    started: bool = False
    sessions: int = 0
    plan: deque[dict[str, Any]] = field(default_factory=deque)
    cart: dict[str, dict[str, Any]] = field(default_factory=dict)  # sku -> line
    orders: list[dict[str, Any]] = field(default_factory=list)
    refunded: set[str] = field(default_factory=set)
    refund_pending: bool = False

    @property
    def lapsed(self) -> bool:
        return self.persona == "lapsing_buyer" and len(self.orders) >= self.early_orders


def _new_customer(rng: random.Random, index: int, seed: int, persona: str) -> _Customer:
    b = BEHAVIOURS[persona]
    place = rng.choices(PLACES, weights=PLACE_WEIGHTS)[0]
    device = rng.choices(DEVICES, weights=b.devices)[0]
    favourites = rng.sample(b.favourites, k=min(3, len(b.favourites)))
    country, region, city, language = place
    profile = {
        "birth_year": rng.randint(*b.birth_years),
        "gender": rng.choices(GENDERS, weights=(48, 46, 2, 4))[0],
        "income_band": rng.choices(INCOME_BANDS, weights=b.income)[0],
        "country": country,
        "region": region,
        "city": city,
        "marketing_consent": rng.random() < b.consent,
        "language": language,
    }
    return _Customer(
        index=index,
        id=customer_id(index, seed),
        persona=persona,
        behaviour=b,
        place=place,
        device=device,
        app_user=device != "desktop" and rng.random() < b.app_share,
        favourites=favourites,
        profile=profile,
        early_orders=rng.choice((1, 1, 2)) if persona == "lapsing_buyer" else 0,
    )
