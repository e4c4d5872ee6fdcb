"""The hard-vs-soft study's section (studies/hard_vs_soft.py): lt, hard teacher labels and kd per
kappa, kd - hard paired by seed with a 95% t CI, the kappas where the soft information matters.

    section(table, results_dir, out_dir) -> Section "hard_vs_soft"

Tables: `accuracy`, `pi` and `fidelity` (per arm and kappa: n, mean, sd, se of test accuracy, of
PI = acc - acc(lt) paired by seed, of train fidelity) and `soft_minus_hard` (per kappa: kd - hard
paired by seed, n, mean, sd, low, high, and `sign`: above, below, or unclear, as the answer says).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdscale import schema

from analysis.markdown import budgets
from analysis.sections import Section, Table
from analysis.supervision import contrast, contrast_text, increments, summarize, summary_cell, usable

NAME = "hard_vs_soft"
FIGURE = "hard_vs_soft_accuracy.png"


def section(table: pd.DataFrame, results_dir: str | None, out_dir: Path) -> Section:
    """The table of accuracies and differences, the answer, and one figure (results_dir is not
    read: the table holds all)."""
    trials = usable(table)
    per_seed = increments(table)
    acc_frame = summarize(trials, "R")
    pi_frame = summarize(per_seed, "PI")
    fidelity_frame = summarize(trials, "fidelity_train")
    acc, pi, fidelity = (f.set_index(["arm", "kappa"]) for f in (acc_frame, pi_frame, fidelity_frame))
    kd = next(a for a in sorted(trials["arm"].unique()) if a.startswith("kd"))
    soft_frame = contrast(per_seed, kd, "hard")
    soft = soft_frame.set_index("kappa")
    kappas = sorted(trials["kappa"].unique())
    row = table.iloc[0]

    def cell(frame, arm, kappa, signed=False):
        return summary_cell(frame, (arm, kappa), signed)

    rows = []
    for kappa in kappas:
        c = soft.loc[kappa] if kappa in soft.index else None
        diff = "-" if c is None else contrast_text(c)
        rows.append([f"{kappa:g}", cell(acc, "lt", kappa), cell(acc, "hard", kappa), cell(acc, kd, kappa),
                     cell(pi, "hard", kappa, True), cell(pi, kd, kappa, True), diff,
                     f"{0 if c is None else int(c['n'])}", cell(fidelity, "hard", kappa)])
    soft_frame = soft_frame.assign(arm=kd, sign=sign(soft))[["pair", "arm", "kappa", "n", "mean", "sd", "low", "high",
                                                             "sign"]]
    result = Section(NAME, tables={"accuracy": acc_frame, "pi": pi_frame, "fidelity": fidelity_frame,
                                   "soft_minus_hard": soft_frame})
    result.add("## Hard teacher labels against soft targets (paper Figure 8 right)", "",
               f"{schema.pair_label(row['teacher'], row['student'])} on {row['dataset']}, N = {row['n_teacher']}, "
               f"{budgets(table['budget'])}. Test accuracy mean ± sd over seeds; PI = acc - acc(lt) and kd - hard paired by "
               "seed, the latter with a 95% t CI; the train fidelity of hard (top-1 agreement with the "
               "teacher on the student's samples) shows how closely the student fits the teacher's labels.", "",
               Table(pd.DataFrame(rows, columns=["kappa", "acc lt", "acc hard", f"acc {kd}", "PI hard", f"PI {kd}",
                                                 f"{kd} - hard [95% CI]", "seeds", "train fidelity hard"])),
               "", "**Answer.** " + answer(soft, pi, kd), "")
    result.figures = [draw(out_dir, acc, pi, soft, kd)]
    return result


def sign(soft: pd.DataFrame) -> list[str]:
    """Per row of a kd - hard contrast: `above` or `below` 0 (the 95% CI clear of it, two seeds or
    more), else `unclear`."""
    return ["above" if c["n"] > 1 and c["low"] > 0 else "below" if c["n"] > 1 and c["high"] < 0 else "unclear"
            for _, c in soft.iterrows()]


def answer(soft, pi, kd: str) -> str:
    """Which kappas have kd - hard with a 95% CI above 0, below 0, or across it."""
    signs = list(zip(soft.index, sign(soft)))
    above = [k for k, s in signs if s == "above"]
    below = [k for k, s in signs if s == "below"]
    unclear = [k for k, s in signs if s == "unclear"]

    def kappas(values):
        return ", ".join(f"{k:g}" for k in values)

    parts = []
    if above:
        best = soft.loc[above, "mean"].idxmax()
        parts.append(f"the soft targets beat the teacher's hard labels at kappa = {kappas(above)} (95% CI of "
                     f"{kd} - hard above 0; largest at kappa = {best:g}, {soft.loc[best, 'mean']:+.3f} "
                     f"[{soft.loc[best, 'low']:+.3f}, {soft.loc[best, 'high']:+.3f}])")
    if below:
        parts.append(f"hard labels do better at kappa = {kappas(below)}")
    if unclear:
        parts.append(f"no difference can be told at kappa = {kappas(unclear)} (CI across 0, or one seed)")
    if "hard" in pi.index.get_level_values("arm"):
        hard = pi.xs("hard", level="arm")["mean"]
        parts.append(f"relabelling alone (hard - lt) ranges from {hard.min():+.3f} to {hard.max():+.3f} over kappa")
    text = "; ".join(parts) + "." if parts else "no kappa has both a kd and a hard trial."
    return text[0].upper() + text[1:]


def draw(out_dir: Path, acc, pi, soft, kd: str) -> Path:
    """Accuracy of lt, hard and kd against kappa; kd - hard with its CI and hard - lt against kappa."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for arm, colour in (("lt", "black"), ("hard", "tab:orange"), (kd, "tab:blue")):
        part = acc.xs(arm, level="arm") if arm in acc.index.get_level_values("arm") else None
        if part is not None:
            left.errorbar(part.index, part["mean"], yerr=part["sd"].fillna(0), label=arm, marker="o", capsize=3,
                          color=colour)
    if len(soft):
        right.plot(soft.index, soft["mean"], marker="o", color="tab:blue", label=f"{kd} - hard")
        right.fill_between(soft.index, soft["low"].fillna(soft["mean"]), soft["high"].fillna(soft["mean"]),
                           color="tab:blue", alpha=0.2, label="95% CI over seeds")
    if "hard" in pi.index.get_level_values("arm"):
        part = pi.xs("hard", level="arm")
        right.errorbar(part.index, part["mean"], yerr=part["sd"].fillna(0), marker="s", capsize=3,
                       color="tab:orange", label="hard - lt")
    right.axhline(0, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="kappa = M / N", ylabel="test accuracy", title="lt, hard teacher labels, kd")
    right.set(xscale="log", xlabel="kappa = M / N", ylabel="accuracy difference (paired by seed)",
              title="what the soft information adds")
    left.legend()
    right.legend()
    figure = out_dir / FIGURE
    fig.savefig(figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return figure
