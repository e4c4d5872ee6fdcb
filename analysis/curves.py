"""Learning curves from the trials' stored histories (`<study>/history/<trial id>.json`, the
per-epoch reports every trial writes): test accuracy against training step, per (arm, kappa),
mean and spread over seeds; and whether each arm was still improving when its budget ran out.

    histories(frame, results_dir) -> long frame: arm, kappa, seed, step, test_acc
    late_gain(curves)             -> per (arm, kappa): n, final, late gain (last - at half the steps)
    still_rising(gains)           -> the cells still improving at the end, as one line of text

The figure, a panel per (kappa, tau), is analysis.plots.curves_per_kappa_tau.

The test accuracy of a history is reported, never used to choose anything: the recipes are chosen
on validation data before these trials ran.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kdscale import schema

COLUMNS = ["arm", "kappa", "seed", "step", "test_acc"]


def histories(frame: pd.DataFrame, results_dir: str | None) -> pd.DataFrame:
    """Every usable trial's history (frame: analysis.table's prepared rows, with arm), one row per
    report; trials without a history file are left out (the frame is empty without results_dir)."""
    rows = []
    if results_dir is not None:
        fs, root = schema.filesystem(results_dir)
        for trial in frame.itertuples(index=False):
            for report in schema.read_history(fs, root, trial.trial_id):
                if "test_acc" in report and report.get("step") is not None:
                    rows.append((trial.arm, float(trial.kappa), int(trial.seed), int(report["step"]),
                                 float(report["test_acc"])))
    return pd.DataFrame(rows, columns=COLUMNS)


def late_gain(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (arm, kappa): n seeds, the mean final test accuracy, and the late gain: the final accuracy
    minus the one at half the steps (the last report at or before it), mean and sd over seeds. A late
    gain well above its sd says the arm was still improving when its budget ran out."""
    rows = []
    for (arm, kappa), group in curves.groupby(["arm", "kappa"], sort=True):
        finals, gains = [], []
        for _, seed in group.groupby("seed"):
            seed = seed.sort_values("step")
            half = seed[seed["step"] <= seed["step"].iloc[-1] / 2]
            if len(half):
                finals.append(seed["test_acc"].iloc[-1])
                gains.append(seed["test_acc"].iloc[-1] - half["test_acc"].iloc[-1])
        n = len(gains)
        rows.append({"arm": arm, "kappa": kappa, "n": n, "final_mean": np.mean(finals) if n else math.nan,
                     "late_gain_mean": np.mean(gains) if n else math.nan,
                     "late_gain_sd": np.std(gains, ddof=1) if n > 1 else math.nan})
    return pd.DataFrame(rows, columns=["arm", "kappa", "n", "final_mean", "late_gain_mean", "late_gain_sd"])


def arm_order(arm: str) -> tuple:
    """lt first, then kd by tau (with the tau^2 factor before without), then the rest by name."""
    tau = float(arm.split("tau=")[1].split()[0]) if arm.startswith("kd tau=") else math.inf
    return arm != "lt", tau, "no-tau2" in arm, arm


def still_rising(gains: pd.DataFrame, floor: float = 0.01) -> str:
    """The cells whose late gain is above max(floor, its sd over seeds), as text grouped by arm
    ("kd tau=20 at kappa 0.1, 1 (+0.013 to +0.018)"), or "none"."""
    rising = gains[gains["late_gain_mean"] > np.maximum(floor, gains["late_gain_sd"].fillna(0.0))]
    parts = []
    for arm in sorted(rising["arm"].unique(), key=arm_order):
        cells = rising[rising["arm"] == arm].sort_values("kappa")
        low, high = cells["late_gain_mean"].min(), cells["late_gain_mean"].max()
        span = f"+{low:.3f}" if len(cells) == 1 else f"+{low:.3f} to +{high:.3f}"
        parts.append(f"{arm} at kappa {', '.join(f'{k:g}' for k in cells['kappa'])} ({span})")
    return "; ".join(parts) or "none"
