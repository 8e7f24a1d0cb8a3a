"""A worker whose one agent receives whole fetches (``streams.worker.delivery``) of one topic and
writes, per batch, its (partition, offset, generation) triples as a JSON line; assignments
and revocations are written too, in the order the worker saw them.

Run as ``python -m tests.integration.delivery_app OUT TOPIC SLEEP_S`` with ``SEGSTREAM_*``
settings in the environment (app id = consumer group).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson


def main(out_path: str, topic_name: str, sleep_s: float) -> None:
    import faust

    from streams.settings import Settings
    from streams.worker import delivery
    from streams.worker.app import faust_app

    settings = Settings()
    app = faust_app(settings, datadir=f"faust-{settings.app_id}", web=False)
    out = open(out_path, "ab", buffering=0)  # noqa: SIM115 - the worker's lifetime

    def write(**line: Any) -> None:
        out.write(orjson.dumps(line) + b"\n")

    source = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    batches = delivery.fetch_batches(app, source)
    assert batches is not None

    @app.agent(source, name=f"{settings.app_id}.sink", concurrency=1)
    async def sink(stream: Any) -> None:
        async for messages in batches:
            write(batch=[[m.partition, m.offset, m.generation_id] for m in messages])
            if sleep_s:
                await asyncio.sleep(sleep_s)

    @app.on_partitions_assigned.connect
    async def assigned(_app: Any, assigned: Any, **_kw: Any) -> None:
        parts = sorted(tp.partition for tp in assigned if tp.topic == topic_name)
        write(assigned=parts, generation=app.consumer_generation_id)

    @app.on_partitions_revoked.connect
    async def revoked(_app: Any, revoked: Any, **_kw: Any) -> None:
        parts = sorted(tp.partition for tp in revoked if tp.topic == topic_name)
        write(revoked=parts, generation=app.consumer_generation_id)

    faust.Worker(app, loglevel="INFO", quiet=True).execute_from_commandline()


if __name__ == "__main__":  # pragma: no cover
    out_path, topic_name, sleep_s = sys.argv[1:4]
    sys.argv = sys.argv[:1]
    main(out_path, topic_name, float(sleep_s))
