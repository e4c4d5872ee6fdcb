"""Do kd students learn features closer to the teacher's than lt students, and more so at small kappa?

    python studies/feature_alignment.py          # MNIST-1D, cnn1d-32 > cnn1d-32, 6 kappas, 3 seeds
    python studies/feature_alignment.py --quick  # smoke size

The paper's evidence for the dark-knowledge hypothesis (arXiv 2510.15516): per kappa, linear CKA
of kd and lt students to the teacher on the test set (its Figure 4), the pairwise CKA matrix
between kd and lt students of different seeds (Figure 5), and the correlation of the CKA gain
(CKA(kd) - CKA(lt), paired by seed) with the accuracy gain PI (Figure 18). Also feature alignment
FA (Table 4; teacher and student have the same width here) and a linear probe refitted on the
teacher's N samples (Figure 14). Every trial runs through the engine with extras cka, fa, probe,
features; the section goes into the study's analysis report and its MLflow parent run.
Cost and answer on this project's 2-core CPU machine: README, "Studies".
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from analysis.paired import pearson_ci
from kdscale.config import DataSpec, ModelSpec
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run

PAIR = ("cnn1d:width=32", "cnn1d:width=32")
KAPPAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
GRID = Grid("feature_alignment", kappas=KAPPAS,
            quick=dict(kappas=(0.1, 1.0), seeds=2, student_steps=300, teacher_epochs=20))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0])
    GRID.add_flags(parser)
    parser.add_argument("--teacher", default=PAIR[0], help=f"teacher model (default {PAIR[0]})")
    parser.add_argument("--student", default=PAIR[1], help=f"student model (default {PAIR[1]})")
    parser.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    from kdscale.recipes import default_recipes

    teacher_recipe, student_recipe = default_recipes("mnist1d")
    if args.quick:
        student_recipe = replace(student_recipe, steps=GRID.quick["student_steps"])
        teacher_recipe = replace(teacher_recipe, epochs=GRID.quick["teacher_epochs"])
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(),
        pairs=((ModelSpec.parse(args.teacher), ModelSpec.parse(args.student)),),
        kappas=GRID.kappa_values(args), taus=(args.tau,), seeds=GRID.seed_values(args),
        recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args),
        extras=("cka", "fa", "probe", "features"))


def per_kappa(table):
    """Mean and sd over seeds of CKA, FA, probe and accuracy per (kappa, objective); paired gains."""
    import pandas as pd

    ok = table[table["status"] == "ok"]
    summary = ok.groupby(["kappa", "objective"])[["cka_teacher", "fa_teacher", "probe_acc", "test_acc"]] \
        .agg(["mean", "std"])
    kd = ok[ok["objective"] == "kd"].set_index(["kappa", "seed"])
    lt = ok[ok["objective"] == "lt"].set_index(["kappa", "seed"])
    gains = pd.DataFrame({"cka_gain": kd["cka_teacher"] - lt["cka_teacher"],
                          "acc_gain": kd["test_acc"] - lt["test_acc"]}).dropna()
    return summary, gains


def pairwise_cka(store, rows) -> np.ndarray:
    """Linear CKA between every two students' test features (kd seeds first, then lt)."""
    from kdscale.representations import linear_cka

    features = [store.features(trial_id) for trial_id in rows["trial_id"]]
    n = len(features)
    matrix = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            matrix[i, j] = matrix[j, i] = linear_cka(features[i], features[j])
    return matrix


def write_section(result, out_dir: Path) -> tuple[str, list[Path]]:
    """The study's Markdown section and figures (Figures 4, 5 and 18 of the paper)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    summary, gains = per_kappa(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = []

    fig, ax = plt.subplots(figsize=(6, 4))
    for objective, colour in (("kd", "tab:blue"), ("lt", "tab:orange")):
        part = summary.xs(objective, level="objective")["cka_teacher"]
        ax.errorbar(part.index, part["mean"], yerr=part["std"].fillna(0), label=objective, color=colour, capsize=3,
                    marker="o")
    ax.set(xscale="log", xlabel="kappa = M / N", ylabel="linear CKA to the teacher (test set)",
           title="Feature-kernel alignment to the teacher (paper Fig. 4)")
    ax.legend()
    figures.append(out_dir / "cka_vs_kappa.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    ok = table[table["status"] == "ok"].sort_values(["objective", "seed"], ascending=[True, True])
    matrices = {}
    for kappa in (min(ok["kappa"]), max(ok["kappa"])):
        rows = ok[ok["kappa"] == kappa]
        rows = rows.sort_values(["objective", "seed"], key=lambda c: c.map({"kd": 0, "lt": 1}) if c.name == "objective" else c)
        matrices[kappa] = (pairwise_cka(result.store, rows),
                           [f"{o} s{s}" for o, s in zip(rows["objective"], rows["seed"])])
    fig, axes = plt.subplots(1, len(matrices), figsize=(5 * len(matrices), 4.2))
    for ax, (kappa, (matrix, names)) in zip(np.atleast_1d(axes), matrices.items()):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(names)), names, rotation=90)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"pairwise CKA between students, kappa={kappa:g}")
        fig.colorbar(image, ax=ax, fraction=0.046)
    figures.append(out_dir / "cka_pairwise.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    r, low, high, n = pearson_ci(gains["cka_gain"].to_numpy(), gains["acc_gain"].to_numpy())
    fig, ax = plt.subplots(figsize=(5, 4))
    points = ax.scatter(gains["cka_gain"], gains["acc_gain"], c=np.log10(gains.index.get_level_values("kappa")),
                        cmap="viridis")
    fig.colorbar(points, ax=ax, label="log10 kappa")
    ax.set(xlabel="CKA gain, kd - lt (same seed)", ylabel="accuracy gain PI",
           title=f"CKA gain vs accuracy gain (Fig. 18): r = {r:.2f}")
    figures.append(out_dir / "cka_gain_vs_pi.png")
    fig.savefig(figures[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    lines = ["## Feature alignment to the teacher", "",
             "Linear CKA of the students' test-set features to the teacher's (eq. 4 of the paper), feature "
             "alignment FA (mean cosine of same-width feature vectors), and a linear probe refitted on the "
             "teacher's N samples; mean ± sd over seeds.", "",
             "| kappa | CKA kd | CKA lt | CKA gain ± se (paired) | FA kd | FA lt | probe kd | probe lt | acc kd | acc lt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    def cell(kappa, objective, column):
        try:
            value = summary.loc[(kappa, objective), column]
        except KeyError:
            return "-"
        return f"{value['mean']:.3f} ± {0 if math.isnan(value['std']) else value['std']:.3f}"
    for kappa in sorted(set(ok["kappa"])):
        gain = gains.xs(kappa, level="kappa")["cka_gain"] if kappa in gains.index.get_level_values("kappa") else []
        se = np.std(gain, ddof=1) / math.sqrt(len(gain)) if len(gain) > 1 else math.nan
        gain_text = f"{np.mean(gain):+.3f} ± {se:.3f}" if len(gain) else "-"
        lines.append(f"| {kappa:g} | {cell(kappa, 'kd', 'cka_teacher')} | {cell(kappa, 'lt', 'cka_teacher')} | "
                     f"{gain_text} | {cell(kappa, 'kd', 'fa_teacher')} | {cell(kappa, 'lt', 'fa_teacher')} | "
                     f"{cell(kappa, 'kd', 'probe_acc')} | {cell(kappa, 'lt', 'probe_acc')} | "
                     f"{cell(kappa, 'kd', 'test_acc')} | {cell(kappa, 'lt', 'test_acc')} |")
    lines += ["", f"Correlation of the CKA gain with the accuracy gain over (kappa, seed): r = {r:.3f}, "
              f"95% CI [{low:.3f}, {high:.3f}] (Fisher z), n = {n}.", ""]
    for kappa, (matrix, names) in matrices.items():
        k = sum(name.startswith("kd") for name in names)
        within_kd = matrix[:k, :k][np.triu_indices(k, 1)].mean() if k > 1 else math.nan
        within_lt = matrix[k:, k:][np.triu_indices(len(names) - k, 1)].mean() if len(names) - k > 1 else math.nan
        across = matrix[:k, k:].mean()
        lines.append(f"Pairwise CKA at kappa = {kappa:g}: kd-kd {within_kd:.3f}, lt-lt {within_lt:.3f}, "
                     f"kd-lt {across:.3f} (mean over pairs of different seeds).")
    return "\n".join(lines) + "\n", figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "feature_alignment")
    return finish(result, args, "feature_alignment", write_section)


if __name__ == "__main__":
    sys.exit(main())
