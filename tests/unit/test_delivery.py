"""The faust-streaming internals ``streams.delivery`` overrides or calls: a new version
that changes their shape fails here, before a worker misdelivers."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from faust.sensors.monitor import Monitor
from faust.transport import base
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.transport.drivers import aiokafka as driver
from mode import Service

from streams.delivery import FetchConsumer, FetchTransport

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
