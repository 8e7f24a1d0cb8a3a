"""Where the tests find the public data files (never copied into the repository).

``SEGSTREAM_DATA_DIR`` if set; else ``shared/data`` next to the checkout, or next to
the repository it was cloned from (a fresh clone of a local checkout, as CI makes).
A test that needs a file fails, with what to set, when it is nowhere: a skipped check
of published figures would pass unseen.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _candidates() -> list[Path]:
    if os.environ.get("SEGSTREAM_DATA_DIR"):
        return [Path(os.environ["SEGSTREAM_DATA_DIR"])]
    found = [ROOT.parent / "shared" / "data"]
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:
        found.append(Path(origin).resolve().parent / "shared" / "data")
    return found


def data_file(name: str) -> Path:
    """The path of a public data file, or a test failure that says where it was looked for."""
    places = _candidates()
    for place in places:
        if (place / name).is_file():
            return place / name
    pytest.fail(
        f"{name} not found in {', '.join(map(str, places))}: set SEGSTREAM_DATA_DIR to the "
        "folder of the public data files (see ../shared/data/README.md)"
    )
