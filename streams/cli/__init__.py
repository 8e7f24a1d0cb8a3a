"""``segstream`` command line: services, worker, simulator, look-ups and tools.

``root`` holds the group; each module adds its commands: ``dev`` (local services),
``runtime`` (worker, collector, topics, lag, erase, migrate, clocks), ``lookups``
(customer, segments, clusters, watch), ``retention`` (actions), ``tools`` (simulate,
verify, replay, bench), ``value`` (clv), ``deadletters`` (top, show, redrive).
"""

from streams.cli import deadletters, dev, lookups, retention, runtime, tools, value
from streams.cli.root import main

__all__ = ["deadletters", "dev", "lookups", "main", "retention", "runtime", "tools", "value"]
