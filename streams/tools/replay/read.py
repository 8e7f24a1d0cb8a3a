"""Reading a replay file: plain or gzip text, the CSV header check, and the mapper of its
format; the events come back sorted by time."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streams.tools.replay.cdnow import map_cdnow
from streams.tools.replay.common import Mapped, ReplayError, sort_events
from streams.tools.replay.jsonl import map_jsonl
from streams.tools.replay.mapped import MappingConfig, map_mapped
from streams.tools.replay.online_retail import ONLINE_RETAIL_COLUMNS, map_online_retail
from streams.tools.replay.rees46 import REES46_COLUMNS, map_rees46

FORMATS = ("rees46", "online-retail", "jsonl", "mapped", "cdnow")


def open_text(path: Path) -> io.TextIOBase:
    """``path`` as text (UTF-8, BOM ignored), gunzipped when it is gzip (by its first bytes)."""
    try:
        with path.open("rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        if gz:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None


def _csv_rows(
    handle: io.TextIOBase, required: Iterable[str], delimiter: str = ","
) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(handle, delimiter=delimiter)
    header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise ReplayError(
            f"missing column(s) {', '.join(missing)}; the header has: {', '.join(header) or '-'}"
        )
    yield from reader


def read_and_map(
    path: Path,
    fmt: str,
    *,
    mapping: MappingConfig | None = None,
    max_bytes: int = 65536,
) -> Mapped:
    """Read ``path`` in format ``fmt`` and map it; the events come back sorted by time."""
    if fmt not in FORMATS:
        raise ReplayError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if fmt == "mapped" and mapping is None:
        raise ReplayError("--format mapped needs --mapping FILE")
    handle = open_text(path)
    try:
        if fmt == "rees46":
            result = map_rees46(_csv_rows(handle, REES46_COLUMNS))
        elif fmt == "online-retail":
            result = map_online_retail(_csv_rows(handle, ONLINE_RETAIL_COLUMNS))
        elif fmt == "jsonl":
            result = map_jsonl(handle, max_bytes=max_bytes)
        elif fmt == "cdnow":
            result = map_cdnow(handle)
        else:
            assert mapping is not None
            rows = _csv_rows(handle, mapping.needed(), mapping.delimiter)
            result = map_mapped(rows, mapping)
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, csv.Error) as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from None
    finally:
        handle.close()
    result.events = sort_events(result.events)
    return result
