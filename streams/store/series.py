"""The time series the dashboard charts: segment sizes over time (the sizes stream) and
segment flows (the per-minute and per-hour buckets the workers add to), and the workers'
operating figures (the ops stream: throughput, lag, freshness).

Separate from ``queries`` because they are kept and read by time window, not by
customer or segment: the buckets' layout, the workers' adds (``add_flows``) and the
dashboard's reads live together.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from segmenters.reports import (
    OpsRecord,
    SizeRecord,
    bucket_bounds,
    downsample,
    ops_fields,
    ops_record,
    ops_series,
    size_record,
    split_size_field,
)
from streams.store.documents import _text
from streams.store.keys import entered_key, flows_key, ops_key, sizes_key

#: How long a flow bucket is kept after its last add: minutes 3 h, hours 8 days.
FLOW_MINUTE_TTL_S = 3 * 3600
FLOW_HOUR_TTL_S = 8 * 86400
#: Windows up to this many seconds are summed from minute buckets, longer ones from hours.
FLOW_MINUTES_UP_TO_S = 3 * 3600 - 120
MAX_FLOW_WINDOW_S = 7 * 86400
#: Between the dimension, the previous and the current segment of a flow bucket's field.
SEP = "\x1f"
#: Ops entries are read from this long before the window: an entry's id is Redis's clock,
#: its ``at`` the worker's.
OPS_READ_MARGIN_S = 60.0


def flow_window(window_s: float, now: float) -> tuple[str, list[int]]:
    """Resolution and buckets that cover the last ``window_s`` seconds.

    >>> flow_window(300, 600.0)
    ('m', [5, 6, 7, 8, 9, 10])
    >>> flow_window(86400, 7200.0)[0], len(flow_window(86400, 7200.0)[1])
    ('h', 25)
    """
    window_s = min(max(window_s, 60.0), MAX_FLOW_WINDOW_S)
    if window_s <= FLOW_MINUTES_UP_TO_S:
        last = int(now // 60)
        return "m", list(range(last - math.ceil(window_s / 60), last + 1))
    last = int(now // 3600)
    return "h", list(range(last - math.ceil(window_s / 3600), last + 1))


async def read_flows(client: Any, prefix: str, window_s: float, now: float) -> dict[str, Any]:
    """Flows per dimension over the window: ``{dimension: [{from, to, count}]}``.

    ``from`` is null for a customer's first segment of the dimension. The window is
    rounded out to whole buckets (minutes up to three hours, hours beyond).
    """
    resolution, buckets = flow_window(window_s, now)
    pipe = client.pipeline(transaction=False)
    for b in buckets:
        pipe.hgetall(flows_key(prefix, resolution, b))
    total: Counter[tuple[str, str, str]] = Counter()
    for row in await pipe.execute():
        for field, n in row.items():
            parts = _text(field).split(SEP)
            if len(parts) == 3:
                total[(parts[0], parts[1], parts[2])] += int(n)
    out: dict[str, list[dict[str, Any]]] = {}
    for (dimension, previous, current), n in sorted(total.items()):
        out.setdefault(dimension, []).append({"from": previous or None, "to": current, "count": n})
    step = 60 if resolution == "m" else 3600
    return {
        "window_s": window_s,
        "resolution": "minute" if resolution == "m" else "hour",
        "since": buckets[0] * step,
        "flows": out,
    }


async def add_flows(
    client: Any, prefix: str, flows: Mapping[tuple[str, str, str], int], now: float
) -> None:
    """Add ``flows`` ((dimension, previous or "", current) -> customers) to the minute and
    hour buckets of ``now`` (``HINCRBY``: every worker's add up)."""
    minute = flows_key(prefix, "m", int(now // 60))
    hour = flows_key(prefix, "h", int(now // 3600))
    pipe = client.pipeline(transaction=False)
    entered: dict[str, str] = {}
    for (dimension, previous, current), n in flows.items():
        field = SEP.join((dimension, previous, current))
        pipe.hincrby(minute, field, n)
        pipe.hincrby(hour, field, n)
        entered[SEP.join((dimension, current))] = repr(now)
    pipe.expire(minute, FLOW_MINUTE_TTL_S)
    pipe.expire(hour, FLOW_HOUR_TTL_S)
    if entered:  # one field per segment ever entered: the report's stale flag
        pipe.hset(entered_key(prefix), mapping=entered)
    await pipe.execute()


async def sizes_records(client: Any, prefix: str, count: int) -> list[dict[str, str]]:
    """The last ``count`` records of the sizes stream, newest first, each as its fields
    (``at``, then ``dimension:segment`` -> size) in the order they were written."""
    if count < 1:  # redis-py refuses COUNT 0; no record asked for is none read
        return []
    entries = await client.xrevrange(sizes_key(prefix), count=count)
    return [{_text(k): _text(v) for k, v in fields.items()} for _id, fields in entries]


async def read_sizes(client: Any, prefix: str, count: int) -> dict[str, Any]:
    """The last ``count`` records of the sizes stream, as series per dimension.

    ``at`` holds each record's wall-clock time; ``dimensions[dim][segment][i]`` is the
    segment's size at ``at[i]`` (0 when the segment had no member then). Dimensions and
    segments are named as ``GET /segments`` names them (``custom:<name>``, ``member``).
    """
    at: list[float] = []
    rows: list[dict[str, int]] = []
    for doc in reversed(await sizes_records(client, prefix, count)):
        try:
            at.append(float(doc.pop("at")))
        except (KeyError, ValueError):
            continue
        rows.append({k: int(v) for k, v in doc.items()})
    dimensions: dict[str, dict[str, list[int]]] = {}
    names = sorted({k for row in rows for k in row})
    for name in names:
        dimension, segment = split_size_field(name)
        dimensions.setdefault(dimension, {})[segment] = [row.get(name, 0) for row in rows]
    return {"at": at, "dimensions": dimensions}


async def sizes_history(
    client: Any, prefix: str, since: float, until: float, every: float
) -> list[SizeRecord]:
    """The last record of each ``every``-second bucket from ``since`` to ``until`` (wall
    time), oldest first: one pipelined ``XREVRANGE ... COUNT 1`` per bucket, so a week
    at one point an hour reads 168 records, not the 10,080 kept."""
    bounds = bucket_bounds(since, until, every)
    pipe = client.pipeline(transaction=False)
    for start, end in bounds:
        pipe.xrevrange(
            sizes_key(prefix),
            max=str(max(int(end * 1000) - 1, 0)),
            min=str(int(start * 1000)),
            count=1,
        )
    records = []
    for rows in await pipe.execute() if bounds else []:
        for _id, fields in rows:
            r = size_record({_text(k): _text(v) for k, v in fields.items()})
            if r is not None:
                records.append(r)
    # Buckets go by the stream ids (Redis's clock), records by ``at`` (the recorder's).
    return downsample(records, since, every)


async def first_sizes_since(client: Any, prefix: str, since: float) -> SizeRecord | None:
    """The first sizes record at or after ``since`` (wall time), or None."""
    rows = await client.xrange(sizes_key(prefix), min=str(int(since * 1000)), count=1)
    for _id, fields in rows:
        return size_record({_text(k): _text(v) for k, v in fields.items()})
    return None


async def add_ops(client: Any, prefix: str, record: OpsRecord, keep_s: float) -> None:
    """Append one worker's figures to the ops stream, dropping entries older than
    ``keep_s`` (``MINID ~``: by age, so the time kept does not shrink as workers are
    added)."""
    oldest = max(int((record.at - keep_s) * 1000), 0)
    await client.xadd(ops_key(prefix), ops_fields(record), minid=oldest, approximate=True)


async def ops_history(
    client: Any, prefix: str, since: float, until: float, every: float
) -> dict[str, Any]:
    """The workers' figures per ``every`` seconds from ``since`` to ``until`` (wall
    time): ``{since, until, every, at, rates, events, lag, freshness, workers}``
    (:func:`segmenters.reports.ops_series`). One ``XRANGE`` over the window: the stream
    holds a few entries per worker a minute."""
    start = math.ceil(since / every) * every - OPS_READ_MARGIN_S
    rows = await client.xrange(ops_key(prefix), min=str(max(int(start * 1000), 0)), max="+")
    records = []
    for _id, fields in rows:
        r = ops_record({_text(k): _text(v) for k, v in fields.items()})
        if r is not None:
            records.append(r)
    return {
        "since": since,
        "until": until,
        "every": every,
        **ops_series(records, since, until, every),
    }


async def read_entered(
    client: Any, prefix: str
) -> tuple[dict[tuple[str, str], float], float | None]:
    """(dimension, segment) -> wall time of its latest entry, and since when entries are
    kept (None before the first sizes record)."""
    raw = await client.hgetall(entered_key(prefix))
    last: dict[tuple[str, str], float] = {}
    since = None
    for k, v in raw.items():
        name = _text(k)
        if name == "since":
            since = float(v)
        elif SEP in name:
            dimension, _, segment = name.partition(SEP)
            last[(dimension, segment)] = float(v)
    return last, since
