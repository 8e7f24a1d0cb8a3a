"""TOML configuration text: parse it or raise the caller's error, and find the line of a
table or key for error messages. Shared by the policy, custom-segment and replay-mapping
files so that every config error reads the same way.
"""

from __future__ import annotations

import tomllib
from typing import Any


def load_toml(text: str, error: type[Exception]) -> dict[str, Any]:
    """The parsed document; ``error("not valid TOML: ...")`` if ``text`` is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"not valid TOML: {exc}") from None


def line_of(
    text: str,
    header: str | tuple[str, ...],
    nth: int = 0,
    key: str | None = None,
    *,
    exact: bool = False,
) -> int:
    """Line of the ``nth`` table whose header starts with ``header`` (or of ``key`` in it).

    ``header`` may be several spellings of one header; with ``exact`` a header line must
    be one of them rather than start with one. An empty ``header`` means the top of the
    file, before the first table; 1 if not found.

    >>> text = '[a]\\nx = 1\\n[ab]\\ny = 2\\n'
    >>> line_of(text, "[a", 1), line_of(text, "[ab]", key="y")
    (3, 4)
    >>> line_of(text, ("[a]",), key="y", exact=True)
    1
    """
    spellings = (header,) if isinstance(header, str) else header
    lines = text.splitlines()
    start = -1
    if any(spellings):
        starts = [
            i
            for i, ln in enumerate(lines)
            if (ln.strip() in spellings if exact else ln.strip().startswith(spellings))
        ]
        if len(starts) <= nth:
            return 1
        start = starts[nth]
    if key is not None:
        for j in range(start + 1, len(lines)):
            s = lines[j].strip()
            if s.startswith("["):
                break
            if s.split("=")[0].strip() == key:
                return j + 1
    return start + 1 if start >= 0 else 1
