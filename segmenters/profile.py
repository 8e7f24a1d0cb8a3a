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

from .state import CustomerState

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
    band = age_band(_year(now) - born) if isinstance(born, int) else UNKNOWN
    return f"{band}/{_clean(profile.get('gender'))}/{_clean(profile.get('income_band'))}"


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
            return datetime(born + start, 1, 1, tzinfo=UTC).timestamp()
    return None
