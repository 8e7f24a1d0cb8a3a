"""The batch processor: one batch end to end (parse, load, fold, decide, write, send)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from segmenters.actions.campaign import Campaign
from segmenters.actions.policy import Policy
from segmenters.actions.retention import decide, decide_campaign
from segmenters.config import KEEP_PURCHASES_S, EngineConfig
from segmenters.core import (
    Context,
    FoldResult,
    Source,
    carry_no_actions,
    fold,
    merge_by_time,
    rescore,
    tick,
)
from segmenters.effects import (
    histogram_buckets,
    joins_members,
    marks,
    moves,
    next_timer,
    uplift_records,
)
from segmenters.events import (
    EVENT_ADAPTER,
    Event,
    InvalidEvent,
)
from segmenters.state import id_number
from segmenters.topics import TOPIC_TYPES
from streams.store import Loaded, StateStore, Write, encode_state
from streams.worker.clocks import Clocks
from streams.worker.feature_feed import FeatureFeed
from streams.worker.pipeline.outcomes import (
    BatchStats,
    InFlight,
    Outcome,
    _purchases,
    change_json,
    outbox_entries,
)
from streams.worker.pipeline.records import Record, Send, SendTo, deadletter_record, parse_record
from streams.worker.pipeline.sending import Sending

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 5
_EMPTY = Context()


def _no_context() -> Context:
    """No population statistics or models (a processor no refresher feeds)."""
    return _EMPTY


class BatchProcessor(Sending):
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
        clocks: Clocks | None = None,
        context: Callable[[], Context] | None = None,
        on_decided: Callable[[Counter[tuple[str, str, str]]], None] | None = None,
        on_published: Callable[[Counter[tuple[str, str, str]]], None] | None = None,
        on_delivery: Callable[[str, str, bool], None] | None = None,
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
        #: Population statistics and models the segments depend on, refreshed by the shell
        #: (``streams.worker.context.ContextRefresher.current``).
        self.context: Callable[[], Context] = context if context is not None else _no_context
        #: The partition clocks whose watermarks each batch advances.
        self.clocks = clocks if clocks is not None else Clocks()
        #: Event batches and timer scans take turns, so a customer's changes keep their order.
        self.lock = asyncio.Lock()
        #: Told of every round's decisions, (action, outcome, reason) -> count, and of the
        #: changes it published, (dimension, previous or "", current) -> count (metrics).
        self.on_decided = on_decided
        self.on_published = on_published
        #: Told of each action message's fate, (action id, channel, confirmed by the
        #: broker): False when the send failed (it stays in the outbox) or was dropped.
        self.on_delivery = on_delivery
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
        newest: dict[int, float] = {}  # per partition, the batch's largest event time
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
            if at > newest.get(partition, float("-inf")):
                newest[partition] = at
        self.clocks.advance(newest)
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

    async def campaign(
        self, customers: list[str], campaign: Campaign, *, dry_run: bool = False
    ) -> BatchStats:
        """Decide ``campaign``'s action for these members of its segment, at the wall
        clock, through the guards of a transition (``retention.decide_campaign``), and
        write and send as a batch does: the action doc, its outbox and uplift records in
        the compare-and-set write of each customer's state (a write that loses to a
        worker reloads and decides again), then the sends, awaited, then the delivered
        outboxes emptied. What a crash left in a loaded customer's outbox is sent first.

        ``stats.decided`` counts the decisions by (action, outcome, reason); a member
        that left the segment since it was listed gets none. With ``dry_run`` nothing is
        written or sent: the decisions are computed from the stored state and counted.
        """
        async with self.lock:
            started = time.perf_counter()
            stats = BatchStats(customers=len(customers))
            groups: dict[str, list[tuple[Event, Source]]] = {c: [] for c in customers}
            if dry_run:
                loaded = await self.store.load(groups)
                policy = None if self.policy is None else self.policy()
                _writes, outcomes = self._fold_all(
                    groups,
                    loaded,
                    None,
                    False,
                    set(),
                    policy,
                    self.clock(),
                    stats.stages,
                    campaign=campaign,
                )
                for outcome in outcomes.values():
                    for d in outcome.decisions:
                        stats.decided[(d.action, d.outcome, d.reason)] += 1
                        stats.actions_sent += d.message is not None
            else:
                await self._apply(groups, None, stats, [], campaign=campaign)
                await self.store.commit([])  # empties the outboxes just delivered
            stats.seconds = time.perf_counter() - started
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
        campaign: Campaign | None = None,
    ) -> None:
        """Load, fold (or tick, with ``until``; or rescore), decide actions, write with
        CAS, publish. ``applied``: the batch's input offsets, recorded with its states.
        With ``campaign``, no fold: its action is decided for each customer."""
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
                groups,
                pending,
                until,
                rescoring,
                marked or set(),
                policy,
                wall,
                stages,
                campaign=campaign,
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
                for d in outcome.decisions:
                    stats.decided[(d.action, d.outcome, d.reason)] += 1
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
        # Counted once written, before the sends: a failed send never decides again.
        if stats.decided and self.on_decided is not None:
            try:
                self.on_decided(stats.decided)
            except Exception:  # metrics never stop the stream
                log.exception("recording action metrics failed")
            stats.decided = Counter()

        t = time.perf_counter()
        flows: Counter[tuple[str, str, str]] = Counter()  # the changes sent (metrics)
        # What a crash left unsent goes first, so each customer's messages keep their order.
        for cid, entries in unsent.items():
            for entry in entries:
                acks.append(await self._resend(cid.encode(), entry, flows))
                stats.resent += 1
        delivered = list(unsent)
        for outcome in done:
            key = outcome.result.state.customer_id.encode()
            for _change, body in outcome.encoded:
                acks.append(await self.send_change(key, body))
            stats.changes += len(outcome.encoded)
            if outcome.messages:
                assert self.send_action is not None
                sends = [
                    (d.action, d.message.channel)
                    for d in outcome.decisions
                    if d.message is not None
                ]
                for (topic, body), (action, channel) in zip(outcome.messages, sends, strict=True):
                    acks.append(await self._send_action(topic, key, body, action, channel))
                stats.actions_sent += len(outcome.messages)
            if outcome.encoded or outcome.messages:
                delivered.append(outcome.result.state.customer_id)
        await self._sample(done, acks, 100 if rescoring else self.sample_percent)
        if defer:
            stats.sent = asyncio.ensure_future(asyncio.gather(*acks))
            self.in_flight = InFlight(stats.sent, delivered)
        else:
            if acks:
                await asyncio.gather(*acks)  # delivered: the outboxes can go
            self.store.delivered(delivered)
        stages["send"] = stages.get("send", 0.0) + time.perf_counter() - t
        if self.on_published is not None:
            for outcome in done:
                for change, _body in outcome.encoded:
                    flows[(change.dimension, change.previous or "", change.current)] += 1
            self._published(flows)

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
        campaign: Campaign | None = None,
    ) -> tuple[list[Write], dict[str, Outcome]]:
        writes = []
        outcomes: dict[str, Outcome] = {}
        ctx = self.context()
        folding = deciding = encoding = 0.0
        for cid, items in groups.items():
            t = time.perf_counter()
            before = loaded[cid]
            if campaign is not None:
                if before.state is None or policy is None:
                    continue  # erased since it was listed, or actions off
                decided = decide_campaign(
                    policy,
                    before.actions,
                    before.state,
                    campaign,
                    now=wall,
                    currency=self.currency,
                    clv=ctx.clv,
                    horizon_days=ctx.clv_horizon_days,
                )
                outcome = Outcome(FoldResult(before.state), decisions=decided.decisions)
                outcomes[cid] = outcome
                if not decided.changed:
                    continue
                outcome.messages = [
                    (self.topic_prefix + m.topic, orjson.dumps(m.model_dump(mode="json")))
                    for m in decided.messages
                ]
                write = Write(cid, before.rev, before.state, actions=decided.doc)
                write.actions_changed = True
                write.assigned, write.suppressed = uplift_records(decided.decisions)
                write.outbox = outbox_entries(outcome)
                write.due = next_timer(before.state, decided.doc.state, self.config, ctx)
                write.doc = encode_state(before.state)
                writes.append(write)
                deciding += time.perf_counter() - t
                continue
            seen = marks(before.state)  # before a fold in place changes it
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
                # a write when a segment changed, or when the buyer's bucket in a shared
                # histogram moved (a CLV decayed, a first value model): the value ranks
                # are computed from those buckets
                if not result.changes and histogram_buckets(result.state) == seen[1]:
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
                        clv=ctx.clv,
                        horizon_days=ctx.clv_horizon_days,
                    )
                    if decided.changed:  # else the stored doc stays (and the cache)
                        actions = decided.doc
                        write.actions_changed = True
                        outcome.decisions = decided.decisions
                        outcome.messages = [
                            (self.topic_prefix + m.topic, orjson.dumps(m.model_dump(mode="json")))
                            for m in decided.messages
                        ]
                        write.assigned, write.suppressed = uplift_records(decided.decisions)
            t4 = time.perf_counter()
            deciding += t4 - t3
            write.actions = actions
            outcomes[cid] = outcome
            write.index_ops, write.hist_ops = moves(seen, result.state)
            write.outbox = outbox_entries(outcome)
            write.new = joins_members(before.state)
            write.due = next_timer(
                result.state,
                None if actions is None or policy is None else actions.state,
                self.config,
                ctx,
            )
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
