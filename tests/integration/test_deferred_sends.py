"""Sends acknowledged while the next batch is worked on (``process(defer=True)``), on real
Redis: a customer's outbox keeps every message until the broker acknowledged it, the next
batch's messages never overtake the last batch's, and a failed send is sent again first.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from streams.kafka.partitioner import partition_for
from streams.kafka.topics import TOPIC_OF_TYPE
from streams.settings import Settings
from streams.store import StateStore
from streams.store.clients import async_redis_client
from streams.store.keys import outbox_key
from streams.worker.pipeline import BatchProcessor, Record
from tests.unit.factories import Events


class Broker:
    """A producer whose acknowledgements the test gives (or fails) by hand."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, Any]]] = []
        self.pending: list[asyncio.Future[None]] = []
        self.auto = False

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[None]:
        self.sent.append((key, orjson.loads(value)))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.auto:
            ack.set_result(None)
        else:
            self.pending.append(ack)
        return ack

    def settle(self, error: Exception | None = None) -> None:
        for ack in self.pending:
            if error is None:
                ack.set_result(None)
            else:
                ack.set_exception(error)
        self.pending.clear()


def records(settings: Settings, events: list[dict[str, Any]], start: int) -> list[Record]:
    out = []
    for i, e in enumerate(events):
        topic = settings.topic(TOPIC_OF_TYPE[e["type"]])
        p = partition_for(e["customer_id"], settings.topic_partitions)
        out.append(Record(topic, p, start + i, e["customer_id"].encode(), orjson.dumps(e)))
    return out


def test_deferred_sends_keep_outboxes_until_acknowledged_and_messages_in_order(
    services: Settings,
) -> None:
    settings = services.model_copy(update={"key_prefix": f"t{uuid.uuid4().hex[:8]}"})
    c = Events("d-1")
    first = records(settings, [c.add("A", 0)], 0)  # -> journey: active_cart
    second = records(settings, [c.purchase("o-1", ["A"], 5)], 1)  # -> first-time buyer
    cid = "d-1"
    key = outbox_key(settings.key_prefix, partition_for(cid, settings.topic_partitions), cid)

    async def run() -> tuple[list[int], list[int], list[int], list[str]]:
        client = async_redis_client(settings)
        broker = Broker()
        store = StateStore(
            client,
            prefix=settings.key_prefix,
            partitions=settings.topic_partitions,
            cache_size=1000,
        )
        processor = BatchProcessor(
            store=store,
            config=settings.engine,
            topic_prefix=settings.topic_prefix,
            max_event_bytes=settings.max_event_bytes,
            send_change=broker.send,
            send_deadletter=broker.send,
            max_future_s=None,
        )
        try:
            stats = await processor.process(first, defer=True)
            assert stats.sent is not None and not stats.sent.done()
            outbox = [await client.llen(key)]  # written, not acknowledged: kept
            second_batch = asyncio.ensure_future(processor.process(second, defer=True))
            await asyncio.sleep(0.2)
            assert not second_batch.done()  # its write waits for the first batch's sends
            sent_before = len(broker.sent)
            broker.auto = True  # what is sent from now on is acknowledged at once
            broker.settle(RuntimeError("broker down"))  # the first batch's sends fail
            stats2 = await asyncio.wait_for(second_batch, 10)
            outbox.append(await client.llen(key))  # resent and acknowledged: emptied...
            await asyncio.wait_for(asyncio.shield(stats2.sent), 10)  # type: ignore[arg-type]
            await processor.process([], defer=False)  # ...by the next write
            outbox.append(await client.llen(key))
            counts = [sent_before, len(broker.sent) - sent_before]
            order = [body["current"] for k, body in broker.sent if k == cid.encode()]
            return outbox, counts, [int(stats.sent.exception() is not None)], order
        finally:
            async for k in client.scan_iter(match=f"{settings.key_prefix}:*"):
                await client.delete(k)
            await client.aclose()

    outbox, counts, failed, order = asyncio.run(run())
    assert outbox[0] >= 1
    assert failed == [1]
    # the first batch's change, then again after the failure, then the second batch's:
    # never the purchase's change before the cart's
    assert order[0] == "active_cart"
    assert order.index("active_cart", 1) < order.index("first_time_buyer")
    assert outbox[-1] == 0
    assert counts[0] == 1
