from segmenters.config import EngineConfig
from segmenters.core import Context, Source, fold, rescore
from segmenters.dimensions.rfm import RfmQuantiles
from segmenters.state import CustomerState
from segmenters.verify import adjusted_rand_index, compare, exact_quantiles, render
from tests.unit.factories import T0, Events, ev

CFG = EngineConfig()


def states():
    e, f = Events("c-1"), Events("c-2")
    a = fold(None, "c-1", [(ev(e.purchase("o", ["A"], 0)), Source("x", 0, 0))], config=CFG).state
    b = fold(None, "c-2", [(ev(f.add("B", 0)), Source("x", 0, 1))], config=CFG).state
    return {"c-1": a, "c-2": b}


def test_identical_states_agree_fully():
    offline = states()
    report = compare(states(), offline, {c: T0.timestamp() for c in offline}, T0.timestamp())
    assert report.ok
    assert report.dimensions["journey"].share == 1.0
    assert "verdict: OK" in render(report)


def test_a_lost_event_is_reported_with_the_field_and_fails():
    offline = states()
    stored = states()
    stored["c-1"].orders = 0
    stored["c-1"].segments["journey"] = ["browser", 0.0]
    del stored["c-2"]
    report = compare(stored, offline, {c: T0.timestamp() for c in offline}, T0.timestamp())
    assert not report.ok
    assert report.missing == ["c-2"]
    assert report.field_mismatches["orders"] == 1
    assert report.dimensions["journey"].agree == 0
    assert "MISMATCH" in render(report)


def test_exact_quantiles_are_inverse_cdf():
    assert exact_quantiles([5.0]) == (5.0, 5.0, 5.0, 5.0)
    assert exact_quantiles([]) == (0.0, 0.0, 0.0, 0.0)


def test_ari_is_label_free_and_drops_for_disagreement():
    assert adjusted_rand_index([1, 1, 2, 2], ["a", "a", "b", "b"]) == 1.0
    assert adjusted_rand_index([1, 1, 2, 2], [1, 2, 1, 2]) < 0.01


def test_rescore_follows_new_quantiles_without_an_event():
    s = CustomerState("c", orders=5, revenue=500.0, last_order_at=0.0, eval_at=0.0)
    low = RfmQuantiles((1, 2, 3, 4), (1, 2, 3, 4), (10, 20, 30, 40), 10, 0.0)
    high = RfmQuantiles((1, 2, 3, 4), (10, 20, 30, 40), (1e3, 2e3, 3e3, 4e3), 10, 0.0)
    first = rescore(s, 0.0, config=CFG, ctx=Context(rfm=low)).state
    assert first.segment("rfm") == "champions"
    moved = rescore(first, 1.0, config=CFG, ctx=Context(rfm=high))
    assert [(c.previous, c.current) for c in moved.changes if c.dimension == "rfm"] == [
        ("champions", "new")
    ]


def test_erased_customers_are_listed_apart_not_called_a_mismatch():
    offline = states()
    clocks = {c: T0.timestamp() for c in offline}
    stored = states()
    del stored["c-2"]  # erased: gone from Redis, still in the input topics
    assert not compare(stored, offline, clocks, T0.timestamp()).ok  # unknown: a mismatch
    report = compare(stored, offline, clocks, T0.timestamp(), erased={"c-2", "c-never"})
    assert report.ok and report.erased == ["c-2"] and report.missing == []
    assert report.dimensions["journey"].compared == 1
    text = render(report)
    assert "erased (not compared): 1: c-2" in text and "verdict: OK" in text
    # erased, then back with later events: listed apart too, not compared
    back = states()
    back["c-2"].orders = 7
    report = compare(back, offline, clocks, T0.timestamp(), erased={"c-2"})
    assert report.ok and report.erased == ["c-2"] and not report.field_mismatches
