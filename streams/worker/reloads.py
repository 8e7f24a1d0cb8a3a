"""What became of a config file's reloads (the custom segments file, the actions policy file).

The worker reads these files again when they change and keeps the previous version when
the new one is bad, which the log says. :class:`ReloadStatus` keeps the same facts for
``/metrics`` and ``/api/status``: the version in force and when it was loaded, and the last
error with its time, so a file that stopped reloading is seen without reading the log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Longest error text kept (a label value in ``/metrics``, a field in the JSON).
MAX_ERROR_CHARS = 300


@dataclass(slots=True)
class ReloadStatus:
    """One config file: ``file`` names it in the metrics (``segments``, ``actions``)."""

    file: str
    path: Path
    wall: Callable[[], float] = field(default=time.time, repr=False)
    #: The version in force and when it was loaded (None: never loaded yet).
    version: str | None = None
    loaded_at: float | None = None
    #: The last failed load, kept after a later success; ``failing``: the latest one failed.
    last_error: str | None = None
    last_error_at: float | None = None
    errors: int = 0
    failing: bool = False

    def loaded(self, version: str) -> None:
        self.version = version
        self.loaded_at = self.wall()
        self.failing = False

    def failed(self, error: BaseException | str) -> None:
        text = " ".join(str(error).split())  # one line: it becomes a label value
        self.last_error = text[:MAX_ERROR_CHARS]
        self.last_error_at = self.wall()
        self.errors += 1
        self.failing = True

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "version": self.version,
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "errors": self.errors,
            "failing": self.failing,
        }
