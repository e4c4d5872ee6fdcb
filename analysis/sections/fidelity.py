"""The fidelity study's section: agreement with the teacher, its gain against the accuracy gain,
and the train-test fidelity gap's power law (studies/fidelity.py; paper Figs. 6, 10, 11, 13).

Tables: `cells` (per pair, arm, kappa: fidelity_train, fidelity_test and test_acc, mean and sd
over seeds), `paired` (per seed: dF = fidelity_test_gain and PI = test_acc_gain), `gains` (their
mean and sd per cell), `correlations` (Pearson r of dF with PI), `teachers` (teacher test
accuracy), `excess` (dF - PI over points), `gap_fits` (omega * kappa^-beta per pair and arm).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import markdown as md
from analysis.fidelity import describe, fidelity_gap
from analysis.paired import correlations, paired_columns, per_cell
from analysis.sections import Section, Table
from analysis.table import prepare

NAME = "fidelity"


def numbers(table: pd.DataFrame, results_dir=None):
    """(fidelity per cell, paired gains per seed, correlations of dF with PI, gap points, gap fits)."""
    trials = prepare(table, results_dir=results_dir)
    cells = per_cell(trials.frame, ["fidelity_train", "fidelity_test", "test_acc"])
    paired = paired_columns(trials.frame, ["fidelity_test", "test_acc"])
    corr = correlations(paired, "fidelity_test_gain", "test_acc_gain", by="pair")
    points, fits, reason = fidelity_gap(trials)
    if reason:
        raise ValueError(f"fidelity gap: {reason}")
    return cells, paired, corr, points, fits


def draw(cells, paired, points, fits, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    from analysis.plots import fidelity_gap as draw_gap

    pairs = sorted(cells["pair"].unique())
    figure = Figure(figsize=(4.2 * len(pairs), 3.4), layout="constrained")
    for i, pair in enumerate(pairs):
        ax = figure.add_subplot(1, len(pairs), i + 1)
        for arm, group in cells[cells["pair"] == pair].groupby("arm", sort=True):
            group = group.sort_values("kappa")
            for column, style in (("fidelity_train", "-"), ("fidelity_test", "--")):
                ax.errorbar(group["kappa"], group[f"{column}_mean"], yerr=group[f"{column}_sd"].fillna(0),
                            ls=style, marker="o", ms=3, capsize=2, label=f"{arm} {column.split('_')[1]}",
                            color="tab:blue" if arm.startswith("kd") else "tab:orange")
        ax.set(xscale="log", xlabel="kappa = M / N", ylabel="top-1 agreement with the teacher", title=pair)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    figure.suptitle("Fidelity on the student's training samples and on the test set (paper Fig. 6)", fontsize=10)
    paths = [out_dir / "fidelity_vs_kappa.png"]
    figure.savefig(paths[-1], dpi=120)

    figure = Figure(figsize=(5.6, 4.2), layout="constrained")
    ax = figure.add_subplot()
    for marker, pair in zip("osD^v", sorted(paired["pair"].unique())):
        part = paired[paired["pair"] == pair]
        points_drawn = ax.scatter(part["fidelity_test_gain"], part["test_acc_gain"], c=np.log10(part["kappa"]),
                                  cmap="viridis", vmin=np.log10(paired["kappa"].min()),
                                  vmax=np.log10(paired["kappa"].max()), marker=marker, label=pair, edgecolors="k",
                                  linewidths=0.3)
    figure.colorbar(points_drawn, ax=ax, label="log10 kappa")
    ax.axhline(0, color="gray", lw=0.6)
    ax.axvline(0, color="gray", lw=0.6)
    ax.set(xlabel="fidelity gain dF = fidelity_test(kd) - fidelity_test(lt)", ylabel="accuracy gain PI",
           title="Fidelity gain against accuracy gain, per (kappa, seed) (Figs. 10-11)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    paths.append(out_dir / "fidelity_gain_vs_pi.png")
    figure.savefig(paths[-1], dpi=120)

    pairs = sorted(points["pair"].unique())
    paths.append(draw_gap(points, fits, pairs, out_dir / "fidelity_gap_fit.png"))
    return paths


def cell_table(cells: pd.DataFrame, gains: pd.DataFrame) -> Table:
    """One row per (pair, kd arm, kappa): both fidelities of lt and kd, dF and PI, as display text."""
    wide = cells.pivot_table(index=["pair", "kappa"], columns="arm",
                             values=["fidelity_train_mean", "fidelity_train_sd", "fidelity_test_mean",
                                     "fidelity_test_sd"], aggfunc="first")
    rows = []
    for gain in gains.to_dict("records"):
        pair, arm, kappa = gain["pair"], gain["arm"], gain["kappa"]

        def cell(column, which):
            return md.mean_pm(wide.loc[(pair, kappa), (f"{column}_mean", which)],
                              wide.loc[(pair, kappa), (f"{column}_sd", which)])
        rows.append([pair, arm, f"{kappa:g}", str(gain["n_seeds"]), cell("fidelity_train", "lt"),
                     cell("fidelity_train", arm), cell("fidelity_test", "lt"), cell("fidelity_test", arm),
                     md.mean_pm(gain["fidelity_test_gain_mean"], gain["fidelity_test_gain_sd"], sign=True),
                     md.mean_pm(gain["test_acc_gain_mean"], gain["test_acc_gain_sd"], sign=True)])
    return Table(pd.DataFrame(rows, columns=["pair", "kd arm", "kappa", "seeds", "train lt", "train kd", "test lt",
                                             "test kd", "dF (test)", "PI"]))


def section(table: pd.DataFrame, results_dir: str, out_dir: Path) -> Section:
    """The study's section: its numbers, text and figures (drawn into out_dir)."""
    cells, paired, corr, points, fits = numbers(table, results_dir)
    figures = draw(cells, paired, points, fits, Path(out_dir))
    gains = per_cell(paired, ["fidelity_test_gain", "test_acc_gain"])
    teacher_acc = table.groupby("teacher")["teacher_test_acc"].first()
    excess = paired["fidelity_test_gain"] - paired["test_acc_gain"]
    tables = {"cells": cells, "paired": paired, "gains": gains, "correlations": corr,
              "teachers": teacher_acc.rename_axis("teacher").reset_index(),
              "excess": pd.DataFrame([{"mean": excess.mean(), "sd": excess.std(), "n": int(excess.count())}]),
              "gap_fits": fits}
    result = Section(NAME, tables=tables, figures=figures)
    result.add("## Fidelity to the teacher", "",
               "Top-1 agreement with the teacher on the student's own training samples (train) and on the "
               "test set (test), mean ± sd over seeds; dF = fidelity_test(kd) - fidelity_test(lt) and PI = "
               "acc(kd) - acc(lt), paired by seed.", "",
               cell_table(cells, gains))
    means = gains["fidelity_test_gain_mean"]
    result.add("", f"Test fidelity of kd is above lt's in {int((means > 0).sum())} of {len(means)} (pair, kappa) "
               f"cells (seed-mean dF from {means.min():+.3f} to {means.max():+.3f}).", "",
               "Correlation of dF with PI over (kappa, seed) points, Pearson r with a 95% interval resampled by "
               "seed (a seed's points share its draws, so they are not independent; analysis.paired), and the "
               "Fisher-z interval that takes every point as independent:", "")
    for row in corr.to_dict("records"):
        where = "all pairs pooled" if row["group"] == "all" else row["group"]
        result.add(f"- {where}: r = {md.number(row['r'])}, 95% CI [{md.number(row['low'])}, "
                   f"{md.number(row['high'])}] ({row['method']}), Fisher-z [{md.number(row['fisher_low'])}, "
                   f"{md.number(row['fisher_high'])}], n = {row['n']}")
    result.add("", "Read this correlation with care: test fidelity and test accuracy differ only on the test points "
               "the teacher gets wrong (teacher test accuracy "
               + ", ".join(f"{name} {acc:.3f}" for name, acc in teacher_acc.items())
               + f"), so dF and PI are close by construction: dF - PI = {excess.mean():+.3f} ± {excess.std():.3f} "
               "(mean ± sd over points).")
    result.add("", "Train-test fidelity gap fitted as omega * kappa^-beta on every trial (analysis.fidelity; "
               "t-intervals; the unweighted F-test of beta = 1/2 against beta free, and the test by seed, a "
               "t-test over the seeds' own exponents, which holds its level where the noise is not of one size):",
               "")
    for row in fits.to_dict("records"):
        result.add(f"- {row['pair']}, {row['arm']}: {describe(row)}")
    tested = fits[fits["f_p"].notna()] if "f_p" in fits.columns else fits.iloc[:0]
    if len(tested):
        result.add("", f"beta = 1/2 is consistent with the data (F-test p >= 0.05) in "
                   f"{int((tested['f_p'] >= 0.05).sum())} of {len(tested)} fits; fitted beta ranges from "
                   f"{tested['beta'].min():.2f} to {tested['beta'].max():.2f}.")
    by_seed = fits[fits["seed_p"].notna()] if "seed_p" in fits.columns else fits.iloc[:0]
    if len(by_seed):
        result.add("", f"By the test by seed, beta = 1/2 is consistent with the data (p >= 0.05) in "
                   f"{int((by_seed['seed_p'] >= 0.05).sum())} of {len(by_seed)} fits.")
    return result
