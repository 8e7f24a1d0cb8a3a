"""The bench's value-model part: synthetic buyers from the model's own processes, the
scoring figures and their rows in the report."""

from __future__ import annotations

import doctest

import pytest

from segmenters.clv.model import fit_model
from segmenters.clv.summary import summary_at
from streams.tools.bench import Results, render
from streams.tools.bench import value as bench_value
from streams.tools.bench.value import (
    CDNOW,
    ValueCost,
    render_value,
    scoring_cost,
    synthetic_buyers,
    value_cost,
)


def test_doctests() -> None:
    assert doctest.testmod(bench_value).failed == 0


def test_synthetic_buyers_are_deterministic_and_valid() -> None:
    states, today = synthetic_buyers(2_000, seed=4)
    again, _ = synthetic_buyers(2_000, seed=4)
    assert [s.buy_days for s in states] == [s.buy_days for s in again]
    assert len({s.customer_id for s in states}) == 2_000
    for state in states:
        days = [int(d) for d in state.buy_days]
        assert days and 0 <= min(days) and max(days) < today
        assert all(v > 0 for v in state.buy_days.values())
        s = summary_at(state, today)
        assert s is not None and 0 <= s.t_x <= s.T and s.x == len(days) - 1


def test_fitting_the_synthetic_buyers_recovers_the_parameters_they_were_drawn_from() -> None:
    states, today = synthetic_buyers(5_000)
    summaries = [s for s in (summary_at(state, today) for state in states) if s is not None]
    m = fit_model(summaries, fitted_at=0.0, version=1)
    # whole days merge same-day purchases, and 5,000 buyers pin a and b down loosely
    assert m.r == pytest.approx(CDNOW.r, rel=0.1)
    assert m.alpha_days == pytest.approx(CDNOW.alpha_days, rel=0.2)
    assert m.a / (m.a + m.b) == pytest.approx(CDNOW.a / (CDNOW.a + CDNOW.b), rel=0.15)
    assert m.spend is not None and CDNOW.spend is not None
    assert m.spend.population_mean == pytest.approx(CDNOW.spend.population_mean, rel=0.1)


def test_scoring_figures_cover_every_step() -> None:
    states, today = synthetic_buyers(300)
    cpu, calls, summaries = scoring_cost(states, today)
    assert len(summaries) == 300
    assert set(cpu) == set(calls) == {"summary", "predict", "total"}
    assert cpu["total"] == pytest.approx(cpu["summary"] + cpu["predict"])
    assert all(c["n"] == 300 and 0 < c["p50"] <= c["p99"] for c in calls.values())


def test_value_cost_and_its_report_rows() -> None:
    res = value_cost(400, fits=(100, 10_000), say=lambda _: None)
    assert res.customers == 400 and 1.0 <= res.purchase_days < 5.0
    assert list(res.fits) == [100]  # more buyers than scored: not fitted
    table = render_value(res)
    assert "| fit (`fit_model`) on 100 buyers |" in table
    assert "| **scoring, total** |" in table
    report = render(Results(value=res), {"cpu": "test"})
    assert "| value model scoring (summary from the state + `ClvModel.predict`)" in report
    assert "## Value model" in report and table in report
    assert "value model fit" in report
    assert set(ValueCost().to_json()) == {"customers", "purchase_days", "cpu_us", "call_us", "fits"}
