"""Segment changes built without validation still satisfy the contract."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from segmenters.changes import SegmentChange
from streams.worker.pipeline import change_json

names = st.text(min_size=1, max_size=20)


@given(
    names,
    names,
    st.none() | names,
    names,
    st.floats(0, 4e9, allow_nan=False),
    st.text(max_size=40),
)
def test_fast_json_equals_the_validated_model(cid, dim, prev, cur, at, reason) -> None:
    change = SegmentChange.make(
        customer_id=cid,
        dimension=dim,
        previous=prev,
        current=cur,
        at=at,
        reason=reason,
        position=1,
    )
    validated = SegmentChange.model_validate(change.model_dump())
    assert validated == change
    assert orjson.loads(change_json(change)) == validated.model_dump(mode="json")
    assert SegmentChange.model_validate_json(change_json(change)) == change
