"""The baseline: a stock Faust app with a no-op agent, run as its own process."""

from __future__ import annotations

import sys
from typing import Any

from streams.kafka.topics import INPUTS
from streams.settings import Settings


def baseline_main() -> None:
    """A stock Faust worker whose agent takes batches of 500 and does nothing.

    Stock: Faust's own consumer settings (fetch sizes, message-by-message delivery),
    none of segstream's. Set only what connecting needs (broker, credentials), raw
    serializers (no decoding is measured), reading from the start, no web server, the
    data directory out of the working tree, and the engine's commit interval: progress
    is read from committed offsets for both, so both must commit as often.
    """
    import faust

    from streams.kafka.clients import faust_broker

    settings = Settings()
    datadir = settings.cache_dir / "faust-baseline"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        **faust_broker(settings),
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval_s,
        web_enabled=False,
        datadir=str(datadir),
    )
    source = app.topic(*(settings.topic(name) for name in INPUTS))

    @app.agent(source, name=f"{settings.app_id}.noop", concurrency=1)
    async def noop(stream: Any) -> None:
        async for _events in stream.take_events(500, within=settings.batch_window_s):
            pass

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":  # pragma: no cover
    sys.argv = sys.argv[:1] + ["worker"]
    baseline_main()
