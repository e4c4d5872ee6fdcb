"""Do kd students learn features closer to the teacher's than lt students, and more so at small kappa?

    python studies/feature_alignment.py          # MNIST-1D, cnn1d-32 > cnn1d-32, 6 kappas, 3 seeds
    python studies/feature_alignment.py --quick  # smoke size
    python studies/feature_alignment.py --student-init teacher   # students start from the teacher's init

The paper's evidence for the dark-knowledge hypothesis (arXiv 2510.15516): per kappa, linear CKA
of kd and lt students to the teacher on the test set (its Figure 4), the pairwise CKA matrix
between kd and lt students of different seeds (Figure 5), and the correlation of the CKA gain
(CKA(kd) - CKA(lt), paired by seed) with the accuracy gain PI (Figure 18). Also feature alignment
FA (Table 4; teacher and student have the same width here), the alignment of the student's and
the teacher's empirical NTKs on 100 test samples (Figure 16), a linear probe refitted on the
teacher's N samples (Figure 14) and the eigenspectrum of the students' features (Figure 17).
Every trial runs through the engine with extras cka, fa, ntk, probe, features; the section (analysis/sections/feature_alignment.py) goes into the study's analysis
report, with its numbers as CSV, and into its MLflow parent run.
`--student-init teacher` (or `near`, with `--init-scale`) starts every student from the teacher's
initialisation (Table 4: FA, coordinate-wise, only means something when the student's units can be
the teacher's), as a study of its own (feature_alignment_init-teacher); each recipe is still the one
searched for a student that starts independently. Every row records the start's (init_distance) and
the trained student's (end_distance) relative distance to the teacher's initialisation, and the
section reports both beside FA and CKA.
Cost and answer on this project's 2-core CPU machine: README, "Studies".
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from analysis.sections import feature_alignment
from kdscale.config import DataSpec, ModelSpec
from kdscale.recipes import default_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import (Grid, StudyParser, add_init_flags, add_run_flags, finish, inits, recipe_fields,
                               resources, run)

PAIR = ("cnn1d:width=32", "cnn1d:width=32")
KAPPAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
GRID = Grid("feature_alignment", kappas=KAPPAS,
            quick=dict(kappas=(0.1, 1.0), seeds=2, student_steps=300, teacher_epochs=20))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--teacher", default=PAIR[0], help=f"teacher model (default {PAIR[0]})")
    parser.add_argument("--student", default=PAIR[1], help=f"student model (default {PAIR[1]})")
    parser.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    add_init_flags(parser)
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    teacher_recipe, student_recipe = default_recipes("mnist1d")
    if args.quick:
        student_recipe = replace(student_recipe, steps=GRID.quick["student_steps"])
        teacher_recipe = replace(teacher_recipe, epochs=GRID.quick["teacher_epochs"])
    return StudySpec(
        name=GRID.study_name(args), data=DataSpec(),
        pairs=((ModelSpec.parse(args.teacher), ModelSpec.parse(args.student)),),
        kappas=GRID.kappa_values(args), taus=(args.tau,), seeds=GRID.seed_values(args),
        recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args), **recipe_fields(args),
        extras=("cka", "fa", "ntk", "probe", "features"), inits=inits(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "feature_alignment")
    return finish(result, args, lambda out_dir: feature_alignment.section(result.table, result.store.uri,
                                                                                  out_dir))


if __name__ == "__main__":
    sys.exit(main())
