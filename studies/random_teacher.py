"""Does a student distilled from an untrained teacher, with no labels, learn features a linear
probe reads better than its teacher's, and how does that depend on kappa and on how close to the
teacher it starts? (Sarnthein et al., "Random Teachers are Good Teachers", arXiv 2302.12091)

    python studies/random_teacher.py          # MNIST-1D, cnn1d-32 + projection 512, kappa 0.1 and 1, 4 starts, data and noise, 5 seeds
    python studies/random_teacher.py --quick  # smoke size: N = 500, cnn1d-8 + projection 64, 2 starts, 2 seeds, 40 steps

Each seed s has its own untrained teacher (TeacherSpec.untrained: zero steps, initialisation seed
1000 + s, never a student's own) with a projection head (model option projection=K: DINO's head,
small). Students of the teacher's architecture learn with the label-free embedding objective
(`embed`: CE(softmax(t / 0.04), softmax(s / 0.1)) between the projection outputs) on M = kappa N
samples, starting from (`--starts`): their own initialisation (independent), the teacher's plus
noise of 0.1 or 0.5 of each weight tensor's rms (near), or halfway between the two (interpolate
0.5); on the data's inputs or on Gaussian noise of their shape, mean and std (`--inputs`). AdamW,
lr 1e-3, weight decay 0.01, batch 128, 500 steps (fixed, not searched: a search scores test
accuracy, which a projection head has not).
Measured per trial (labels are read by the probes only): linear probes (L-BFGS, on the frozen
penultimate features, fitted on the N pool samples, scored on the test set) of the student and of
its teacher, and the same on a second task, MNIST-1D with reversed templates and the next data
seed (kdscale.representations.transfer). The section (analysis/sections/random_teacher.py) gives
per cell the gain, student probe minus teacher probe, with 95% t-intervals over seeds, the gain of
each start against the independent one, and the gain's change from the smallest to the largest kappa.

Cost here (2-core CPU shared with other jobs): see README, "Studies".
Answer here: see README, "Studies", and docs/studies.md.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from analysis.sections import random_teacher
from kdscale.config import DataSpec, ObjectiveSpec, RecipeSpec, parse_pair
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, resources, run

PAIR = "cnn1d:width=32,projection=512>cnn1d:width=32,projection=512"
QUICK_PAIR = "cnn1d:width=8,projection=64>cnn1d:width=8,projection=64"
STARTS = ("independent", "near:0.1", "near:0.5", "interpolate:0.5")
TEACHER_SEED = 1000  # seed s's teacher is initialised from seed 1000 + s
RECIPE = RecipeSpec(optimizer="adamw", lr=1e-3, weight_decay=0.01, batch_size=128, steps=500)
QUICK_STEPS, QUICK_N = 40, 500
GRID = Grid("random_teacher", kappas=(0.1, 1.0), seeds=5, pair=PAIR,
            quick=dict(kappas=(0.5, 1.0), seeds=2, starts=("independent", "near:0.1")))


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--starts", nargs="+", help="where students start: independent, teacher (issue 17's "
                        "--student-init teacher), near:SCALE, interpolate:T (default " + " ".join(STARTS) + ")")
    parser.add_argument("--inputs", nargs="+", choices=("data", "noise"), default=["data", "noise"],
                        help="what students are distilled on (default data noise)")
    parser.add_argument("--tau", type=float, default=0.1, help="the student's temperature (default 0.1)")
    parser.add_argument("--tau-teacher", type=float, default=0.04, help="the teacher's temperature (default 0.04)")
    parser.add_argument("--steps", type=int, help=f"student steps (default {RECIPE.steps}; --quick {QUICK_STEPS})")
    add_run_flags(parser, recipes=False)
    return parser


def parse_start(text: str) -> tuple[str, float]:
    init, _, scale = text.partition(":")
    try:
        return init, float(scale) if scale else 0.0
    except ValueError:
        raise SpecError(f"--starts {text!r} is invalid: write INIT or INIT:SCALE, e.g. near:0.1") from None


def build_spec(args: argparse.Namespace) -> StudySpec:
    quick = bool(args.quick)
    pair = QUICK_PAIR if quick and args.pair == PAIR else args.pair
    steps = args.steps or (QUICK_STEPS if quick else RECIPE.steps)
    data = DataSpec(n_teacher=QUICK_N, n_test=QUICK_N) if quick else DataSpec()
    starts = tuple(parse_start(s) for s in (args.starts or GRID.get(args, "starts", STARTS)))
    return StudySpec(
        name=GRID.study_name(args), data=data, pairs=(parse_pair(pair),), kappas=GRID.kappa_values(args), taus=(),
        objectives=(), variants=(ObjectiveSpec("embed", tau=args.tau, tau_teacher=args.tau_teacher),),
        seeds=GRID.seed_values(args), recipe=replace(RECIPE, steps=steps), teacher_seed=TEACHER_SEED,
        teacher_untrained=True, teacher_per_seed=True, inits=starts, inputs=tuple(dict.fromkeys(args.inputs)),
        resources=resources(args), recipe_policy="fixed", extras=("probe", "teacher_probe", "transfer"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.no_analysis = True  # the standard report fits kd against lt on test accuracy; this study has neither
    result = run(build_spec, args, "random_teacher")
    return finish(result, args, lambda out_dir: random_teacher.section(result.table, result.store.uri, out_dir))


if __name__ == "__main__":
    sys.exit(main())
