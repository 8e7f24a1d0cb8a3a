"""Bounded event time (segmenters/eventtime.py): the check the worker and the collector
apply, and the partition-clock fault."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenters.events import InvalidEvent
from segmenters.eventtime import check_event_time, clock_ahead, clock_fault

T = 1_795_000_000.0  # 2026-11-18
seconds = st.floats(min_value=-5e8, max_value=5e8, allow_nan=False)
bounds = st.floats(min_value=0, max_value=86400, allow_nan=False)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def exact(ts: float) -> float:
    """The time as the event carries it (datetimes hold microseconds)."""
    return at(ts).timestamp()


def refused(occurred: float, **kw: object) -> bool:
    try:
        check_event_time(at(occurred), **kw)  # type: ignore[arg-type]
    except InvalidEvent:
        return True
    return False


def test_a_2099_event_is_refused_with_both_times_and_the_setting() -> None:
    with pytest.raises(InvalidEvent) as err:
        check_event_time(
            datetime(2099, 1, 1, tzinfo=UTC), record_at=T, wall=T, live=False, max_future_s=300
        )
    assert err.value.reason == (
        "occurred_at 2099-01-01T00:00:00Z is 26341 days ahead of the record timestamp "
        "2026-11-18T11:06:40Z; limit SEGSTREAM_MAX_FUTURE_S=300"
    )


@given(ahead=seconds, bound=bounds)
def test_the_record_timestamp_bounds_every_event(ahead: float, bound: float) -> None:
    occurred = exact(T + ahead)
    expected = occurred - T > bound
    for live in (False, True):
        assert refused(occurred, record_at=T, wall=None, live=live, max_future_s=bound) is expected


@given(
    back=st.floats(min_value=0, max_value=3e9, allow_nan=False), bound=bounds, live=st.booleans()
)
def test_events_in_the_past_are_always_accepted(back: float, bound: float, live: bool) -> None:
    occurred = T - back
    assert not refused(occurred, record_at=T, wall=T, live=live, max_future_s=bound)
    assert not refused(occurred, record_at=None, wall=T, live=live, max_future_s=bound)


@given(ahead=seconds, record_offset=seconds, bound=bounds)
def test_live_mode_is_bounded_by_the_earlier_of_record_time_and_wall_time(
    ahead: float, record_offset: float, bound: float
) -> None:
    wall, record = T, T + record_offset
    occurred = exact(wall + ahead)
    expected = occurred - min(wall, record) > bound
    assert refused(occurred, record_at=record, wall=wall, live=True, max_future_s=bound) is expected


@given(ahead=seconds, record_offset=seconds, bound=bounds)
def test_event_mode_uses_the_wall_clock_only_when_the_record_time_is_itself_ahead(
    ahead: float, record_offset: float, bound: float
) -> None:
    wall, record = T, T + record_offset
    occurred = exact(wall + ahead)
    expected = occurred - record > bound or (record - wall > bound and occurred - wall > bound)
    got = refused(occurred, record_at=record, wall=wall, live=False, max_future_s=bound)
    assert got is expected


def test_an_unknown_record_timestamp_falls_back_to_the_wall_clock() -> None:
    for record in (None, -1.0, 0.0):
        assert refused(T + 301, record_at=record, wall=T, live=False, max_future_s=300)
        assert not refused(T + 299, record_at=record, wall=T, live=False, max_future_s=300)
    # Nothing to compare with: nothing is refused.
    assert not refused(T + 1e9, record_at=None, wall=None, live=True, max_future_s=300)


@given(clock=st.one_of(st.none(), seconds), bound=bounds)
def test_clock_fault_is_a_clock_more_than_the_bound_ahead_of_the_wall(
    clock: float | None, bound: float
) -> None:
    wall = T
    c = None if clock is None else T + clock
    ahead = clock_ahead(c, wall)
    assert ahead >= 0 and (c is None or ahead == max(c - wall, 0.0))
    assert clock_fault(c, wall, bound) is (c is not None and c - wall > bound)
