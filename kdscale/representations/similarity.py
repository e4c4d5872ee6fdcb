"""How alike two representations of the same samples are: CKA, HSIC and feature alignment.

All sums run in float64: float32 would do for the values (linear CKA of 2000 cnn1d feature
vectors moved by 4e-8), but float64 costs little at these sizes and lets the tests check the
definitions to 1e-10. Inputs are torch tensors or numpy arrays of shape [n, d], rows being the
same samples in the same order for both arguments; results are Python floats.

References
- Paper: Lanzillotta et al., "Revisiting Knowledge Distillation: The Hidden Role of Dataset Size"
  (arXiv 2510.15516), eq. 4 (HSIC and CKA of feature kernels), Figures 4, 5, 18.
- Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited"
  (ICML 2019): linear CKA and its feature-space form ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F).
- Song, Smola, Gretton, Bedo, Borgwardt, "Feature Selection via Dependence Maximization" (JMLR
  2012): the unbiased estimator HSIC_1, a U-statistic.
- Nguyen, Raghu, Kornblith, "Do Wide and Deep Networks Learn the Same Things?" (ICLR 2021):
  minibatch CKA, HSIC_1 averaged over minibatches.
- Authors' code, github.com/GiuliaLanzillotta/DED, `utils/kernels.py`: `features_alignment` and
  the feature kernels, which scale each sample's feature vector to unit norm (`unit_rows=True`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

Array = torch.Tensor | np.ndarray


def as_matrix(x: Array, name: str = "x") -> torch.Tensor:
    """`x` as a float64 tensor [n, d] on its own device; [n, ...] is flattened to [n, prod(...)]."""
    x = torch.as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [n, d] (one row per sample), got {tuple(x.shape)}")
    return x.detach().flatten(1).to(torch.float64)


def _pair(x: Array, y: Array, unit_rows: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    x = as_matrix(x, "x")
    y = as_matrix(y, "y").to(x.device)
    if len(x) != len(y):
        raise ValueError(f"x and y must hold the same samples: x has {len(x)} rows, y has {len(y)}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 samples, got {len(x)}")
    if unit_rows:
        x, y = unit_norm_rows(x), unit_norm_rows(y)
    return x, y


def unit_norm_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row scaled to unit Euclidean norm; an all-zero row (a sample with every ReLU off)
    stays zero rather than becoming NaN."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def _ratio(num: torch.Tensor, den_a: torch.Tensor, den_b: torch.Tensor) -> float:
    # A constant representation has no centred variance: CKA is undefined there, not 0 or 1.
    den = torch.sqrt(den_a * den_b)
    return float("nan") if not den > 0 else (num / den).item()


def centre_kernel(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / n, without forming H: K minus row and column means plus the grand mean."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


def hsic(k: Array, l: Array) -> float:
    """Biased empirical HSIC of two kernels [n, n], eq. 4 of the paper:
    tr(K H L H) / (n - 1)^2 with H the centring matrix (Gretton et al. 2005)."""
    k, l = _kernels(k, l)
    n = len(k)
    return ((centre_kernel(k) * centre_kernel(l)).sum() / (n - 1) ** 2).item()


def _kernels(k: Array, l: Array) -> tuple[torch.Tensor, torch.Tensor]:
    k = as_matrix(k, "K")
    l = as_matrix(l, "L").to(k.device)
    if k.shape != l.shape or k.shape[0] != k.shape[1]:
        raise ValueError(f"K and L must be square kernels of the same samples, got {tuple(k.shape)} "
                         f"and {tuple(l.shape)}")
    return k, l


def kernel_cka(k: Array, l: Array) -> float:
    """CKA of two given kernels [n, n] (eq. 4 of the paper): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

    tr(K H L H) = sum(HKH * HLH) since H is symmetric and idempotent; the (n - 1)^2 cancel. For
    kernels that are not Gram matrices of features (the NTK of `ntk_alignment`). O(n^2)."""
    k, l = _kernels(k, l)
    kc, lc = centre_kernel(k), centre_kernel(l)
    return _ratio((kc * lc).sum(), (kc * kc).sum(), (lc * lc).sum())


def linear_cka(x: Array, y: Array, unit_rows: bool = False) -> float:
    """Linear CKA of features x [n, d_x] and y [n, d_y] (Kornblith et al. 2019; eq. 4 of the paper
    with K = X X^T, L = Y Y^T).

    With X, Y centred per feature (column), tr(K H L H) = ||Y^T X||_F^2, so
    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F): O(n d^2) time and O(d^2) memory instead of the
    O(n^2 d) and O(n^2) of forming the kernels (when n < d the kernel form is cheaper and is used).
    In [0, 1]; 1 for x against itself; invariant to orthogonal maps and isotropic scaling of either
    side, not to other invertible linear maps. For independent random features the expectation is
    about sqrt(d_x d_y) / n, not 0. NaN when a side is constant over the samples.

    `unit_rows=True` scales each sample's feature vector to unit norm first (a cosine kernel), as
    the authors' code does before forming its feature kernels.
    """
    x, y = _pair(x, y, unit_rows)
    x, y = x - x.mean(0), y - y.mean(0)
    if len(x) < max(x.shape[1], y.shape[1]):
        return kernel_cka(x @ x.T, y @ y.T)
    cross = (y.T @ x).square().sum()  # ||Y^T X||_F^2 = (n - 1)^2 HSIC(K, L)
    return _ratio(cross, (x.T @ x).square().sum(), (y.T @ y).square().sum())


def hsic1(k: Array, l: Array) -> float:
    """Unbiased HSIC_1 of two kernels [n, n], n >= 4 (Song et al. 2012):

        [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n - 1)(n - 2)) - 2 / (n - 2) 1^T K~ L~ 1] / (n (n - 3))

    with K~, L~ the kernels with their diagonals set to zero. Its expectation over samples is the
    population HSIC, so averages over minibatches converge to it (the biased eq. 4 does not: its
    bias is O(1/b) in the batch size b)."""
    return _hsic1(*_kernels(k, l))


def _hsic1(k: torch.Tensor, l: torch.Tensor) -> float:
    n = len(k)
    if n < 4:
        raise ValueError(f"HSIC_1 needs at least 4 samples, got {n}")
    k = k - torch.diag_embed(torch.diagonal(k))
    l = l - torch.diag_embed(torch.diagonal(l))
    k_ones, l_ones = k.sum(1), l.sum(1)  # K~ 1, L~ 1: [n]
    trace = (k * l).sum()  # tr(K~ L~), both symmetric
    middle = k_ones.sum() * l_ones.sum() / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (k_ones @ l_ones)  # 1^T K~ L~ 1
    return ((trace + middle - last) / (n * (n - 3))).item()


def minibatch_cka(x: Array, y: Array, batch_size: int, seed: int | None = 0, unit_rows: bool = False) -> float:
    """Minibatch linear CKA (Nguyen, Raghu, Kornblith 2021):

        mean_i HSIC_1(K_i, L_i) / sqrt(mean_i HSIC_1(K_i, K_i) * mean_i HSIC_1(L_i, L_i))

    over minibatches i of `batch_size` samples (K_i = X_i X_i^T), with HSIC_1 the unbiased estimator
    of `hsic1`. The batches are consecutive slices of a permutation seeded by `seed` (None: the
    given order); a last partial batch counts, with equal weight, if it holds at least 4 samples.
    Memory O(batch_size^2) however large n is; each mean is unbiased, so the ratio converges to the
    population CKA as the number of batches grows (the full-data `linear_cka` carries an O(1/n)
    bias, visible as its sqrt(d_x d_y) / n floor for unrelated features).
    """
    x, y = _pair(x, y, unit_rows)
    if not isinstance(batch_size, int) or batch_size < 4:
        raise ValueError(f"batch_size={batch_size!r} is invalid: must be an integer >= 4 (HSIC_1 needs 4 samples)")
    n = len(x)
    order = (torch.arange(n) if seed is None
             else torch.randperm(n, generator=torch.Generator().manual_seed(seed))).to(x.device)
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < 4:
            continue
        kx, ky = x[idx] @ x[idx].T, y[idx] @ y[idx].T  # [b, b]
        sums += torch.tensor([_hsic1(kx, ky), _hsic1(kx, kx), _hsic1(ky, ky)], dtype=torch.float64)
    if not sums.any():
        raise ValueError(f"no minibatch of at least 4 samples in n={n}")
    den = sums[1] * sums[2]
    return float("nan") if not den > 0 else (sums[0] / math.sqrt(den.item())).item()


def feature_alignment(x: Array, y: Array, center: bool = False) -> float:
    """Feature alignment (FA, Table 4 of the paper) of two same-width features x, y [n, D]:

        FA = (1/n) sum_i <x_i, y_i> / (||x_i|| ||y_i||)

    the mean over samples of the cosine similarity between the student's and the teacher's feature
    vectors of the same input, coordinate by coordinate. In [-1, 1]: 1 for identical features (or
    any positive rescaling of each sample), -1 for negated ones, 0 for orthogonal ones.

    Definition: the paper's eq. 3 was not available to us. This is the authors' own code
    (`features_alignment` in github.com/GiuliaLanzillotta/DED, `utils/kernels.py`):
    tr(F_1 F_2^T) / sqrt(tr(F_1 F_1^T) tr(F_2 F_2^T)) on feature matrices whose rows its
    `get_features` scales to unit norm, which is exactly this mean cosine. Unlike CKA it compares
    coordinates, not kernels, so it needs D_s == D_t (ValueError otherwise) and it changes under
    any rotation or permutation of one side's units: it asks whether the student's unit k learned
    what the teacher's unit k did, which a shared architecture alone does not make likely. In
    `bench/representation_cost.py`, independently initialised cnn1d-32 students scored FA 0.25 (kd),
    0.32 (lt) and 0.29 (untrained) against their teacher, where linear CKA ranked them 0.96, 0.80
    and 0.53: read FA between networks that started from different initialisations with care.

    `center=True` first subtracts each feature dimension's mean over the samples (a common variant
    in distillation papers). Post-ReLU features are non-negative, so without centring two
    unrelated models already score well above 0; centring removes that offset. A sample whose
    feature vector is all zero contributes a cosine of 0.
    """
    x, y = _pair(x, y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature_alignment compares features coordinate by coordinate and needs the same "
                         f"width: got D_s={x.shape[1]} and D_t={y.shape[1]} (use linear_cka for "
                         f"different widths)")
    if center:
        x, y = x - x.mean(0), y - y.mean(0)
    return (unit_norm_rows(x) * unit_norm_rows(y)).sum(1).mean().item()
