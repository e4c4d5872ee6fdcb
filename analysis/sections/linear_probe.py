"""The linear-probe study's section: does kd's gain in test accuracy survive a linear probe fitted
on the teacher's N samples on the frozen student features? (studies/linear_probe.py; paper
Figs. 14, 19)

Tables: `cells` (per pair, arm, kappa: test_acc and probe_acc, mean and sd over seeds), `shares`
(per pair, kd arm, kappa: PI of both, paired by seed, and the share of PI that remains, with
`clear` saying where it is reported), `summary` (the cells where kd clearly helps: how many, in
how many the probe's PI is positive, and the range and median of the share there).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import markdown as md
from analysis.paired import paired_columns, per_cell, share_remaining
from analysis.sections import Section, Table
from analysis.table import prepare

NAME = "linear_probe"


def numbers(table: pd.DataFrame):
    """(accuracy and probe accuracy per cell, the share of PI that remains per cell, by pair, tau, kappa)."""
    trials = prepare(table)
    cells = per_cell(trials.frame, ["test_acc", "probe_acc"])
    shares = share_remaining(paired_columns(trials.frame, ["test_acc", "probe_acc"]), "test_acc", "probe_acc")
    shares = shares.assign(tau=shares["arm"].map(by_tau)).sort_values(["pair", "tau", "kappa"])
    return cells, shares.reset_index(drop=True)


def by_tau(arm: str) -> float:
    """Sort key of an arm label: "kd tau=10" after "kd tau=4"; lt first."""
    return float(arm.split("=")[1].split()[0]) if "=" in arm else 0.0


def draw(cells, shares, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    arms = sorted(shares["arm"].unique(), key=by_tau)
    paths = []
    for pair in sorted(shares["pair"].unique()):
        figure = Figure(figsize=(4.0 * (len(arms) + 1), 3.5), layout="constrained")
        ax = figure.add_subplot(1, len(arms) + 1, 1)
        for arm in sorted(cells.loc[cells["pair"] == pair, "arm"].unique(), key=by_tau):
            group = cells[(cells["pair"] == pair) & (cells["arm"] == arm)].sort_values("kappa")
            line = ax.errorbar(group["kappa"], group["test_acc_mean"], yerr=group["test_acc_sd"].fillna(0),
                               marker="o", ms=3, capsize=2, label=f"{arm} test acc")
            ax.errorbar(group["kappa"], group["probe_acc_mean"], yerr=group["probe_acc_sd"].fillna(0), ls="--",
                        marker="s", ms=3, capsize=2, color=line[0].get_color(), label=f"{arm} probe")
        ax.set(xscale="log", xlabel="kappa = M / N", ylabel="accuracy", title="student head (solid) vs probe (dashed)")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
        first = None
        for i, arm in enumerate(arms):
            ax = figure.add_subplot(1, len(arms) + 1, i + 2, sharey=first)
            first = first or ax
            part = shares[(shares["pair"] == pair) & (shares["arm"] == arm)].sort_values("kappa")
            for column, label in (("test_acc", "PI, student head"), ("probe_acc", "PI, linear probe")):
                ax.errorbar(part["kappa"], part[f"{column}_gain_mean"], yerr=part[f"{column}_gain_sd"].fillna(0),
                            marker="o", ms=3, capsize=2, label=label)
            ax.axhline(0, color="gray", lw=0.8, ls="--")
            ax.set(xscale="log", xlabel="kappa = M / N", ylabel="kd - lt (mean ± sd over seeds)", title=arm)
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7)
        figure.suptitle(f"{pair}: does the PI survive a linear probe on the teacher's N samples? (Figs. 14, 19)",
                        fontsize=10)
        name = "linear_probe_pi.png" if len(paths) == 0 else f"linear_probe_pi_{len(paths)}.png"
        paths.append(out_dir / name)
        figure.savefig(paths[-1], dpi=120)
    return paths


def share_table(cells: pd.DataFrame, shares: pd.DataFrame) -> Table:
    """One row per (pair, kd arm, kappa): accuracy and probe accuracy of lt and kd, both PIs, the share."""
    by_cell = cells.set_index(["pair", "arm", "kappa"])

    def stat(pair, arm, kappa, column):
        row = by_cell.loc[(pair, arm, kappa)]
        return md.mean_pm(row[f"{column}_mean"], row[f"{column}_sd"])
    rows = []
    for row in shares.to_dict("records"):
        pair, arm, kappa = row["pair"], row["arm"], row["kappa"]
        share = (f"{row['share']:.2f} [{row['share_min']:.2f}, {row['share_max']:.2f}]" if row["clear"] else md.MISSING)
        rows.append([pair, arm, f"{kappa:g}", str(row["n_seeds"]), stat(pair, "lt", kappa, "test_acc"),
                     stat(pair, arm, kappa, "test_acc"), stat(pair, "lt", kappa, "probe_acc"),
                     stat(pair, arm, kappa, "probe_acc"),
                     md.mean_pm(row["test_acc_gain_mean"], row["test_acc_gain_sd"], sign=True),
                     md.mean_pm(row["probe_acc_gain_mean"], row["probe_acc_gain_sd"], sign=True), share])
    return Table(pd.DataFrame(rows, columns=["pair", "kd arm", "kappa", "seeds", "acc lt", "acc kd", "probe lt",
                                             "probe kd", "PI acc", "PI probe", "share"]))


def section(table: pd.DataFrame, results_dir: str, out_dir: Path) -> Section:
    """The study's section: its numbers, text and figures (drawn into out_dir). results_dir is
    unused (the probe accuracy is a column of the table); it is there for the common signature."""
    cells, shares = numbers(table)
    clear = shares[shares["clear"]]
    survives = clear[clear["probe_acc_gain_mean"] > 0]
    summary = pd.DataFrame([{"cells": len(shares), "clear": len(clear), "probe_positive": len(survives),
                             "share_min": clear["share"].min() if len(clear) else np.nan,
                             "share_max": clear["share"].max() if len(clear) else np.nan,
                             "share_median": float(np.median(clear["share"])) if len(clear) else np.nan}])
    result = Section(NAME, tables={"cells": cells, "shares": shares, "summary": summary},
                     figures=draw(cells, shares, Path(out_dir)))
    result.add("## Linear probe: does the PI survive retraining the head?", "",
               "PI = kd - lt, paired by seed, mean ± sd over seeds: of the student's own test accuracy, and of a "
               "linear probe fitted on the teacher's N training samples on the frozen student features. Share = "
               "mean PI(probe) / mean PI(test acc); in brackets the range of the per-seed ratios. Shown where "
               "PI(test acc) is clearly positive (mean > 2 se and >= 0.01); `n/a` elsewhere.", "",
               share_table(cells, shares), "")
    if len(clear):
        result.add(f"Where kd clearly helps ({len(clear)} of {len(shares)} (kappa, tau) cells), the PI of the probe "
                   f"is positive in {len(survives)}; the share that remains ranges from {clear['share'].min():.2f} "
                   f"to {clear['share'].max():.2f} (median {np.median(clear['share']):.2f}).")
        for _, group in clear.groupby(["pair", "tau"], sort=True):
            shares_text = ", ".join(f"{s:.2f} at kappa {k:g}" for k, s in zip(group["kappa"], group["share"]))
            result.add(f"- {group['pair'].iloc[0]}, {group['arm'].iloc[0]}: share {shares_text}")
    else:
        result.add("kd does not clearly help in any (kappa, tau) cell here, so there is no PI whose survival to test.")
    return result
