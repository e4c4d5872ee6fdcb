"""Paired comparisons by seed of any measured column, their summaries and their correlations.

A seed draws a student's subset, initialisation and batch order, so the kd and lt trials of one
seed at one (pair, kappa) share their data draw (see analysis.increments): the per-seed difference
of any column (test accuracy, test fidelity, probe accuracy) cancels that draw's luck, and the
spread of the per-seed differences over seeds is the honest uncertainty of their mean.

Input frames are `Trials.frame` of analysis.table (columns pair, arm, objective, kappa, seed and
the measured columns). Means are over seeds, sd is the sample sd (n - 1), intervals are Student t.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from analysis.table import AnalysisError

CELL = ["pair", "arm", "kappa"]


def pearson_ci(x, y, level: float = 0.95) -> tuple[float, float, float, int]:
    """Pearson r with a Fisher-z confidence interval (normal approximation; NaN bounds for n < 4)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 2 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan, math.nan, math.nan, n
    r = float(np.corrcoef(x, y)[0, 1])
    if n < 4 or not math.isfinite(r) or abs(r) == 1:
        return r, math.nan, math.nan, n
    half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(n - 3)
    return r, math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half), n


def mean_ci(values, level: float = 0.95) -> dict:
    """mean, sd, se, n and the t-interval of the mean of `values` (NaN where n < 2)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    sd = float(values.std(ddof=1)) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se if n > 1 else math.nan
    return {"mean": mean, "sd": sd, "se": se, "n": n, "low": mean - half, "high": mean + half}


def paired_columns(frame: pd.DataFrame, columns, treatment: str = "kd", baseline: str = "lt") -> pd.DataFrame:
    """One row per (pair, treatment arm, kappa, seed) with both objectives: for each column c,
    `c_kd`, `c_lt` and `c_gain` = c_kd - c_lt (the suffixes are kd/lt whatever the objectives)."""
    columns = list(columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalysisError(f"the results table lacks column(s) {', '.join(missing)}")
    keep = ["pair", "kappa", "seed", *columns]
    treated = frame.loc[frame["objective"] == treatment, ["arm", *keep]]
    base = frame.loc[frame["objective"] == baseline, keep]
    if treated.empty or base.empty:
        raise AnalysisError(f"no {treatment}/{baseline} pairs: the table needs both objectives")
    paired = treated.merge(base, on=["pair", "kappa", "seed"], suffixes=("_kd", "_lt"))
    if paired.empty:
        raise AnalysisError(f"no {treatment} trial has a {baseline} trial of the same pair, kappa and seed")
    for column in columns:
        kd = pd.to_numeric(paired[f"{column}_kd"], errors="coerce").astype(float)
        lt = pd.to_numeric(paired[f"{column}_lt"], errors="coerce").astype(float)
        paired[f"{column}_kd"], paired[f"{column}_lt"], paired[f"{column}_gain"] = kd, lt, kd - lt
    return paired.sort_values(["pair", "arm", "kappa", "seed"]).reset_index(drop=True)


def per_cell(frame: pd.DataFrame, columns, by=CELL) -> pd.DataFrame:
    """Per cell (default pair, arm, kappa): n_seeds and `<column>_mean`, `<column>_sd` over seeds."""
    rows = []
    for key, group in frame.groupby(list(by), sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n_seeds"] = int(group["seed"].nunique()) if "seed" in group else len(group)
        for column in columns:
            values = pd.to_numeric(group[column], errors="coerce").astype(float).dropna()
            row[f"{column}_mean"] = float(values.mean()) if len(values) else math.nan
            row[f"{column}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(paired: pd.DataFrame, x: str, y: str, by: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """Pearson r of x against y with its Fisher-z interval: over all rows (group `all`) and, with
    `by`, within each group. Columns: group, r, low, high, n."""
    rows = []
    frame = paired[np.isfinite(paired[x].astype(float)) & np.isfinite(paired[y].astype(float))]
    groups = [("all", frame)] + (list(frame.groupby(by, sort=True)) if by else [])
    for name, group in groups:
        r, low, high, n = pearson_ci(group[x].to_numpy(float), group[y].to_numpy(float), level)
        rows.append({"group": name, "r": r, "low": low, "high": high, "n": n})
    return pd.DataFrame(rows)


def share_remaining(paired: pd.DataFrame, full: str, kept: str, clear_se: float = 2.0,
                    min_gain: float = 0.01) -> pd.DataFrame:
    """How much of a gain survives another read-out, per (pair, arm, kappa).

    `full` and `kept` name columns of `paired_columns` (e.g. test_acc and probe_acc): the gain of
    each is mean ± sd over seeds, and `share` = mean kept gain / mean full gain (a ratio of means:
    a per-seed ratio explodes where one seed's gain is near 0). `clear` says whether the full gain
    is clearly positive: mean > clear_se standard errors and at least min_gain (a ratio to a gain
    of a few test points means little, however steady).
    `share_min`/`share_max` are the per-seed ratios' range, over seeds with a positive full gain.
    """
    rows = []
    for key, group in paired.groupby(CELL, sort=True):
        full_gain = group[f"{full}_gain"].to_numpy(float)
        kept_gain = group[f"{kept}_gain"].to_numpy(float)
        both = np.isfinite(full_gain) & np.isfinite(kept_gain)
        full_gain, kept_gain = full_gain[both], kept_gain[both]
        f, k = mean_ci(full_gain), mean_ci(kept_gain)
        positive = full_gain > 0
        ratios = kept_gain[positive] / full_gain[positive]
        rows.append({**dict(zip(CELL, key)), "n_seeds": int(both.sum()),
                     f"{full}_gain_mean": f["mean"], f"{full}_gain_sd": f["sd"],
                     f"{kept}_gain_mean": k["mean"], f"{kept}_gain_sd": k["sd"],
                     "share": k["mean"] / f["mean"] if f["mean"] > 0 else math.nan,
                     "share_min": float(ratios.min()) if len(ratios) else math.nan,
                     "share_max": float(ratios.max()) if len(ratios) else math.nan,
                     "clear": bool(f["n"] > 1 and f["mean"] > clear_se * f["se"] and f["mean"] >= min_gain)})
    return pd.DataFrame(rows)
