"""The Faust app: built from settings, never from module-level globals."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any

import faust
import redis.asyncio as aioredis

from .actions import register_actions
from .agents import register_agents, register_trainer
from .erase import register_erasures
from .pipeline import BatchProcessor
from .settings import Settings
from .store import StateStore
from .timers import TimerService
from .topics import CHANGES, DEADLETTER, FEATURES, INPUTS
from .trainer import TrainerService
from .web import WebContext, kafka_probe_for, register_web, tombstone_sender

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    datadir = settings.cache_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        key_serializer="raw",
        value_serializer="raw",
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
        datadir=str(datadir),
        web_enabled=settings.web_enabled,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
    )
    changes, deadletter, features = (settings.topic(n) for n in (CHANGES, DEADLETTER, FEATURES))

    # Straight to the producer: a topic's send wraps each message in Faust's channel
    # machinery, a tenth of a worker's time at one change per two events (bench profile).
    async def send_change(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(changes, key, value, None, None, None)

    async def send_deadletter(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(deadletter, key, value, None, None, None)

    async def send_features(key: bytes, value: bytes) -> Awaitable[Any]:
        return await app.producer.send(features, key, value, 0, None, None)

    client = aioredis.Redis.from_url(settings.redis_url)
    store = StateStore(
        client,
        prefix=settings.key_prefix,
        cache_size=settings.state_cache_size,
        dedupe_retention_s=settings.dedupe_retention_s,
    )
    processor = BatchProcessor(
        store=store,
        config=settings.engine,
        topic_prefix=settings.topic_prefix,
        max_event_bytes=settings.max_event_bytes,
        send_change=send_change,
        send_deadletter=send_deadletter,
        send_features=send_features,
        sample_percent=settings.cluster_sample_percent,
        clock=time.time,
    )
    register_agents(app, settings, processor)
    register_trainer(app, settings, TrainerService(settings, store))
    register_erasures(app, settings, store.forget)
    register_actions(app, settings, client)
    inputs = {settings.topic(name) for name in INPUTS}

    def assigned() -> list[int]:
        return [tp.partition for tp in app.consumer.assignment() if tp.topic in inputs]

    timer_service = TimerService(settings, processor, assigned)
    register_web(
        app,
        WebContext(
            settings=settings,
            store=store,
            assigned=assigned,
            kafka_probe=kafka_probe_for(app, settings),
            send_tombstone=tombstone_sender(app, settings),
            lock=processor.lock,
        ),
    )

    @app.timer(interval=settings.timer_interval_s, name=f"{settings.app_id}.timers")
    async def fire_timers() -> None:
        try:
            await timer_service.run_once()
        except Exception:  # a failed scan is retried at the next tick; never stop the worker
            log.exception("timer scan failed")

    return app
