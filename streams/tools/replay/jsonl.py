"""The ``jsonl`` format: segstream's own contract-v1 events, one per line, sent as they are
once they parse."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from segmenters.events import InvalidEvent, parse_event
from streams.tools.replay.common import Mapped


def map_jsonl(lines: Iterable[str | bytes], *, max_bytes: int = 65536) -> Mapped:
    """Contract-v1 events, one per line; lines that do not parse are skipped and counted."""
    out = Mapped()
    for raw in lines:
        text = raw.strip()
        if not text:
            continue
        out.rows += 1
        try:
            parse_event(text, max_bytes=max_bytes)
        except InvalidEvent as exc:
            reason = exc.reason.split(";")[0]
            if reason.startswith("invalid JSON"):
                reason = "invalid JSON"
            elif len(reason) > 80:
                reason = reason[:77] + "..."
            out.skipped[f"malformed event: {reason}"] += 1
            continue
        out.events.append(orjson.loads(text))
    return out
