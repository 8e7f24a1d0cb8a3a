"""Predicted value: BG/NBD for future orders and P(alive), Gamma-Gamma for their value.

Modules: ``summary`` (a buyer's (x, t_x, T) and repeat-day mean), ``bgnbd`` and
``gamma_gamma`` (closed-form log-likelihoods, maximum-likelihood fits with scipy, and
the per-buyer expectations).
"""

from segmenters.clv.bgnbd import BgNbd, BgNbdFit
from segmenters.clv.bgnbd import fit as fit_bgnbd
from segmenters.clv.gamma_gamma import GammaGamma, GammaGammaFit
from segmenters.clv.gamma_gamma import fit as fit_gamma_gamma
from segmenters.clv.summary import DAY_S, Summary, day_of, summarize

__all__ = [
    "DAY_S",
    "BgNbd",
    "BgNbdFit",
    "GammaGamma",
    "GammaGammaFit",
    "Summary",
    "day_of",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "summarize",
]
