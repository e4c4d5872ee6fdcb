"""Which models track state where a diagonal RNN cannot, and does a dense teacher help a student learn
from less data? (Movahedi et al., "Fixed-point RNNs", arXiv 2503.10799)

    python studies/state_tracking.py          # 6 tasks x 3 models x 3 seeds; kd at 4 kappas on one task
    python studies/state_tracking.py --quick  # smoke size: 1 task, 2 kappas, 2 seeds, short runs

Part 1, the paper's table at CPU size: on each task of kdscale/data/sequences.py (s3, modsum,
modsum-brackets, copy, a5, s5), sequences of length 8 (copy: strings of 1-8), N = 2000 training
sequences, a test set of 100 sequences at each of the lengths 8, 16 and 32; diagrnn-32 (the
diagonal linear RNN), fprnn-16 (the dense one as a fixed point, exact: iterations >= T - 1) and
lstm-32, 10-16k parameters each, trained on the labels (lt, kappa = 1), 3 seeds. Printed
(analysis/sections/state_tracking.py): token and sequence accuracy per length, 95% t CIs over
seeds; a model solves a length when its mean sequence accuracy is >= 0.9. One study per task
(state_tracking_<task>); the engine trains a teacher per pair, so part 1 pairs its students with
the cheapest, lstm-32, except on the distillation task.
Part 2, on --kd-task (modsum-brackets): the dense teacher fprnn-16 (N = 2000, 3000 steps) into
diagrnn-32, fprnn-16 and lstm-32 students at kappa 0.1, 0.25, 0.5, 1, lt against kd (tau = 4,
tau^2 factor, alpha = 0): PI = acc(kd) - acc(lt) per token, paired by seed, with 95% CIs, and
kappa* (analysis.crossover).
Recipes: fixed, not searched (the project's default is fair): AdamW lr 3e-3, 5% warm-up then
cosine, weight decay 0.01, batch 64, 1500 steps for every student (recipes.py,
`sequence-student`; the teacher 3000). A search (kdscale.search, AdamW's learning rates among
them) trains up to 22,000 steps, about 15 students, per cell, more than this CPU-sized study
affords; AdamW at 3e-3 trained every model of the pilots without a divergence (--recipe is not a
flag of this study).

Cost here (2-core CPU shared with other jobs): see README, "Studies".
Answer here: see README, "Studies", and docs/studies.md.
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import state_tracking
from kdscale.config import DataSpec, ModelSpec
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, needs_ray, resources, run

TASKS = ("s3", "modsum", "modsum-brackets", "copy", "a5", "s5")
MODELS = ("diagrnn:width=32", "fprnn:width=16", "lstm:width=32")
TEACHER = "fprnn:width=16"  # the distillation task's teacher
CHEAP_TEACHER = "lstm:width=32"  # the other tasks' (part 1 trains lt only)
LENGTH, N, N_TEST, QUICK_STEPS, QUICK_N, QUICK_N_TEST = 8, 2000, 300, 200, 400, 90
GRID = Grid("state_tracking", kappas=(0.1, 0.25, 0.5, 1.0),
            quick=dict(tasks=("modsum-brackets",), kappas=(0.25, 1.0), seeds=2),
            name_help="prefix of the studies' names (default state_tracking, --quick state_tracking_quick; "
            "then _<task>)")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--tasks", nargs="+", help=f"part 1's tasks (default {' '.join(TASKS)})")
    parser.add_argument("--kd-task", default="modsum-brackets", help="part 2's task (default modsum-brackets)")
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    parser.add_argument("--n-teacher", type=int, default=N, help=f"N, training sequences (default {N}; --quick {QUICK_N})")
    add_run_flags(parser, recipes=False)
    return parser


def build_specs(args: argparse.Namespace) -> list[StudySpec]:
    """One StudySpec per task, the distillation task's last (bad input raises SpecError, before compute)."""
    teacher_recipe, student_recipe = study_recipes("s5", bool(args.quick))
    if args.quick:  # no other study shares these trials: a shorter smoke budget than recipes' common one
        student_recipe = student_recipe.with_budget(steps=QUICK_STEPS)
    n = QUICK_N if args.quick and args.n_teacher == N else args.n_teacher
    prefix = args.name or (f"{GRID.name}_quick" if args.quick else GRID.name)
    tasks = [t for t in dict.fromkeys(args.tasks or GRID.get(args, "tasks", TASKS)) if t != args.kd_task]
    specs = []
    for task in [*tasks, args.kd_task]:
        distil = task == args.kd_task
        teacher = ModelSpec.parse(TEACHER if distil else CHEAP_TEACHER)
        specs.append(StudySpec(
            name=f"{prefix}_{task}", data=DataSpec(task, n_teacher=n, n_test=QUICK_N_TEST if args.quick else N_TEST,
                                                   options=(("length", LENGTH),)),
            pairs=tuple((teacher, ModelSpec.parse(m)) for m in MODELS),
            kappas=GRID.kappa_values(args) if distil else (1.0,), taus=(args.tau,),
            objectives=("lt", "kd") if distil else ("lt",), seeds=GRID.seed_values(args), recipe=student_recipe,
            teacher_recipe=teacher_recipe, resources=resources(args), recipe_policy="fixed"))
    return specs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kdscale.errors import SpecError
    from kdscale.study import check_study

    try:
        specs = build_specs(args)
        for spec in specs:  # all checked before the first one runs
            check_study(spec)
        if 1.0 not in specs[-1].kappas:
            raise SpecError("--kappas must include 1: part 1's table reads the distillation task at kappa = 1")
    except SpecError as error:
        print(f"state_tracking: error: {error}", file=sys.stderr)
        return 2
    from kdscale.engine import ray_session

    results = []
    with ray_session(args.address, args.verbose, start=needs_ray(specs, args.storage)):
        for spec in specs:
            results.append(run(lambda _, spec=spec: spec, args, "state_tracking"))
            if results[-1] is None or not results[-1].complete:
                return 2 if results[-1] is None else 1
    trained, seconds = sum(r.trained for r in results), sum(r.train_s for r in results)
    print(f"state_tracking: {len(specs)} studies, {trained} trials trained ({seconds:.0f} s)", file=sys.stderr)
    return finish(results[-1], args, lambda out_dir: state_tracking.section(
        {r.store.uri: r.table for r in results}, args.kd_task, out_dir))


if __name__ == "__main__":
    sys.exit(main())
