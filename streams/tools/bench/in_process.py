"""The in-process stage benchmark: the worker's batch pipeline without a broker.

What a worker pays per event, stage by stage (parse, fold, decide, encode, redis, send),
on real Redis (a fresh key prefix, deleted after) and the bench workload as a catch-up
would deliver it: records in per-partition order, whole fetch rounds as batches, due
timers fired after each batch. Sends are free (an already-resolved acknowledgement), so
the figures are the engine's own cost, not the broker's.

The context is a realistic one: a first, untimed pass over the same workload gives the
RFM quantiles (from its histograms) and a cluster model (trained on the feature vectors
the pass sampled); the measured pass starts from empty state with that context.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from segmenters.actions.policy import DEFAULT_POLICY
from segmenters.clustering import Trainer
from segmenters.core import Context
from segmenters.dimensions.rfm import RfmQuantiles
from streams.kafka.partitioner import partition_for
from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.store.scans import drop_prefix
from streams.worker.app import tune_gc
from streams.worker.clocks import Clocks
from streams.worker.pipeline import BatchProcessor, BatchStats, Record

#: The stages of ``BatchStats.stages``, in pipeline order.
STAGES = ("parse", "fold", "decide", "encode", "redis", "send")
#: Target of the whole pipeline's cost per event (microseconds).
TARGET_US = 40.0


@dataclass
class StageResult:
    """Seconds spent per stage over a measured pass, and what the pass did."""

    events: int = 0
    customers: int = 0
    batches: int = 0
    #: Wall seconds per stage, event batches and timer firings summed.
    stages: dict[str, float] = field(default_factory=dict)
    #: Wall seconds inside ``process`` and ``fire_timers`` (the stages and what is between).
    process_s: float = 0.0
    timers_s: float = 0.0
    timers: int = 0
    #: CPU seconds of this process over the measured pass (``time.process_time``).
    cpu_s: float = 0.0
    changes: int = 0
    actions: int = 0
    deadletters: int = 0

    @property
    def total_s(self) -> float:
        return self.process_s + self.timers_s

    def us_per_event(self) -> dict[str, float]:
        """Microseconds per event of each stage, ``other`` (the rest of the pipeline's
        wall time) and ``total``."""
        n = max(1, self.events)
        out = {s: self.stages.get(s, 0.0) * 1e6 / n for s in STAGES}
        out["other"] = max(0.0, self.total_s - sum(self.stages.values())) * 1e6 / n
        out["total"] = self.total_s * 1e6 / n
        return out

    @property
    def rate(self) -> float:
        return self.events / self.total_s if self.total_s > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s * 1000 / self.events if self.events else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "customers": self.customers,
            "batches": self.batches,
            "us_per_event": self.us_per_event(),
            "rate": self.rate,
            "cpu_per_1000": self.cpu_per_1000,
            "timers": self.timers,
            "changes": self.changes,
            "actions": self.actions,
            "deadletters": self.deadletters,
        }


def to_records(events: Iterable[dict[str, Any]], settings: Settings) -> list[Record]:
    """Events as the worker would consume them: on their type's topic, on their customer's
    partition (Kafka's default partitioner), at consecutive offsets, record timestamp =
    ``occurred_at`` (a producer sending live)."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    partitions = settings.topic_partitions
    for event in events:
        topic = settings.topic(TOPIC_OF_TYPE[event["type"]])
        partition = partition_for(event["customer_id"], partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
        out.append(
            Record(
                topic,
                partition,
                offset,
                event["customer_id"].encode(),
                orjson.dumps(event),
                at,
            )
        )
    return out


def fetch_rounds(records: Iterable[Record], batch: int) -> Iterator[list[Record]]:
    """Batches as whole fetch rounds give them: each round takes the next chunk of every
    topic-partition that has records left (each partition's in offset order), at most
    ``ceil(batch / partitions with records)`` per partition, as a fetch bounded per
    partition does; a sparse topic thus runs ahead of a busy one, as in a real catch-up.

    >>> rs = [Record("t", p, o, None, None) for p in (0, 1) for o in range(3)]
    >>> [[(r.partition, r.offset) for r in b] for b in fetch_rounds(rs, 4)]
    [[(0, 0), (0, 1), (1, 0), (1, 1)], [(0, 2), (1, 2)]]
    """
    queues: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        queues.setdefault((r.topic, r.partition), []).append(r)
    at = dict.fromkeys(queues, 0)
    while True:
        live = [tp for tp, q in queues.items() if at[tp] < len(q)]
        if not live:
            return
        chunk = max(1, math.ceil(batch / len(live)))
        out: list[Record] = []
        for tp in live:
            out += queues[tp][at[tp] : at[tp] + chunk]
            at[tp] += chunk
        yield out


class _Pass:
    """One pass of the records through a ``BatchProcessor`` built as the worker's is."""

    def __init__(self, settings: Settings, client: Any, prefix: str, sample_percent: int):
        self.settings = settings
        self.now = 0.0  # the simulated wall clock: the latest record timestamp
        self.vectors: list[tuple[str, dict[str, float]]] = []
        self.prefix = prefix
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)

        async def send(key: bytes, value: bytes) -> Awaitable[Any]:
            return done

        async def send_to(topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
            return done

        async def send_features(key: bytes, value: bytes) -> Awaitable[Any]:
            self.vectors.append((key.decode(), orjson.loads(value)))
            return done

        #: The context the processor scores with (the measured pass gets the first's).
        self.ctx = Context()
        self.clocks = Clocks(lateness=settings.allowed_lateness_s, wall=lambda: self.now)
        self.store = StateStore(
            client,
            prefix=prefix,
            partitions=settings.topic_partitions,
            cache_size=settings.state_cache_size,
            dedupe_retention_s=settings.dedupe_retention_s,
        )
        self.processor = BatchProcessor(
            store=self.store,
            config=settings.engine,
            topic_prefix=settings.topic_prefix,
            max_event_bytes=settings.max_event_bytes,
            send_change=send,
            send_deadletter=send,
            send_features=send_features,
            send_action=send_to,
            policy=lambda: DEFAULT_POLICY,
            currency=settings.currency,
            keep_purchases_s=settings.actions_keep_purchases_s,
            sample_percent=sample_percent,
            clock=lambda: self.now,
            max_future_s=settings.max_future_s,
            live=False,
            clocks=self.clocks,
            context=lambda: self.ctx,
        )

    async def run(self, batches: list[list[Record]], res: StageResult) -> None:
        processor = self.processor
        partitions = range(self.settings.topic_partitions)
        for batch in batches:
            self.now = max(r.timestamp or 0.0 for r in batch)
            t = time.perf_counter()
            stats = await processor.process(batch)
            t2 = time.perf_counter()
            self._add(res, stats)
            clocks = self.clocks.clocks(partitions)
            fired = await processor.fire_timers(clocks, self.settings.timer_batch)
            t3 = time.perf_counter()
            self._add(res, fired)
            res.process_s += t2 - t
            res.timers_s += t3 - t2
            res.timers += fired.timers
            res.batches += 1

    @staticmethod
    def _add(res: StageResult, stats: BatchStats) -> None:
        for stage, s in stats.stages.items():
            res.stages[stage] = res.stages.get(stage, 0.0) + s
        res.events += stats.events
        res.changes += stats.changes
        res.actions += stats.actions_sent
        res.deadletters += stats.deadletters

    def context(self, settings: Settings, counts: dict[str, dict[int, int]]) -> Context:
        """RFM quantiles of this pass's histograms and a model of its sampled vectors."""
        as_of = max(self.clocks.watermarks.values())
        q = RfmQuantiles.from_counts(
            counts["recency"], counts["frequency"], counts["monetary"], as_of=as_of
        )
        trainer = Trainer(k=settings.clusters, seed=settings.cluster_seed)
        for cid, x in self.vectors:
            trainer.learn_one(x, cid)
        clusters = trainer.snapshot(None, 1) if trainer.started else None
        return Context(
            rfm=q if q.buyers else None,
            clusters=clusters,
            cluster_margin=settings.cluster_margin,
        )


async def measure(
    settings: Settings,
    records: list[Record],
    *,
    batch: int,
    say: Callable[[str], None] = print,
) -> StageResult:
    """A context pass, then the measured pass; both prefixes are deleted after."""
    client = async_redis_client(settings)
    uid = uuid.uuid4().hex[:6]
    warm, measured = f"bs{uid}w", f"bs{uid}"
    batches = list(fetch_rounds(records, batch))
    try:
        first = _Pass(settings, client, warm, sample_percent=100)
        await first.run(batches, StageResult())
        ctx = first.context(settings, await first.store.rfm_counts())
        say(
            f"  context: RFM of {ctx.rfm.buyers if ctx.rfm else 0} buyers, "
            f"{len(ctx.clusters.clusters) if ctx.clusters else 0} clusters "
            f"from {len(first.vectors)} vectors"
        )
        await drop_prefix(client, warm)
        timed = _Pass(settings, client, measured, sample_percent=settings.cluster_sample_percent)
        timed.ctx = ctx
        res = StageResult(customers=len({r.key for r in records}))
        cpu = time.process_time()
        await timed.run(batches, res)
        res.cpu_s = time.process_time() - cpu
        return res
    finally:
        await drop_prefix(client, warm)
        await drop_prefix(client, measured)
        await client.aclose()


def run_stages(
    settings: Settings,
    events: Iterable[dict[str, Any]],
    *,
    batch: int = 2000,
    say: Callable[[str], None] = print,
) -> StageResult:
    """The stage benchmark of ``events`` (dicts of the contract), batches of ~``batch``,
    with the collector tuned as in a worker (``app.tune_gc``), restored after."""
    records = to_records(events, settings)
    threshold = gc.get_threshold()
    tune_gc()
    try:
        return asyncio.run(measure(settings, records, batch=batch, say=say))
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def render_stages(res: StageResult) -> str:
    """The stage table (markdown), microseconds per event, with the target.

    >>> r = StageResult(events=1000, stages={"parse": 0.004, "fold": 0.01}, process_s=0.02)
    >>> print(render_stages(r).splitlines()[4])
    | parse | 4.0 | |
    """
    us = res.us_per_event()
    lines = [
        f"{res.events:,} events of {res.customers:,} customers, {res.batches} batches "
        f"({res.events / max(1, res.batches):,.0f} events each), {res.timers:,} timers fired",
        "",
        "| stage | us/event | target |",
        "|---|---|---|",
        *(f"| {s} | {us[s]:.1f} | |" for s in (*STAGES, "other")),
        f"| **total** | **{us['total']:.1f}** | <= {TARGET_US:.0f} |",
        f"| events/s | {res.rate:,.0f} | |",
        f"| CPU s per 1,000 events | {res.cpu_per_1000:.3f} | |",
    ]
    return "\n".join(lines)
