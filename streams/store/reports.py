"""The uplift report's records: an experiment's first assignments and suppression counts
(kept per partition next to the segment indexes) and the purchases in its customers'
action documents.

Read with a blocking client: the report runs in the CLI, or off the worker's event loop
(``streams.worker.actions.uplift_rows``), and its reads grow with the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson

from segmenters.actions.uplift import Assignment, Group, Purchase
from streams.kafka.partitioner import partition_for
from streams.store.keys import assigned_key, experiment_actions_key, state_key, suppressed_key


@dataclass(frozen=True, slots=True)
class ExperimentRecords:
    assignments: list[Assignment]
    purchases: list[Purchase]
    suppressions: list[tuple[str, str]]


def experiment_records(
    client: Any, prefix: str, partitions: int, experiment: str, chunk: int = 2000
) -> ExperimentRecords:
    """The decision records and purchases of an experiment, every partition's (sync client).

    Cost: three pipelined reads, then one per ``chunk`` assigned customers.
    """
    parts = range(partitions)
    pipe = client.pipeline(transaction=False)
    for p in parts:
        pipe.smembers(experiment_actions_key(prefix, p, experiment))
    actions = sorted({m.decode() for row in pipe.execute() for m in row})
    pipe = client.pipeline(transaction=False)
    for p in parts:
        for a in actions:
            pipe.hgetall(assigned_key(prefix, p, experiment, a))
        pipe.hgetall(suppressed_key(prefix, p, experiment))
    rows = pipe.execute()
    assignments = []
    suppressions = []
    per = len(actions) + 1
    for i in range(0, len(rows), per):
        for a, row in zip(actions, rows[i : i + per - 1], strict=True):
            for cid, value in row.items():
                group, at = value.decode().split(" ")
                assignments.append(Assignment(cid.decode(), a, cast(Group, group), float(at)))
        for k, n in rows[i + per - 1].items():
            action, reason = k.decode().rsplit(" ", 1)
            suppressions.extend([(action, reason)] * int(n))
    customers = sorted({a.customer_id for a in assignments})
    purchases = []
    for i in range(0, len(customers), chunk):
        part = customers[i : i + chunk]
        pipe = client.pipeline(transaction=False)
        for cid in part:
            pipe.hget(state_key(prefix, partition_for(cid, partitions), cid), "act")
        for cid, raw in zip(part, pipe.execute(), strict=True):
            purchases.extend(action_purchases(cid, raw))
    return ExperimentRecords(assignments, purchases, suppressions)


def action_purchases(customer_id: str, raw: bytes | str | None) -> list[Purchase]:
    """The purchases kept in a customer's action document (field ``act``; JSON), read
    without building the whole document: the report reads one per assigned customer."""
    if not raw:
        return []
    return [
        Purchase(customer_id, float(at), float(amount))
        for _order, at, amount in orjson.loads(raw).get("buys", [])
    ]
