"""The stored document's encoding: compact, lossless, and pinned."""

from __future__ import annotations

import hashlib
import zlib

import orjson
from hypothesis import given
from hypothesis import strategies as st

from segmenters.state import CustomerState
from streams.store import DOC_ZSTD_V1, ZDICT_V1, _encode, load_doc
from tests.unit.factories import Events
from tests.unit.segmenters.test_core import run


def busy_state() -> CustomerState:
    e = Events()
    docs = (
        [e.profile(birth_year=1980, country="GB")]
        + [e.add(f"S{i}", i) for i in range(5)]
        + [e.purchase(f"o{i}", [f"S{i}"], 10 + i) for i in range(5)]
    )
    return run(docs).state


def test_round_trip_and_size() -> None:
    state = busy_state()
    raw = _encode(state)
    assert raw[:1] == DOC_ZSTD_V1
    assert CustomerState.from_doc(load_doc(raw) or {}) == state
    assert len(raw) < len(orjson.dumps(state.to_doc())) / 2


def test_older_encodings_still_read() -> None:
    state = busy_state()
    plain = orjson.dumps(state.to_doc())
    c = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, ZDICT_V1)
    deflated = b"\x01" + c.compress(plain) + c.flush()  # tag 1: before zstd
    assert load_doc(plain) == load_doc(zlib.compress(plain)) == load_doc(_encode(state))
    assert load_doc(deflated) == load_doc(plain)
    assert load_doc(None) is None and load_doc(b"") is None


def test_dictionary_is_pinned() -> None:
    """Documents in Redis were compressed with it: a change needs a new tag byte."""
    assert hashlib.sha256(ZDICT_V1).hexdigest()[:16] == "4b81af56e2746bc4"


@given(st.text(max_size=40), st.integers(0, 10**6), st.floats(0, 1e6, allow_nan=False))
def test_any_state_round_trips(cid: str, events: int, revenue: float) -> None:
    state = CustomerState(cid, events=events, revenue=revenue, profile={"city": cid})
    assert CustomerState.from_doc(load_doc(_encode(state)) or {}) == state
