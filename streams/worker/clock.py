"""Partition clocks: show them, and repair one that an event dated in the future poisoned.

Each input partition's clock is its watermark (the largest ``occurred_at`` applied) minus
the allowed lateness. Workers keep the watermarks in memory and save them every second
to ``<prefix>:clock``. The partition clock is the only one: segment deadlines and
delayed retention actions share the partition's timer index and fire by it. Event time
is bounded now (segmenters/eventtime.py), but a clock moved far ahead before that, or
with a large ``SEGSTREAM_MAX_FUTURE_S``, stays ahead: watermarks only ever grow.

``segstream clock reset PARTITION --to ISO`` sets the partition's clock to ``ISO``: it
writes the watermark and records the reset in ``<prefix>:clock:reset`` with a new id.
Every running worker adopts a reset it has not seen within a second
(``streams.worker.clocks.ClockResets``), before it saves its clocks again, so a worker's
memory cannot write the old value back; a worker started later reads the reset clock.
Delayed actions follow: they come due by the reset clock. Both hashes are read and
written by ``streams.store.clocks`` only.

What a reset does not undo (docs/reliability.md): segment changes and actions already
published; customers' states evaluated at the poisoned time (their ``eval_at`` stays
ahead, and their later events are evaluated at it until wall time passes it); timers
already fired, whose next deadlines follow those states; segment-size records and
flows written with the poisoned time.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from segmenters.eventtime import clock_ahead, clock_fault, iso_utc, partition_clock, span
from streams.settings import Settings
from streams.store.clocks import read_watermarks, write_reset


class ClockError(ValueError):
    """A reset that cannot be done; the message says why."""


@dataclass(frozen=True)
class ClockRow:
    """One partition's clock as ``segstream clock show`` prints it."""

    partition: int
    watermark: float | None
    clock: float | None
    #: Clock minus wall time (negative: behind, the normal case).
    ahead_s: float | None
    #: The clock is more than ``SEGSTREAM_MAX_FUTURE_S`` ahead of wall time.
    fault: bool

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("watermark", "clock"):
            value = out[name]
            out[name] = None if value is None else iso_utc(value)
        return out


def clock_rows(
    watermarks: dict[int, float],
    *,
    partitions: Iterable[int],
    lateness: float,
    mode: str,
    max_future_s: float,
    wall: float,
) -> list[ClockRow]:
    """Every partition's clock, its distance to ``wall`` and whether it is a fault.

    >>> [r.fault for r in clock_rows({0: 1e6, 1: 4e9}, partitions=range(3),
    ...  lateness=5, mode="event", max_future_s=300, wall=1e6)]
    [False, True, False]
    """
    rows = []
    for p in partitions:
        wm = watermarks.get(p)
        clock = partition_clock(wm, lateness=lateness, mode=mode, wall=wall)
        rows.append(
            ClockRow(
                partition=p,
                watermark=wm,
                clock=clock,
                ahead_s=None if clock is None else clock - wall,
                fault=clock_fault(clock, wall, max_future_s),
            )
        )
    return rows


def parse_when(text: str, wall: float) -> float:
    """``now`` or an ISO-8601 time with a zone, as unix seconds.

    >>> parse_when("2026-11-29T10:00:00Z", 0.0), parse_when("now", 12.5)
    (1795946400.0, 12.5)
    >>> parse_when("2026-11-29T10:00", 0.0)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ...
    ClockError: '2026-11-29T10:00' has no zone: add Z or an offset like +01:00
    """
    if text.strip().lower() == "now":
        return wall
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"{text!r} is not an ISO-8601 time (e.g. 2026-11-29T10:00:00Z)") from None
    if at.tzinfo is None:
        raise ClockError(f"{text!r} has no zone: add Z or an offset like +01:00")
    return at.astimezone(UTC).timestamp()


def show(client: Any, settings: Settings, wall: float) -> list[ClockRow]:
    """Every input partition's clock as stored (saved by its worker every second)."""
    return clock_rows(
        read_watermarks(client, settings.key_prefix),
        partitions=range(settings.topic_partitions),
        lateness=settings.allowed_lateness_s,
        mode=settings.clock,
        max_future_s=settings.max_future_s,
        wall=wall,
    )


def reset(
    client: Any, settings: Settings, partition: int, to: float, wall: float
) -> dict[str, Any]:
    """Set ``partition``'s clock to ``to`` (its watermark to ``to`` + allowed lateness)
    and record the reset for running workers. Returns what was there before and what is
    there now."""
    if not 0 <= partition < settings.topic_partitions:
        raise ClockError(
            f"partition {partition} does not exist: the input topics have "
            f"{settings.topic_partitions} (SEGSTREAM_TOPIC_PARTITIONS)"
        )
    if clock_fault(to, wall, settings.max_future_s):
        raise ClockError(
            f"{iso_utc(to)} is {span(clock_ahead(to, wall))} ahead of the wall clock "
            f"{iso_utc(float(int(wall)))}; a clock may be at most SEGSTREAM_MAX_FUTURE_S="
            f"{settings.max_future_s:g} s ahead"
        )
    watermark = to + settings.allowed_lateness_s
    marker = {"id": uuid.uuid4().hex, "watermark": watermark, "clock": to, "at": wall}
    before = write_reset(client, settings.key_prefix, partition, marker)
    return {
        "partition": partition,
        "reset_id": marker["id"],
        "before": {"watermark": None if before is None else iso_utc(before)},
        "after": {"watermark": iso_utc(watermark), "clock": iso_utc(to)},
    }


def render(rows: list[ClockRow], wall: float) -> str:
    """The table ``segstream clock show`` prints.

    >>> print(render(clock_rows({0: 1000.0}, partitions=range(2), lateness=5,
    ...        mode="event", max_future_s=300, wall=1000.0), 1000.0))
    wall clock 1970-01-01T00:16:40Z
    partition  clock                 vs wall          status
    0          1970-01-01T00:16:35Z  5.0 s behind     ok
    1          -                     -                no event yet
    """
    lines = [
        f"wall clock {iso_utc(float(int(wall)))}",
        f"{'partition':<10} {'clock':<21} {'vs wall':<16} status",
    ]
    for r in rows:
        if r.clock is None or r.ahead_s is None:
            vs, status = "-", "no event yet"
        else:
            vs = f"{span(abs(r.ahead_s))} {'ahead' if r.ahead_s > 0 else 'behind'}"
            status = "CLOCK AHEAD (fault)" if r.fault else "ok"
        clock = "-" if r.clock is None else iso_utc(r.clock)
        lines.append(f"{r.partition:<10} {clock:<21} {vs:<16} {status}")
    return "\n".join(lines)
