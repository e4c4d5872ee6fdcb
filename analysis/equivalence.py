"""Data equivalence: how much more data label training needs to match distillation (the paper's
"3x less data").

For each kappa k of the grid, the target is kd's seed-mean accuracy at k. kappa_lt is the smallest
kappa at which lt's seed-mean curve, drawn as straight lines between grid points in log kappa (the
same interpolation as kappa*, analysis.crossover), reaches that target; the ratio kappa_lt / k is
how many times more samples lt needs for kd's result (> 1: kd saves data; < 1: lt matches kd with
less). Never extrapolated: when lt reaches the target at no kappa of the grid, the ratio is only
known to exceed kappa_max / k (status `beyond`); when lt already reaches it at the smallest kappa,
the ratio is at most kappa_min / k (status `below`).

Uncertainty: a percentile bootstrap over seeds, as for kappa*: a replicate draws seeds with
replacement, the same draw for every kappa and both arms (a seed's lt and kd trials share its
data draw), recomputes both mean curves and the ratio. Replicates beyond (below) the grid count as
+inf (-inf), so an interval's bound can read "beyond the grid" rather than the replicates being
dropped; the levels are widened for few seeds (analysis.crossover.expanded_tail).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.crossover import expanded_tail

INSIDE, BEYOND, BELOW = "inside", "beyond", "below"
COLUMNS = ["kappa", "lt", "kd", "kappa_lt", "ratio", "bound", "ci_low", "ci_high", "status", "frac_beyond", "n_seeds",
           "n_boot"]


def first_reach(log_kappas: np.ndarray, curves: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log kappa where each curve (rows of [R, K], higher is better) first reaches its target [R],
    interpolated linearly in log kappa; +inf where it never does, -inf where its first point already
    exceeds the target (log kappa_min where it equals it)."""
    reached = curves >= targets[:, None]
    first = reached.argmax(axis=1)
    out = np.full(len(curves), np.inf)
    hit = reached.any(axis=1)
    at_start = hit & (first == 0)
    out[at_start] = np.where(curves[at_start, 0] == targets[at_start], log_kappas[0], -np.inf)
    rows = np.flatnonzero(hit & (first > 0))
    j = first[rows]
    low, high = curves[rows, j - 1], curves[rows, j]  # low < target <= high
    t = (targets[rows] - low) / (high - low)
    out[rows] = log_kappas[j - 1] + t * (log_kappas[j] - log_kappas[j - 1])
    return out


def _mean(stack: np.ndarray) -> np.ndarray:
    """Mean over the seed axis (-2), ignoring NaN; NaN where a kappa has no seed."""
    finite = np.isfinite(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, stack, 0.0).sum(axis=-2) / finite.sum(axis=-2)


def _ratios(log_kappas: np.ndarray, lt: np.ndarray, kd: np.ndarray) -> np.ndarray:
    """log(kappa_lt / k) for each curve pair [R, K] and each k: [R, K]. A kappa whose kd mean is
    missing gives NaN; a kappa whose lt mean is missing is skipped by the lt curve."""
    rows, n = lt.shape
    out = np.full(lt.shape, np.nan)
    complete = np.isfinite(lt).all(axis=1)
    reach = first_reach(log_kappas, np.repeat(lt[complete], n, axis=0), np.nan_to_num(kd[complete].ravel()))
    out[complete] = reach.reshape(-1, n) - log_kappas
    for row in np.flatnonzero(~complete & np.isfinite(lt).any(axis=1)):  # a replicate that drew no seed with some kappa
        keep = np.isfinite(lt[row])
        reach = first_reach(log_kappas[keep], np.repeat(lt[row, keep][None], n, 0), np.nan_to_num(kd[row]))
        out[row] = reach - log_kappas
    out[~np.isfinite(kd)] = np.nan
    return out


def data_equivalence(kappas, lt_by_seed, kd_by_seed, higher_is_better: bool = True, n_boot: int = 2000,
                     ci: float = 0.95, seed: int = 0, expanded: bool = True) -> pd.DataFrame:
    """Per kappa of the grid: the ratio kappa_lt / kappa with its bootstrap interval (module doc).

    lt_by_seed, kd_by_seed: [seeds, kappas], row s of both from the same seed, NaN where missing.
    Lower-is-better measures (loss, perplexity) are compared with the sign flipped."""
    kappas = np.asarray(kappas, dtype=float)
    order = np.argsort(kappas)
    sign = 1.0 if higher_is_better else -1.0
    lt = sign * np.asarray(lt_by_seed, dtype=float)[:, order]
    kd = sign * np.asarray(kd_by_seed, dtype=float)[:, order]
    kappas, log_kappas = kappas[order], np.log(kappas[order])
    used = np.isfinite(lt).any(axis=1) | np.isfinite(kd).any(axis=1)
    lt, kd = lt[used], kd[used]
    n_seeds = len(lt)
    point = _ratios(log_kappas, _mean(lt[None]), _mean(kd[None]))[0]
    frame = pd.DataFrame({"kappa": kappas, "lt": sign * _mean(lt[None])[0], "kd": sign * _mean(kd[None])[0]})
    frame["kappa_lt"] = np.exp(point + log_kappas)
    frame["ratio"] = np.exp(point)
    frame["status"] = np.where(point == np.inf, BEYOND, np.where(point == -np.inf, BELOW, INSIDE))
    # At the grid's edge the ratio is only bounded: above by kappa_max / k, below by kappa_min / k.
    frame["bound"] = np.where(point == np.inf, kappas.max() / kappas,
                              np.where(point == -np.inf, kappas.min() / kappas, np.nan))
    frame.loc[~np.isfinite(frame["kd"]), "status"] = "empty"
    frame[["ci_low", "ci_high", "frac_beyond"]] = np.nan
    frame["n_seeds"], frame["n_boot"] = n_seeds, 0
    if n_seeds >= 2 and n_boot >= 1 and len(kappas) >= 2:
        draws = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
        values = _ratios(log_kappas, _mean(lt[draws]), _mean(kd[draws]))  # [n_boot, K]
        tail = expanded_tail(ci, n_seeds) if expanded else (1.0 - ci) / 2.0
        bounds = np.full((len(kappas), 3), np.nan)
        for column in range(len(kappas)):
            replicates = values[:, column][~np.isnan(values[:, column])]
            if len(replicates):  # "lower"/"higher" pick replicate values: +-inf stay exact, the interval errs wide
                bounds[column] = [np.exp(np.quantile(replicates, tail, method="lower")),
                                  np.exp(np.quantile(replicates, 1.0 - tail, method="higher")),
                                  np.mean(replicates == np.inf)]
        frame[["ci_low", "ci_high", "frac_beyond"]] = bounds
        frame["n_boot"] = n_boot
    return frame[COLUMNS]


def describe(row) -> str:
    """One reading of a row: `lt needs 2.9x the data (CI 2.1x to 4.0x)`, or a bound at the grid's edge."""
    def times(value: float) -> str:
        return "beyond the grid" if value == np.inf else "below the grid" if value == 0 else f"{value:.3g}x"

    shown = not np.isnan(row.ci_low) and not row.ci_low == row.ci_high == np.inf
    interval = f" (CI {times(row.ci_low)} to {times(row.ci_high)})" if shown else ""
    if row.status == BEYOND:
        return f"lt does not reach kd's result inside the grid: more than {row.bound:.3g}x{interval}"
    if row.status == BELOW:
        return f"lt reaches kd's result at the smallest kappa already: at most {row.bound:.3g}x{interval}"
    if row.status == "empty":
        return "no kd result"
    return f"lt needs {times(row.ratio)} the data{interval}"
