"""Bias and variance over seeds (eq. 2): does kd lower the variance of the student at small kappa
and carry a higher bias at large kappa, as the paper argues (its section B.2)?

    python studies/bias_variance.py           # MNIST-1D, cnn1d-16 > cnn1d-16, kappa 0.02-4, lt and kd tau=4, 5 seeds
    python studies/bias_variance.py --quick   # smoke size (kappa 0.05 and 1, 2 seeds)

The squared loss of the predicted test probabilities splits exactly into bias^2 + variance over
seeds (analysis.bias_variance, from each trial's stored test-set probabilities). A seed draws the
student's subset, initialisation and batch order, so "variance" is over all three. Per kappa: both
terms and their sum for lt and kd, and the kd - lt difference of each with a 95% percentile
bootstrap interval over seeds, paired (a replicate draws the same seeds for both objectives;
analysis.bias_variance_gap). Small kappa means kappa <= 0.1 here, large kappa >= 1.

The grid is model_size's (recipes, pair, kappas) with 5 seeds instead of 3, so under the default
storage seeds 0-2 come from model_size's results (the shared trial cache) and seeds 3-4 train:
80 trials, 32 trained, 58 s on this project's 2-core CPU machine. The answer (kd lowers the
variance at small kappa, and its bias^2 is lower, not higher, at every kappa) with its numbers:
docs/studies.md (bias_variance).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.recipes import study_recipes
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run
from kdscale.config import parse_pair
from kdscale.studyargs import MAIN_KAPPAS as DEFAULT_KAPPAS

PAIR = "cnn1d:width=16>cnn1d:width=16"
SMALL_KAPPA, LARGE_KAPPA = 0.1, 1.0  # the paper's two regimes, as this section reads them
GRID = Grid("bias_variance", kappas=DEFAULT_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), seeds=5,
            pairs=(PAIR,), seeds_help="number of seeds, at least 2")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__.splitlines()[0])
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    spec = StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=tuple(parse_pair(p) for p in GRID.pair_values(args)),
        kappas=GRID.kappa_values(args), taus=(args.tau,), seeds=GRID.seed_values(args), recipe=student_recipe,
        teacher_recipe=teacher_recipe, resources=resources(args))
    if len(spec.seeds) < 2:  # after StudySpec, which names an empty grid itself
        raise SpecError(f"--seeds {len(spec.seeds)} is invalid: a variance over seeds needs at least 2")
    if args.n_boot < 1:
        raise SpecError(f"--n-boot {args.n_boot} is invalid: must be >= 1")
    return spec


def decomposition(table, results_dir, n_boot: int = 2000):
    """(per-arm terms with the identity check, kd - lt differences with bootstrap CIs, notes)."""
    from analysis.bias_variance import bias_variance
    from analysis.bias_variance_gap import bias_variance_gaps
    from analysis.table import prepare

    trials = prepare(table, results_dir=results_dir)
    terms, notes = bias_variance(trials)
    gaps, gap_notes = bias_variance_gaps(trials, n_boot=n_boot)
    return terms, gaps, notes + gap_notes


def _draw(terms, gaps, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    pairs = sorted(gaps["pair"].unique())
    figure = Figure(figsize=(10, 3.8 * len(pairs)), layout="constrained")
    axes = figure.subplots(len(pairs), 2, squeeze=False)
    for (left, right), pair in zip(axes, pairs):
        for arm, group in terms[terms["pair"] == pair].groupby("arm", sort=True):
            group = group.sort_values("kappa")
            line, = left.plot(group["kappa"], group["bias2"], marker="o", ms=3, label=f"{arm} bias^2")
            left.plot(group["kappa"], group["variance"], marker="s", ms=3, ls="--", color=line.get_color(),
                      label=f"{arm} variance")
        left.set(xscale="log", xlabel="kappa = M / N", ylabel="squared-loss term", title=f"{pair}: each objective")
        part = gaps[gaps["pair"] == pair].sort_values("kappa")
        for term, label in (("variance", "variance"), ("bias2", "bias^2"), ("expected_loss", "bias^2 + variance")):
            mid = part[f"d_{term}"]
            bars = np.maximum(0, [mid - part[f"d_{term}_low"], part[f"d_{term}_high"] - mid])
            right.errorbar(part["kappa"], mid, yerr=bars, marker="o", ms=3, capsize=2, label=f"d {label}")
        right.axhline(0, color="gray", lw=0.8, ls="--")
        right.set(xscale="log", xlabel="kappa = M / N", ylabel="kd - lt (95% bootstrap CI over seeds)",
                  title=f"{pair}: kd - lt (below 0: kd lower)")
        for ax in (left, right):
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7)
    figure.suptitle("Bias-variance decomposition of the squared loss over seeds (eq. 2)", fontsize=10)
    path = out_dir / "bias_variance_decomposition.png"
    figure.savefig(path, dpi=120)
    return [path]


def write_section(result, out_dir: Path, n_boot: int = 2000) -> tuple[str, list[Path]]:
    """The study's Markdown section and its figures."""
    from analysis.bias_variance_gap import regime_counts

    terms, gaps, notes = decomposition(result.table, result.store.uri, n_boot)
    lines = ["## Bias and variance over seeds", ""]
    if gaps.empty:
        return "\n".join(lines + ["No kappa has two seeds with predictions of both objectives."]
                         + [f"- {n}" for n in notes]) + "\n", []
    figures = _draw(terms, gaps, out_dir)
    worst = float(terms["identity_error"].max())
    n_seeds = sorted(set(gaps["n_seeds"]))
    lines += [f"Squared loss of the test probabilities = bias^2 + variance over seeds (eq. 2), averaged over "
              f"test points; the identity holds to {worst:.1e} in every cell. d = kd - lt with a 95% percentile "
              f"bootstrap interval over {', '.join(map(str, n_seeds))} seeds ({gaps['n_boot'].iloc[0]} paired "
              "replicates; P = share of replicates with kd below lt).", "",
              "| pair | kd arm | kappa | bias^2 lt | bias^2 kd | d bias^2 [95% CI] | variance lt | variance kd | "
              "d variance [95% CI] | P(d var < 0) | sum lt | sum kd | d sum [95% CI] |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def diff(row, term):
        return (f"{row[f'd_{term}']:+.4f} [{row[f'd_{term}_low']:+.4f}, {row[f'd_{term}_high']:+.4f}]")
    for row in gaps.to_dict("records"):
        lines.append(f"| {row['pair']} | {row['arm']} | {row['kappa']:g} | {row['bias2_lt']:.4f} | "
                     f"{row['bias2_kd']:.4f} | {diff(row, 'bias2')} | {row['variance_lt']:.4f} | "
                     f"{row['variance_kd']:.4f} | {diff(row, 'variance')} | {row['p_variance_below0']:.2f} | "
                     f"{row['expected_loss_lt']:.4f} | {row['expected_loss_kd']:.4f} | {diff(row, 'expected_loss')} |")
    counts = regime_counts(gaps, SMALL_KAPPA, LARGE_KAPPA)
    lines += ["", f"Small kappa (<= {SMALL_KAPPA:g}): kd's variance is below lt's in {counts['variance_lower']} of "
              f"{counts['small']} cells, with the 95% interval below 0 in {counts['variance_lower_ci']}. "
              f"Large kappa (>= {LARGE_KAPPA:g}): kd's bias^2 is above lt's in {counts['bias_higher']} of "
              f"{counts['large']} cells, with the interval above 0 in {counts['bias_higher_ci']}."]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n", figures


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "bias_variance")
    return finish(result, args, "bias_variance", lambda res, out: write_section(res, out, args.n_boot))


if __name__ == "__main__":
    sys.exit(main())
