"""Why a custom-segment file is refused."""

from __future__ import annotations


class SegmentConfigError(ValueError):
    """A custom-segment file that cannot be used; the message names the line."""


class _Refused(ValueError):
    pass
