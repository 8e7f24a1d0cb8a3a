"""The Faust app: built from settings, never from module-level globals."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import TP

from streams.kafka.clients import aiokafka_kwargs, faust_broker
from streams.kafka.topics import CHANGES, DEADLETTER, FEATURES, INPUTS
from streams.settings import Settings
from streams.store import ProgressLost, StateStore
from streams.store.clients import REDIS_FAILURES, async_redis_client
from streams.store.clv import load_clv_model
from streams.store.erase import register_erasures
from streams.worker import delivery
from streams.worker.actions import PolicySource, uplift_rows
from streams.worker.agents import register_agents, register_trainer
from streams.worker.clocks import Clocks
from streams.worker.clv import ClvTrainer
from streams.worker.context import ContextRefresher
from streams.worker.feature_feed import FeatureFeed
from streams.worker.metrics import Metrics
from streams.worker.pipeline import BatchProcessor
from streams.worker.progress import ProgressGuard
from streams.worker.timers import TimerService
from streams.worker.trainer import TrainerService
from streams.worker.web import WebContext, kafka_probe_for, register_web, tombstone_sender

log = logging.getLogger(__name__)


def faust_app(
    settings: Settings, *, datadir: str = "faust", web: bool = True, whole_fetches: bool = True
) -> faust.App:
    """The Faust app with segstream's consumer and producer settings, no agents yet
    (the benchmark's no-op baseline is built on the same one). ``whole_fetches``: an agent
    may receive whole Kafka fetches as one list (``streams.worker.delivery``); False keeps
    Faust's own transport."""
    path = settings.cache_dir / datadir
    path.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_broker(settings),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger=0.005,
        stream_wait_empty=False,
        consumer_max_fetch_size=settings.fetch_partition_bytes,
        broker_session_timeout=settings.session_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        datadir=str(path),
        web_enabled=web and settings.web_enabled,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
    )
    if whole_fetches:
        delivery.install(app)
    return app


#: Collections of the youngest generation every this many allocations (CPython's default
#: is 700): a batch allocates tens of thousands of short-lived objects (events, changes,
#: states), and with the default most of them survive a collection only to be promoted
#: and scanned again; profiles of the worker put a third of its CPU in the collector.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Move what the start-up loaded (modules, config, models) out of the collector's
    sight and collect the young generation less often (``GC_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def create_app(settings: Settings) -> faust.App:
    app = faust_app(settings)
    changes, deadletter, features = (settings.topic(n) for n in (CHANGES, DEADLETTER, FEATURES))

    # Straight to the producer: a topic's send wraps each message in Faust's channel
    # machinery, a tenth of a worker's time at one change per two events (bench profile).
    async def send_change(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(changes, key, value, None, None, None)

    async def send_deadletter(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(deadletter, key, value, None, None, None)

    async def send_features(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(features, key, value, 0, None, None)

    async def send_action(topic: str, key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(topic, key, value, None, None, None)

    policies = PolicySource(settings.actions_file, settings) if settings.actions_enabled else None

    client = async_redis_client(settings)
    store = StateStore(
        client,
        prefix=settings.key_prefix,
        partitions=settings.topic_partitions,
        cache_size=settings.state_cache_size,
        dedupe_retention_s=settings.dedupe_retention_s,
    )
    inputs = {settings.topic(name) for name in INPUTS}
    clocks = Clocks.for_settings(settings, client)
    context = ContextRefresher(settings, store, policies)
    metrics = Metrics(
        clocks,
        prefix=settings.key_prefix,
        stall_after_s=settings.stall_after_s,
        assignment=input_assignment(app, inputs),
        highwater=consumer_offset(app, "highwater"),
        committed=consumer_offset(app, "committed"),
        max_future_s=settings.max_future_s,
        config=context.reload_statuses,
    )
    processor = BatchProcessor(
        store=store,
        config=settings.engine,
        topic_prefix=settings.topic_prefix,
        max_event_bytes=settings.max_event_bytes,
        send_change=send_change,
        send_deadletter=send_deadletter,
        send_features=send_features,
        send_action=None if policies is None else send_action,
        policy=None if policies is None else context.policy,
        currency=settings.currency,
        keep_purchases_s=settings.actions_keep_purchases_s,
        sample_percent=settings.cluster_sample_percent,
        clock=time.time,
        max_future_s=settings.max_future_s,
        live=settings.clock == "live",
        feed=FeatureFeed(settings.features_min_move, settings.features_memory),
        clocks=clocks,
        context=context.current,
        on_decided=metrics.actions_decided,
        on_published=metrics.changes_published,
        on_delivery=metrics.action_delivery,
    )
    guard = ProgressGuard(
        store=store,
        processor=processor,
        inputs=inputs,
        kafka=aiokafka_kwargs(settings),
        batch_size=settings.batch_size,
    )
    guard.install(app)

    def assigned() -> list[int]:
        return [tp.partition for tp in app.consumer.assignment() if tp.topic in inputs]

    timer_service = TimerService(
        settings,
        processor,
        store=store,
        clocks=clocks,
        context=context,
        assigned=assigned,
        observer=metrics,
        history=lambda: metrics.record_history(client, settings.history_keep_s),
    )
    register_agents(app, settings, processor, metrics, guard)
    register_trainer(app, settings, TrainerService(settings, store))
    clv_trainer = ClvTrainer(
        settings,
        clocks,
        owner=owns_partition(app, features),
        load=lambda: load_clv_model(client, settings.key_prefix),
    )
    register_erasures(app, settings, lambda ids: (store.forget(ids), processor.feed.forget(ids)))
    register_web(
        app,
        WebContext(
            settings=settings,
            store=store,
            assigned=assigned,
            kafka_probe=kafka_probe_for(app, settings),
            send_tombstone=tombstone_sender(app, settings),
            lock=processor.lock,
            metrics=metrics,
            clocks=clocks.clocks,
            actions=None if policies is None else uplift_rows(settings, context.policy),
            context=context.current,
        ),
    )

    @app.timer(interval=settings.timer_interval_s, name=f"{settings.app_id}.timers")
    async def fire_timers() -> None:
        try:
            await timer_service.run_once()
        except ProgressLost:  # Redis lost writes: replay them (the ingest may be idle)
            await guard.recover_after_scan("timer scan")
        except Exception as exc:  # a failed scan is retried at the next tick; never stop
            log.exception("timer scan failed")
            if isinstance(exc, REDIS_FAILURES):
                metrics.redis_error("timers")

    # Beside the cluster trainer: the owner of the one feature partition fits.
    @app.timer(interval=clv_trainer.tick_s, name=f"{settings.app_id}.clv")
    async def refit_clv() -> None:
        await clv_trainer.tick()

    @app.timer(interval=FLOWS_FLUSH_S, name=f"{settings.app_id}.flows")
    async def flush_flows() -> None:
        try:
            await metrics.flush_flows(client)
        except Exception:  # kept in memory and added at the next flush
            log.exception("recording segment flows failed")

    return app


FLOWS_FLUSH_S = 5.0


def input_assignment(app: faust.App, inputs: set[str]) -> Callable[[], list[tuple[str, int]]]:
    """The input partitions the worker's consumer owns now, as (topic, partition)."""

    def owned() -> list[tuple[str, int]]:
        try:
            tps = app.consumer.assignment()
        except Exception:  # not started yet, or between rebalances
            return []
        return [(tp.topic, tp.partition) for tp in tps if tp.topic in inputs]

    return owned


def owns_partition(app: faust.App, topic: str) -> Callable[[], bool]:
    """True while the worker's consumer owns partition 0 of ``topic``: for the one-partition
    ``segments.features``, the worker whose agent is the cluster trainer."""

    def owned() -> bool:
        try:
            tps = app.consumer.assignment()
        except Exception:  # not started yet, or between rebalances
            return False
        return any(tp.topic == topic and tp.partition == 0 for tp in tps)

    return owned


def consumer_offset(app: faust.App, which: str) -> Callable[[str, int], int | None]:
    """``highwater``: the log end offset from the consumer's last fetch; ``committed``: the
    offset Faust last committed (the next one to read). None while unknown."""

    def offset(topic: str, partition: int) -> int | None:
        tp = TP(topic, partition)
        try:
            if which == "highwater":
                value = app.consumer.highwater(tp)
            else:
                value = app.consumer._committed_offset.get(tp)  # Kafka's: the next to read
        except Exception:  # consumer not started, partition not fetched yet
            return None
        return None if value is None else int(value)

    return offset
