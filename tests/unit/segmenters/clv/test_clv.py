"""BG/NBD and Gamma-Gamma: the published CDNOW parameters, and the closed forms' sense."""

from __future__ import annotations

import gzip
import math
from collections import defaultdict
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenters.clv import BgNbd, GammaGamma, day_of, fit_bgnbd, fit_gamma_gamma, summarize
from segmenters.clv.bgnbd import log_likelihood
from segmenters.clv.summary import net_days
from segmenters.config import StateConfig
from segmenters.state import CustomerState
from segmenters.update import apply_event
from tests.realdata import data_file
from tests.unit.factories import T0, Events, ev

CALIBRATION_END = date(1997, 9, 30)


def _cdnow_calibration() -> list[tuple[int, int, int, float]]:
    """(x, t_x, T, monetary) in days of every CDNOW sample customer, 39-week calibration."""
    days: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    end = CALIBRATION_END.toordinal()
    with gzip.open(data_file("cdnow_sample.txt.gz"), "rt") as f:
        for line in f:
            _, customer, ymd, _cds, amount = line.split()
            day = date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:])).toordinal()
            if day <= end:
                days[customer][day] += float(amount)
    rows = []
    for per_day in days.values():
        s = summarize(per_day, end)
        rows.append((s.x, s.t_x, s.T, s.monetary))
    return rows


@pytest.fixture(scope="module")
def cdnow() -> list[tuple[int, int, int, float]]:
    return _cdnow_calibration()


def test_bgnbd_reproduces_the_published_cdnow_parameters(cdnow):
    x, t_x, T, _ = (np.array(c) for c in zip(*cdnow, strict=True))
    assert len(x) == 2357
    fit = fit_bgnbd(x, t_x, T)
    m = fit.model
    # Fader, Hardie and Lee (2005): r = 0.243, alpha = 4.414 weeks, a = 0.793, b = 2.426
    assert (round(m.r, 3), round(m.alpha / 7, 3), round(m.a, 3), round(m.b, 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert round(m.alpha, 3) == 30.895
    # The paper's log-likelihood (-9582.4) is in weeks: the same model scaled.
    weeks = log_likelihood(m.r, m.alpha / 7, m.a, m.b, x, t_x / 7, T / 7).sum()
    assert round(float(weeks), 1) == -9582.4


def test_gamma_gamma_reproduces_the_published_cdnow_parameters(cdnow):
    repeat = [(x, m) for x, _, _, m in cdnow if x > 0]
    assert len(repeat) == 946
    fit = fit_gamma_gamma([x for x, _ in repeat], [m for _, m in repeat])
    g = fit.model
    assert (round(g.p, 2), round(g.q, 2), round(g.v, 2)) == (6.25, 3.74, 15.44)


def test_the_papers_worked_example():
    """x = 2, t_x = 30.43, T = 38.86 weeks: 1.226 expected purchases in the next 39 weeks."""
    m = BgNbd(r=0.243, alpha=4.414, a=0.793, b=2.426)
    assert round(m.expected_purchases(39, 2, 30.43, 38.86), 3) == 1.226


def _simulate(n: int, rng: np.random.Generator, r, alpha, a, b, horizon: int):
    """Buyers drawn from the BG/NBD process itself, observed for ``horizon`` days."""
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    out = []
    for i in range(n):
        t, last, x = 0.0, 0.0, 0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > horizon:
                break
            x, last = x + 1, t
            if rng.random() < p[i]:
                break
        out.append((x, last, float(horizon)))
    return out


def test_the_fit_recovers_the_parameters_of_simulated_buyers():
    rng = np.random.default_rng(7)
    truth = (0.5, 20.0, 0.7, 3.0)
    rows = _simulate(20_000, rng, *truth, horizon=365)
    x, t_x, T = (np.array(c) for c in zip(*rows, strict=True))
    m = fit_bgnbd(x, t_x, T).model
    for got, want in zip((m.r, m.alpha, m.a, m.b), truth, strict=True):
        assert abs(got - want) / want < 0.15, (got, want)


@settings(max_examples=200, deadline=None)
@given(
    x=st.integers(0, 50),
    t_x=st.floats(0, 400),
    gap=st.floats(0, 400),
    t=st.floats(1, 730),
)
def test_predictions_are_bounded_and_ordered(x, t_x, gap, t):
    m = BgNbd(r=0.243, alpha=30.895, a=0.793, b=2.426)
    if x == 0:
        t_x = 0.0
    T = t_x + gap
    alive = m.p_alive(x, t_x, T)
    assert 0.0 < alive <= 1.0
    n = m.expected_purchases(t, x, t_x, T)
    assert 0.0 <= n <= m.expected_purchases(t * 2, x, t_x, T) + 1e-9
    # the longer since the last purchase, the less likely alive
    assert m.p_alive(x, t_x, T + 30) <= alive + 1e-12


@given(x=st.integers(1, 100), m=st.floats(0.01, 10_000))
def test_expected_order_value_lies_between_own_mean_and_population_mean(x, m):
    g = GammaGamma(p=6.25, q=3.74, v=15.44)
    e = g.expected_order_value(x, m)
    lo, hi = sorted((m, g.population_mean))
    assert lo - 1e-9 <= e <= hi + 1e-9


def test_fits_refuse_what_they_cannot_fit():
    with pytest.raises(ValueError):
        fit_bgnbd([], [], [])
    with pytest.raises(ValueError):
        fit_bgnbd([1], [5], [3])
    with pytest.raises(ValueError):
        fit_gamma_gamma([0], [10.0])
    with pytest.raises(ValueError):
        summarize({}, 3)


# --- the summary kept in the state --------------------------------------------------------

DAY_MIN = 24 * 60

history = st.lists(
    st.tuples(
        st.sampled_from(["buy", "buy", "refund"]),
        st.integers(0, 60),  # day
        st.integers(0, DAY_MIN - 1),  # minute of the day
        st.integers(1, 5),  # items (value 10 each) or refund tens
    ),
    min_size=1,
    max_size=20,
)


def _events(rows):
    e = Events("c-clv")
    out = []
    for i, (kind, day, minute, n) in enumerate(rows):
        at = day * DAY_MIN + minute
        if kind == "buy":
            out.append(e.purchase(f"o-{i}", ["A"] * n, at))
        else:
            out.append(e.refund(f"o-{i}", 10.0 * n, at))
    return out


def _fold(events):
    state = CustomerState("c-clv")
    for raw in events:
        apply_event(state, ev(raw), StateConfig())
    return state


def _reference(events, now_day):
    """The summary straight from the events: group purchases by UTC day, then refunds."""
    buys: dict[int, float] = defaultdict(float)
    refunds = []
    for raw in events:
        e = ev(raw)
        day = day_of(e.occurred_at.timestamp())
        if e.type == "purchase":
            buys[day] += e.total
        else:
            refunds.append((day, e.total))
    for day, amount in sorted(refunds) if buys else []:
        earlier = [d for d in buys if d <= day]
        target = max(earlier) if earlier else min(buys)
        buys[target] = max(0.0, buys[target] - amount)
    return summarize(buys, now_day) if buys else None


@settings(max_examples=150, deadline=None)
@given(rows=history, seed=st.randoms(use_true_random=False))
def test_the_state_summary_is_the_events_summary_in_any_order(rows, seed):
    events = _events(rows)
    shuffled = list(events)
    seed.shuffle(shuffled)
    a, b = _fold(events), _fold(shuffled)
    assert (a.buy_days, a.refund_days) == (b.buy_days, b.refund_days)
    now_day = day_of(T0.timestamp()) + 70
    want = _reference(events, now_day)
    if want is None:
        assert a.buy_days == {}
        return
    got = summarize(net_days(a.buy_days, a.refund_days), now_day)
    assert (got.x, got.t_x, got.T) == (want.x, want.t_x, want.T)
    assert got.monetary == pytest.approx(want.monetary, abs=1e-6)


def test_a_refund_lowers_value_not_frequency():
    e = Events("c-r")
    state = _fold(
        [e.purchase("o-1", ["A"], 0), e.purchase("o-2", ["A", "A"], DAY_MIN * 3)]
        + [e.refund("o-2", 15.0, DAY_MIN * 4)]
    )
    days = net_days(state.buy_days, state.refund_days)
    s = summarize(days, day_of(T0.timestamp()) + 10)
    assert (s.x, s.t_x, s.T, s.monetary) == (1, 3, 10, 5.0)


def test_an_order_sent_twice_counts_once_in_the_days():
    e = Events("c-d")
    state = _fold([e.purchase("o-1", ["A"], 0), e.purchase("o-1", ["A"], 5)])
    assert list(state.buy_days.values()) == [10.0]


# --- the holdout check ----------------------------------------------------------------------


def _simulated_days(n: int, rng: np.random.Generator, r, alpha, a, b, days: int):
    """Buyers of the BG/NBD process, each with a first purchase on day 0..89, observed
    to ``days``: their purchase days (at most one purchase counted a day)."""
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    out = []
    for i in range(n):
        first = int(rng.integers(0, 90))
        t, bought = float(first), {first: 10.0}
        while True:
            t += rng.exponential(1 / lam[i])
            if t > days:
                break
            bought[int(t)] = 10.0
            if rng.random() < drop[i]:
                break
        out.append(bought)
    return out


def test_the_holdout_check_predicts_the_total_of_simulated_buyers():
    """Fit before day 273, predict days 273-545: the total lands within 5 % of the truth,
    and the deciles rise with the prediction."""
    from segmenters.clv.holdout import calibration, deciles
    from segmenters.clv.model import fit_model

    rng = np.random.default_rng(11)
    buyers = _simulated_days(6000, rng, 0.4, 25.0, 0.8, 2.5, days=545)
    split = 273
    model = fit_model(
        [s for s in (calibration(b, split) for b in buyers) if s is not None],
        fitted_at=0.0,
        version=0,
    )
    rows = deciles(model, buyers, split_day=split, end_day=545)
    assert [r.decile for r in rows] == list(range(1, 11))
    predicted = sum(r.predicted * r.customers for r in rows)
    actual = sum(r.actual * r.customers for r in rows)
    assert abs(predicted - actual) / actual < 0.05, (predicted, actual)
    assert rows[-1].actual > rows[0].actual


@settings(max_examples=200, deadline=None)
@given(
    b=st.floats(1e2, 1e16),
    x=st.integers(0, 80),
    t_x=st.floats(0, 200),
    extra=st.floats(0, 200),
    a=st.floats(1e-6, 3.0),
)
def test_expected_purchases_stay_exact_when_drop_out_vanishes(b, x, t_x, extra, a):
    """A fit without drop-out (b huge, a tiny: a short history) once gave CLVs of -1e12:
    the closed form cancels. The series is continuous with it and tends to the NBD."""
    T = t_x + extra
    m = BgNbd(r=0.74, alpha=63.3, a=a, b=b)
    got = m.expected_purchases(365.0, x, t_x, T)
    alive = m.p_alive(x, t_x, T)
    nbd = (0.74 + x) * 365.0 / (63.3 + T)  # no drop-out at all: an upper bound
    assert math.isfinite(got) and 0 <= got <= nbd * alive * (1 + 1e-9)
    if b > 1e12 and a < 1e-3:
        assert math.isclose(got, nbd * alive, rel_tol=1e-6)


def test_the_series_and_the_closed_form_agree_where_both_are_exact():
    import segmenters.clv.bgnbd as bgnbd

    m = BgNbd(r=0.74, alpha=63.3, a=0.5, b=900.0)
    for x in (0, 1, 10, 47):
        closed = m.expected_purchases(365.0, x, 150.0, 200.0)
        series = m._unconditional_series(365.0, x, 200.0) / (1 + m._odds_dead(x, 150.0, 200.0))
        assert math.isclose(closed, series, rel_tol=1e-10), (x, closed, series)
    assert bgnbd.SERIES_FROM == 1e3


@pytest.mark.parametrize("a", [0.0002, 0.5, 0.999999, 1.0, 1.002, 10.0, 60.0, 1000.0, 5e6])
@pytest.mark.parametrize("b", [0.3, 2.4, 1e2, 1e5, 8e6, 1e15])
def test_expected_purchases_are_finite_and_bounded_over_the_parameter_space(a, b):
    """Fits land anywhere (a = 5.1e6 and b = 8.0e6 on 50 buyers once gave NaN for all):
    the expectation is finite, non-negative and at most the no-drop-out NBD's."""
    m = BgNbd(r=0.74, alpha=63.3, a=a, b=b)
    for x in (0, 3, 47):
        got = m.expected_purchases(365.0, x, 150.0, 200.0)
        assert math.isfinite(got) and 0 <= got <= (0.74 + x) * 365.0 / 263.3 * (1 + 1e-6)
