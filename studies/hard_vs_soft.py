"""Does the teacher's soft information matter beyond its labels, and at which kappa? (paper Figure 8 right)

    python studies/hard_vs_soft.py          # MNIST-1D, cnn1d-16 > cnn1d-16, 8 kappas, 3 seeds
    python studies/hard_vs_soft.py --quick  # smoke size (2 kappas, 2 seeds, short runs)

Three students per (kappa, seed): lt (the data set's labels), `hard` (cross-entropy with the
teacher's argmax as a one-hot label, alpha = 0) and kd (tau = 4, tau^2 factor on, alpha = 0). hard
carries what the teacher decides but nothing of its confidence or of the other classes; kd
carries both. So acc(kd) - acc(hard), paired by seed, is what the soft information adds beyond
the teacher's labels, and acc(hard) - acc(lt) what relabelling by the teacher does alone (for
kappa <= 1 the student's samples are the teacher's own training samples, so hard differs from lt
only where the teacher does not fit its training set; beyond kappa = 1 the new samples get the
teacher's labels, errors included). On model_size's kappas, pair and recipes, so its lt and kd
trials are reused from a shared --storage instead of trained again.

Printed: per kappa the three accuracies, PI(kd) and PI(hard) against lt, and kd - hard with a
95% t CI over seeds; the answer names the kappas where the CI of kd - hard lies above 0.

Cost here (2 CPU cores, run after model_size): 72 trials, 48 of them reused; README, "Studies".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdscale.config import DataSpec
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run
from kdscale.config import parse_pair
from kdscale.studyargs import MAIN_KAPPAS as DEFAULT_KAPPAS

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("hard_vs_soft", kappas=DEFAULT_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pair=PAIR)


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd", "hard"), taus=(args.tau,), alpha=0.0, tau_squared=True,
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args))


def write_section(result, out_dir: Path) -> tuple[str, list[Path]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.supervision import contrast, contrast_text, increments, summarize, summary_cell, usable

    trials = usable(result.table)
    per_seed = increments(result.table)
    acc = summarize(trials, "R").set_index(["arm", "kappa"])
    pi = summarize(per_seed, "PI").set_index(["arm", "kappa"])
    fidelity = summarize(trials, "fidelity_train").set_index(["arm", "kappa"])
    kd = next(a for a in sorted(trials["arm"].unique()) if a.startswith("kd"))
    soft = contrast(per_seed, kd, "hard").set_index("kappa")
    kappas = sorted(trials["kappa"].unique())
    row = result.table.iloc[0]

    def cell(frame, arm, kappa, signed=False):
        return summary_cell(frame, (arm, kappa), signed)

    lines = ["## Hard teacher labels against soft targets (paper Figure 8 right)", "",
             f"{row['teacher']} > {row['student']} on {row['dataset']}, N = {row['n_teacher']}, student budget "
             f"{row['budget']}. Test accuracy mean ± sd over seeds; PI = acc - acc(lt) and kd - hard paired by "
             "seed, the latter with a 95% t CI; the train fidelity of hard (top-1 agreement with the "
             "teacher on the student's samples) shows how closely the student fits the teacher's labels.", "",
             f"| kappa | acc lt | acc hard | acc {kd} | PI hard | PI {kd} | {kd} - hard [95% CI] | seeds | "
             "train fidelity hard |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kappa in kappas:
        c = soft.loc[kappa] if kappa in soft.index else None
        diff = "-" if c is None else contrast_text(c)
        lines.append(f"| {kappa:g} | {cell(acc, 'lt', kappa)} | {cell(acc, 'hard', kappa)} | {cell(acc, kd, kappa)} | "
                     f"{cell(pi, 'hard', kappa, True)} | {cell(pi, kd, kappa, True)} | {diff} | "
                     f"{0 if c is None else int(c['n'])} | {cell(fidelity, 'hard', kappa)} |")
    lines += ["", "**Answer.** " + answer(soft, pi, kd), ""]

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
    figure = out_dir / "hard_vs_soft_accuracy.png"
    fig.savefig(figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return "\n".join(lines) + "\n", [figure]


def answer(soft, pi, kd: str) -> str:
    """Which kappas have kd - hard with a 95% CI above 0, below 0, or across it."""
    above = [k for k, c in soft.iterrows() if c["n"] > 1 and c["low"] > 0]
    below = [k for k, c in soft.iterrows() if c["n"] > 1 and c["high"] < 0]
    unclear = [k for k, c in soft.iterrows() if k not in above and k not in below]

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return finish(run(build_spec, args, "hard_vs_soft"), args, "hard_vs_soft", write_section)


if __name__ == "__main__":
    sys.exit(main())
