"""The budget study's comparison section: one grid under a fixed step budget and under a fixed
epoch budget, two studies side by side (studies/budget.py).

Tables: `increments` (per pair, kd arm, kappa: accuracies, PI and PG under each budget, dPI =
PI(epochs) - PI(steps) paired by seed with its t-interval, the steps the epoch budget takes),
`crossings` (kappa* under each budget, whether its status changed and the intervals overlap),
`summary` (the counts of the closing sentence).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import markdown as md
from analysis.budget import compare_crossings, compare_increments, epochs_matching_steps
from analysis.crossover import (ABOVE, BELOW, UNSTABLE, UPWARD, crossover, format_interval,
                                max_bootstrap_coverage)
from analysis.increments import pair_by_seed
from analysis.sections import Section, Table
from analysis.table import prepare

NAME = "budget"
NAMES = ("steps", "epochs")


def numbers(steps_table: pd.DataFrame, epochs_table: pd.DataFrame, n_boot: int = 2000):
    """(PI/PG per budget and their paired difference per cell, with the steps the epoch budget takes
    per kappa; kappa* per budget)."""
    paired, crossings = {}, {}
    for name, table in zip(NAMES, (steps_table, epochs_table)):
        paired[name] = pair_by_seed(prepare(table))
        crossings[name] = crossover(paired[name], higher_is_better=True, n_boot=n_boot)
    increments = compare_increments(paired["steps"], paired["epochs"], NAMES)
    steps_taken = (epochs_table.groupby("kappa")["steps"].median().rename("steps_epochs_budget")
                   .rename_axis("kappa").reset_index())
    steps_taken["kappa"] = [float(f"{k:.10g}") for k in steps_taken["kappa"]]
    increments = increments.merge(steps_taken, on="kappa", how="left")
    return increments, compare_crossings(crossings["steps"], crossings["epochs"], NAMES)


def epoch_choice(steps_table: pd.DataFrame, epochs_table: pd.DataFrame) -> str:
    """One sentence on how the epoch budget relates to the step budget at kappa = 1."""
    steps = int(str(steps_table["budget"].iloc[0]).removeprefix("steps="))  # the `budget` column: steps=S
    epochs = int(str(epochs_table["budget"].iloc[0]).removeprefix("epochs="))  # epochs=E
    batch, n_teacher = int(steps_table["batch_size"].iloc[0]), int(steps_table["n_teacher"].iloc[0])
    matching, exact = epochs_matching_steps(steps, batch, n_teacher)
    how = (f"E = {steps} * {batch} / {n_teacher} = {exact:g}" + ("" if matching == exact else f", rounded to {matching}"))
    if epochs == matching:
        return f"The epoch budget gives kappa = 1 as many samples as the step budget: {how}."
    return f"The epoch budget E = {epochs} was set by hand; the step budget's samples at kappa = 1 would be {how}."


def kappa_star_cell(row: dict, name: str) -> str:
    """kappa* of one budget in a few words: the estimate and its interval, or the side of the grid."""
    status, value = row[f"status_{name}"], row[f"kappa_star_{name}"]
    interval = format_interval({"ci_low": row[f"ci_low_{name}"], "ci_high": row[f"ci_high_{name}"],
                                "kappa_min": row["kappa_min"], "kappa_max": row["kappa_max"]})
    if status == ABOVE:
        known = row[f"ci_low_{name}"] < float("inf")  # some replicates cross inside the grid
        return f"> {row['kappa_max']:g} (kd helps at every kappa{f'; CI {interval}' if known else ''})"
    if status == BELOW:
        return f"< {row['kappa_min']:g} (kd hurts at every kappa)"
    if status == UNSTABLE:
        return f"no stable crossing (kd helps again at {row['kappa_max']:g})"
    text = f"{value:.3g} {interval}"
    return text + " (upward: kd starts to help there)" if status == UPWARD else text


def max_coverage_note(crossings: pd.DataFrame) -> str:
    least = int(min(crossings["n_seeds_steps"].min(), crossings["n_seeds_epochs"].min()))
    return (f"with {least} seeds such an interval covers at most about {max_bootstrap_coverage(least):.0%}, "
            "whatever its nominal 95%")


def draw(increments, out_dir: Path, labels: dict) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 7), layout="constrained")
    axes = figure.subplots(2, 2, sharey="row")
    for column, name in enumerate(NAMES):
        for (pair, arm), group in increments.groupby(["pair", "arm"], sort=True):
            group = group.sort_values("kappa")
            axes[0, column].errorbar(group["kappa"], group[f"PI_{name}"], yerr=group[f"PI_{name}_sd"].fillna(0),
                                     marker="o", ms=3, capsize=2, label=pair)
            axes[1, column].plot(group["kappa"], group[f"PG_{name}"], marker="o", ms=3, label=pair)
        axes[0, column].set(title=f"budget {labels[name]}", ylabel="PI = acc(kd) - acc(lt)")
        axes[1, column].axhline(1.0, color="gray", lw=0.8, ls="--")
        axes[1, column].set(ylabel="PG = acc(kd) / acc(lt)")
        for ax in axes[:, column]:
            ax.set(xscale="log", xlabel="kappa = M / N")
            ax.legend(fontsize=6)
    figure.suptitle("The same grid under a fixed step budget (left) and a fixed epoch budget (right)", fontsize=10)
    path = out_dir / "budget_pi_pg.png"
    figure.savefig(path, dpi=120)
    return path


def increment_table(increments: pd.DataFrame) -> Table:
    rows = []
    for row in increments.to_dict("records"):
        interval = (f"{row['dPI']:+.3f} [{row['dPI_low']:+.3f}, {row['dPI_high']:+.3f}]"
                    if row["n_seeds"] > 1 else md.fixed(row["dPI"], sign=True))
        rows.append([row["pair"], row["arm"], f"{row['kappa']:g}", md.number(row["steps_epochs_budget"], 6),
                     f"{row['R_lt_steps']:.3f} / {row['R_lt_epochs']:.3f}",
                     f"{row['R_kd_steps']:.3f} / {row['R_kd_epochs']:.3f}",
                     md.mean_pm(row["PI_steps"], row["PI_steps_sd"], sign=True),
                     md.mean_pm(row["PI_epochs"], row["PI_epochs_sd"], sign=True), interval,
                     f"{row['PG_steps']:.3f}", f"{row['PG_epochs']:.3f}"])
    return Table(pd.DataFrame(rows, columns=[
        "pair", "kd arm", "kappa", "steps under epochs", "acc lt (steps / epochs)", "acc kd (steps / epochs)",
        "PI steps", "PI epochs", "dPI [95% CI]", "PG steps", "PG epochs"]))


def crossing_table(crossings: pd.DataFrame) -> Table:
    rows = []
    for row in crossings.to_dict("records"):
        overlap = md.MISSING if row["ci_overlap"] != row["ci_overlap"] else ("yes" if row["ci_overlap"] else "no")
        rows.append([row["pair"], row["arm"], kappa_star_cell(row, "steps"), kappa_star_cell(row, "epochs"),
                     "yes" if row["status_changed"] else "no", overlap])
    return Table(pd.DataFrame(rows, columns=["pair", "kd arm", "kappa* steps budget", "kappa* epochs budget",
                                             "status changed", "intervals overlap"]))


def section(steps_table: pd.DataFrame, epochs_table: pd.DataFrame, studies: tuple[str, str], out_dir: Path,
            n_boot: int = 2000) -> Section:
    """The comparison section of the two budgets' studies (their tables, and their names for the
    text: (steps study, epochs study)) and its figure (drawn into out_dir)."""
    increments, crossings = numbers(steps_table, epochs_table, n_boot)
    labels = {name: str(table["budget"].iloc[0]) for name, table in zip(NAMES, (steps_table, epochs_table))}
    moved = increments[(increments["dPI_low"] > 0) | (increments["dPI_high"] < 0)]
    summary = pd.DataFrame([{"cells": len(increments), "pi_changed": len(moved),
                             "pi_lower_under_epochs": int((moved["dPI"] < 0).sum()),
                             "pi_higher_under_epochs": int((moved["dPI"] > 0).sum()),
                             "pairs": len(crossings), "status_changed": int(crossings["status_changed"].sum())}])
    result = Section(NAME, tables={"increments": increments, "crossings": crossings, "summary": summary},
                     figures=[draw(increments, Path(out_dir), labels)])
    steps_study, epochs_study = studies
    result.add("## Budget: fixed steps against fixed epochs", "",
               f"One grid, two student budgets: `{labels['steps']}` at every kappa (study {steps_study}) "
               f"and `{labels['epochs']}` at every kappa (study {epochs_study}; the steps column gives "
               "what that budget means at each kappa). PI and PG are kd against lt paired by seed, means over "
               "seeds; dPI = PI(epochs) - PI(steps), paired by seed across the budgets (mean with a 95% t-interval). "
               f"{epoch_choice(steps_table, epochs_table)}", "",
               increment_table(increments), "",
               "kappa* (where the seed-mean PG crosses 1 to stay, analysis.crossover) with its expanded-percentile "
               f"bootstrap interval over seeds ({max_coverage_note(crossings)}):", "",
               crossing_table(crossings), "",
               f"PI changes between the budgets (95% interval of dPI excludes 0) in {len(moved)} of "
               f"{len(increments)} (pair, kappa) cells: lower under epochs in {int((moved['dPI'] < 0).sum())}, "
               f"higher in {int((moved['dPI'] > 0).sum())}. kappa* changes status (a stable crossing inside "
               f"the grid, kd helping or hurting on the whole grid, or no stable crossing) for {int(crossings['status_changed'].sum())} of {len(crossings)} pairs.")
    return result
