"""The temperature study's section (studies/temperature.py): PI against tau with and without the
tau^2 factor and for l2, train fidelity, the factor's paired effect, diverged trials, the answer.

    section(table, results_dir, out_dir) -> Section "temperature"

Tables: `pi` and `fidelity` (per arm and kappa: n, mean, sd, se), `train_acc` (lt's), `factor`
(per tau and kappa: acc(with) - acc(without) paired by seed, n, mean, sd, low, high), `status`
(ok / diverged / other trials per arm and kappa), `best_tau` (per kappa: the best tau with the
factor, its paired gain over tau = 1, and the factor's worth there) and, where the trials' histories
are stored, `late_gain` (per arm and kappa: how much the test accuracy still rose over the second
half of training) with a figure of the learning curves, a panel per (kappa, tau).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import pandas as pd

from kdscale import schema

from analysis import curves, plots
from analysis.markdown import budgets
from analysis.sections import Section, Table
from analysis.supervision import contrast, contrast_text, increments, status_counts, summarize, summary_cell, usable

NAME = "temperature"
WITH, WITHOUT = "with tau^2", "without tau^2"
FIGURES = ("temperature_pi_vs_tau.png", "temperature_fidelity_vs_tau.png", "temperature_curves.png")


def kd_arm(tau: float, factor: bool) -> str:
    """The arm label analysis.table gives kd at this tau and setting."""
    return f"kd tau={tau:g}" + ("" if factor else " no-tau2")


def section(table: pd.DataFrame, results_dir: str | None, out_dir: Path) -> Section:
    """The section of a temperature results table; results_dir is read for the trials' histories
    (the learning curves), and without it the section leaves them out."""
    per_seed = increments(table)
    trials = usable(table)
    pi_frame = summarize(per_seed, "PI")
    fidelity_frame = summarize(trials, "fidelity_train")
    status = status_counts(table)
    pi, fidelity, counts = (f.set_index(["arm", "kappa"]) for f in (pi_frame, fidelity_frame, status))
    taus = sorted(float(t) for t in table.loc[table["objective"] == "kd", "tau"].unique())
    kappas = sorted(float(f"{k:.10g}") for k in table["kappa"].unique())
    has_l2 = bool((table["objective"] == "l2").any())
    row = table.iloc[0]

    def cell(frame, arm, kappa, signed):
        diverged = int(counts.loc[(arm, kappa), "diverged"]) if (arm, kappa) in counts.index else 0
        return summary_cell(frame, (arm, kappa), signed) + (f" ({diverged} div.)" if diverged else "")

    result = Section(NAME, tables={"pi": pi_frame, "fidelity": fidelity_frame})
    result.add("## Temperature and the tau^2 factor (paper Figure 8 left, Figure 12)", "",
               f"{schema.pair_label(row['teacher'], row['student'])} on {row['dataset']}, N = {row['n_teacher']}, "
               f"{budgets(table['budget'])}, kd with alpha = 0. PI = acc - acc(lt), paired by seed, mean ± sd over seeds; "
               "`(k div.)`: k of the cell's trials diverged (loss NaN or inf) and are left out of its mean.", "")
    tau_columns = [f"tau={t:g}" for t in taus]
    for factor, title in ((True, WITH), (False, WITHOUT)):
        rows = [[f"{kappa:g}", *(cell(pi, kd_arm(t, factor), kappa, True) for t in taus),
                 *([cell(pi, "l2", kappa, True)] if has_l2 else [])] for kappa in kappas]
        result.add(f"PI, kd {title}:" if factor else f"PI, kd {title} (eq. 1 as printed):", "",
                   display(["kappa", *tau_columns, *(["l2 (tau→∞)"] if has_l2 else [])], rows), "")

    rows = []
    for kappa in kappas:
        cells = [f"{kappa:g}", cell(fidelity, "lt", kappa, False)]
        for t in taus:
            both = [fidelity.loc[(kd_arm(t, f), kappa), "mean"] if (kd_arm(t, f), kappa) in fidelity.index
                    else math.nan for f in (True, False)]
            cells.append(" / ".join("-" if not math.isfinite(v) else f"{v:.3f}" for v in both))
        if has_l2:
            cells.append(cell(fidelity, "l2", kappa, False).split(" ±")[0])
        rows.append(cells)
    result.add("Train fidelity (top-1 agreement with the teacher on the student's own training samples), "
               "with / without the tau^2 factor:", "",
               display(["kappa", "lt", *tau_columns, *(["l2"] if has_l2 else [])], rows))

    if "train_acc" in trials.columns:  # whether the baseline itself fits its data in this budget
        lt_frame = summarize(trials, "train_acc")
        result.tables["train_acc"] = lt_frame[lt_frame["arm"] == "lt"].reset_index(drop=True)
        lt_train = lt_frame.set_index(["arm", "kappa"])
        result.add("", "Train accuracy of lt on its own samples: " + ", ".join(
            f"{lt_train.loc[('lt', k), 'mean']:.3f} (kappa = {k:g})" for k in kappas if ("lt", k) in lt_train.index)
            + ".")

    # the gradient scale's share: with minus without, paired by seed, per tau and kappa
    result.tables["factor"] = factor = factor_frame(per_seed, taus)
    scale = {t: factor[factor["tau"] == t].set_index("kappa") for t in taus}
    rows = []
    for kappa in kappas:
        cells = [f"{kappa:g}"]
        for t in taus:
            c = scale[t].loc[kappa] if kappa in scale[t].index else None
            cells.append("-" if c is None or not c["n"] else contrast_text(c))
        rows.append(cells)
    result.add("", "The tau^2 factor's effect, acc(with) - acc(without) at the same tau, paired by seed: mean "
               "[95% t CI] (at tau = 1 the two settings are the same loss):", "",
               display(["kappa", *tau_columns], rows))

    result.tables["status"] = status
    n_div = int(counts["diverged"].sum())
    cells = [f"{arm} at kappa={kappa:g} ({int(r['diverged'])} of {int(r['ok'] + r['diverged'] + r['other'])})"
             for (arm, kappa), r in counts.iterrows() if r["diverged"]]
    result.add("", f"Diverged trials: {n_div} of {len(table)}" + (": " + ", ".join(cells) if cells else "") + ".", "")
    lines, best = answer(per_seed, pi, fidelity, taus, kappas)
    result.tables["best_tau"] = best
    result.add(*lines)
    result.figures = draw(out_dir, pi, fidelity, taus, kappas, has_l2)
    result.figures += learning_curves(result, trials, results_dir, out_dir, taus, kappas)
    return result


def learning_curves(result: Section, trials: pd.DataFrame, results_dir, out_dir: Path, taus, kappas) -> list[Path]:
    """The `late_gain` table, its line and the per (kappa, tau) panels, from the stored histories."""
    found = curves.histories(trials, results_dir)
    if not len(found):
        return []
    result.tables["late_gain"] = gains = curves.late_gain(found)
    result.add("", f"Learning curves, a panel per kappa and tau (`{FIGURES[2]}`). Still improving when the budget "
               "ran out (the test accuracy's rise over the second half of training above the larger of 0.01 and "
               f"its seed sd): {curves.still_rising(gains)}.", "")

    def arms_of(tau):
        return [("lt", ":", "lt"), (kd_arm(tau, True), "-", f"kd {WITH}"), (kd_arm(tau, False), "--", f"kd {WITHOUT}")]

    return [plots.curves_per_kappa_tau(found, kappas, taus, arms_of, out_dir / FIGURES[2],
                               "Test accuracy against step (mean over seeds, band: min to max)")]


def display(columns: list[str], rows: list[list[str]]) -> Table:
    return Table(pd.DataFrame(rows, columns=columns))


def factor_frame(per_seed: pd.DataFrame, taus) -> pd.DataFrame:
    """acc(with) - acc(without) the tau^2 factor per tau and kappa, paired by seed."""
    parts = [contrast(per_seed, kd_arm(t, True), kd_arm(t, False)).assign(tau=t) for t in taus]
    columns = ["tau", "pair", "kappa", "n", "mean", "sd", "low", "high"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


BEST_COLUMNS = ["kappa", "pi_tau1", "best_tau", "pi_best", "gain_n", "gain_mean", "gain_low", "gain_high",
                "pi_best_without", "factor_n", "factor_mean", "factor_low", "factor_high"]


def answer(per_seed, pi, fidelity, taus, kappas) -> tuple[list[str], pd.DataFrame]:
    """The section's answer in words and numbers: per kappa the best tau against tau = 1 with and
    without the factor, then what a higher tau does at small kappa and what the factor decides.
    Also the numbers per kappa (columns BEST_COLUMNS; NaN where there is none)."""
    lines = ["**Answer.**", ""]
    rows = []
    if 1.0 not in taus or len(taus) < 2:
        return lines + ["The grid needs tau = 1 and another tau to compare them."], pd.DataFrame(columns=BEST_COLUMNS)

    def mean(frame, arm, kappa):
        if (arm, kappa) not in frame.index or not frame.loc[(arm, kappa), "n"]:
            return math.nan
        return float(frame.loc[(arm, kappa), "mean"])

    def paired(arm_a, arm_b, kappa):
        c = contrast(per_seed, arm_a, arm_b).set_index("kappa")
        return c.loc[kappa] if kappa in c.index and c.loc[kappa, "n"] else None

    def numbers(c) -> list[float]:
        return [math.nan] * 4 if c is None else [int(c["n"]), float(c["mean"]), float(c["low"]), float(c["high"])]

    gains, kept = {}, {}
    for kappa in kappas:
        with_factor = {t: mean(pi, kd_arm(t, True), kappa) for t in taus}
        with_factor = {t: v for t, v in with_factor.items() if math.isfinite(v)}
        base = with_factor.get(1.0, math.nan)
        if not with_factor or not math.isfinite(base):
            continue
        best = max(with_factor, key=with_factor.get)
        text = (f"- kappa = {kappa:g}: with the factor, PI goes from {base:+.3f} at tau = 1 to "
                f"{with_factor[best]:+.3f} at tau = {best:g}" if best != 1.0 else
                f"- kappa = {kappa:g}: with the factor, PI is highest at tau = 1 ({base:+.3f}): no tau helps more")
        gain = paired(kd_arm(best, True), kd_arm(1.0, True), kappa) if best != 1.0 else None
        if gain is not None:
            gains[kappa] = gain
            text += f" ({contrast_text(gain)} over tau = 1)"
        top = max(taus)
        if top != best and top in with_factor:
            text += f", and is {with_factor[top]:+.3f} at tau = {top:g} (train fidelity " \
                    f"{mean(fidelity, kd_arm(top, True), kappa):.2f})"
        without = mean(pi, kd_arm(best, False), kappa)
        factor = None
        if best != 1.0 and math.isfinite(without):
            kept[kappa] = (with_factor[best] - base, without - base)
            factor = paired(kd_arm(best, True), kd_arm(best, False), kappa)
            text += f"; without the factor tau = {best:g} gives {without:+.3f}"
            if factor is not None:
                text += f", so there the factor is worth {contrast_text(factor)}"
        lines.append(text + ".")
        rows.append([kappa, base, best, with_factor[best], *numbers(gain), without, *numbers(factor)])

    small = [k for k in gains if k <= 0.1]
    large = max(gains) if gains else None
    if small and large is not None and large not in small:
        top_small = max(small, key=lambda k: gains[k]["mean"])
        g_small, g_large = gains[top_small], gains[large]
        if math.isfinite(g_small["low"]) and math.isfinite(g_large["high"]) and g_small["low"] > g_large["high"]:
            verdict = "larger at small kappa (the 95% CIs do not overlap)"
        elif g_small["mean"] > g_large["mean"]:
            verdict = "somewhat larger at small kappa, but the 95% CIs overlap: a higher tau helps at every kappa"
        else:
            verdict = "not larger at small kappa: a higher tau helps at every kappa"
        lines += ["", f"Higher tau at small kappa: the best tau's gain over tau = 1 (with the factor) is "
                  f"{contrast_text(g_small)} at kappa = {top_small:g} against {contrast_text(g_large)} at kappa = {large:g}: "
                  f"{verdict}."]
    if kept:
        lost = [k for k, (g, w) in kept.items() if w < g / 2]
        lines += ["", "The gradient scale against the targets' smoothness: at one tau the targets are the same with "
                  "and without the factor, and only the soft term's gradient differs, by tau^2 (without it the "
                  "step shrinks about 1/tau^2; with it the scale is held, exactly so once logit differences are "
                  "small against tau). Gain over tau = 1 at the best tau, with / without the factor: "
                  + ", ".join(f"kappa = {k:g}: {g:+.3f} / {w:+.3f}" for k, (g, w) in kept.items()) + ". "
                  + (f"At {len(lost)} of {len(kept)} kappas less than half the gain remains without the factor: "
                     "the gain of a higher tau needs the factor's gradient scale; smoother targets with a shrunken "
                     "gradient do not deliver it in this budget." if lost else
                     "Most of the gain remains without the factor: it is the targets' smoothness.")]
    below = [t for t in taus if t < 1.0]
    if below:
        t = below[0]
        values = [paired(kd_arm(t, True), kd_arm(t, False), k) for k in kappas]
        values = [(k, v) for k, v in zip(kappas, values) if v is not None]
        if values:
            lines += ["", f"Below tau = 1 it turns round: at tau = {t:g} the loss without the factor has a gradient "
                      f"about 1/tau = {1 / t:g} times larger, and with minus without is "
                      + ", ".join(f"{v['mean']:+.3f} (kappa = {k:g})" for k, v in values) + "."]
    failing = [t for t in taus if t > 1.0 and all(mean(pi, kd_arm(t, True), k) < 0 for k in kappas)]
    if failing:
        fid = [mean(fidelity, kd_arm(t, True), k) for t in failing for k in kappas]
        lines += ["", f"With the factor, tau = {', '.join(f'{t:g}' for t in failing)} give a negative PI at every "
                  f"kappa, with train fidelity {np.nanmin(fid):.2f} to {np.nanmax(fid):.2f}: there the tau^2-scaled "
                  "loss is near its l2 limit, a regression onto the teacher's logits, and this recipe does not "
                  "train it (see the l2 column and the diverged trials)."]
    return lines, pd.DataFrame(rows, columns=BEST_COLUMNS)


def draw(out_dir: Path, pi, fidelity, taus, kappas, has_l2) -> list[Path]:
    """PI against tau and train fidelity against tau, one panel per kappa (l2 at the right end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    l2_x = max(taus) * 4  # l2, the tau -> infinity limit, drawn at the right end of the axis
    paths = []
    for frame, name, ylabel, title in ((pi, FIGURES[0], "PI = acc - acc(lt)", "PI against tau"),
                                       (fidelity, FIGURES[1], "train fidelity to the teacher",
                                        "train fidelity against tau")):
        fig, axes = plt.subplots(1, len(kappas), figsize=(3.4 * len(kappas), 3.4), sharey=True, squeeze=False)
        for ax, kappa in zip(axes[0], kappas):
            for factor, style in ((True, "-"), (False, "--")):
                points = [(t, frame.loc[(kd_arm(t, factor), kappa)]) for t in taus if (kd_arm(t, factor), kappa)
                          in frame.index and frame.loc[(kd_arm(t, factor), kappa), "n"]]
                if points:
                    ax.errorbar([t for t, _ in points], [r["mean"] for _, r in points],
                                yerr=[0 if not math.isfinite(r["sd"]) else r["sd"] for _, r in points],
                                linestyle=style, marker="o", capsize=3, label=f"kd {WITH if factor else WITHOUT}")
            if has_l2 and ("l2", kappa) in frame.index:
                r = frame.loc[("l2", kappa)]
                ax.errorbar([l2_x], [r["mean"]], yerr=[0 if not math.isfinite(r["sd"]) else r["sd"]], marker="*",
                            markersize=12, color="tab:red", capsize=3, linestyle="none", label="l2 (tau→∞)")
            if frame is fidelity and ("lt", kappa) in frame.index:
                ax.axhline(frame.loc[("lt", kappa), "mean"], color="grey", linestyle=":", label="lt")
            if frame is pi:
                ax.axhline(0, color="grey", lw=0.8)
            ax.set(xscale="log", xlabel="tau", title=f"kappa = {kappa:g}")
        axes[0][0].set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=8)
        fig.suptitle(title + " (solid: with the tau^2 factor, dashed: without; star: l2)")
        fig.tight_layout()
        paths.append(out_dir / name)
        fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return paths
