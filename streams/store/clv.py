"""The value models in Redis: the latest snapshot, and the buyers' summaries to fit on.

One snapshot key (``<prefix>:model:clv``, JSON of ``segmenters.clv.ClvModel`` with its
version), written by whoever fits (the worker's trainer, ``segstream clv --fit``) and read
by every worker and look-up. The summaries come from each buyer's stored purchase days
(state ``buy_days``/``refund_days``), T counted to a day the caller gives per partition.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from segmenters.clv import Summary
from segmenters.clv.model import ClvModel
from segmenters.clv.summary import net_days, summary_at
from segmenters.state import CustomerState
from streams.settings import Settings
from streams.store.clients import redis_client
from streams.store.documents import load_doc
from streams.store.keys import clv_model_key, clv_version_key, customer_of


def model_of(raw: bytes | str | None) -> ClvModel | None:
    """A stored snapshot, or None if there is none."""
    return None if raw is None else ClvModel.model_validate(orjson.loads(raw))


async def load_clv_model(client: Any, prefix: str) -> ClvModel | None:
    """The latest snapshot (asyncio client)."""
    return model_of(await client.get(clv_model_key(prefix)))


def read_clv_model(settings: Settings) -> ClvModel | None:
    """The latest snapshot (blocking, for the command line)."""
    client = redis_client(settings)
    try:
        return model_of(client.get(clv_model_key(settings.key_prefix)))
    finally:
        client.close()


#: Hands out the next version and stores the snapshot with it, in one step: two fits
#: published at once (the worker's trainer and ``segstream clv --fit``) get two numbers,
#: and the stored snapshot is always the one with the highest.
PUBLISH_LUA = """
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. v .. ARGV[2])
return v
"""


def save_clv_model(settings: Settings, model: ClvModel) -> ClvModel:
    """Publish a snapshot under the next version (blocking; the fit runs off the event
    loop anyway); returns it with that version. ``model.version`` is ignored."""
    body = model.model_copy(update={"version": 0}).model_dump_json()
    tail = '"version":0}'
    if not body.endswith(tail):  # pydantic dumps fields in declaration order
        raise RuntimeError("ClvModel's JSON no longer ends with its version")
    keys = [clv_model_key(settings.key_prefix), clv_version_key(settings.key_prefix)]
    client = redis_client(settings)
    try:
        version = int(client.eval(PUBLISH_LUA, 2, *keys, body[: -len("0}")], "}"))
    finally:
        client.close()
    return model.model_copy(update={"version": version})


#: A buyer's summary at a day: the core's, so a look-up, a fit and a message agree.
summary_of = summary_at


T_ = TypeVar("T_")


def sample_buyers(
    settings: Settings,
    pick: Callable[[int, CustomerState], T_ | None],
    *,
    sample: int,
    seed: int = 0,
) -> list[T_]:
    """``pick(partition, state)`` of every stored customer it does not refuse (None), or
    of a uniform sample of ``sample`` of them (reservoir). One SCAN over the state keys
    and pipelined reads of 500 documents at a time."""
    client = redis_client(settings)
    rng = random.Random(seed)
    out: list[T_] = []
    seen = 0
    pending: list[tuple[int, str]] = []

    def flush() -> None:
        nonlocal seen
        pipe = client.pipeline(transaction=False)
        for _, key in pending:
            pipe.hget(key, "doc")
        for (partition, _), doc in zip(pending, pipe.execute(), strict=True):
            if doc is None:
                continue
            picked = pick(partition, CustomerState.from_doc(load_doc(doc) or {}))
            if picked is None:
                continue
            seen += 1
            if len(out) < sample:
                out.append(picked)
            else:
                j = rng.randrange(seen)
                if j < sample:
                    out[j] = picked
        pending.clear()

    try:
        pattern = f"{settings.key_prefix}:{{p*}}:c:*:state"
        for raw in client.scan_iter(match=pattern, count=1000):
            key = raw.decode()
            owner = customer_of(settings.key_prefix, key)
            if owner is None:
                continue
            pending.append((owner[0], key))
            if len(pending) >= 500:
                flush()
        if pending:
            flush()
    finally:
        client.close()
    return out


def buyer_summaries(
    settings: Settings, today_of: Callable[[int], int], *, sample: int, seed: int = 0
) -> list[Summary]:
    """Every buyer's summary, or a uniform sample of ``sample`` of them, with T counted
    to ``today_of(partition)``."""
    return sample_buyers(
        settings, lambda p, state: summary_of(state, today_of(p)), sample=sample, seed=seed
    )


def buyer_days(settings: Settings, *, sample: int, seed: int = 0) -> list[dict[int, float]]:
    """Every buyer's purchase days net of refunds (day -> value), or a uniform sample."""
    return sample_buyers(
        settings,
        lambda _, state: net_days(state.buy_days, state.refund_days) or None,
        sample=sample,
        seed=seed,
    )
