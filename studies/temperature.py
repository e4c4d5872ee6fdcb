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
l2 at the right end), train fidelity against tau. The section: analysis/sections/temperature.py.

Cost here (2 CPU cores, 2026-11-30, fair recipes): 240 trials, 39 reused from the other studies under
the same storage, 201 trained, 67 recipe searches: 41.8 min, most of it searching; README, "Studies".
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import temperature
from kdscale.config import DataSpec, ObjectiveSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
TAUS = (0.1, 1.0, 3.0, 5.0, 10.0, 20.0, 100.0)
KAPPAS = (0.05, 0.1, 0.5, 1.0, 4.0)  # a subset of model_size.DEFAULT_KAPPAS
GRID = Grid("temperature", kappas=KAPPAS, quick=dict(kappas=(0.05, 1.0), taus=(1.0, 10.0), seeds=2), pair=PAIR)


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
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
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "temperature")
    return finish(result, args, lambda out_dir: temperature.section(result.table, result.store.uri, out_dir))


if __name__ == "__main__":
    sys.exit(main())
