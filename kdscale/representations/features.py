"""One model's representation: its features on a data set and their covariance spectrum.

References: the paper (arXiv 2510.15516), Figure 17 (feature eigenspectrum); Roy & Vetterli, "The
effective rank: a measure of effective dimensionality" (EUSIPCO 2007); the participation ratio as
in Gao, Trautmann, Yu et al., "A theory of multineuronal dimensionality, dynamics and measurement"
(bioRxiv 2017).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kdscale.representations.similarity import Array, as_matrix

FEATURE_BATCH = 2048


@torch.no_grad()
def features_of(model: nn.Module, x: Array, batch_size: int = FEATURE_BATCH) -> torch.Tensor:
    """`model.features(x)` [n, D] (the penultimate representation phi of `kdscale.models.base`),
    in eval mode and without gradients, `batch_size` samples at a time on the model's device;
    the model's training mode is restored afterwards. Returned on the model's device."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is invalid: must be >= 1")
    device = next(model.parameters()).device
    x = torch.as_tensor(x)
    was_training = model.training
    model.eval()
    try:
        parts = [model.features(x[i:i + batch_size].to(device)) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    if not parts:
        return torch.empty(0, getattr(model, "feature_dim", 0), device=device)
    return torch.cat(parts)


@dataclass(frozen=True)
class Spectrum:
    eigenvalues: torch.Tensor  # float64 [D], descending, >= 0: variances along the principal axes
    effective_rank: float  # exp(entropy of eigenvalues / their sum), in [1, D]
    participation_ratio: float  # (sum of eigenvalues)^2 / sum of squares, in [1, D]


def feature_spectrum(x: Array) -> Spectrum:
    """Eigenvalues of the feature covariance (1 / (n - 1)) X_c^T X_c of x [n, D] (X_c centred per
    feature), in descending order, and two summaries of how many directions the variance spreads
    over (both D for isotropic features, 1 when all variance lies on one axis):

    - effective rank (Roy & Vetterli 2007): exp(-sum_i p_i log p_i), p_i = lambda_i / sum_j lambda_j;
    - participation ratio: (sum_i lambda_i)^2 / sum_i lambda_i^2, which weighs the top
      eigenvalues more and so is at most the effective rank.

    Tiny negative eigenvalues from rounding are set to 0. Both summaries are NaN for constant features.
    """
    x = as_matrix(x)
    if len(x) < 2:
        raise ValueError(f"feature_spectrum needs at least 2 samples, got {len(x)}")
    xc = x - x.mean(0)
    eigenvalues = torch.linalg.eigvalsh(xc.T @ xc / (len(x) - 1)).flip(0).clamp_min(0.0)  # [D]
    total = eigenvalues.sum()
    if not total > 0:
        return Spectrum(eigenvalues.cpu(), math.nan, math.nan)
    p = eigenvalues / total
    entropy = -torch.special.xlogy(p, p).sum()  # 0 log 0 = 0
    return Spectrum(eigenvalues.cpu(), math.exp(entropy.item()),
                    (total ** 2 / eigenvalues.square().sum()).item())
