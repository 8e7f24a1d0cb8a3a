"""Demographic and geographic dimensions, from profile attributes and event geo.

Demographic: ``<age band>/<gender>/<income band>``, e.g. ``25-34/female/high``; a part
not known reads ``unknown``. Age comes from ``birth_year`` and the event-time year, so a
customer moves up a band on the first of January (a timer, like every time-driven change).
Geographic: ``<country>/<region>``; profile attributes win over the location seen on events.

>>> s = CustomerState("c", profile={"birth_year": 1990, "gender": "female"})
>>> demographic(s, now=1767225600.0)  # 2026-01-01
('35-44/female/unknown', 'age 36 (born 1990), gender female, income band unknown')
>>> geographic(CustomerState("c", geo={"country": "DE", "region": "Bavaria"}))
('DE/Bavaria', 'country DE, region Bavaria (from events)')
"""

from __future__ import annotations

from datetime import UTC, datetime

from segmenters.state import CustomerState

DEMOGRAPHIC = "demographic"
GEOGRAPHIC = "geographic"
AGE_BANDS = ((18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-54"), (55, "55-64"), (65, "65+"))
UNKNOWN = "unknown"


#: (start, end, year): the event-time span of the year ``_year`` last computed, less its
#: last microsecond (which ``fromtimestamp`` may round up into the next year).
_last_year: tuple[float, float, int] = (0.0, 0.0, 0)


def _year(ts: float) -> int:
    global _last_year
    start, end, year = _last_year
    if start <= ts < end:
        return year
    year = datetime.fromtimestamp(ts, UTC).year
    if 1 < year < 9999:
        _last_year = (
            datetime(year, 1, 1, tzinfo=UTC).timestamp(),
            datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() - 1e-6,
            year,
        )
    return year


def age_band(age: int) -> str:
    """
    >>> [age_band(a) for a in (17, 18, 24, 25, 64, 65, 90)]
    ['under_18', '18-24', '18-24', '25-34', '55-64', '65+', '65+']
    """
    band = "under_18"
    for start, name in AGE_BANDS:
        if age >= start:
            band = name
    return band


def _clean(value: object) -> str:
    text = str(value).strip().lower().replace("/", "-") if value is not None else ""
    return text or UNKNOWN


def demographic(state: CustomerState, now: float) -> tuple[str, str] | None:
    """None until the customer has sent any profile attribute."""
    if not state.profile:
        return None
    born = state.profile.get("birth_year")
    if isinstance(born, int):
        age = _year(now) - born
        band, age_text = age_band(age), f"age {age} (born {born})"
    else:
        band, age_text = UNKNOWN, "age unknown"
    gender = _clean(state.profile.get("gender"))
    income = _clean(state.profile.get("income_band"))
    return (
        f"{band}/{gender}/{income}",
        f"{age_text}, gender {gender}, income band {income}",
    )


def demographic_segment(state: CustomerState, now: float) -> str | None:
    """The segment of :func:`demographic` alone: the reason is only written for a change."""
    profile = state.profile
    if not profile:
        return None
    born = profile.get("birth_year")
    gender, income = profile.get("gender"), profile.get("income_band")
    age = _year(now) - born if isinstance(born, int) else None
    if (gender is None or type(gender) is str) and (income is None or type(income) is str):
        # evaluated on every event, from a handful of distinct inputs: remembered (keys of
        # other types could compare equal yet clean differently, 1 and 1.0 and True)
        key = (age, gender, income)
        segment = _DEMOGRAPHIC_SEGMENTS.get(key)
        if segment is None:
            if len(_DEMOGRAPHIC_SEGMENTS) >= 4096:
                _DEMOGRAPHIC_SEGMENTS.clear()
            segment = _DEMOGRAPHIC_SEGMENTS[key] = _demographic_segment(age, gender, income)
        return segment
    return _demographic_segment(age, gender, income)


#: (age, gender, income band) -> demographic segment.
_DEMOGRAPHIC_SEGMENTS: dict[tuple[int | None, str | None, str | None], str] = {}


def _demographic_segment(age: int | None, gender: object, income: object) -> str:
    band = UNKNOWN if age is None else age_band(age)
    return f"{band}/{_clean(gender)}/{_clean(income)}"


def geographic_segment(state: CustomerState) -> str | None:
    """The segment of :func:`geographic` alone."""
    p, g = state.profile, state.geo
    if p.get("country"):
        country, region = p["country"], p.get("region")
    elif g.get("country"):
        country, region = g["country"], g.get("region")
    else:
        return None
    return f"{country}/{region or UNKNOWN}"


def geographic(state: CustomerState) -> tuple[str, str] | None:
    """None until a country is known."""
    p, g = state.profile, state.geo
    if p.get("country"):
        country, region, source = p["country"], p.get("region"), "profile"
    elif g.get("country"):
        country, region, source = g["country"], g.get("region"), "events"
    else:
        return None
    region_text = region or UNKNOWN
    return (
        f"{country}/{region_text}",
        f"country {country}, region {region_text} (from {source})",
    )


def next_deadline(state: CustomerState, after: float) -> float | None:
    """The next New Year (event time) at which the customer's age band changes."""
    born = state.profile.get("birth_year")
    if not isinstance(born, int):
        return None
    year = _year(after)
    for start, _ in AGE_BANDS:
        if born + start > year:
            return _new_year(born + start)
    return None


#: year -> event time of its first instant (a few hundred years at most: birth years are
#: bounded by the contract).
_NEW_YEARS: dict[int, float] = {}


def _new_year(year: int) -> float:
    """``datetime(year, 1, 1, tzinfo=UTC).timestamp()``, computed once per year: timers
    ask for it on every evaluation of a customer with a birth year."""
    at = _NEW_YEARS.get(year)
    if at is None:
        at = _NEW_YEARS[year] = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    return at
