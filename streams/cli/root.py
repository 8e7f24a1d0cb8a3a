"""The ``segstream`` group: settings, logging and ``--verbose``, shared by every command."""

from __future__ import annotations

import logging

import click

from streams.cli.errors import SegstreamGroup, check_services, load_settings
from streams.settings import Settings


def _settings(*, kafka: bool = False, redis: bool = False) -> Settings:
    """The settings, and a quick check that the services the command needs (``kafka``,
    ``redis``) answer: a wrong setting or an absent service fails in seconds, in one line."""
    settings = load_settings()
    check_services(settings, kafka=kafka, redis=redis)
    return settings


#: Client libraries whose INFO lines (connections, metadata, group joins) are noise in a
#: command's output; ``--verbose`` shows them.
QUIET_LIBRARIES = {"kafka": logging.WARNING, "aiokafka": logging.WARNING}
#: kafka-python warns when one of its own tasks takes over 0.1 s, which a busy 2-core
#: machine does all the time; it says nothing about segstream.
QUIET_LOGGERS = {"kafka.net.selector": logging.ERROR}


@click.group(cls=SegstreamGroup)
@click.option("-v", "--verbose", is_flag=True, help="Show the client libraries' INFO logs.")
def main(verbose: bool) -> None:
    """segstream: real-time customer segmentation on Kafka and Redis."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not verbose:
        for name, level in {**QUIET_LIBRARIES, **QUIET_LOGGERS}.items():
            logging.getLogger(name).setLevel(level)
