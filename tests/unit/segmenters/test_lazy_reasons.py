"""segment_changes writes a reason only for a dimension that changed, and scores the
behaviour dimension from a feature row: it must record exactly what the full evaluation
(``evaluate`` and ``evaluate_custom``, every reason written) says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.changes import SegmentChange
from segmenters.clustering import Cluster, ClusterModel
from segmenters.clv.model import ClvModel
from segmenters.config import EngineConfig
from segmenters.core import Context, evaluate, segment_changes
from segmenters.dimensions.custom import evaluate_custom, parse_segments
from segmenters.dimensions.rfm import RfmQuantiles, bucket
from segmenters.dimensions.value import ValueQuantiles, ranked_clv, score
from segmenters.features import FEATURES, feature_row, feature_vector
from segmenters.state import CustomerState

DAY = 86400.0
T0 = 1767225600.0
CFG = EngineConfig()
MODEL = ClusterModel(
    version=3,
    features=FEATURES,
    mean={f: 0.5 for f in FEATURES},
    std={f: 1.0 for f in FEATURES},
    clusters=tuple(
        Cluster(i, {f: (i * 0.7 + j * 0.13) % 2.0 for j, f in enumerate(FEATURES)}, 5, f"c{i}")
        for i in (0, 2, 5)
    ),
)
RULES = parse_segments(
    'version = "t"\n[segments.big]\nrule = "revenue >= 100 and orders >= 2"\n'
    "[segments.cart]\nrule = \"journey == 'active_cart' or cart_value > 50\"\n"
)
CTX = Context(
    rfm=RfmQuantiles((1.0, 3.0, 9.0, 30.0), (1.0, 1.0, 2.0, 3.0), (20, 50, 90, 200), 40, T0),
    clusters=MODEL,
    custom=RULES,
)

#: Segments a state may already hold, per dimension (including a cluster the model lacks).
PREVIOUS = {
    "journey": ["browser", "active_cart", "loyal"],
    "behaviour": ["cluster_0", "cluster_2", "cluster_9"],
    "rfm": ["loyal", "new"],
    "custom:big": ["member", "non_member"],
    "custom:cart": ["member"],
    "value": ["top", "low", "churned"],
}
CLV = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, version=2)
VALUE = ValueQuantiles(cuts=(bucket(60.0), bucket(30.0), bucket(10.0)), buyers=50)
days = st.integers(int(T0 // DAY) - 400, int(T0 // DAY) + 400).map(str)
times = st.floats(T0 - 400 * DAY, T0 + 400 * DAY)
maybe_time = st.none() | times


@st.composite
def states(draw: Any) -> CustomerState:
    orders = draw(st.integers(0, 6))
    cart = {
        f"s{i}": [q, draw(st.none() | st.floats(0, 300)), [[draw(times), q]]]
        for i, q in enumerate(draw(st.lists(st.integers(1, 3), max_size=3)))
    }
    return CustomerState(
        "c-1",
        first_seen=draw(maybe_time),
        last_seen=draw(maybe_time),
        orders=orders,
        revenue=draw(st.floats(-50, 5000)),
        items=draw(st.integers(0, 20)),
        last_order_at=draw(times) if orders else None,
        views=draw(st.none() | st.tuples(st.floats(0, 50), times).map(list)),
        cart=cart,
        cart_at=draw(maybe_time),
        devices=draw(st.dictionaries(st.sampled_from(["mobile", "desktop"]), st.integers(0, 9))),
        geo=draw(st.sampled_from([{}, {"country": "DE"}, {"country": "FR", "region": "Paris"}])),
        profile=draw(
            st.sampled_from(
                [
                    {},
                    {"birth_year": 1990, "gender": "F/x"},
                    {"income_band": "high", "country": "AT"},
                ]
            )
        ),
        buy_days=draw(st.dictionaries(days, st.floats(0, 500), max_size=5)),
        segments={
            dimension: [draw(st.sampled_from(values)), T0]
            for dimension, values in PREVIOUS.items()
            if draw(st.booleans())
        },
    )


def _reference(
    state: CustomerState, now: float, ctx: Context
) -> list[tuple[str, str | None, str, str]]:
    """(dimension, previous, current, reason) of every change, each reason written; and
    the CLV the buyer is ranked with, which the value dimension keeps in the state."""
    out = []
    if ctx.clv is not None and state.buy_days:
        scored = score(state, now, ctx.clv, ctx.clv_horizon_days)
        state.clv = None if scored is None else ranked_clv(scored[1], CFG.value)
    for segments in (evaluate(state, now, CFG, ctx), None):
        if segments is None:
            segments = evaluate_custom(state, now, ctx.custom)
        for dimension, (segment, reason) in segments.items():
            previous = state.segment(dimension)
            if segment != previous:
                state.enter(dimension, segment, now)
                out.append((dimension, previous, segment, reason))
    return out


@settings(max_examples=300, deadline=None)
@given(states(), times, st.floats(0.0, 0.5))
def test_lazy_changes_equal_the_full_evaluation(
    state: CustomerState, now: float, margin: float
) -> None:
    ctx = Context(
        rfm=CTX.rfm, clusters=MODEL, custom=RULES, cluster_margin=margin, clv=CLV, value=VALUE
    )
    expected_state = state.copy()
    expected = _reference(expected_state, now, ctx)
    got = segment_changes(state, now, CFG, ctx)
    assert [(c.dimension, c.previous, c.current, c.reason) for c in got] == expected
    assert state.to_doc() == expected_state.to_doc()


@given(states(), times)
def test_feature_row_is_the_vector_in_order(state: CustomerState, now: float) -> None:
    assert feature_row(state, now) == [feature_vector(state, now)[f] for f in FEATURES]


@given(st.lists(st.floats(-3, 3), min_size=len(FEATURES), max_size=len(FEATURES)))
def test_assign_row_picks_what_assign_picks(row: list[float]) -> None:
    for previous in (None, 0, 2, 7):
        a = MODEL.assign(dict(zip(FEATURES, row, strict=True)), previous)
        cluster, d = MODEL.assign_row(row, previous)
        assert cluster == a.cluster
        assert MODEL.explain(d, previous, 0.1) == a


def test_make_sets_what_model_construct_sets() -> None:
    made = SegmentChange.make(
        customer_id="c",
        dimension="rfm",
        previous=None,
        current="new",
        at=T0,
        reason="r",
        position=2,
        rescored=True,
    )
    built = SegmentChange.model_construct(
        change_id=made.change_id,
        customer_id="c",
        dimension="rfm",
        previous=None,
        current="new",
        changed_at=datetime.fromtimestamp(T0, UTC),
        reason="r",
        rescored=True,
    )
    assert list(made.__dict__.items()) == list(built.__dict__.items())
    assert made.model_fields_set == built.model_fields_set
    assert made.__pydantic_extra__ is None and made.__pydantic_private__ is None


@given(
    st.lists(
        st.floats() | st.sampled_from([1e308, -1e308]),
        min_size=len(FEATURES),
        max_size=len(FEATURES),
    )
)
def test_assign_row_picks_what_assign_picks_for_any_value(row: list[float]) -> None:
    # non-finite values (and finite ones whose sum overflows) take the per-value path
    for previous in (None, 0, 2):
        a = MODEL.assign(dict(zip(FEATURES, row, strict=True)), previous)
        cluster, d = MODEL.assign_row(row, previous)
        assert cluster == a.cluster
        assert MODEL.explain(d, previous, 0.1) == a
