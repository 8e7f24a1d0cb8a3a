"""The dimensions and the segments each can hold: what a rule or a policy may name.

A policy rule or a custom-segment rule that names a segment no customer can ever be in
never fires, silently. Checking names against this vocabulary when a file is loaded turns
that into an error with a "did you mean" (difflib).

>>> v = Vocabulary(clusters=6, custom=frozenset({"big"}))
>>> v.segment_error("journey", "cart_abandonr")
"unknown segment 'cart_abandonr' for journey (did you mean 'cart_abandoner'?)"
>>> v.segment_error("behaviour", "cluster_9")
"unknown segment 'cluster_9' for behaviour: the model has 6 clusters, cluster_0 .. cluster_5"
>>> v.dimension_error("behavior")
"unknown dimension 'behavior' (did you mean 'behaviour'?)"
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from segmenters.dimensions import interest, journey, profile, rfm, value

BEHAVIOUR = "behaviour"
CUSTOM_PREFIX = "custom:"
CUSTOM_SEGMENTS = ("member", "non_member")
#: Dimensions whose segments are a fixed list.
CLOSED: dict[str, tuple[str, ...]] = {
    journey.DIMENSION: journey.SEGMENTS,
    rfm.DIMENSION: rfm.SEGMENTS,
    value.DIMENSION: value.SEGMENTS,
}
DIMENSIONS = (
    journey.DIMENSION,
    rfm.DIMENSION,
    BEHAVIOUR,
    profile.DEMOGRAPHIC,
    profile.GEOGRAPHIC,
    interest.DIMENSION,
    value.DIMENSION,
)
AGE_BANDS = ("under_18", *(name for _, name in profile.AGE_BANDS), profile.UNKNOWN)
CLUSTER = re.compile(r"^cluster_(0|[1-9][0-9]{0,5})$")
COUNTRY = re.compile(r"^[A-Z]{2}$")


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Vocabulary:
    """What the deployment can place customers in.

    ``clusters`` is the configured k (``SEGSTREAM_CLUSTERS``): the trainer keeps cluster
    ids 0 .. k-1 while k stays the same. ``custom`` holds the custom segments' names.
    None means "not known here": any ``cluster_<n>``, any ``custom:<name>`` is accepted.
    """

    clusters: int | None = None
    custom: frozenset[str] | None = None

    def dimension_error(self, dimension: str) -> str | None:
        """Why ``dimension`` is not one a customer can have a segment in, or None."""
        if dimension.startswith(CUSTOM_PREFIX):
            name = dimension.removeprefix(CUSTOM_PREFIX)
            if self.custom is None or name in self.custom:
                return None
            if not self.custom:
                return f"unknown custom segment {name!r}: no custom segments are configured"
            return (
                f"unknown custom segment {name!r}{did_you_mean(name, self.custom)} "
                f"(defined: {', '.join(sorted(self.custom))})"
            )
        if dimension in DIMENSIONS:
            return None
        known = [*DIMENSIONS, *(CUSTOM_PREFIX + n for n in sorted(self.custom or ()))]
        hint = did_you_mean(dimension, known)
        if not hint and dimension in (self.custom or ()):
            hint = f" (did you mean {CUSTOM_PREFIX + dimension!r}?)"
        return f"unknown dimension {dimension!r}{hint or ' (known: ' + ', '.join(known) + ')'}"

    def segment_error(self, dimension: str, segment: str) -> str | None:
        """Why no customer can be in ``segment`` of ``dimension``, or None."""
        known = CLOSED.get(dimension)
        if dimension.startswith(CUSTOM_PREFIX):
            known = CUSTOM_SEGMENTS
        if known is not None:
            if segment in known:
                return None
            hint = did_you_mean(segment, known) or f" (known: {', '.join(known)})"
            return f"unknown segment {segment!r} for {dimension}{hint}"
        if dimension == BEHAVIOUR:
            return self._cluster_error(segment)
        if dimension == profile.DEMOGRAPHIC:
            return _demographic_error(segment)
        if dimension == profile.GEOGRAPHIC:
            return _geographic_error(segment)
        return None

    def _cluster_error(self, segment: str) -> str | None:
        m = CLUSTER.match(segment)
        if m is None:
            return f"unknown segment {segment!r} for behaviour: clusters are named cluster_<n>"
        if self.clusters is not None and int(m.group(1)) >= self.clusters:
            return (
                f"unknown segment {segment!r} for behaviour: the model has {self.clusters} "
                f"clusters, cluster_0 .. cluster_{self.clusters - 1}"
            )
        return None


def _demographic_error(segment: str) -> str | None:
    parts = segment.split("/")
    if len(parts) != 3:
        return (
            f"unknown segment {segment!r} for demographic: segments read "
            "<age band>/<gender>/<income band>, e.g. '25-34/female/high'"
        )
    band, *rest = parts
    if band not in AGE_BANDS:
        hint = did_you_mean(band, AGE_BANDS) or f" (known: {', '.join(AGE_BANDS)})"
        return f"unknown age band {band!r} in demographic segment {segment!r}{hint}"
    for part in rest:
        if not part or part != part.strip().lower():
            return (
                f"demographic segment {segment!r}: gender and income band are stored "
                f"trimmed and in lower case, so {part!r} never matches"
            )
    return None


def _geographic_error(segment: str) -> str | None:
    country, _, region = segment.partition("/")
    if not region:
        return (
            f"unknown segment {segment!r} for geographic: segments read "
            "<country>/<region>, e.g. 'DE/Bavaria' ('DE/unknown' without a region)"
        )
    if not COUNTRY.match(country):
        hint = f" (did you mean {country.upper()!r}?)" if COUNTRY.match(country.upper()) else ""
        return (
            f"geographic segment {segment!r}: the country is an ISO-3166 alpha-2 code in "
            f"upper case{hint}"
        )
    return None
