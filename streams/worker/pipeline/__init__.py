"""One batch, end to end: parse, dead-letter, load state, fold, write, publish.

Kept apart from Faust so the benchmark and the tests drive exactly the code the agent
runs. The order of effects is what makes redelivery safe:

1. state, the offsets applied and an outbox of the new changes are written atomically
   per customer, then
2. changes are sent; the next batch's write waits for their delivery (the broker's
   acknowledgements arrive while that batch is parsed, loaded and folded), then empties
   those outboxes, and only then sends its own: a customer's messages stay in order,
3. Faust commits the offsets of a batch once its sends are acknowledged.

A crash between 1 and 3 redelivers the batch: its events are skipped as already
applied. A worker that loads a customer from Redis first re-sends what is left in its
outbox, before any new change, with the same ``change_id``: every change reaches the
topic, in order, at least once.

Modules: ``processor`` (``BatchProcessor``), ``records`` (valid input, dead letters),
``outcomes`` (counters, a customer's outcome and its encoded change and outbox), ``sending``
(sends and their acknowledgements). What a write does to the partition's shared indexes
(index and histogram moves, member set, due time, uplift records) is computed by the
pure core, ``segmenters.effects``.
"""

from streams.worker.pipeline.outcomes import (
    BatchStats,
    InFlight,
    Outcome,
    change_json,
    outbox_entries,
)
from streams.worker.pipeline.processor import MAX_CONFLICT_RETRIES, BatchProcessor
from streams.worker.pipeline.records import (
    NO_ACTIONS_HEADER,
    Record,
    Send,
    SendTo,
    deadletter_record,
    no_actions_of,
    parse_record,
)

__all__ = [
    "MAX_CONFLICT_RETRIES",
    "NO_ACTIONS_HEADER",
    "BatchProcessor",
    "BatchStats",
    "InFlight",
    "Outcome",
    "Record",
    "Send",
    "SendTo",
    "change_json",
    "deadletter_record",
    "no_actions_of",
    "outbox_entries",
    "parse_record",
]
