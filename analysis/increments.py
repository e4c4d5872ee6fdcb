"""Performance increment PI = R(kd) - R(lt) and gain PG = R(kd) / R(lt), paired by seed.

A seed draws the student's subset, initialisation and batch order, so the kd and lt trials of one
seed at one (pair, kappa) share their data draw: differences within a seed cancel that draw's luck,
and the spread of the per-seed differences is the honest uncertainty of the mean. PG is the mean of
the per-seed ratios (not the ratio of the means), so PI and PG are summarised the same way.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.table import AnalysisError, Trials

PAIRED_COLUMNS = ["pair", "arm", "kappa", "seed", "R_kd", "R_lt", "PI", "PG",
                  "trial_id_kd", "trial_id_lt"]


def pair_by_seed(trials: Trials, treatment: str = "kd", baseline: str = "lt") -> pd.DataFrame:
    """One row per (pair, treatment arm, kappa, seed) that has both a treatment and a baseline trial.

    Columns are named R_kd / R_lt whatever the objectives, so downstream code reads one schema.
    """
    frame = trials.frame
    present = sorted(frame["objective"].unique())
    treated = frame[frame["objective"] == treatment]
    base = frame[frame["objective"] == baseline]
    if treated.empty or base.empty:
        lacking = " and ".join(o for o, part in ((treatment, treated), (baseline, base)) if part.empty)
        raise AnalysisError(f"no {treatment}/{baseline} pairs: no usable {lacking} trials "
                            f"(objectives present: {', '.join(present)})")
    base = base[["pair", "kappa", "seed", "R", "trial_id"]]
    paired = treated[["pair", "arm", "kappa", "seed", "R", "trial_id"]].merge(
        base, on=["pair", "kappa", "seed"], suffixes=("_kd", "_lt"))
    if paired.empty:
        raise AnalysisError(f"no {treatment} trial has a {baseline} trial with the same pair, kappa "
                            f"and seed: PI and PG need both objectives on the same grid and seeds")
    paired["PI"] = paired["R_kd"] - paired["R_lt"]
    # A baseline of exactly 0 (e.g. zero test error) has no ratio; it drops out of PG only.
    with np.errstate(divide="ignore", invalid="ignore"):
        paired["PG"] = np.where(paired["R_lt"] != 0, paired["R_kd"] / paired["R_lt"], np.nan)
    return paired[PAIRED_COLUMNS].sort_values(["pair", "arm", "kappa", "seed"]).reset_index(drop=True)


def count_unpaired(trials: Trials, paired: pd.DataFrame, treatment: str = "kd",
                   baseline: str = "lt") -> dict[str, int]:
    """Trials of either objective that found no partner of the same seed (e.g. the other failed)."""
    frame = trials.frame
    n_treated = int((frame["objective"] == treatment).sum())
    used_base = paired.drop_duplicates("trial_id_lt")
    return {treatment: n_treated - len(paired),
            baseline: int((frame["objective"] == baseline).sum()) - len(used_base)}


def summarize(paired: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, arm, kappa): seeds, mean R of both arms, and mean, sd, se of PI and PG."""
    rows = []
    for (pair, arm, kappa), group in paired.groupby(["pair", "arm", "kappa"], sort=True):
        row = {"pair": pair, "arm": arm, "kappa": kappa, "n_seeds": len(group),
               "R_kd": group["R_kd"].mean(), "R_lt": group["R_lt"].mean()}
        for name in ("PI", "PG"):
            row.update(_moments(group[name].to_numpy(dtype=float), name))
        rows.append(row)
    return pd.DataFrame(rows)


def _moments(values: np.ndarray, name: str) -> dict[str, float]:
    values = values[np.isfinite(values)]
    n = len(values)
    sd = float(np.std(values, ddof=1)) if n > 1 else np.nan  # sample sd over seeds
    return {f"{name}_mean": float(np.mean(values)) if n else np.nan, f"{name}_sd": sd,
            f"{name}_se": sd / np.sqrt(n) if n > 1 else np.nan}
