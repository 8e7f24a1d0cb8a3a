"""Bounded event time: an event dated too far ahead never moves a clock.

A partition's clock is its watermark, the largest ``occurred_at`` applied. One event
dated in 2099 would move it to 2099 for good: every timer fires, every buyer turns
``at_risk`` then ``lapsed`` at once. So an event may be at most ``max_future_s`` ahead of
the time it reached Kafka (its record timestamp) and, in ``live`` mode, of the wall
clock; anything further is refused with a reason that names both times. Events far in
the past are accepted: late data is normal.

Nothing here reads a clock: the record timestamp and the wall time are arguments.

>>> from datetime import UTC, datetime
>>> at = datetime(2099, 1, 1, tzinfo=UTC)
>>> check_event_time(at, record_at=1_795_000_000.0, wall=None, live=False, max_future_s=300)
Traceback (most recent call last):
...
segmenters.events.InvalidEvent: occurred_at 2099-01-01T00:00:00Z is 26341 days ahead of ...
>>> check_event_time(datetime(2000, 1, 1, tzinfo=UTC), record_at=1_795_000_000.0,
...                  wall=None, live=False, max_future_s=300) is None
True
"""

from __future__ import annotations

from datetime import UTC, datetime

from segmenters.events import InvalidEvent

#: The setting that bounds event time, named in every reason.
SETTING = "SEGSTREAM_MAX_FUTURE_S"


def iso_utc(at: float | datetime) -> str:
    """ISO-8601 in UTC with ``Z``, to the second (microseconds when there are any).

    >>> iso_utc(0.0), iso_utc(1.5)
    ('1970-01-01T00:00:00Z', '1970-01-01T00:00:01.500000Z')
    """
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def span(seconds: float) -> str:
    """A duration for people: whole days from two days on, hours from an hour on.

    >>> span(42.44), span(300.5), span(3600 * 5 + 10), span(86400 * 2298.7)
    ('42.4 s', '300.5 s', '5.0 hours', '2298 days')
    """
    if seconds >= 2 * 86400:
        return f"{int(seconds // 86400)} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.1f} s"


def ahead_reason(occurred: float, reference: float, what: str, max_future_s: float) -> str | None:
    """Why ``occurred`` is too far ahead of ``reference`` (``what`` names it), or None.

    >>> ahead_reason(1000.0, 700.0, "the wall clock", 300)
    >>> ahead_reason(1000.5, 700.0, "the wall clock", 300)
    'occurred_at 1970-01-01T00:16:40.500000Z is 300.5 s ahead of the wall clock 1970-01-01T00:11:40Z; limit SEGSTREAM_MAX_FUTURE_S=300'
    """  # noqa: E501
    if occurred - reference <= max_future_s:
        return None
    return (
        f"occurred_at {iso_utc(occurred)} is {span(occurred - reference)} ahead of "
        f"{what} {iso_utc(reference)}; limit {SETTING}={max_future_s:g}"
    )


def check_event_time(
    occurred_at: datetime,
    *,
    record_at: float | None,
    wall: float | None,
    live: bool,
    max_future_s: float,
) -> None:
    """Raise :class:`InvalidEvent` if the event is dated more than ``max_future_s`` ahead.

    ``record_at`` is the Kafka record timestamp in unix seconds (None or <= 0: unknown),
    ``wall`` the wall clock when the event is applied (None: not checked). The record
    timestamp bounds every event. The wall clock bounds every event in ``live`` mode,
    and in ``event`` mode when the record timestamp is itself ahead of the wall clock by
    more than the bound (a producer that set a future record timestamp) or unknown:
    a replay's record timestamps are the time of the replay, so neither bound ever
    refuses history.

    >>> t = 1_795_000_000.0
    >>> at = datetime.fromtimestamp(t + 3600, UTC)
    >>> check_event_time(at, record_at=t + 7200, wall=t, live=False, max_future_s=300)
    Traceback (most recent call last):
    ...
    segmenters.events.InvalidEvent: occurred_at ... is 1.0 hours ahead of the wall clock ...
    >>> check_event_time(at, record_at=t + 3600, wall=t + 3500, live=False, max_future_s=300)
    """
    occurred = occurred_at.timestamp()
    known = record_at is not None and record_at > 0
    if known:
        assert record_at is not None
        reason = ahead_reason(occurred, record_at, "the record timestamp", max_future_s)
        if reason is not None:
            raise InvalidEvent(reason)
    if wall is None:
        return
    if live or not known or (record_at is not None and record_at - wall > max_future_s):
        reason = ahead_reason(occurred, wall, "the wall clock", max_future_s)
        if reason is not None:
            raise InvalidEvent(reason)


def clock_ahead(clock: float | None, wall: float) -> float:
    """How far a partition's clock runs ahead of the wall clock, in seconds (0 if not).

    >>> clock_ahead(1300.0, 1000.0), clock_ahead(900.0, 1000.0), clock_ahead(None, 1.0)
    (300.0, 0.0, 0.0)
    """
    return 0.0 if clock is None else max(clock - wall, 0.0)


def clock_fault(clock: float | None, wall: float, max_future_s: float) -> bool:
    """A clock more than the bound ahead of the wall clock is a fault: timers fire early.

    >>> clock_fault(1300.0, 1000.0, 300), clock_fault(1300.5, 1000.0, 300)
    (False, True)
    """
    return clock_ahead(clock, wall) > max_future_s


def partition_clock(
    watermark: float | None, *, lateness: float, mode: str, wall: float
) -> float | None:
    """The event-time clock of one partition.

    >>> partition_clock(100.0, lateness=5, mode="event", wall=1e9)
    95.0
    >>> partition_clock(100.0, lateness=5, mode="live", wall=500.0)
    500.0
    >>> partition_clock(None, lateness=5, mode="event", wall=500.0) is None
    True
    """
    event_clock = None if watermark is None else watermark - lateness
    if mode == "live":
        return wall if event_clock is None else max(event_clock, wall)
    return event_clock
