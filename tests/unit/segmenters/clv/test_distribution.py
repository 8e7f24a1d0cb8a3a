"""The value panel's figures: P(alive) histogram, CLV deciles and the BG/NBD fit table."""

from __future__ import annotations

import random

import numpy as np
import pytest

from segmenters.clv.distribution import LAST_K, distribution, fit_rows, value_sizes
from segmenters.clv.model import ClvModel
from segmenters.clv.summary import Summary

CDNOW = ClvModel(r=0.243, alpha_days=30.895, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44)


def buyers(n: int, seed: int = 3) -> list[Summary]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        T = rng.randrange(0, 400)
        x = min(T, rng.choice([0, 0, 0, 1, 1, 2, 3, 5, 8, 12]))
        t_x = rng.randrange(x, T + 1) if x else 0
        out.append(Summary(x=x, t_x=t_x, T=T, monetary=rng.uniform(5, 80) if x else 0.0))
    return out


def test_histogram_and_deciles_are_those_of_the_predictions() -> None:
    sample = buyers(500)
    d = distribution(sample, CDNOW, horizon_days=365.0)
    predictions = [CDNOW.predict(s, 365.0) for s in sample]
    assert d.customers == 500 and sum(d.p_alive) == 500 and len(d.p_alive) == 10
    for i, n in enumerate(d.p_alive):
        low, high = i / 10, (i + 1) / 10
        inside = [p for p in predictions if low <= p.p_alive < high or (i == 9 and p.p_alive == 1)]
        assert n == len(inside), i
    clv = sorted(p.clv for p in predictions)
    assert d.clv_deciles == pytest.approx(list(np.quantile(clv, [i / 10 for i in range(1, 10)])))
    assert d.clv_deciles == sorted(d.clv_deciles)
    assert d.as_dict()["fit"][0] == {
        "k": "0",
        "actual": d.fit[0].actual,
        "expected": d.fit[0].expected,
    }


def test_fit_table_counts_buyers_and_expects_as_many() -> None:
    sample = buyers(800)
    rows = fit_rows(sample, CDNOW)
    assert [r.k for r in rows] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    for k, row in enumerate(rows):
        if k < LAST_K:
            assert row.actual == sum(1 for s in sample if s.x == k)
        else:
            assert row.actual == sum(1 for s in sample if s.x >= LAST_K)
    assert sum(r.actual for r in rows) == 800
    assert sum(r.expected for r in rows) == pytest.approx(800.0)
    # the expectation is the sum of each buyer's probabilities at their own T
    bg = CDNOW.bgnbd
    want = sum(bg.purchases_pmf(float(s.T), 1)[1] for s in sample)
    assert rows[1].expected == pytest.approx(want)


def test_no_buyers() -> None:
    d = distribution([], CDNOW, horizon_days=365.0)
    assert (d.customers, d.p_alive, d.clv_deciles) == (0, [0] * 10, [])
    assert [(r.actual, r.expected) for r in d.fit] == [(0, 0.0)] * 8


def test_value_sizes_names_every_segment() -> None:
    assert value_sizes({}) == {"top": 0, "high": 0, "medium": 0, "low": 0, "churned": 0}
    got = value_sizes({("value", "high"): 7, ("rfm", "high"): 99})
    assert got["high"] == 7 and list(got) == ["top", "high", "medium", "low", "churned"]
