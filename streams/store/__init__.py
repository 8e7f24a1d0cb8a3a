"""Customer state in Redis: batched loads and optimistic, atomic writes.

A worker owns a customer's partition, so it keeps recently used states in memory and a
steady-state batch costs one Redis round trip: a pipeline of ``commit`` scripts. Each
script writes the new state only if the stored revision is still the one the worker
computed from (compare-and-set); otherwise it returns the stored state and the worker
recomputes. Misses cost one more round trip, a pipelined read, once per customer.

Modules: ``state_store`` (loads, writes, progress), ``scripts`` (the Lua), ``documents``
(the stored forms), ``queries`` (the read model of the API, the CLI and the dashboard:
look-ups, segment sizes and members), ``series`` (the dashboard's sizes and flows over
time), ``reports`` (the uplift report's records).
"""

from streams.store.documents import (
    DOC_ZDICT_V1,
    DOC_ZSTD_V1,
    ZDICT_V1,
    _decode,
    _encode,
    decode_actions,
    encode_state,
    load_doc,
)
from streams.store.queries import segment_sizes
from streams.store.scripts import COMMIT_LUA, LOAD_LUA, OUTBOX_KEEP
from streams.store.state_store import (
    Loaded,
    ProgressLost,
    Rejected,
    StateStore,
    Write,
    by_partition_number,
    progress_arg,
)

__all__ = [
    "COMMIT_LUA",
    "DOC_ZDICT_V1",
    "DOC_ZSTD_V1",
    "LOAD_LUA",
    "OUTBOX_KEEP",
    "ZDICT_V1",
    "Loaded",
    "ProgressLost",
    "Rejected",
    "StateStore",
    "Write",
    "_decode",
    "_encode",
    "by_partition_number",
    "decode_actions",
    "encode_state",
    "load_doc",
    "progress_arg",
    "segment_sizes",
]
