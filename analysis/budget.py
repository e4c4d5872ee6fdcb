"""One grid trained under two budgets (a fixed number of optimizer steps, or a fixed number of
epochs at every kappa): how the increments PI and PG, and kappa*, move between them.

The analysis of one table refuses two budgets (their trials share (pair, objective, kappa, seed)),
so each budget is its own study and its own `pair_by_seed` table; this module joins the two.
A seed draws the same subset, initialisation and batch order under both budgets, so PI is paired
across budgets by seed too: dPI = PI(second) - PI(first) per seed, mean with a t-interval.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.paired import mean_ci

KEY = ["pair", "arm", "kappa"]


def compare_increments(first: pd.DataFrame, second: pd.DataFrame, names=("steps", "epochs"),
                       ci: float = 0.95) -> pd.DataFrame:
    """Per (pair, arm, kappa) of two `pair_by_seed` tables: for each budget name b the seed means
    `R_lt_b`, `R_kd_b`, `PI_b` (with `PI_b_sd`), `PG_b`; and dPI = PI(second) - PI(first) over the
    seeds both have: `dPI`, `dPI_sd`, `dPI_low`, `dPI_high` (t-interval), `n_seeds`."""
    a, b = names
    columns = ["pair", "arm", "kappa", "seed", "R_kd", "R_lt", "PI", "PG"]
    joined = first[columns].merge(second[columns], on=["pair", "arm", "kappa", "seed"], how="outer",
                                  suffixes=(f"_{a}", f"_{b}"))
    rows = []
    for key, group in joined.groupby(KEY, sort=True):
        row = dict(zip(KEY, key))
        for name in names:
            for column in ("R_lt", "R_kd", "PI", "PG"):
                row[f"{column}_{name}"] = float(group[f"{column}_{name}"].mean())
            row[f"PI_{name}_sd"] = float(group[f"PI_{name}"].std(ddof=1)) if group[f"PI_{name}"].count() > 1 else math.nan
        both = (group[f"PI_{b}"] - group[f"PI_{a}"]).to_numpy(float)
        diff = mean_ci(both, ci)
        row.update(dPI=diff["mean"], dPI_sd=diff["sd"], dPI_low=diff["low"], dPI_high=diff["high"], n_seeds=diff["n"])
        rows.append(row)
    return pd.DataFrame(rows)


def compare_crossings(first: pd.DataFrame, second: pd.DataFrame, names=("steps", "epochs")) -> pd.DataFrame:
    """kappa* of each budget side by side, per (pair, arm), from two `crossover` tables: for each
    budget name b the columns `kappa_star_b`, `ci_low_b`, `ci_high_b`, `status_b`, `n_seeds_b`;
    `kappa_min`, `kappa_max` (of the first); `status_changed` (e.g. a crossing under one budget,
    kd helping across the grid under the other) and `ci_overlap` (whether the two intervals share
    a point; NaN where either has none)."""
    a, b = names
    columns = ["pair", "arm", "kappa_star", "ci_low", "ci_high", "status", "n_seeds"]
    joined = first[columns + ["kappa_min", "kappa_max"]].merge(second[columns], on=["pair", "arm"], how="outer",
                                                                 suffixes=(f"_{a}", f"_{b}"))
    joined["status_changed"] = joined[f"status_{a}"] != joined[f"status_{b}"]
    low = np.maximum(joined[f"ci_low_{a}"], joined[f"ci_low_{b}"])
    high = np.minimum(joined[f"ci_high_{a}"], joined[f"ci_high_{b}"])
    known = joined[[f"ci_low_{a}", f"ci_high_{a}", f"ci_low_{b}", f"ci_high_{b}"]].notna().all(axis=1)
    joined["ci_overlap"] = np.where(known, low <= high, np.nan)
    return joined.sort_values(["pair", "arm"]).reset_index(drop=True)


def epochs_matching_steps(steps: int, batch_size: int, n_teacher: int) -> tuple[int, float]:
    """The epoch budget E under which kappa = 1 (M = N samples) sees as many samples as `steps`
    optimizer steps of `batch_size`: E = steps * batch_size / N, rounded; returns (E, exact)."""
    exact = steps * batch_size / n_teacher
    return max(1, round(exact)), exact

