"""Sending a round's messages, and the acknowledgements of the last round (``settle``)."""

from __future__ import annotations

import asyncio
import functools
import logging
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from segmenters.core import Context
from segmenters.features import feature_vector
from streams.store import StateStore
from streams.worker.feature_feed import FeatureFeed
from streams.worker.pipeline.outcomes import InFlight, Outcome, _done
from streams.worker.pipeline.records import Send, SendTo

log = logging.getLogger(__name__)


class Sending:
    """The part of :class:`~streams.worker.pipeline.processor.BatchProcessor` that sends what a
    round wrote and waits for the broker: a batch's sends are awaited by the next write."""

    # set by BatchProcessor.__init__
    store: StateStore
    send_change: Send
    send_action: SendTo | None
    send_features: Send | None
    in_flight: InFlight | None
    feed: FeatureFeed
    context: Callable[[], Context]
    on_published: Callable[[Counter[tuple[str, str, str]]], None] | None
    on_delivery: Callable[[str, str, bool], None] | None

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
            flows: Counter[tuple[str, str, str]] = Counter()
            acks = [
                await self._resend(cid.encode(), entry, flows)
                for cid in in_flight.customers
                for entry in loaded[cid].unsent
            ]
            self._published(flows)
            await asyncio.gather(*acks)
        self.in_flight = None
        self.store.delivered(in_flight.customers)

    async def _resend(
        self, key: bytes, entry: bytes, flows: Counter[tuple[str, str, str]]
    ) -> Awaitable[Any]:
        """Send an outbox entry again: a change (counted in ``flows``), or an action
        message (to its topic)."""
        doc = orjson.loads(entry)
        if "change" in doc:
            sent = await self.send_change(key, orjson.dumps(doc["change"]))
            flow = flow_of(doc["change"])
            if flow is not None:
                flows[flow] += 1
            return sent
        action, channel = labels_of(doc["value"])
        if self.send_action is None:  # actions turned off since: keep the order, drop it
            log.warning("an unsent action message of %s is dropped: actions are off", key)
            self._delivered(action, channel, False)
            return _done()
        return await self._send_action(
            doc["topic"], key, orjson.dumps(doc["value"]), action, channel
        )

    async def _send_action(
        self, topic: str, key: bytes, body: bytes, action: str, channel: str
    ) -> Awaitable[Any]:
        """Send an action message; ``on_delivery`` is told (action id, channel, confirmed)
        when the broker answers, or at once if the send raised (it stays in the outbox)."""
        assert self.send_action is not None
        if self.on_delivery is None:
            return await self.send_action(topic, key, body)
        try:
            ack = await self.send_action(topic, key, body)
        except Exception:
            self._delivered(action, channel, False)
            raise
        if isinstance(ack, asyncio.Future):  # the producer's: a callback, no task
            ack.add_done_callback(functools.partial(self._acknowledged, action, channel))
            return ack
        return self._awaited(ack, action, channel)

    def _acknowledged(self, action: str, channel: str, ack: asyncio.Future[Any]) -> None:
        self._delivered(action, channel, not ack.cancelled() and ack.exception() is None)

    async def _awaited(self, ack: Awaitable[Any], action: str, channel: str) -> Any:
        try:
            result = await ack
        except BaseException:
            self._delivered(action, channel, False)
            raise
        self._delivered(action, channel, True)
        return result

    def _delivered(self, action: str, channel: str, confirmed: bool) -> None:
        if self.on_delivery is not None:
            try:
                self.on_delivery(action, channel, confirmed)
            except Exception:  # metrics never stop the stream
                log.exception("recording action metrics failed")

    def _published(self, flows: Counter[tuple[str, str, str]]) -> None:
        """Tell ``on_published`` of the changes a round sent, by (dimension, previous or
        "", current); a failure there is logged, never raised."""
        if flows and self.on_published is not None:
            try:
                self.on_published(flows)
            except Exception:  # metrics never stop the stream
                log.exception("recording change metrics failed")

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
            if not self.feed.admit(cid, vector, self.context().clusters):
                continue
            acks.append(await self.send_features(cid.encode(), orjson.dumps(vector)))


def labels_of(message: Any) -> tuple[str, str]:
    """(action id, channel) of an action message's JSON, as an outbox holds it.

    >>> labels_of({"channel": "email", "action": "win_back"})
    ('email/win_back', 'email')
    """
    try:
        channel = str(message["channel"])
        return f"{channel}/{message['action']}", channel
    except (KeyError, TypeError):
        return "unknown", "unknown"


def flow_of(change: Any) -> tuple[str, str, str] | None:
    """The flow of a change's JSON, as an outbox holds it (None: not a change).

    >>> flow_of({"dimension": "journey", "previous": None, "current": "cart"})
    ('journey', '', 'cart')
    """
    try:
        return (str(change["dimension"]), change.get("previous") or "", str(change["current"]))
    except (KeyError, TypeError, AttributeError):
        return None
