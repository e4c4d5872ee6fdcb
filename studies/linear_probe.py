"""Does the gain of kd survive retraining the head? A linear probe fitted on all N of the
teacher's samples, on frozen student features, against the student's own test accuracy.

    python studies/linear_probe.py           # MNIST-1D, cnn1d-16 > cnn1d-16, kappa 0.05-2, lt and kd tau 1/4/10, 3 seeds
    python studies/linear_probe.py --quick   # smoke size (kappa 0.05 and 1, 2 seeds)

Figures 14 and 19 of the paper (arXiv 2510.15516). At small kappa an lt student has seen few
labels; part of kd's advantage could sit in the last layer only, which a probe trained on the
teacher's full N-sample pool would recover for lt too. Each trial measures `probe_acc`
(kdscale.representations: an L-BFGS linear probe on the penultimate features of the frozen
student, fitted on the teacher's N training samples, scored on the test set). Per kappa and tau:
PI of test accuracy and PI of probe accuracy, both kd - lt paired by seed (mean ± sd), and the
share of the PI that remains after the probe (ratio of the seed means; the range of the per-seed
ratios beside it), reported where the PI of test accuracy is clearly positive (mean > 2 se and
at least 0.01).

The probe is an opt-in measurement (extras "probe"), so these trials train here even where
model_size has the same cell without it: 72 trials, all trained, 105 s on this project's 2-core
CPU machine. The answer (65-84% of the PI survives the probe at tau = 4 and 10) with its numbers:
docs/studies.md (linear_probe).
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import linear_probe
from kdscale.config import DataSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
KAPPAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
TAUS = (1.0, 4.0, 10.0)
GRID = Grid("linear_probe", kappas=KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pairs=(PAIR,))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--taus", nargs="+", type=float, default=list(TAUS), help="kd temperatures (default 1 4 10)")
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(), pairs=tuple(parse_pair(p) for p in GRID.pair_values(args)),
        kappas=GRID.kappa_values(args), taus=tuple(args.taus), seeds=GRID.seed_values(args), recipe=student_recipe,
        teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args), extras=("probe",))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "linear_probe")
    return finish(result, args, lambda out_dir: linear_probe.section(result.table, result.store.uri, out_dir))


if __name__ == "__main__":
    sys.exit(main())
