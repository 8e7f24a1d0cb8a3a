"""``segstream`` command line: services, worker, simulator, look-ups and tools.

``root`` holds the group; each module adds its commands: ``dev`` (local services),
``runtime`` (worker, collector, topics, lag, erase, migrate, clocks), ``lookups``
(customer, segments, clusters, watch), ``retention`` (actions), ``tools`` (simulate,
verify, replay, bench), ``value`` (clv).
"""

from streams.cli import dev, lookups, retention, runtime, tools, value
from streams.cli.root import main

__all__ = ["dev", "lookups", "main", "retention", "runtime", "tools", "value"]
