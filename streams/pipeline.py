"""One batch, end to end: parse, dead-letter, load state, fold, write, publish.

Kept apart from Faust so the benchmark and the tests drive exactly the code the agent
runs. The order of effects is what makes redelivery safe:

1. state, the offsets applied and an outbox of the new changes are written atomically
   per customer, then
2. changes are sent; the next batch's write waits for their delivery (the broker's
   acknowledgements arrive while that batch is parsed, loaded and folded), then empties
   those outboxes, and only then sends its own: a customer's messages stay in order,
3. Faust commits the offsets of a batch once its sends are acknowledged.

A crash between 1 and 3 redelivers the batch: its events are skipped as already
applied. A worker that loads a customer from Redis first re-sends what is left in its
outbox, before any new change, with the same ``change_id``: every change reaches the
topic, in order, at least once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmenters.actions import Decision, next_due
from segmenters.changes import SegmentChange
from segmenters.config import EngineConfig
from segmenters.contract import DeadLetter
from segmenters.core import (
    Context,
    FoldResult,
    Source,
    carry_no_actions,
    fold,
    merge_by_time,
    next_deadline,
    rescore,
    tick,
)
from segmenters.events import (
    EVENT_ADAPTER,
    TOPIC_TYPES,
    Event,
    InvalidEvent,
    check_routing,
    parse_event,
)
from segmenters.eventtime import check_event_time
from segmenters.features import feature_vector
from segmenters.policy import Policy
from segmenters.retention import KEEP_PURCHASES_S, Purchase, decide
from segmenters.rfm import histogram_buckets
from segmenters.state import CustomerState, id_number

from .feature_feed import FeatureFeed
from .keys import partition_for
from .store import Loaded, StateStore, Write, encode_state

log = logging.getLogger(__name__)

#: Sends one message; returns an awaitable that resolves once the broker has it.
Send = Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]
#: Sends one message to a topic (an action channel's), the same way.
SendTo = Callable[[str, bytes, bytes], Awaitable[Awaitable[Any]]]
MAX_CONFLICT_RETRIES = 5


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


@dataclass(slots=True)
class BatchStats:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    deadletters: int = 0
    changes: int = 0
    resent: int = 0
    conflicts: int = 0
    customers: int = 0
    timers: int = 0
    round_trips: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Action messages sent; decisions by (action, outcome, reason).
    actions_sent: int = 0
    decided: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    #: Seconds per stage: ``parse`` (records to events, grouped by customer), ``fold``
    #: (segments: fold, tick or rescore), ``decide`` (retention actions and their
    #: messages), ``encode`` (what the write needs: change JSON, outbox, index and
    #: histogram moves, due time, id digests, the documents and script arguments),
    #: ``redis`` (the load and commit round trips), ``send`` (to the producer, and the
    #: broker's acknowledgements).
    stages: dict[str, float] = field(default_factory=dict)
    #: With deferred delivery: done when the broker acknowledged every send of the batch
    #: (its input offsets may be committed then); None when they were awaited.
    sent: asyncio.Future[Any] | None = None


@dataclass(slots=True)
class InFlight:
    """Sends of the last batch not yet acknowledged, and the customers whose outbox
    they deliver (emptied by the next write once acknowledged)."""

    sent: asyncio.Future[Any]
    customers: list[str]


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
    (streams/keys.py), so a message elsewhere, sent with another partitioner, would be
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


class BatchProcessor:
    """One batch pipeline: parse -> load -> fold segments -> decide actions -> one atomic
    write per partition -> send. Event batches, due timers and the rescoring sweep all
    go through :meth:`_apply`."""

    def __init__(
        self,
        *,
        store: StateStore,
        config: EngineConfig,
        topic_prefix: str,
        max_event_bytes: int,
        send_change: Send,
        send_deadletter: Send,
        send_features: Send | None = None,
        send_action: SendTo | None = None,
        policy: Callable[[], Policy] | None = None,
        currency: str | None = None,
        keep_purchases_s: float = KEEP_PURCHASES_S,
        sample_percent: int = 0,
        clock: Callable[[], float] = time.time,
        max_future_s: float | None = 300.0,
        live: bool = False,
        feed: FeatureFeed | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.topic_prefix = topic_prefix
        self.max_event_bytes = max_event_bytes
        self.send_change = send_change
        self.send_deadletter = send_deadletter
        self.send_features = send_features
        #: Retention actions: the policy in force (None: actions off) and where they go.
        self.send_action = send_action
        self.policy = policy if send_action is not None else None
        self.currency = currency
        self.keep_purchases_s = keep_purchases_s
        self.sample_percent = sample_percent
        self.clock = clock
        #: Bounded event time (``SEGSTREAM_MAX_FUTURE_S``; None: unbounded) and clock mode.
        self.max_future_s = max_future_s
        self.live = live
        #: Which vectors the trainer still needs (only those that moved).
        self.feed = feed if feed is not None else FeatureFeed()
        #: Population statistics and models the segments depend on, refreshed by the shell.
        self.context = Context()
        #: Per partition, the largest event time seen (the clock before allowed lateness).
        self.watermarks: dict[int, float] = {}
        #: Event batches and timer scans take turns, so a customer's changes keep their order.
        self.lock = asyncio.Lock()
        #: Told of every round's decisions, (action, outcome, reason) -> count (metrics).
        self.on_decided: Callable[[Counter[tuple[str, str, str]]], None] | None = None
        #: Purchase currencies other than ``currency`` seen (each is warned about once).
        self.other_currencies: set[str] = set()
        #: The last event batch's sends, when their acknowledgements are not awaited in the
        #: batch (``process(defer=True)``): the next write waits for them first.
        self.in_flight: InFlight | None = None

    def _parse(self, record: Record, wall: float) -> Event:
        return parse_record(
            record,
            topic_prefix=self.topic_prefix,
            max_bytes=self.max_event_bytes,
            partitions=self.store.partitions,
            max_future_s=self.max_future_s,
            wall=wall,
            live=self.live,
            home=self.store.home,
        )

    async def process(self, records: Sequence[Record], *, defer: bool = False) -> BatchStats:
        """Apply a batch of consumed messages. With ``defer``, the broker's
        acknowledgements are not awaited: ``stats.sent`` completes with them, and the next
        write (of any batch or timer round) waits for them before it runs."""
        async with self.lock:
            return await self.process_holding_lock(records, defer=defer)

    async def process_holding_lock(
        self, records: Sequence[Record], *, defer: bool = False
    ) -> BatchStats:
        """``process`` for a caller that already holds ``lock`` (a replay of what Redis
        lost, which must not let another batch in between its own)."""
        started = time.perf_counter()
        trips_before = self.store.round_trips
        stats = BatchStats(events=len(records))
        by_customer: dict[str, list[tuple[Event, Source]]] = {}
        acks: list[Awaitable[Any]] = []  # broker acknowledgements to wait for
        marked: set[Source] = set()  # records replayed with --no-actions
        wall = self.clock()  # bounds event time in live mode: one read per batch
        watermarks = self.watermarks
        # The checks of ``parse_record``, inlined for the messages that pass them all; any
        # that fails one goes through ``parse_record`` itself, which says why.
        offsets: dict[tuple[str, int], int] = {}
        validate = EVENT_ADAPTER.validate_json
        max_bytes = self.max_event_bytes
        partitions = self.store.partitions
        home = self.store.home
        homes: dict[str, int] = {}  # this batch's customers and their partitions
        max_future = self.max_future_s
        live = self.live
        prefix = self.topic_prefix
        allowed_of: dict[str, frozenset[str] | None] = {}
        by_type = stats.by_type
        for record in records:
            topic, partition = record.topic, record.partition
            offsets[(topic, partition)] = record.offset
            event: Event | None = None
            value = record.value
            if value is not None and len(value) <= max_bytes:
                try:
                    event = validate(value)
                except Exception:  # parse_record gives the reason
                    event = None
            if event is not None:
                if topic in allowed_of:
                    allowed = allowed_of[topic]
                else:
                    allowed = allowed_of[topic] = TOPIC_TYPES.get(topic.removeprefix(prefix))
                cid = event.customer_id
                key = record.key
                at_home = partitions is None
                if not at_home:
                    belongs = homes.get(cid)
                    if belongs is None:
                        belongs = homes[cid] = home(cid)
                    at_home = belongs == partition
                if (
                    (allowed is not None and event.type not in allowed)
                    or key is None
                    or key != cid.encode()
                    or not at_home
                ):
                    event = None
            if event is not None:
                at = event.occurred_at.timestamp()
                if max_future is not None:
                    ra = record.timestamp
                    known = ra is not None and ra > 0
                    if (known and at - ra > max_future) or (
                        (live or not known or ra - wall > max_future)  # type: ignore[operator]
                        and at - wall > max_future
                    ):
                        event = None
            if event is None:
                try:
                    event = self._parse(record, wall)
                except InvalidEvent as exc:
                    stats.deadletters += 1
                    acks.append(
                        await self.send_deadletter(
                            record.key or b"", deadletter_record(record, exc.reason, at=wall)
                        )
                    )
                    continue
                at = event.occurred_at.timestamp()
            by_type[event.type] = by_type.get(event.type, 0) + 1
            if event.type == "purchase" and event.currency != self.currency:
                self.note_currency(event.currency)
            source = Source(topic, partition, record.offset)
            if record.no_actions:
                marked.add(source)
            by_customer.setdefault(event.customer_id, []).append((event, source))
            if at > watermarks.get(partition, float("-inf")):
                watermarks[partition] = at
        # partition progress, written with the states
        applied = {f"{t}:{p}": o for (t, p), o in offsets.items()}
        stats.customers = len(by_customer)
        groups = {cid: merge_by_time(items) for cid, items in by_customer.items()}
        stats.stages["parse"] = time.perf_counter() - started
        await self._apply(
            groups, None, stats, acks, applied=applied, marked=marked, wall=wall, defer=defer
        )
        stats.round_trips = self.store.round_trips - trips_before
        stats.seconds = time.perf_counter() - started
        return stats

    async def fire_timers(self, clocks: dict[int, float], limit: int = 1000) -> BatchStats:
        """Fire the timers due by each partition's clock (partition -> event time): segment
        deadlines and delayed actions share the partition's due index."""
        async with self.lock:
            started = time.perf_counter()
            trips_before = self.store.round_trips
            stats = BatchStats()
            due = await self.store.due_timers(clocks, limit)
            for partition, customers in due.items():
                if not customers:
                    continue
                groups: dict[str, list[tuple[Event, Source]]] = {c: [] for c in customers}
                stats.timers += len(customers)
                stats.customers += len(customers)
                await self._apply(groups, clocks[partition], stats, [])
            stats.round_trips = self.store.round_trips - trips_before
            stats.seconds = time.perf_counter() - started
            return stats

    async def rescore(self, partition: int, customers: list[str], now: float) -> BatchStats:
        """Re-evaluate customers of one partition at its clock (the rescoring sweep)."""
        async with self.lock:
            stats = BatchStats(customers=len(customers))
            groups: dict[str, list[tuple[Event, Source]]] = {c: [] for c in customers}
            await self._apply(groups, now, stats, [], rescoring=True)
            return stats

    async def _apply(
        self,
        groups: dict[str, list[tuple[Event, Source]]],
        until: float | None,
        stats: BatchStats,
        acks: list[Awaitable[Any]],
        rescoring: bool = False,
        applied: dict[str, int] | None = None,
        marked: set[Source] | None = None,
        wall: float | None = None,
        defer: bool = False,
    ) -> None:
        """Load, fold (or tick, with ``until``; or rescore), decide actions, write with
        CAS, publish. ``applied``: the batch's input offsets, recorded with its states."""
        stages = stats.stages
        t = time.perf_counter()
        loaded = await self.store.load(groups)
        stages["redis"] = stages.get("redis", 0.0) + time.perf_counter() - t
        unsent = {cid: b.unsent for cid, b in loaded.items() if b.unsent}
        wall = self.clock() if wall is None else wall
        policy = None if self.policy is None else self.policy()
        done: list[Outcome] = []
        pending = loaded
        settled = False
        for _attempt in range(MAX_CONFLICT_RETRIES + 1):
            writes, outcomes = self._fold_all(
                groups, pending, until, rescoring, marked or set(), policy, wall, stages
            )
            if not settled:  # the last batch's sends, acknowledged while this one folded
                t = time.perf_counter()
                await self.settle()
                stages["send"] = stages.get("send", 0.0) + time.perf_counter() - t
                settled = True
            t = time.perf_counter()
            encoded_before = self.store.encode_s
            rejected = await self.store.commit(writes, applied)
            encode = self.store.encode_s - encoded_before
            stages["encode"] = stages.get("encode", 0.0) + encode
            stages["redis"] = stages.get("redis", 0.0) + time.perf_counter() - t - encode
            for cid, outcome in outcomes.items():
                if cid in rejected:
                    continue
                done.append(outcome)
                stats.applied += outcome.result.applied
                stats.duplicates += len(outcome.result.skipped)
            if not rejected:
                break
            conflicts = [c for c, r in rejected.items() if not r.seen]
            if conflicts:
                stats.conflicts += len(conflicts)
                log.info("state of %d customer(s) changed under us; recomputing", len(conflicts))
            # Events the customer already has (produced again, at new offsets) are left out.
            groups = {
                cid: [item for item in groups[cid] if id_number(item[0].event_id) not in r.seen]
                for cid, r in rejected.items()
            }
            stats.duplicates += sum(len(r.seen) for r in rejected.values())
            pending = {cid: r.loaded for cid, r in rejected.items()}
        else:
            raise RuntimeError(f"state kept changing under us for {sorted(groups)}")

        t = time.perf_counter()
        # What a crash left unsent goes first, so each customer's messages keep their order.
        for cid, entries in unsent.items():
            for entry in entries:
                acks.append(await self._resend(cid.encode(), entry))
                stats.resent += 1
        delivered = list(unsent)
        for outcome in done:
            key = outcome.result.state.customer_id.encode()
            for _change, body in outcome.encoded:
                acks.append(await self.send_change(key, body))
            stats.changes += len(outcome.encoded)
            if outcome.messages:
                assert self.send_action is not None
                for topic, body in outcome.messages:
                    acks.append(await self.send_action(topic, key, body))
                stats.actions_sent += len(outcome.messages)
            if outcome.encoded or outcome.messages:
                delivered.append(outcome.result.state.customer_id)
            for d in outcome.decisions:
                stats.decided[(d.action, d.outcome, d.reason)] += 1
        await self._sample(done, acks, 100 if rescoring else self.sample_percent)
        if defer:
            stats.sent = asyncio.ensure_future(asyncio.gather(*acks))
            self.in_flight = InFlight(stats.sent, delivered)
        else:
            if acks:
                await asyncio.gather(*acks)  # delivered: the outboxes can go
            self.store.delivered(delivered)
        stages["send"] = stages.get("send", 0.0) + time.perf_counter() - t
        if stats.decided and self.on_decided is not None:
            try:
                self.on_decided(stats.decided)
            except Exception:  # metrics never stop the stream
                log.exception("recording action metrics failed")
            stats.decided = Counter()

    async def settle(self) -> None:
        """Wait for the last batch's sends; once acknowledged, their outboxes are emptied
        by the next write. If one failed, what is left in those customers' outboxes is
        sent again, in order, and awaited (raises if that fails too: the caller retries).
        Waiting before each write keeps the effects in order: a customer's outbox is
        never emptied of messages not yet acknowledged, and the next batch's messages
        follow the last batch's."""
        in_flight = self.in_flight
        if in_flight is None:
            return
        try:
            await asyncio.shield(in_flight.sent)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning(
                "sends of the last batch failed; sending the %d customers' outboxes again",
                len(in_flight.customers),
                exc_info=True,
            )
            self.store.forget(in_flight.customers)
            loaded = await self.store.load(in_flight.customers)
            acks = [
                await self._resend(cid.encode(), entry)
                for cid in in_flight.customers
                for entry in loaded[cid].unsent
            ]
            await asyncio.gather(*acks)
        self.in_flight = None
        self.store.delivered(in_flight.customers)

    async def _resend(self, key: bytes, entry: bytes) -> Awaitable[Any]:
        """Send an outbox entry again: a change, or an action message (to its topic)."""
        doc = orjson.loads(entry)
        if "change" in doc:
            return await self.send_change(key, orjson.dumps(doc["change"]))
        if self.send_action is None:  # actions turned off since: keep the order, drop it
            log.warning("an unsent action message of %s is dropped: actions are off", key)
            return _done()
        return await self.send_action(doc["topic"], key, orjson.dumps(doc["value"]))

    async def _sample(self, done: list[Outcome], acks: list[Awaitable[Any]], percent: int) -> None:
        """Send feature vectors to the trainer: of every customer the rescoring sweep visits
        (the current population, what the clusters should describe) and of a deterministic
        sample of customers updated by events (fresh behaviour between passes), those whose
        vector moved since the last one sent (``FeatureFeed``): an idle customer sends none."""
        if self.send_features is None or percent <= 0:
            return
        for outcome in done:
            state = outcome.result.state
            cid = state.customer_id
            if state.eval_at is None:
                continue
            if zlib.crc32(f"{cid}:{state.events}".encode()) % 100 >= percent:
                continue
            vector = feature_vector(state, state.eval_at)
            if not self.feed.admit(cid, vector, self.context.clusters):
                continue
            acks.append(await self.send_features(cid.encode(), orjson.dumps(vector)))

    def _fold_all(
        self,
        groups: dict[str, list[tuple[Event, Source]]],
        loaded: dict[str, Loaded],
        until: float | None,
        rescoring: bool,
        marked: set[Source],
        policy: Policy | None,
        wall: float,
        stages: dict[str, float],
    ) -> tuple[list[Write], dict[str, Outcome]]:
        writes = []
        outcomes: dict[str, Outcome] = {}
        ctx = self.context
        folding = deciding = encoding = 0.0
        for cid, items in groups.items():
            t = time.perf_counter()
            before = loaded[cid]
            marks = _marks(before.state)
            was_marked = before.state is not None and before.state.no_actions
            if until is None:
                # The state is this worker's (cached, or read for this batch): fold in place.
                # A write that loses comes back with the stored state, never this one.
                result = fold(before.state, cid, items, config=self.config, ctx=ctx, owned=True)
                if result.applied == 0:
                    outcomes[cid] = Outcome(result)
                    folding += time.perf_counter() - t
                    continue
            elif before.state is None:
                continue  # erased or never seen: nothing to fire
            elif rescoring:
                result = rescore(before.state, until, config=self.config, ctx=ctx)
                if not result.changes:
                    outcomes[cid] = Outcome(result)
                    folding += time.perf_counter() - t
                    continue  # nothing moved: no write
            else:
                result = tick(before.state, until, config=self.config, ctx=ctx)
            if marked or was_marked:
                carry_no_actions(result, items, marked, was_marked)
            t2 = time.perf_counter()
            folding += t2 - t
            outcome = Outcome(result, [(c, change_json(c)) for c in result.changes])
            write = Write(cid, before.rev, result.state)
            actions = before.actions
            t3 = time.perf_counter()
            if policy is not None:
                buys = _purchases(items, result) if until is None else []
                due_at = None if until is None or rescoring else until
                if result.changes or buys or (due_at is not None and actions is not None):
                    decided = decide(
                        policy,
                        actions,
                        result.state,
                        result.changes,
                        buys,
                        wall=wall,
                        due_at=due_at,
                        currency=self.currency,
                        keep_purchases_s=self.keep_purchases_s,
                    )
                    if decided.changed:  # else the stored doc stays (and the cache)
                        actions = decided.doc
                        write.actions_changed = True
                        outcome.decisions = decided.decisions
                        outcome.messages = [
                            (self.topic_prefix + m.topic, orjson.dumps(m.model_dump(mode="json")))
                            for m in decided.messages
                        ]
                        _record_decisions(write, decided.decisions)
            t4 = time.perf_counter()
            deciding += t4 - t3
            write.actions = actions
            outcomes[cid] = outcome
            write.index_ops = _index_ops(marks[0], result.state)
            write.outbox = [
                b'{"source":"%s","change":%s}' % (str(src or "timer").encode(), body)
                for src, (_c, body) in zip(result.causes, outcome.encoded, strict=True)
            ]
            write.outbox += [
                b'{"topic":"%s","value":%s}' % (topic.encode(), body)
                for topic, body in outcome.messages
            ]
            write.new = before.state is None
            write.due = _earliest(
                next_deadline(result.state, self.config, ctx),
                None if actions is None or policy is None else next_due(actions.state),
            )
            write.hist_ops = _histogram_ops(marks[1], histogram_buckets(result.state))
            write.ids = [id_number(e) for e in result.applied_ids]
            write.doc = encode_state(result.state)
            writes.append(write)
            encoding += time.perf_counter() - t4 + t3 - t2
        stages["fold"] = stages.get("fold", 0.0) + folding
        stages["decide"] = stages.get("decide", 0.0) + deciding
        stages["encode"] = stages.get("encode", 0.0) + encoding
        return writes, outcomes

    def note_currency(self, currency: str) -> None:
        """Totals are summed as sent, never converted: say once that the report mixes."""
        if self.currency is not None and currency != self.currency:
            if currency not in self.other_currencies:
                self.other_currencies.add(currency)
                log.warning(
                    "purchases in %s: the uplift report sums them with %s amounts "
                    "(SEGSTREAM_CURRENCY; segstream does not convert currencies)",
                    currency,
                    self.currency,
                )


@dataclass(slots=True)
class Outcome:
    """One customer's part of a round: the fold's result, its changes' JSON (encoded once
    for the outbox and Kafka), and the actions decided with their messages."""

    result: FoldResult
    encoded: list[tuple[SegmentChange, bytes]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    #: (topic, message JSON) to send, in decision order.
    messages: list[tuple[str, bytes]] = field(default_factory=list)


#: Suppression reasons that are not a guard's verdict and stay out of the report.
UNCOUNTED = frozenset({"duplicate"})


def _record_decisions(write: Write, decisions: list[Decision]) -> None:
    """The uplift records of a write: every assignment (the script keeps the first) and
    the counted suppressions."""
    for d in decisions:
        a = d.assignment()
        if a is not None:
            write.assigned.append((d.experiment, d.action, a.group, a.at))
        elif d.outcome == "suppressed" and d.reason not in UNCOUNTED:
            write.suppressed.append((d.experiment, d.action, d.reason))


def _purchases(items: list[tuple[Event, Source]], result: FoldResult) -> list[Purchase]:
    """The purchases the fold applied (a redelivered one is not counted again)."""
    applied = set(result.applied_ids) if len(items) != result.applied else None
    return [
        Purchase(e.order_id, e.occurred_at.timestamp(), e.total)
        for e, _src in items
        if e.type == "purchase" and (applied is None or e.event_id in applied)
    ]


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


async def _done() -> None:
    return None


def change_json(change: SegmentChange) -> bytes:
    """The change's JSON, as ``model_dump(mode="json")`` would give it, a few times faster."""
    return orjson.dumps(change.__dict__, option=orjson.OPT_UTC_Z)


def _marks(state: CustomerState | None) -> tuple[dict[str, str], dict[str, int]]:
    """What the shared indexes hold of a state before it changes: segments, RFM buckets."""
    if state is None:
        return {}, {}
    return {d: str(v[0]) for d, v in state.segments.items()}, histogram_buckets(state)


def _index_ops(before: dict[str, str], after: CustomerState) -> list[tuple[bool, str, str]]:
    """Segment-index updates: remove from the old segment, add to the new one."""
    ops: list[tuple[bool, str, str]] = []
    for dimension, (segment, _since) in after.segments.items():
        old = before.get(dimension)
        if old != segment:
            if old is not None:
                ops.append((False, dimension, old))
            ops.append((True, dimension, segment))
    return ops


def _histogram_ops(old: dict[str, int], new: dict[str, int]) -> list[tuple[str, int, int]]:
    """Moves in the shared RFM histograms: (histogram, bucket, +1/-1)."""
    ops = []
    for hist in ("recency", "frequency", "monetary"):
        if old.get(hist) != new.get(hist):
            if hist in old:
                ops.append((hist, old[hist], -1))
            if hist in new:
                ops.append((hist, new[hist], 1))
    return ops
