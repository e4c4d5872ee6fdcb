"""Does a higher temperature help more at small kappa, and is that the targets' smoothness or the
tau^2 gradient scale? (paper Figure 8 left, Figure 12)

    python studies/temperature.py          # MNIST-1D, cnn1d-16 > cnn1d-16, 5 kappas, 7 taus x2, 3 seeds
    python studies/temperature.py --quick  # smoke size (2 kappas, tau 1 and 10, 2 seeds, short runs)

kd (alpha = 0) at tau in {0.1, 1, 3, 5, 10, 20, 100}, each with the tau^2 factor (Hinton et al.,
the paper's code) and without it (eq. 1 as printed), plus `l2` (squared error between centred
logits, the tau -> infinity limit of tau^2 * KL; kdscale/objectives.py) and lt, at kappa in
{0.05, 0.1, 0.5, 1, 4}, on model_size's pair and recipes (its lt trials are reused from a
shared --storage).

Why both settings: the gradient of KL(p_t^tau || p_s^tau) with respect to the student's logits is
(p_s^tau - p_t^tau) / tau, which for large tau is about (z_s - z_t) / (C tau^2) (centred logits).
With the factor the gradient tends to (z_s - z_t) / C, the l2 gradient, as tau grows: its scale
stays put once logit differences are small against tau (and grows with tau until then); without
the factor the soft term's gradient shrinks like 1 / tau^2, as a smaller learning rate would (and
grows like 1 / tau below 1). At tau = 1 the two settings are the same loss, so their paired
difference there is a check (0 up to float noise). The paired difference PI(with) - PI(without)
at one tau, same targets, is the part of PI the gradient scale decides.

Printed: PI = acc - acc(lt) per kappa and tau in both settings and for l2 (paired by seed, mean
+- sd), the train fidelity (top-1 agreement with the teacher on the student's training samples)
per tau, the with-minus-without contrast with 95% t CIs, and the trials that diverged (loss NaN
or inf: a result, counted and shown, never a crash). Figures: PI against tau per kappa (log x,
l2 at the right end), train fidelity against tau.

Cost here (2 CPU cores): 240 trials, 15 of them (lt) reused from model_size; README, "Studies".
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec, ObjectiveSpec
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run
from kdscale.config import parse_pair

PAIR = "cnn1d:width=16>cnn1d:width=16"
TAUS = (0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 100.0)
KAPPAS = (0.05, 0.1, 0.5, 1.0, 4.0)  # a subset of model_size.DEFAULT_KAPPAS
GRID = Grid("temperature", kappas=KAPPAS, quick=dict(kappas=(0.05, 1.0), taus=(1.0, 10.0), seeds=2), pair=PAIR)
WITH, WITHOUT = "with tau^2", "without tau^2"


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    GRID.add_flags(parser)
    parser.add_argument("--taus", nargs="+", type=float, help=f"default {' '.join(f'{t:g}' for t in TAUS)}")
    parser.add_argument("--no-l2", action="store_true", help="leave out the l2 (tau -> infinity) arm")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    taus = tuple(args.taus or GRID.get(args, "taus", TAUS))
    variants = tuple(ObjectiveSpec("kd", tau=tau, tau_squared=False) for tau in taus)
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd"), taus=taus, alpha=0.0, tau_squared=True,
        variants=variants + (() if args.no_l2 else (ObjectiveSpec("l2"),)),
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args))


def kd_arm(tau: float, factor: bool) -> str:
    """The arm label analysis.table gives kd at this tau and setting."""
    return f"kd tau={tau:g}" + ("" if factor else " no-tau2")


def write_section(result, out_dir: Path) -> tuple[str, list[Path]]:
    from analysis.supervision import contrast, contrast_text, increments, status_counts, summarize, summary_cell, usable

    table = result.table
    per_seed = increments(table)
    trials = usable(table)
    pi = summarize(per_seed, "PI").set_index(["arm", "kappa"])
    fidelity = summarize(trials, "fidelity_train").set_index(["arm", "kappa"])
    counts = status_counts(table).set_index(["arm", "kappa"])
    kd_rows = table[table["objective"] == "kd"]
    taus = sorted(float(t) for t in kd_rows["tau"].unique())
    kappas = sorted(float(f"{k:.10g}") for k in table["kappa"].unique())
    has_l2 = (table["objective"] == "l2").any()
    row = table.iloc[0]

    def cell(frame, arm, kappa, signed):
        diverged = int(counts.loc[(arm, kappa), "diverged"]) if (arm, kappa) in counts.index else 0
        return summary_cell(frame, (arm, kappa), signed) + (f" ({diverged} div.)" if diverged else "")

    lines = ["## Temperature and the tau^2 factor (paper Figure 8 left, Figure 12)", "",
             f"{row['teacher']} > {row['student']} on {row['dataset']}, N = {row['n_teacher']}, student budget "
             f"{row['budget']}, kd with alpha = 0. PI = acc - acc(lt), paired by seed, mean ± sd over seeds; "
             "`(k div.)`: k of the cell's trials diverged (loss NaN or inf) and are left out of its mean.", ""]
    for factor, title in ((True, WITH), (False, WITHOUT)):
        lines += [f"PI, kd {title}:" if factor else f"PI, kd {title} (eq. 1 as printed):", "",
                  "| kappa | " + " | ".join(f"tau={t:g}" for t in taus) + (" | l2 (tau→∞) |" if has_l2 else " |"),
                  "| --- |" + " --- |" * (len(taus) + has_l2)]
        for kappa in kappas:
            cells = [cell(pi, kd_arm(t, factor), kappa, True) for t in taus]
            if has_l2:
                cells.append(cell(pi, "l2", kappa, True))
            lines.append(f"| {kappa:g} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Train fidelity (top-1 agreement with the teacher on the student's own training samples), "
              "with / without the tau^2 factor:", "",
              "| kappa | lt | " + " | ".join(f"tau={t:g}" for t in taus) + (" | l2 |" if has_l2 else " |"),
              "| --- | --- |" + " --- |" * (len(taus) + has_l2)]
    for kappa in kappas:
        cells = [cell(fidelity, "lt", kappa, False)]
        for t in taus:
            both = [fidelity.loc[(kd_arm(t, f), kappa), "mean"] if (kd_arm(t, f), kappa) in fidelity.index
                    else math.nan for f in (True, False)]
            cells.append(" / ".join("-" if not math.isfinite(v) else f"{v:.3f}" for v in both))
        if has_l2:
            cells.append(cell(fidelity, "l2", kappa, False).split(" ±")[0])
        lines.append(f"| {kappa:g} | " + " | ".join(cells) + " |")

    if "train_acc" in trials.columns:  # whether the baseline itself fits its data in this budget
        lt_train = summarize(trials, "train_acc").set_index(["arm", "kappa"])
        lines += ["", "Train accuracy of lt on its own samples: " + ", ".join(
            f"{lt_train.loc[('lt', k), 'mean']:.3f} (kappa = {k:g})" for k in kappas if ("lt", k) in lt_train.index)
            + "."]

    # the gradient scale's share: with minus without, paired by seed, per tau and kappa
    scale = {t: contrast(per_seed, kd_arm(t, True), kd_arm(t, False)).set_index("kappa") for t in taus}
    lines += ["", "The tau^2 factor's effect, acc(with) - acc(without) at the same tau, paired by seed: mean "
              "[95% t CI] (at tau = 1 the two settings are the same loss):", "",
              "| kappa | " + " | ".join(f"tau={t:g}" for t in taus) + " |", "| --- |" + " --- |" * len(taus)]
    for kappa in kappas:
        cells = []
        for t in taus:
            c = scale[t].loc[kappa] if kappa in scale[t].index else None
            cells.append("-" if c is None or not c["n"] else contrast_text(c))
        lines.append(f"| {kappa:g} | " + " | ".join(cells) + " |")

    n_div = int(counts["diverged"].sum())
    cells = [f"{arm} at kappa={kappa:g} ({int(r['diverged'])} of {int(r['ok'] + r['diverged'] + r['other'])})"
             for (arm, kappa), r in counts.iterrows() if r["diverged"]]
    lines += ["", f"Diverged trials: {n_div} of {len(table)}" + (": " + ", ".join(cells) if cells else "") + ".", ""]
    lines += answer(per_seed, pi, fidelity, taus, kappas)

    figures = draw(out_dir, pi, fidelity, taus, kappas, has_l2)
    return "\n".join(lines) + "\n", figures


def answer(per_seed, pi, fidelity, taus, kappas) -> list[str]:
    """The section's answer in words and numbers: per kappa the best tau against tau = 1 with and
    without the factor, then what a higher tau does at small kappa and what the factor decides."""
    from analysis.supervision import contrast, contrast_text

    lines = ["**Answer.**", ""]
    if 1.0 not in taus or len(taus) < 2:
        return lines + ["The grid needs tau = 1 and another tau to compare them."]

    def mean(frame, arm, kappa):
        if (arm, kappa) not in frame.index or not frame.loc[(arm, kappa), "n"]:
            return math.nan
        return float(frame.loc[(arm, kappa), "mean"])

    def paired(arm_a, arm_b, kappa):
        c = contrast(per_seed, arm_a, arm_b).set_index("kappa")
        return c.loc[kappa] if kappa in c.index and c.loc[kappa, "n"] else None

    gains, kept = {}, {}
    for kappa in kappas:
        with_factor = {t: mean(pi, kd_arm(t, True), kappa) for t in taus}
        with_factor = {t: v for t, v in with_factor.items() if math.isfinite(v)}
        base = with_factor.get(1.0, math.nan)
        if not with_factor or not math.isfinite(base):
            continue
        best = max(with_factor, key=with_factor.get)
        text = (f"- kappa = {kappa:g}: with the factor, PI goes from {base:+.3f} at tau = 1 to "
                f"{with_factor[best]:+.3f} at tau = {best:g}")
        gain = paired(kd_arm(best, True), kd_arm(1.0, True), kappa) if best != 1.0 else None
        if gain is not None:
            gains[kappa] = gain
            text += f" ({contrast_text(gain)} over tau = 1)"
        top = max(taus)
        if top != best and top in with_factor:
            text += f", and is {with_factor[top]:+.3f} at tau = {top:g} (train fidelity " \
                    f"{mean(fidelity, kd_arm(top, True), kappa):.2f})"
        without = mean(pi, kd_arm(best, False), kappa)
        if best != 1.0 and math.isfinite(without):
            kept[kappa] = (with_factor[best] - base, without - base)
            factor = paired(kd_arm(best, True), kd_arm(best, False), kappa)
            text += f"; without the factor tau = {best:g} gives {without:+.3f}"
            if factor is not None:
                text += f", so there the factor is worth {contrast_text(factor)}"
        lines.append(text + ".")

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
    return lines


def draw(out_dir: Path, pi, fidelity, taus, kappas, has_l2) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    l2_x = max(taus) * 4  # l2, the tau -> infinity limit, drawn at the right end of the axis
    paths = []
    for frame, name, ylabel, title in ((pi, "temperature_pi_vs_tau.png", "PI = acc - acc(lt)", "PI against tau"),
                                       (fidelity, "temperature_fidelity_vs_tau.png", "train fidelity to the teacher",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return finish(run(build_spec, args, "temperature"), args, "temperature", write_section)


if __name__ == "__main__":
    sys.exit(main())
