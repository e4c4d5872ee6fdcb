"""Is label smoothing's gain over lt flat in kappa, while distillation's is not? (paper Table 2)

    python studies/label_smoothing.py          # MNIST-1D, cnn1d-16 > cnn1d-16, 8 kappas, 3 seeds
    python studies/label_smoothing.py --quick  # smoke size (2 kappas, 2 seeds, short runs)

The paper (arXiv 2510.15516, section 5) asks whether kd's benefit is only regularisation: if it
were, uniform label smoothing (ls) would help like kd does. Its Table 2 shows ls's increment
over lt flat across data sizes while kd's grows as data shrink. Here: lt, kd (tau = 4, tau^2
factor on, alpha = 0) and ls at epsilon 0.1 and at 0.0855, the epsilon the paper's own baseline
amounts to (`kdscale.objectives.paper_ls_epsilon(10)`: alpha = 0.9 towards a one-hot of 0.99 passed
through a softmax), on model_size's kappas (0.02 to 4), pair and recipes, so its lt and kd trials
are model_size's and are reused from a shared --storage instead of trained again.

Printed: the Table 2 layout, per kappa acc(lt) and PI = acc - acc(lt) (paired by seed, mean +- sd)
of each ls and of kd; then, per arm, whether PI depends on kappa. Criterion
(`analysis.supervision.kappa_dependence`), on the seed-level PIs: the slope of PI against
log10 kappa with a 95% t CI, and a one-way ANOVA with kappa as the factor. An arm is *flat* if the
ANOVA does not reject a constant PI (p >= 0.05) and the slope's whole CI lies within +-0.02 per
decade of kappa; it *varies* if the ANOVA rejects or the slope's CI excludes 0; else the test is
*inconclusive*. "ls is flat, kd is not" holds for an epsilon when ls is flat and kd varies.

Cost here (2 CPU cores, run after model_size): 96 trials, 48 of them reused; README, "Studies".
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from kdscale.config import DataSpec, ObjectiveSpec
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run
from kdscale.config import parse_pair
from kdscale.studyargs import MAIN_KAPPAS as DEFAULT_KAPPAS

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("label_smoothing", kappas=DEFAULT_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pair=PAIR)
SAYS = {"flat": "is flat", "varies": "varies with kappa", "inconclusive": "is inconclusive"}


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    parser.add_argument("--epsilons", nargs="+", type=float,
                        help="ls smoothing epsilons (default 0.1 and the paper's 0.0855)")
    add_run_flags(parser)
    return parser


def epsilons(args: argparse.Namespace) -> tuple[float, ...]:
    from kdscale import data
    from kdscale.objectives import paper_ls_epsilon

    if args.epsilons:
        return tuple(args.epsilons)
    return (0.1, round(paper_ls_epsilon(data.info(DataSpec()).num_classes), 4))


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd"), taus=(args.tau,), alpha=0.0, tau_squared=True,
        variants=tuple(ObjectiveSpec("ls", epsilon=e) for e in epsilons(args)),
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args))


def write_section(result, out_dir: Path) -> tuple[str, list[Path]]:
    """The Table 2 layout, the flatness test per arm, the answer, and one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.supervision import baseline_accuracy, increments, kappa_dependence, summarize, summary_cell

    per_seed = increments(result.table)
    pi = summarize(per_seed, "PI")
    pi_cells = pi.set_index(["arm", "kappa"])
    lt = baseline_accuracy(result.table).set_index("kappa")
    arms = sorted(per_seed["arm"].unique(), key=lambda a: (not a.startswith("ls"), a))
    ls_arms = [a for a in arms if a.startswith("ls")]
    kd_arms = [a for a in arms if a.startswith("kd")]
    tests = {arm: kappa_dependence(per_seed[per_seed["arm"] == arm]) for arm in arms}
    row = result.table.iloc[0]

    lines = ["## Label smoothing against distillation (paper Table 2)", "",
             f"{row['teacher']} > {row['student']} on {row['dataset']}, N = {row['n_teacher']}, "
             f"student budget {row['budget']}. PI = acc(objective) - acc(lt), paired by seed; mean ± sd over "
             f"seeds (n per cell in the last column).", "",
             "| kappa | acc(lt) | " + " | ".join(f"PI {a}" for a in arms) + " | seeds |",
             "| --- | --- | " + " | ".join("---" for _ in arms) + " | --- |"]
    for kappa in sorted(pi["kappa"].unique()):
        cells = [summary_cell(pi_cells, (arm, kappa), signed=True) for arm in arms]
        seeds = int(pi[pi["kappa"] == kappa]["n"].min())
        acc = summary_cell(lt, kappa)
        lines.append(f"| {kappa:g} | {acc} | " + " | ".join(cells) + f" | {seeds} |")
    lines += ["", "Does PI depend on kappa? Per arm, on the seed-level PIs: the least-squares slope of PI against "
              "log10 kappa with its 95% t CI, and a one-way ANOVA of PI with kappa as the factor (H0: PI the "
              "same at every kappa). Criterion: *flat* if the ANOVA gives p >= 0.05 and the slope's whole CI "
              "lies within ±0.02 per decade of kappa; *varies* if p < 0.05 or the slope's CI excludes 0; "
              "*inconclusive* otherwise. Seeds are nested across kappa, so the tests treat as independent "
              "what is only approximately so.", "",
              "| arm | slope of PI per decade of kappa [95% CI] | ANOVA F, p | range of per-kappa mean PI | verdict |",
              "| --- | --- | --- | --- | --- |"]
    for arm in arms:
        t = tests[arm]
        lines.append(f"| {arm} | {t['slope']:+.4f} [{t['slope_low']:+.4f}, {t['slope_high']:+.4f}] | "
                     f"F = {t['f']:.2f}, p = {_p(t['p'])} | {t['range']:.3f} | {t['verdict']} |")
    lines += [""]
    for kd in kd_arms:
        for ls in ls_arms:
            holds = tests[ls]["verdict"] == "flat" and tests[kd]["verdict"] == "varies"
            lines.append(f"- **{ls}** against **{kd}**: ls {SAYS[tests[ls]['verdict']]} "
                         f"(range {tests[ls]['range']:.3f}, slope {tests[ls]['slope']:+.4f}/decade, "
                         f"p = {_p(tests[ls]['p'])}), kd {SAYS[tests[kd]['verdict']]} (range {tests[kd]['range']:.3f}, "
                         f"p = {_p(tests[kd]['p'])}): the conclusion \"ls is flat in kappa, kd is not\" "
                         f"**{'holds' if holds else 'does not hold'}** here.")
    lines += ["", magnitudes(pi, ls_arms, kd_arms, tests), ""]

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.errorbar(lt.index, lt["mean"], yerr=lt["sd"].fillna(0), label="lt", marker="o", capsize=3, color="black")
    for arm in arms:
        acc = summarize(per_seed[per_seed["arm"] == arm], "R")
        part = pi[pi["arm"] == arm]
        left.errorbar(acc["kappa"], acc["mean"], yerr=acc["sd"].fillna(0), label=arm, marker="o", capsize=3)
        right.errorbar(part["kappa"], part["mean"], yerr=part["sd"].fillna(0), label=arm, marker="o", capsize=3)
    right.axhline(0, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="kappa = M / N", ylabel="test accuracy", title="accuracy (mean ± sd over seeds)")
    right.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc - acc(lt)", title="increment over lt (Table 2)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure = out_dir / "label_smoothing_pi_vs_kappa.png"
    fig.savefig(figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return "\n".join(lines) + "\n", [figure]


def magnitudes(pi, ls_arms, kd_arms, tests) -> str:
    """How much PI moves with kappa and where it lies, ls against kd, whatever the verdicts."""
    parts = []
    for arm in ls_arms + kd_arms:
        means = pi[pi["arm"] == arm]["mean"]
        parts.append(f"{arm} from {means.min():+.3f} to {means.max():+.3f} (range {tests[arm]['range']:.3f})")
    text = "In size: the per-kappa mean PI of " + "; ".join(parts) + "."
    for kd in kd_arms:
        ratios = [tests[kd]["range"] / tests[ls]["range"] for ls in ls_arms if tests[ls]["range"] > 1e-9]
        if ratios:
            text += (f" kd's PI moves {min(ratios):.1f}" + (f" to {max(ratios):.1f}" if len(ratios) > 1 else "")
                     + " times as much over kappa as ls's.")
    return text


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return finish(run(build_spec, args, "label_smoothing"), args, "label_smoothing", write_section)


if __name__ == "__main__":
    sys.exit(main())
