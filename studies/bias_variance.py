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

from analysis.sections import bias_variance
from kdscale.config import DataSpec, parse_pair
from kdscale.errors import SpecError
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, MAIN_KAPPAS, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("bias_variance", kappas=MAIN_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), seeds=5,
            pairs=(PAIR,), seeds_help="number of seeds, at least 2")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
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
        teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args))
    if len(spec.seeds) < 2:  # after StudySpec, which names an empty grid itself
        raise SpecError(f"--seeds {len(spec.seeds)} is invalid: a variance over seeds needs at least 2")
    if args.n_boot < 1:
        raise SpecError(f"--n-boot {args.n_boot} is invalid: must be >= 1")
    return spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "bias_variance")
    return finish(result, args, lambda out_dir: bias_variance.section(result.table, result.store.uri, out_dir,
                                                                              args.n_boot))


if __name__ == "__main__":
    sys.exit(main())
