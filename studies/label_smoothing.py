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
The section: analysis/sections/label_smoothing.py.

Cost here (2 CPU cores, run after model_size --grid): 96 trials, 48 of them reused; README, "Studies".
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import label_smoothing
from kdscale.config import DataSpec, ObjectiveSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, MAIN_KAPPAS, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
GRID = Grid("label_smoothing", kappas=MAIN_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pair=PAIR)


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
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
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "label_smoothing")
    return finish(result, args,
                          lambda out_dir: label_smoothing.section(result.table, result.store.uri, out_dir))


if __name__ == "__main__":
    sys.exit(main())
