"""Whole Kafka fetches handed to one agent as one list: no task and no queue hop per message.

Why: Faust delivers message by message. Its ``Consumer._drain_messages`` awaits
``wait_first(callback(message), suspend_flow.wait())`` per message (four tasks each), then
the conductor and the stream's queue add more awaits per message, and ``take_events``
regroups them into batches the worker could have had for free: a profile showed most of
a no-op worker's time in that machinery, and batches averaging 113 events of 500 allowed.

How: the app gets a ``FetchTransport`` (Faust's aiokafka transport with another
``Consumer`` class, installed through the public ``App.transport`` setter before anything
is consumed). An agent asks for whole fetches of its topics with ``fetch_batches``; the
consumer then hands each ``getmany`` result of those topics (all assigned partitions, one
fetch round) to the agent as one list, through a one-slot queue, and delivers every other
topic message by message as Faust does. Faust keeps group membership, rebalancing,
seeking, commits, timers and web views. An app in which no agent asked for whole
fetches runs Faust's own ``_drain_messages`` unchanged.

- Acks: a batch is acked (``Consumer.ack`` per message) when the agent asks for the next
  one, that is after its body finished the batch; a body that raises leaves it unacked,
  so the commit stops before it and a restart delivers it again. Faust commits only
  offsets acked without a gap, so a commit never passes a batch still in flight.
- Revocation: ``on_partitions_revoked`` stops the flow, drops the fetches not yet taken
  (an epoch: a fetch made before a revocation is never handed over after it), waits a
  bounded time for the batch in flight, commits what it acked, then lets Faust go on.
  Faust then seeks to the committed offsets on assignment, as for any message it dropped.
- Order: a batch is one fetch round, so the rule of docs/design.md ("Order across
  topics": a fetch round of all partitions fits in a batch) holds whatever the
  per-partition fetch size; ``SEGSTREAM_FETCH_PARTITION_BYTES`` only sizes the rounds.
- Flow control: the hand-over waits for the app's flow control and the producer buffer
  once per fetch, and gives up when the flow is suspended (a rebalance), as Faust does
  per message.

Relies on faust-streaming internals (``_drain_messages``, ``_wait_next_records``,
``_to_message``, ``_read_offset``, ``_add_gap``), hence the exact versions pinned in
pyproject.toml and checked by tests/unit/streams/worker/test_delivery.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from time import monotonic
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger(__name__)

#: A fetch of the batch topics: each partition's messages in offset order.
Fetch = dict[TP, list[Message]]


class FetchBatches:
    """The hand-off between the consumer and one agent: whole fetches of ``topics``.

    Fetch rounds that arrive while the agent is busy are merged into the one waiting (each
    partition's messages stay in offset order), up to ``max_events``: a worker that falls
    behind takes larger batches, so its per-batch costs (two Redis round trips, the
    broker's acknowledgements) are shared by more events. A single round is never split.
    """

    def __init__(self, topics: Iterable[str], max_events: int = 2000) -> None:
        self.topics = frozenset(topics)
        self.max_events = max_events
        #: Bumped at each revocation: a fetch made in an earlier epoch is dropped.
        self.epoch = 0
        #: The fetch waiting for the agent (rounds merged), its epoch and size.
        self._pending: Fetch | None = None
        self._pending_epoch = 0
        self._pending_n = 0
        self._cond: asyncio.Condition | None = None
        self._idle: asyncio.Event | None = None
        self._consumer: FetchConsumer | None = None
        #: Batches handed over and acked, and fetch rounds merged into a waiting one.
        self.batches = 0
        self.merged = 0
        #: What the agent said the batch in hand waits for before it is acked (its sends).
        self._held: asyncio.Future[Any] | None = None
        #: Finished batches whose sends are not acknowledged yet, in order: (number, messages).
        self._unacked: deque[tuple[int, list[Message]]] = deque()
        self._holding = 0
        self._in_hand = False

    @property
    def cond(self) -> asyncio.Condition:
        if self._cond is None:  # made on the worker's loop, on first use
            self._cond = asyncio.Condition()
        return self._cond

    @property
    def idle(self) -> asyncio.Event:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()
        return self._idle

    def bind(self, consumer: FetchConsumer) -> None:
        self._consumer = consumer

    def _fits(self, epoch: int, n: int) -> bool:
        return (
            epoch != self.epoch
            or self._pending is None
            or (self._pending_epoch == epoch and self._pending_n + n <= self.max_events)
        )

    async def put(self, epoch: int, fetch: Fetch) -> None:
        """Hand ``fetch`` over: merged into the waiting one if it fits, else after the agent
        took that one. A fetch of an earlier epoch (revoked meanwhile) is dropped."""
        n = sum(len(part) for part in fetch.values())
        async with self.cond:
            await self.cond.wait_for(lambda: self._fits(epoch, n))
            if epoch != self.epoch:
                return  # fetched before a revocation: Faust re-reads from the commit
            if self._pending is None:
                self._pending, self._pending_epoch, self._pending_n = dict(fetch), epoch, n
            else:
                pending = self._pending
                for tp, part in fetch.items():
                    if tp in pending:
                        pending[tp] = pending[tp] + part
                    else:
                        pending[tp] = part
                self._pending_n += n
                self.merged += 1
            self.cond.notify_all()

    async def take(self) -> Fetch:
        """The next fetch of the current epoch (rounds merged), once there is one."""
        async with self.cond:
            while True:
                await self.cond.wait_for(lambda: self._pending is not None)
                fetch, epoch = self._pending, self._pending_epoch
                self._pending, self._pending_n = None, 0
                self.cond.notify_all()
                assert fetch is not None
                if epoch == self.epoch:
                    return fetch

    def revoke(self, revoked: Iterable[TP]) -> None:
        """A revocation: what is buffered is dropped (Faust seeks every assigned partition
        back to its committed offset), and fetches made before now never go out."""
        del revoked  # an eager rebalance revokes every partition
        self.epoch += 1
        self._pending, self._pending_n = None, 0
        if self._cond is not None:
            cond = self._cond

            async def wake() -> None:
                async with cond:
                    cond.notify_all()

            asyncio.ensure_future(wake())

    def ack_after(self, sent: asyncio.Future[Any]) -> None:
        """Ack the batch in hand once ``sent`` succeeds, not when the agent asks for the
        next one: the agent works on the next batch while the broker acknowledges this
        one's messages. If ``sent`` fails, the batch stays unacked until a later one's
        sends succeed (the processor sends what failed again before those)."""
        self._held = sent

    def _released(self, number: int, sent: asyncio.Future[Any]) -> None:
        self._finish(number, not sent.cancelled() and sent.exception() is None)

    def _finish(self, number: int, ok: bool) -> None:
        """Batch ``number``'s sends are done: if they succeeded, it and every batch before
        it are acked (an earlier one whose sends failed had them sent again first)."""
        self._holding -= 1
        if ok:
            consumer = self._consumer
            assert consumer is not None
            ack = consumer.ack
            unacked = self._unacked
            while unacked and unacked[0][0] <= number:
                for message in unacked.popleft()[1]:
                    ack(message)
        self._update_idle()

    def _update_idle(self) -> None:
        if self._in_hand or self._holding:
            self.idle.clear()
        else:
            self.idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait for the batch in flight to be finished and acked; False on timeout."""
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def __aiter__(self) -> AsyncIterator[list[Message]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[Message]]:
        while True:
            fetch = await self.take()
            consumer = self._consumer
            assert consumer is not None  # it bound itself before its first fetch
            monitor = consumer.app.monitor
            now = monotonic()
            messages: list[Message] = []
            for tp, part in fetch.items():
                messages.extend(part)
                if monitor is not None:  # Faust's livelock check reads it
                    monitor.stream_inbound_time[tp] = now
                    monitor.tp_read_offsets[tp] = part[-1].offset
            self._in_hand = True
            self._update_idle()
            finished = False
            self._held = None
            try:
                yield messages
                finished = True  # the body asked for the next batch: this one is done
            finally:
                held, self._held = self._held, None
                if finished:
                    self.batches += 1
                    number = self.batches
                    self._unacked.append((number, messages))
                    self._holding += 1
                    if held is None:
                        self._finish(number, True)
                    else:
                        held.add_done_callback(functools.partial(self._released, number))
                self._in_hand = False
                self._update_idle()


class FetchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, handing whole fetches of some topics to one agent."""

    @property
    def fetch_batches(self) -> FetchBatches | None:
        return cast(FetchTransport, self.transport).fetch_batches

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        batches = self.fetch_batches
        if batches is not None and revoked:
            self.stop_flow()  # what Faust does next; first, so no fetch is handed over
            batches.revoke(revoked)
            timeout = self.app.conf.broker_session_timeout / 3
            if not await batches.wait_idle(timeout):
                log.warning(
                    "a batch was still in flight %.0f s after partitions were revoked", timeout
                )
            # what the finished batch acked; a second call in case one was under way
            await self.commit(revoked)
            await self.commit(revoked)
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:
        batches = self.fetch_batches
        if batches is None:
            return await super()._drain_messages(fetcher)
        batches.bind(self)
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                await self._deliver_fetch(batches)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver_fetch(self, batches: FetchBatches) -> None:
        """One ``getmany``: the batch topics' part as one list, the rest per message."""
        records, active = await self._wait_next_records(1.0)
        # After the wait, as Faust takes the generation: records fetched before a
        # revocation are gone from aiokafka's buffer once partitions are reassigned.
        epoch = batches.epoch
        await self.sleep(0)
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # as Faust's getmany: resume from the committed offsets
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("exception performing seek when flow not active %r", exc)
            return
        fetch: Fetch = {}
        others: list[Message] = []
        read_offset = self._read_offset
        to_message = self._to_message
        for tp, part in records.items():
            if not part or not (active is None or tp in active or tp in self._buffered_partitions):
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            r_offset = read_offset[tp]
            messages: list[Message] = [
                to_message(tp, r) for r in part if r_offset is None or r.offset >= r_offset
            ]
            if not messages:
                continue
            if tp.topic not in batches.topics:
                others.extend(messages)
                continue
            await self._mark_gaps(tp, r_offset, messages)
            fetch[tp] = messages
        if fetch and epoch == batches.epoch:
            hand_over = self._hand_over(batches, epoch, fetch)
            handed = await self.wait_first(hand_over, self.suspend_flow.wait())
            if hand_over not in handed.done:
                return  # suspended or stopping: Faust seeks back to the committed offsets
            for tp, part_handed in fetch.items():
                read_offset[tp] = part_handed[-1].offset
        await self._deliver_each(others)
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _hand_over(self, batches: FetchBatches, epoch: int, fetch: Fetch) -> None:
        await self.app.flow_control.acquire()
        await self.app.producer.buffer.wait_until_ebb()
        await batches.put(epoch, fetch)

    async def _mark_gaps(self, tp: TP, r_offset: int | None, messages: list[Message]) -> None:
        """Offsets Kafka skipped (compaction, transaction markers) count as acked gaps, as
        Faust's per-message loop does, so commits can pass them."""
        if not self.app.topics.acks_enabled_for(tp.topic):
            return
        first, last = messages[0].offset, messages[-1].offset
        if r_offset and first - r_offset > 1:
            await self._add_gap(tp, r_offset + 1, first)
        if last - first + 1 != len(messages):
            previous = first
            for message in messages[1:]:
                if message.offset - previous > 1:
                    await self._add_gap(tp, previous + 1, message.offset)
                previous = message.offset

    async def _deliver_each(self, messages: list[Message]) -> None:
        """Messages of other topics go through the conductor, as in Faust's loop."""
        callback = self.callback
        read_offset = self._read_offset
        for message in messages:
            if not self.flow_active:
                return
            tp = message.tp
            r_offset = read_offset[tp]
            if r_offset and message.offset - r_offset > 1:
                if self.app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, message.offset)
            await self.wait_first(callback(message), self.suspend_flow.wait())
            read_offset[tp] = message.offset


class FetchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport making ``FetchConsumer``s."""

    Consumer = FetchConsumer
    fetch_batches: FetchBatches | None = None


def install(app: faust.App) -> None:
    """Give ``app`` the transport that can hand whole fetches to an agent (before the
    app's consumer exists: right after the app is made)."""
    app.transport = FetchTransport(app.conf.broker_consumer, app)


def fetch_batches(
    app: faust.App, topic: faust.TopicT, max_events: int = 2000
) -> FetchBatches | None:
    """Whole fetches of ``topic``'s topics for one agent of ``app``, rounds that arrive
    while it is busy merged up to ``max_events``; None when ``app`` delivers message by
    message (``install`` was not called)."""
    transport = app.transport
    if not isinstance(transport, FetchTransport):
        return None
    if transport.fetch_batches is not None:
        raise RuntimeError("one agent per app receives whole fetches")
    transport.fetch_batches = FetchBatches(topic.topics, max_events)
    return transport.fetch_batches


async def taken_batches(
    stream: faust.StreamT[Any], size: int, within: float
) -> AsyncIterator[list[Message]]:
    """Faust's own batches (``take_events``), as lists of messages: the fallback."""
    async for events in cast(Any, stream).take_events(size, within=within):
        yield [e.message for e in events]


def use_uvloop() -> bool:
    """Make uvloop the event loop of loops made from now on; False (asyncio's loop) when
    it is not installed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
