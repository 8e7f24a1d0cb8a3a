"""What a custom rule may read: the fields, their types, units and ranges."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from segmenters.dimensions import journey, rfm
from segmenters.state import CustomerState, decayed_value
from segmenters.vocabulary import BEHAVIOUR, COUNTRY, Vocabulary

DAY = 86400.0
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
#: Deepest nesting of a rule's expression tree (keeps checking and evaluation bounded).
MAX_DEPTH = 40
Kind = Literal["number", "text", "yes/no"]
_N: Kind = "number"


def _days(since: float | None, now: float) -> float | None:
    return None if since is None else (now - since) / DAY


def _mobile_share(s: CustomerState) -> float:
    total = sum(s.devices.values())
    return s.devices.get("mobile", 0) / total if total else 0.0


def _country_error(vocabulary: Vocabulary, value: Any) -> str | None:
    if COUNTRY.match(value):
        return None
    hint = f" (did you mean {value.upper()!r}?)" if COUNTRY.match(value.upper()) else ""
    return f"country is an ISO-3166 alpha-2 code in upper case, {value!r} never matches{hint}"


def _segment_of(dimension: str) -> Callable[[Vocabulary, Any], str | None]:
    def check(vocabulary: Vocabulary, value: Any) -> str | None:
        return vocabulary.segment_error(dimension, value)

    return check


@dataclass(frozen=True)
class RuleField:
    """A value a rule may use: its type, unit, possible range, and how to compute it."""

    kind: Kind
    meaning: str
    unit: str
    get: Callable[[CustomerState, float], Any] = field(repr=False)
    #: May be missing (None): a comparison with a missing value is false.
    optional: bool = False
    integer: bool = False
    low: float = -math.inf
    high: float = math.inf
    #: Why a text constant can never equal this field (unknown segment, bad code), or None.
    value_error: Callable[[Vocabulary, Any], str | None] | None = field(default=None, repr=False)
    #: The dimension whose segment this field is (its values are checked by the vocabulary).
    dimension: str | None = None

    @property
    def type_text(self) -> str:
        """``whole number >= 0``, ``number >= 0 and <= 1``, ``text``: for messages and docs."""
        text: str = "whole number" if self.integer else self.kind
        if self.low > -math.inf:
            text += f" >= {self.low:g}"
        if self.high < math.inf:
            text += f" {'and ' if self.low > -math.inf else ''}<= {self.high:g}"
        return text


#: Fields a rule may use. Times are event time; amounts are in the shop's currency as sent
#: on the events (not converted).
FIELDS: dict[str, RuleField] = {
    "orders": RuleField(
        _N, "distinct orders", "orders", lambda s, now: s.orders, integer=True, low=0
    ),
    "revenue": RuleField(
        _N, "net revenue: order totals minus refunds", "currency", lambda s, now: s.revenue
    ),
    "items": RuleField(_N, "units bought", "units", lambda s, now: s.items, integer=True, low=0),
    "refunds": RuleField(
        _N, "refund events", "refunds", lambda s, now: s.refunds, integer=True, low=0
    ),
    "avg_order_value": RuleField(
        _N,
        "revenue / orders (0 before a first order)",
        "currency",
        lambda s, now: s.revenue / s.orders if s.orders else 0.0,
    ),
    "cart_items": RuleField(
        _N, "units in the cart", "units", lambda s, now: s.cart_items, integer=True, low=0
    ),
    "cart_value": RuleField(
        _N,
        "value of the cart (quantity x unit price)",
        "currency",
        lambda s, now: s.cart_value,
        low=0,
    ),
    "views": RuleField(
        _N,
        "recent browse events, decayed with a 7-day half-life",
        "events",
        lambda s, now: decayed_value(s.views, now, half_life_s=7 * DAY),
        low=0,
    ),
    "cart_adds": RuleField(
        _N,
        "recent cart additions, decayed with a 7-day half-life",
        "events",
        lambda s, now: decayed_value(s.cart_adds, now, half_life_s=7 * DAY),
        low=0,
    ),
    "days_since_order": RuleField(
        _N,
        "days since the last order (missing before a first order)",
        "days",
        lambda s, now: _days(s.last_order_at, now),
        optional=True,
    ),
    "days_since_seen": RuleField(
        _N,
        "days since the last event",
        "days",
        lambda s, now: _days(s.last_seen, now),
        optional=True,
    ),
    "tenure_days": RuleField(
        _N,
        "days since the first event",
        "days",
        lambda s, now: _days(s.first_seen, now),
        optional=True,
    ),
    "categories": RuleField(
        _N,
        "distinct categories browsed, carted or bought (at most 12 kept)",
        "categories",
        lambda s, now: len(s.categories),
        integer=True,
        low=0,
    ),
    "mobile_share": RuleField(
        _N,
        "share of events sent from a mobile device",
        "share from 0 to 1",
        lambda s, now: _mobile_share(s),
        low=0,
        high=1,
    ),
    "country": RuleField(
        "text",
        "country, ISO-3166 alpha-2 in upper case (profile, else events)",
        "code",
        lambda s, now: s.profile.get("country") or s.geo.get("country"),
        optional=True,
        value_error=_country_error,
    ),
    "birth_year": RuleField(
        _N,
        "profile birth year",
        "year",
        lambda s, now: s.profile.get("birth_year"),
        optional=True,
        integer=True,
        low=1900,
        high=2100,
    ),
    "gender": RuleField(
        "text",
        "profile gender, as sent",
        "text",
        lambda s, now: s.profile.get("gender"),
        optional=True,
    ),
    "income_band": RuleField(
        "text",
        "profile income band, as sent",
        "text",
        lambda s, now: s.profile.get("income_band"),
        optional=True,
    ),
    "marketing_consent": RuleField(
        "yes/no",
        "profile marketing consent (a missing value counts as no)",
        "true/false",
        lambda s, now: s.profile.get("marketing_consent"),
        optional=True,
    ),
    "journey": RuleField(
        "text",
        "journey segment",
        "segment name",
        lambda s, now: s.segment(journey.DIMENSION),
        optional=True,
        value_error=_segment_of(journey.DIMENSION),
        dimension=journey.DIMENSION,
    ),
    "rfm": RuleField(
        "text",
        "RFM segment (missing before a first order)",
        "segment name",
        lambda s, now: s.segment(rfm.DIMENSION),
        optional=True,
        value_error=_segment_of(rfm.DIMENSION),
        dimension=rfm.DIMENSION,
    ),
    "behaviour": RuleField(
        "text",
        "behaviour cluster, cluster_<n> (missing before a first model)",
        "segment name",
        lambda s, now: s.segment(BEHAVIOUR),
        optional=True,
        value_error=_segment_of(BEHAVIOUR),
        dimension=BEHAVIOUR,
    ),
}
