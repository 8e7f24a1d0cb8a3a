"""The deployment's rule files, checked against what it can place customers in.

Custom segments (``SEGSTREAM_SEGMENTS_FILE``) and the retention policy
(``SEGSTREAM_ACTIONS_FILE``) are type-checked when loaded: by ``segstream segments check``
and ``actions check``, at worker start and at every hot reload, all against the same
vocabulary (the configured cluster count, the custom segments defined).
"""

from __future__ import annotations

from pathlib import Path

from segmenters.actions.policy import Policy, PolicyError, load_policy
from segmenters.dimensions.custom import CustomSegments, SegmentConfigError, parse_segments
from segmenters.vocabulary import Vocabulary
from streams.settings import Settings


def segments_vocabulary(settings: Settings) -> Vocabulary:
    """What custom-segment rules are checked against: ``cluster_<n>`` below the k."""
    return Vocabulary(clusters=settings.clusters)


def load_segments(path: Path, settings: Settings) -> CustomSegments:
    """Read and check a custom-segment file; raises OSError or SegmentConfigError."""
    return parse_segments(path.read_text(), segments_vocabulary(settings))


def policy_vocabulary(
    settings: Settings, segments_file: Path | None = None, *, strict: bool = True
) -> Vocabulary:
    """What a policy is checked against: the clusters and the custom segments defined in
    ``segments_file`` (default ``SEGSTREAM_SEGMENTS_FILE``; none: no custom segment exists).

    A segments file that cannot be read raises PolicyError, or with ``strict=False``
    leaves custom names unchecked (the segments reload reports that file's error).
    """
    path = segments_file or settings.segments_file
    if path is None:
        return Vocabulary(clusters=settings.clusters, custom=frozenset())
    try:
        names = load_segments(path, settings).names
    except (OSError, SegmentConfigError) as exc:
        if strict:
            raise PolicyError(f"custom segments {path}: {exc}") from None
        return Vocabulary(clusters=settings.clusters)
    return Vocabulary(clusters=settings.clusters, custom=names)


def load_policy_file(
    path: Path, settings: Settings, segments_file: Path | None = None, *, strict: bool = True
) -> Policy:
    """Read and check a retention policy; raises OSError or PolicyError."""
    vocabulary = policy_vocabulary(settings, segments_file, strict=strict)
    return load_policy(path.read_text(), vocabulary)
