"""The faust-streaming internals ``streams.worker.delivery`` overrides or calls: a new version
that changes their shape fails here, before a worker misdelivers."""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

from faust.sensors.monitor import Monitor
from faust.transport import base
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers import aiokafka as driver
from mode import Service

from streams.worker.delivery import FetchBatches, FetchConsumer, FetchTransport

PINNED = {"faust-streaming": "0.15.3", "mode-streaming": "0.7.1", "aiokafka": "0.14.0"}


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_the_versions_the_hook_was_written_against() -> None:
    assert {name: version(name) for name in PINNED} == PINNED


def test_the_overridden_methods_keep_their_signatures() -> None:
    assert params(Consumer._drain_messages) == ["self", "fetcher"]
    assert params(Consumer.on_partitions_revoked) == ["self", "revoked"]
    assert params(FetchConsumer.on_partitions_revoked) == ["self", "revoked"]
    assert inspect.iscoroutinefunction(Consumer._drain_messages)


def test_the_called_internals_keep_their_shape() -> None:
    assert params(Consumer._wait_next_records) == ["self", "timeout"]
    assert params(driver.Consumer._to_message) == ["self", "tp", "record"]
    assert params(Consumer._add_gap) == ["self", "tp", "offset_from", "offset_to"]
    assert params(Consumer.ack) == ["self", "message"]
    assert params(Consumer.commit)[:2] == ["self", "topics"]
    assert params(Consumer.perform_seek) == ["self"]
    assert params(Consumer.stop_flow) == ["self"]
    assert params(Service.wait_first)[:2] == ["self", "coros"]
    assert CONSUMER_FETCHING == "FETCHING"
    init = inspect.getsource(Consumer.__init__)
    for attr in ("self._read_offset", "self.suspend_flow", "self.callback", "_commit_every"):
        assert attr in init, attr
    assert "_buffered_partitions" in inspect.getsource(Consumer._reset_state)
    assert "stream_inbound_time" in Monitor.__annotations__
    assert "tp_read_offsets" in Monitor.__annotations__


def test_the_transport_makes_our_consumer_class() -> None:
    assert issubclass(FetchTransport, driver.Transport)
    assert FetchTransport.Consumer is FetchConsumer
    assert "self.Consumer(" in inspect.getsource(base.Transport.create_consumer)
    assert params(base.Transport.__init__)[:3] == ["self", "url", "app"]


def test_the_stock_loop_still_awaits_each_message_as_the_hook_assumes() -> None:
    source = inspect.getsource(Consumer._drain_messages)
    assert "callback(message), self.suspend_flow.wait()" in source
    assert "set_read_offset(tp, offset)" in source


# --- FetchBatches: rounds merged while the agent is busy, acks after the sends ---------


class FakeConsumer:
    """What ``FetchBatches`` uses of a consumer: ``ack`` and the app's monitor."""

    def __init__(self) -> None:
        self.acked: list[tuple[str, int]] = []
        self.app = SimpleNamespace(monitor=None)

    def ack(self, message: Any) -> None:
        self.acked.append((message.tp, message.offset))


def fetch(tp: str, *offsets: int) -> dict[Any, list[Any]]:
    return {tp: [SimpleNamespace(tp=tp, offset=o) for o in offsets]}


def offsets(batch: list[Any]) -> list[tuple[str, int]]:
    return [(m.tp, m.offset) for m in batch]


def test_rounds_that_arrive_while_the_agent_is_busy_are_merged_up_to_the_cap() -> None:
    async def run() -> list[list[tuple[str, int]]]:
        batches = FetchBatches({"t"}, max_events=5)
        batches.bind(FakeConsumer())  # type: ignore[arg-type]
        await batches.put(0, fetch("a", 0, 1))
        await batches.put(0, fetch("b", 0))
        await batches.put(0, fetch("a", 2))  # 4 waiting: merged, a's offsets in order
        blocked = asyncio.ensure_future(batches.put(0, fetch("a", 3, 4)))  # 6 > 5: waits
        await asyncio.sleep(0.01)
        assert not blocked.done()
        it = batches.__aiter__()
        first = await it.__anext__()
        await asyncio.wait_for(blocked, 1)  # taken: the next round goes in
        second = await it.__anext__()
        return [offsets(first), offsets(second)]

    first, second = asyncio.run(run())
    assert first == [("a", 0), ("a", 1), ("a", 2), ("b", 0)]
    assert second == [("a", 3), ("a", 4)]


def test_a_round_fetched_before_a_revocation_is_never_handed_over() -> None:
    async def run() -> list[tuple[str, int]]:
        batches = FetchBatches({"t"}, max_events=100)
        batches.bind(FakeConsumer())  # type: ignore[arg-type]
        await batches.put(0, fetch("a", 0))
        batches.revoke({"a"})  # type: ignore[arg-type]
        await batches.put(0, fetch("a", 1))  # made in epoch 0: dropped
        await batches.put(1, fetch("a", 7))
        return offsets(await batches.__aiter__().__anext__())

    assert asyncio.run(run()) == [("a", 7)]


def test_a_batch_is_acked_only_once_its_sends_succeed_and_a_failed_one_waits() -> None:
    async def run() -> list[list[tuple[str, int]]]:
        consumer = FakeConsumer()
        batches = FetchBatches({"t"}, max_events=100)
        batches.bind(consumer)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        seen = []
        it = batches.__aiter__()
        sends = [loop.create_future() for _ in range(3)]
        for i, sent in enumerate(sends):
            await batches.put(0, fetch("a", i))
            await it.__anext__()
            batches.ack_after(sent)
        await batches.put(0, fetch("a", 9))
        await it.__anext__()  # asks for a fourth: the third is finished, none acked yet
        seen.append(list(consumer.acked))
        assert not batches.idle.is_set()
        sends[0].set_result(None)
        await asyncio.sleep(0)
        seen.append(list(consumer.acked))
        sends[1].set_exception(RuntimeError("broker down"))  # stays unacked...
        await asyncio.sleep(0)
        seen.append(list(consumer.acked))
        sends[2].set_result(None)  # ...until a later batch's sends succeed
        await asyncio.sleep(0)
        seen.append(list(consumer.acked))
        return seen

    none, one, still, all_three = asyncio.run(run())
    assert none == []
    assert one == [("a", 0)]
    assert still == [("a", 0)]
    assert all_three == [("a", 0), ("a", 1), ("a", 2)]
