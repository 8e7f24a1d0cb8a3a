"""Partition progress lives with the state: resume from what Redis has, not from Kafka.

Each batch records, in the same Lua call as its states, the last offset it applied of
each input partition (``<p>:applied``, see ``store.COMMIT_LUA``). Kafka's committed
offset is only a hint:

- **On assignment** a partition starts at ``min(Kafka committed, Redis applied + 1)``.
  If Redis lost its last second of writes (AOF ``everysec`` and a SIGKILL), the record
  is lost with the states it described, and the worker replays exactly the lost part,
  even though Kafka's commit already went past it.
- **While running**, every write checks that Redis still holds the progress this worker
  recorded. A Redis restarted from an AOF that lost writes fails that check before
  anything is written (``ProgressLost``); the worker then drops its state cache and
  re-reads the lost range of each partition straight from Kafka (a consumer of its own,
  outside the group), applies it, and goes on with the batch it had.

There is one guard per worker, over one record: the pipeline (``store.StateStore`` with
``pipeline.BatchProcessor``) writes segment state, action docs, outboxes and progress in
the same Lua call, so a replay of the lost range restores all of them together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.store import ProgressLost
from streams.worker.pipeline import Record, no_actions_of

log = logging.getLogger(__name__)


def field_of(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class ProgressStore(Protocol):
    """Writes that record their input offsets, and a cache to drop after a loss."""

    progress: dict[str, int]

    async def applied_offsets(self) -> dict[str, int]: ...

    def forget(self) -> None: ...


class Processor(Protocol):
    """Applies batches under a lock that a replay may hold across several of them."""

    lock: asyncio.Lock

    async def process_holding_lock(self, records: Sequence[Record]) -> Any: ...


S = TypeVar("S", covariant=True)


class Retried(Protocol, Generic[S]):
    """What ``process_until_done`` drives: a processor with a store whose cache it drops."""

    @property
    def store(self) -> ProgressStore: ...

    async def process(self, records: Sequence[Record], *, defer: bool = False) -> S: ...


class ProgressGuard:
    def __init__(
        self,
        *,
        store: ProgressStore,
        processor: Processor,
        inputs: set[str],
        kafka: Mapping[str, Any],
        batch_size: int = 500,
    ) -> None:
        self.store = store
        self.processor = processor
        self.inputs = inputs
        #: aiokafka keyword arguments: bootstrap servers and security (SASL, TLS).
        self.kafka = dict(kafka)
        self.batch_size = batch_size
        #: Partitions started below Kafka's committed offset, and records replayed after
        #: a loss found while running (for logs and tests).
        self.rewound = 0
        self.replayed = 0

    # --- assignment -------------------------------------------------------------------
    async def resume_positions(
        self,
        committed: Mapping[Any, int | None],
        seek: Callable[[Any, int], Awaitable[None]],
    ) -> dict[Any, int | None]:
        """Given Kafka's committed offsets of the assigned partitions, seek each input
        partition back to Redis's progress + 1 where that is lower; the positions used."""
        stored = await self.store.applied_offsets()
        out = dict(committed)
        for tp, offset in committed.items():
            if tp.topic not in self.inputs:
                continue
            field = field_of(tp.topic, tp.partition)
            have = stored.get(field)
            if have is None:
                self.store.progress.pop(field, None)
                continue
            self.store.progress[field] = have
            resume = have + 1
            if offset is not None and offset > resume:
                log.warning(
                    "%s: Kafka's committed offset %d is past what Redis has applied (%d); "
                    "resuming at %d",
                    field,
                    offset,
                    have,
                    resume,
                )
                await seek(tp, resume)
                out[tp] = resume
                self.rewound += 1
        return out

    def revoked(self, tps: Any) -> None:
        for tp in tps:
            self.store.progress.pop(field_of(tp.topic, tp.partition), None)

    def install(self, app: Any) -> None:
        """Wrap the Faust consumer's seek to committed offsets (what it does after every
        rebalance, before fetching) so partitions resume from Redis's progress."""
        new_consumer = app._new_consumer

        def make_consumer() -> Any:
            consumer = new_consumer()
            to_committed = consumer.seek_to_committed

            async def seek_to_committed() -> Mapping[Any, int]:
                committed = await to_committed()
                return await self.resume_positions(committed, consumer.seek)  # type: ignore[return-value]

            consumer.seek_to_committed = seek_to_committed
            return consumer

        app._new_consumer = make_consumer

        @app.on_partitions_revoked.connect
        async def on_revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
            self.revoked(revoked)

    # --- a loss found while running ---------------------------------------------------
    async def recover_after_scan(self, scan: str) -> None:
        """A timer scan found the loss (its agent may be idle): replay, or log and let
        the next tick try again."""
        log.warning("%s found Redis lost writes; replaying", scan)
        try:
            await self.recover()
        except Exception:
            log.exception("replaying what Redis lost failed; retried at the next tick")

    async def recover(self) -> int:
        """Replay, from Kafka, what Redis lost of the progress this worker recorded; the
        number of records replayed. Safe to call again (it starts from what Redis has).

        The whole replay holds the processor's lock. While the progress is lowered to
        the last mark Redis kept, any other batch would pass the progress check and
        write its later events ahead of the lost range; each customer would then take
        the replayed events, older than what it holds, for duplicates. So the ingest
        agent and the timer scan wait, and a second caller finds nothing left to do."""
        async with self.processor.lock:
            return await self._recover()

    async def _recover(self) -> int:
        stored = await self.store.applied_offsets()
        lost = {
            f: (stored.get(f, -1), wrote)
            for f, wrote in self.store.progress.items()
            if stored.get(f, -1) < wrote
        }
        self.store.forget()  # the cache may hold states Redis no longer has
        if not lost:
            return 0
        log.error(
            "Redis lost writes (progress %s); replaying the lost offsets from Kafka",
            ", ".join(f"{f} {have} < {wrote}" for f, (have, wrote) in sorted(lost.items())),
        )
        for f, (have, _) in lost.items():
            if have < 0:
                self.store.progress.pop(f, None)
            else:
                self.store.progress[f] = have
        try:
            records = await self._read(lost)
            # Interleave the partitions' topics by Kafka timestamp, as they were read live.
            records.sort(key=lambda r: (r[0], r[1].topic, r[1].offset))
            for i in range(0, len(records), self.batch_size):
                batch = [r for _, r in records[i : i + self.batch_size]]
                await self.processor.process_holding_lock(batch)
        finally:
            # Done or not, the worker again expects what it had recorded: a replay that
            # failed half-way (Redis still restarting, say) must be found and run again,
            # never leave the lower mark behind and the lost range forgotten.
            for f, (_, wrote) in lost.items():
                self.store.progress[f] = max(wrote, self.store.progress.get(f, -1))
        self.replayed += len(records)
        log.warning("replayed %d records lost by Redis", len(records))
        return len(records)

    async def _read(self, lost: dict[str, tuple[int, int]]) -> list[tuple[int, Record]]:
        """Records (have, wrote] of each partition, with their Kafka timestamps."""
        consumer = AIOKafkaConsumer(
            **self.kafka,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            until: dict[TopicPartition, int] = {}
            for f, (_have, wrote) in lost.items():
                topic, _, partition = f.rpartition(":")
                until[TopicPartition(topic, int(partition))] = wrote
            consumer.assign(list(until))
            for tp, _ in until.items():
                have = lost[field_of(tp.topic, tp.partition)][0]
                consumer.seek(tp, have + 1)
            out: list[tuple[int, Record]] = []
            pending = set(until)
            while pending:
                got = await consumer.getmany(*pending, timeout_ms=1000, max_records=5000)
                for tp, batch in got.items():
                    for m in batch:
                        if m.offset <= until[tp]:
                            record = Record(
                                m.topic,
                                m.partition,
                                m.offset,
                                m.key,
                                m.value,
                                m.timestamp / 1000,
                                no_actions=no_actions_of(m.headers),
                            )
                            out.append((m.timestamp, record))
                for tp in list(pending):
                    if await consumer.position(tp) > until[tp]:
                        pending.discard(tp)
            return out
        finally:
            await consumer.stop()


async def process_until_done(
    processor: Retried[S],
    records: list[Record],
    on_error: Callable[[BaseException], None] | None = None,
    guard: ProgressGuard | None = None,
    *,
    defer: bool = False,
) -> S:
    """Process a batch, retrying with backoff until it succeeds.

    Faust acks a taken batch even when the agent raises, so raising would drop the
    batch. Retrying instead keeps the batch: an outage (Redis down, say) shows as
    growing lag, never as lost events. Applying a batch twice is safe (offsets are
    stored with the state), so a retry after a partial write double-counts nothing.
    If Redis lost writes (``ProgressLost``), ``guard`` first replays the lost offsets.
    """
    delay = 0.2
    while True:
        try:
            if defer:  # sends acknowledged later: see BatchProcessor.process
                return await processor.process(records, defer=True)
            return await processor.process(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            processor.store.forget()  # reload: what the failed try left unsent is re-sent
            if isinstance(exc, ProgressLost) and guard is not None:
                try:
                    if await guard.recover():
                        continue
                    # nothing left to replay (another caller did it): retry after a pause
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("replaying what Redis lost failed; retrying")
            else:
                log.exception("batch of %d records failed; retrying in %.1f s", len(records), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
