"""Consumed messages: the record, what makes one a valid input event, and its dead letter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from segmenters.contract import DeadLetter
from segmenters.events import (
    Event,
    InvalidEvent,
    check_routing,
    parse_event,
)
from segmenters.eventtime import check_event_time
from streams.kafka.partitioner import partition_for

#: Sends one message; returns an awaitable that resolves once the broker has it.
Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
#: Sends one message to a topic (an action channel's), the same way.
SendTo = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed Kafka message, independent of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: The record timestamp in unix seconds (producer's send time, or the broker's append
    #: time); None when unknown. Bounds how far ahead ``occurred_at`` may be.
    timestamp: float | None = None
    #: The record carries the ``segstream-no-actions`` header (``segstream replay
    #: --no-actions``): segment it, never act on the changes it causes.
    no_actions: bool = False


#: Kafka header of an input record whose changes must never trigger an action.
NO_ACTIONS_HEADER = "segstream-no-actions"


def no_actions_of(headers: Any) -> bool:
    """True when Kafka ``headers`` ((key, value) pairs, or a mapping) carry the mark.

    >>> no_actions_of([("segstream-no-actions", b"1")]), no_actions_of(None)
    (True, False)
    """
    pairs = headers.items() if isinstance(headers, dict) else (headers or ())
    return any(k == NO_ACTIONS_HEADER and v not in (b"0", b"") for k, v in pairs)


def parse_record(
    record: Record,
    *,
    topic_prefix: str,
    max_bytes: int,
    partitions: int | None = None,
    max_future_s: float | None = None,
    wall: float | None = None,
    live: bool = False,
    home: Callable[[str], int] | None = None,
) -> Event:
    """The event in a consumed message, or :class:`InvalidEvent` saying why not.

    The one definition of a valid input message: the worker and ``segstream verify`` both
    use it, so they agree on which messages count. With ``partitions`` (the input topics'
    partition count), a message must also be on its customer's partition: Kafka's default
    partitioner on the key. The customer's keys in Redis carry that partition's hash tag
    (streams/store/keys.py), so a message elsewhere, sent with another partitioner, would be
    applied by a worker that does not own the customer.

    With ``max_future_s``, event time is bounded (segmenters/eventtime.py): an event dated
    further ahead of its record timestamp (or of ``wall``, in ``live`` mode) is invalid,
    so it never moves a partition clock.
    """
    if record.value is None:
        raise InvalidEvent("empty message (no value)")
    event = parse_event(record.value, max_bytes=max_bytes)
    check_routing(event, topic=record.topic.removeprefix(topic_prefix), key=record.key)
    if partitions is not None:
        at = home(event.customer_id) if home else partition_for(event.customer_id, partitions)
        if record.partition != at:
            raise InvalidEvent(
                f"message is on partition {record.partition} but customer_id belongs on "
                f"partition {at} of {partitions} (Kafka's default partitioner, murmur2 of "
                "the key)"
            )
    if max_future_s is not None:
        check_event_time(
            event.occurred_at,
            record_at=record.timestamp,
            wall=wall,
            live=live,
            max_future_s=max_future_s,
        )
    return event


def deadletter_record(record: Record, reason: str, *, at: float) -> bytes:
    """The dead-letter message (``segmenters.contract.DeadLetter``): why, where from, the
    original bytes (base64) and when (``at``, epoch seconds; written ISO-8601 UTC)."""
    return DeadLetter.of(
        reason=reason,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        at=at,
    ).to_json()
