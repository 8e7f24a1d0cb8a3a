"""BG/NBD's P(X(t) = k) (Fader, Hardie and Lee 2005, equation 8): a distribution, whose
mean is the unconditional expected number of purchases."""

from __future__ import annotations

import pytest
from scipy.special import hyp2f1

from segmenters.clv import BgNbd

PARAMETERS = [
    BgNbd(r=0.243, alpha=30.895, a=0.793, b=2.426),  # CDNOW, alpha in days
    BgNbd(r=1.5, alpha=20.0, a=2.5, b=4.0),
    BgNbd(r=0.8, alpha=60.0, a=1.2, b=0.9),
    BgNbd(r=3.0, alpha=150.0, a=4.0, b=12.0),
]


def unconditional_mean(m: BgNbd, t: float) -> float:
    """E[X(t)] of a random buyer (paper, equation 9)."""
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    tail = (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return (a + b - 1) / (a - 1) * (1 - tail)


@pytest.mark.parametrize("m", PARAMETERS)
@pytest.mark.parametrize("t", [1.0, 30.0, 273.0, 365.0])
def test_probabilities_sum_to_one_and_their_mean_is_the_expected_purchases(
    m: BgNbd, t: float
) -> None:
    pmf = m.purchases_pmf(t, 200)
    assert len(pmf) == 201 and all(p >= 0 for p in pmf)
    assert sum(pmf) == pytest.approx(1.0, abs=1e-6)
    mean = sum(k * p for k, p in enumerate(pmf))
    assert mean == pytest.approx(m.expected_purchases(t, x=0, t_x=0.0, T=0.0), rel=1e-6)
    if m.a > 1:
        assert mean == pytest.approx(unconditional_mean(m, t), rel=1e-6)


def test_nothing_happens_in_no_time() -> None:
    m = PARAMETERS[0]
    assert m.purchases_pmf(0.0, 3) == [1.0, 0.0, 0.0, 0.0]
    assert m.purchases_pmf(10.0, -1) == []
    assert m.purchases_pmf(10.0, 0) == pytest.approx([m.purchases_pmf(10.0, 5)[0]])


def test_more_time_moves_mass_away_from_zero() -> None:
    m = PARAMETERS[1]
    zeros = [m.purchases_pmf(t, 0)[0] for t in (10.0, 50.0, 200.0, 800.0)]
    assert zeros == sorted(zeros, reverse=True) and zeros[-1] < zeros[0]
