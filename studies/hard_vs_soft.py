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
The section: analysis/sections/hard_vs_soft.py.

Cost here (2 CPU cores, run after model_size --grid): 72 trials, 48 of them reused; README, "Studies".
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import hard_vs_soft
from kdscale.config import DataSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, MAIN_KAPPAS, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("hard_vs_soft", kappas=MAIN_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pair=PAIR)


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd", "hard"), taus=(args.tau,), alpha=0.0, tau_squared=True,
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "hard_vs_soft")
    return finish(result, args, lambda out_dir: hard_vs_soft.section(result.table, result.store.uri, out_dir))


if __name__ == "__main__":
    sys.exit(main())
