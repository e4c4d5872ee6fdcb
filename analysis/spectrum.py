"""The eigenspectrum of a student's features (the paper's Figure 17): how many directions they use.

For test-set features F [n, D] (the penultimate layer, stored by trials with extras `features`),
the spectrum is the eigenvalues lambda_1 >= lambda_2 >= ... of their covariance, from the singular
values of the centred F (lambda_i = s_i^2 / (n - 1)), normalised to sum to 1. Two summaries:

- the participation ratio PR = (sum lambda)^2 / sum lambda^2, the effective number of directions:
  D for isotropic features, 1 for features on one line (Gao et al. 2017; Recanatesi et al. 2019);
- the decay exponent alpha of a power law lambda_i ~ i^-alpha, the least-squares slope of
  log lambda_i on log i over the leading half of the nonzero spectrum (Stringer et al. 2019 fit
  the same slope to neural data; the tail is left out because it is mostly noise).

A lower PR or a steeper alpha says the features concentrate on fewer directions. Pure numpy:
analysis imports no torch, so the eigenvalues and PR mirror kdscale.representations'
`feature_spectrum` (the engine's, in torch), and tests/test_spectrum.py checks that the two agree.
"""
from __future__ import annotations

import math

import numpy as np

# Eigenvalues below this share of the largest are numerically zero (float32 features, float64 maths).
RELATIVE_ZERO = 1e-10


def eigenspectrum(features: np.ndarray) -> np.ndarray:
    """Covariance eigenvalues of features [n, ...] (flattened to [n, D]), largest first, in float64;
    at most min(n - 1, D) of them (a centred n x D matrix has no more)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    if len(x) < 2:
        raise ValueError(f"an eigenspectrum needs at least 2 samples, got {len(x)}")
    x = x - x.mean(0)
    singular = np.linalg.svd(x, compute_uv=False)
    return (singular ** 2 / (len(x) - 1))[:min(len(x) - 1, x.shape[1])]


def participation_ratio(eigenvalues: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2; NaN for a zero spectrum (constant features)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    squares = float(np.square(lam).sum())
    return float(lam.sum() ** 2 / squares) if squares > 0 else math.nan


def decay_exponent(eigenvalues: np.ndarray) -> float:
    """alpha of lambda_i ~ i^-alpha, fitted on the leading half of the nonzero eigenvalues (at least
    the first two); NaN when fewer than two are nonzero."""
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    if not len(lam) or lam[0] <= 0:
        return math.nan
    lam = lam[lam > RELATIVE_ZERO * lam[0]]
    lead = lam[:max(2, len(lam) // 2)]
    if len(lead) < 2:
        return math.nan
    ranks = np.arange(1, len(lead) + 1, dtype=np.float64)
    slope = np.polyfit(np.log(ranks), np.log(lead), 1)[0]
    return float(-slope)


def summarise(features: np.ndarray) -> dict[str, float]:
    """PR, alpha and the dimension D of one student's features."""
    lam = eigenspectrum(features)
    return {"participation_ratio": participation_ratio(lam), "decay_exponent": decay_exponent(lam),
            "dimension": float(np.asarray(features).reshape(len(features), -1).shape[1])}
