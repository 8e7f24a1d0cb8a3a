"""The reads behind ``segstream segments report`` and ``GET /api/report``; the figures are
computed by ``segmenters.reports.segment_report``.

Cost, for S segments over P partitions and a sample of N members per segment: one
round trip for the sizes' registries and one for their counts, a few for the window's
first sizes record, the flows and the entry times, then ``SSCAN`` pages of every
(segment, partition) pipelined in rounds until each segment has N members or none left,
then one pipelined ``HGET`` of the state document per 1,000 distinct members. Nothing
scans the key space, and no read grows with the customers beyond ``S x N``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from segmenters.clv.model import ClvModel
from segmenters.reports import ReportInputs, ReportRules, segment_report
from streams.kafka.partitioner import partition_for
from streams.store.clocks import watermarks_of
from streams.store.clv import model_of
from streams.store.documents import _decode, _text
from streams.store.keys import clock_key, clv_model_key, index_key, state_key
from streams.store.series import MAX_FLOW_WINDOW_S, first_sizes_since, read_entered, read_flows

#: Members read per ``SSCAN`` page, and states per pipelined batch.
SCAN_PAGE = 1000
STATE_BATCH = 1000


async def sample_members(
    client: Any,
    prefix: str,
    partitions: int,
    segments: Iterable[tuple[str, str]],
    sample: int,
) -> dict[tuple[str, str], list[str]]:
    """Up to ``sample`` members of each segment: the partitions' indexes walked with
    ``SSCAN``, every (segment, partition) scan of a round in one pipeline."""
    out: dict[tuple[str, str], list[str]] = {seg: [] for seg in segments}
    cursors: dict[tuple[tuple[str, str], int], int] = {
        (seg, p): 0 for seg in out for p in range(partitions)
    }
    while cursors:
        todo = [(seg, p) for (seg, p) in cursors if len(out[seg]) < sample]
        if not todo:
            break
        pipe = client.pipeline(transaction=False)
        for (d, s), p in todo:
            pipe.sscan(index_key(prefix, p, d, s), cursor=cursors[((d, s), p)], count=SCAN_PAGE)
        for (seg, p), (cursor, found) in zip(todo, await pipe.execute(), strict=True):
            room = sample - len(out[seg])
            out[seg].extend(_text(m) for m in list(found)[: max(room, 0)])
            if int(cursor) == 0:
                del cursors[(seg, p)]
            else:
                cursors[(seg, p)] = int(cursor)
    return out


async def state_docs(
    client: Any, prefix: str, partitions: int, customers: Sequence[str]
) -> dict[str, bytes]:
    """customer -> stored state document (compressed), pipelined in batches."""
    out: dict[str, bytes] = {}
    for i in range(0, len(customers), STATE_BATCH):
        part = customers[i : i + STATE_BATCH]
        pipe = client.pipeline(transaction=False)
        for cid in part:
            pipe.hget(state_key(prefix, partition_for(cid, partitions), cid), "doc")
        for cid, raw in zip(part, await pipe.execute(), strict=True):
            if raw:
                out[cid] = raw
    return out


async def read_report(
    client: Any,
    prefix: str,
    partitions: int,
    *,
    sizes: dict[tuple[str, str], int],
    rules: ReportRules,
    now: float,
    clock_of: Any,
    dimension: str | None = None,
) -> dict[str, Any]:
    """The report over ``rules.window_s`` up to ``now`` (wall time). ``sizes`` are the
    segments' sizes now; ``clock_of(partition, watermarks)`` gives a partition's clock as
    the look-up counts it. Decoding and scoring run in a thread."""
    if dimension is not None:
        sizes = {k: n for k, n in sizes.items() if k[0] == dimension}
    window_s = rules.window_s
    start = await first_sizes_since(client, prefix, now - window_s)
    flows_window_s = min(window_s, MAX_FLOW_WINDOW_S)
    flows = await read_flows(client, prefix, flows_window_s, now)
    last_entry, entries_since = await read_entered(client, prefix)
    pipe = client.pipeline(transaction=False)
    pipe.get(clv_model_key(prefix))
    pipe.hgetall(clock_key(prefix))
    raw_model, marks = await pipe.execute()
    model: ClvModel | None = model_of(raw_model)
    watermarks = watermarks_of(marks)
    members = await sample_members(client, prefix, partitions, sizes, rules.sample)
    customers = sorted({cid for row in members.values() for cid in row})
    docs = await state_docs(client, prefix, partitions, customers)
    clocks = {p: clock_of(p, watermarks) for p in range(partitions)}

    def build() -> dict[str, Any]:
        states = {}
        for cid, raw in docs.items():
            state = _decode(raw)
            if state is not None:
                states[cid] = state
        inputs = ReportInputs(
            now=now,
            sizes=sizes,
            start=start,
            flows=flows["flows"],
            flows_window_s=flows_window_s,
            last_entry=last_entry,
            entries_since=entries_since,
            members=members,
            states=states,
            clocks={cid: clocks[partition_for(cid, partitions)] for cid in states},
            model=model,
        )
        return segment_report(inputs, rules)

    return await asyncio.to_thread(build)
