"""Synthetic shop traffic: a deterministic generator and a paced Kafka producer.

Modules: ``catalog`` (what the shop sells, who its customers are), ``personas`` (how
each behaves), ``customers``, ``sessions`` (a visit's events), ``generate`` (every
customer's events in event time), ``produce`` (``segstream simulate``).

:func:`generate` is pure: customers, seed, start time, duration and rate in, contract-v1
event dicts out (JSON-ready, ``occurred_at`` as ISO-8601 with ``Z``), in non-decreasing
``occurred_at`` order. The same arguments always give the same events. It never reads the
clock and does no I/O.

Every customer gets one persona from a fixed mix (:data:`PERSONA_MIX`); the persona shapes
sessions, baskets, devices and buying frequency but never appears in the events. It is the
ground truth for scoring the behaviour clustering: :func:`persona_of`, :func:`personas`, or
the ``truth`` argument of :func:`generate`.

:func:`simulate` sends the generated events to Kafka, paced in real time (event time is
wall time), and returns a :class:`SimulationStats`.

>>> from datetime import UTC, datetime, timedelta
>>> events = list(generate(3, seed=1, start=datetime(2026, 11, 22, tzinfo=UTC),
...                        duration_s=2, rate=10))
>>> len(events), events[0]["type"], events[0]["occurred_at"][:19], events[-1]["occurred_at"][:19]
(20, 'profile', '2026-11-22T00:00:00', '2026-11-22T00:00:01')
"""

from streams.tools.simulate.catalog import CATALOG, CURRENCY, PERSONA_MIX, PERSONAS, UNPACED_RATE
from streams.tools.simulate.generate import generate
from streams.tools.simulate.personas import customer_id, persona_of, personas
from streams.tools.simulate.produce import SimulationStats, simulate

__all__ = [
    "CATALOG",
    "CURRENCY",
    "PERSONAS",
    "PERSONA_MIX",
    "UNPACED_RATE",
    "SimulationStats",
    "customer_id",
    "generate",
    "persona_of",
    "personas",
    "simulate",
]
