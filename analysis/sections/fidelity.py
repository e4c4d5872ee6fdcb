"""The fidelity study's section: agreement with the teacher, its gain against the accuracy gain,
test fidelity against test accuracy, and the train-test fidelity gap's power law
(studies/fidelity.py; paper Figs. 6, 10, 11, 13).

Tables: `cells` (per pair, arm, kappa: fidelity_train, fidelity_test and test_acc, mean and sd
over seeds), `paired` (per seed: dF = fidelity_test_gain and PI = test_acc_gain), `gains` (their
mean and sd per cell), `correlations` (Pearson r of dF with PI), `teachers` (teacher test
accuracy), `excess` (dF - PI over points), `accuracy_points` (per trial: test_acc, fidelity_test
and the bounds the teacher's accuracy puts on it), `accuracy_arms` (per pair and arm: Pearson r of
fidelity_test with test_acc, mean distance to the upper bound), `gap_fits` (omega * kappa^-beta
per pair and arm).

Test fidelity against test accuracy (Fig. 10). A student of test accuracy a and a teacher of t
agree at least where both are right and at most everywhere but where exactly one is right:
max(0, a + t - 1) <= F <= 1 - |a - t|. Every trial must lie inside (a check of the metrics); how
close a student sits to the upper bound says how much of its agreement with the teacher goes
beyond being right where the teacher is: at equal accuracy, kd students should sit nearer it.
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
    """(fidelity per cell, paired gains per seed, correlations of dF with PI, gap points, gap fits,
    the trials used)."""
    trials = prepare(table, results_dir=results_dir)
    cells = per_cell(trials.frame, ["fidelity_train", "fidelity_test", "test_acc"])
    paired = paired_columns(trials.frame, ["fidelity_test", "test_acc"])
    corr = correlations(paired, "fidelity_test_gain", "test_acc_gain", by="pair")
    points, fits, reason = fidelity_gap(trials)
    if reason:
        raise ValueError(f"fidelity gap: {reason}")
    return cells, paired, corr, points, fits, trials.frame


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


def accuracy_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Per trial: pair, arm, kappa, seed, test_acc, fidelity_test, teacher_test_acc, the bounds
    (module doc) `lower` and `upper`, `inside` them (to float tolerance), `slack` = upper - F."""
    points = frame[["pair", "arm", "kappa", "seed", "test_acc", "fidelity_test", "teacher_test_acc"]].astype(
        {"test_acc": float, "fidelity_test": float, "teacher_test_acc": float}).dropna().reset_index(drop=True)
    student, teacher = points["test_acc"], points["teacher_test_acc"]
    points["lower"] = (student + teacher - 1.0).clip(lower=0.0)
    points["upper"] = 1.0 - (student - teacher).abs()
    fidelity = points["fidelity_test"]
    points["inside"] = (fidelity >= points["lower"] - 1e-6) & (fidelity <= points["upper"] + 1e-6)
    points["slack"] = points["upper"] - points["fidelity_test"]
    return points


def accuracy_arms(points: pd.DataFrame) -> pd.DataFrame:
    """Per (pair, arm): trials n, Pearson r of fidelity_test with test_acc, mean slack to the upper bound."""
    rows = []
    for (pair, arm), group in points.groupby(["pair", "arm"], sort=True):
        varied = len(group) > 2 and group["test_acc"].std() > 0 and group["fidelity_test"].std() > 0
        rows.append({"pair": pair, "arm": arm, "n": len(group), "slack_mean": group["slack"].mean(),
                     "r": float(np.corrcoef(group["test_acc"], group["fidelity_test"])[0, 1]) if varied else np.nan})
    return pd.DataFrame(rows, columns=["pair", "arm", "n", "r", "slack_mean"])


def draw_accuracy(points: pd.DataFrame, path: Path) -> Path:
    """Per pair: test fidelity against test accuracy, one point per trial, with the bounds."""
    from matplotlib.figure import Figure

    pairs = sorted(points["pair"].unique())
    figure = Figure(figsize=(4.2 * len(pairs), 3.6), layout="constrained")
    for i, pair in enumerate(pairs):
        ax = figure.add_subplot(1, len(pairs), i + 1)
        part = points[points["pair"] == pair]
        for arm, group in part.groupby("arm", sort=True):
            ax.scatter(group["test_acc"], group["fidelity_test"], s=14, label=arm,
                       color="tab:blue" if arm.startswith("kd") else "tab:orange")
        teacher = float(part["teacher_test_acc"].mean())
        accuracy = np.linspace(part["test_acc"].min(), part["test_acc"].max(), 50)
        ax.plot(accuracy, 1.0 - np.abs(accuracy - teacher), color="gray", lw=0.8, ls="--",
                label=f"1 - |a - t|, t = {teacher:.3f}")
        ax.set(xlabel="test accuracy a", ylabel="test fidelity F", title=pair)
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    figure.suptitle("Test fidelity against test accuracy, one point per trial (paper Fig. 10)", fontsize=10)
    figure.savefig(path, dpi=120)
    return path


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
    cells, paired, corr, points, fits, trials = numbers(table, results_dir)
    figures = draw(cells, paired, points, fits, Path(out_dir))
    fidelity_points = accuracy_points(trials)
    arms = accuracy_arms(fidelity_points)
    figures.insert(2, draw_accuracy(fidelity_points, Path(out_dir) / "fidelity_vs_accuracy.png"))
    gains = per_cell(paired, ["fidelity_test_gain", "test_acc_gain"])
    teacher_acc = table.groupby("teacher")["teacher_test_acc"].first()
    excess = paired["fidelity_test_gain"] - paired["test_acc_gain"]
    tables = {"cells": cells, "paired": paired, "gains": gains, "correlations": corr,
              "teachers": teacher_acc.rename_axis("teacher").reset_index(),
              "excess": pd.DataFrame([{"mean": excess.mean(), "sd": excess.std(), "n": int(excess.count())}]),
              "accuracy_points": fidelity_points, "accuracy_arms": arms, "gap_fits": fits}
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
    inside = int(fidelity_points["inside"].sum())
    result.add("", f"Test fidelity F against test accuracy a (paper Fig. 10): {inside} of {len(fidelity_points)} "
               "trials lie within max(0, a + t - 1) <= F <= 1 - |a - t| that the teacher's accuracy t allows"
               + ("" if inside == len(fidelity_points) else " (a trial outside means its metrics are inconsistent)")
               + ". Per arm, Pearson r of F with a over trials, and how far F stays below the upper bound "
               "(mean 1 - |a - t| - F; smaller: closer to the teacher than accuracy alone requires):", "")
    for row in arms.to_dict("records"):
        result.add(f"- {row['pair']}, {row['arm']}: r = {md.number(row['r'])}, mean distance to the bound "
                   f"{row['slack_mean']:.3f} (n = {row['n']})")
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
