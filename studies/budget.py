"""Steps or epochs: does the training budget decide the PI curve and kappa*?

    python studies/budget.py           # model_size's grid (5 pairs, kappa 0.02-4, lt and kd tau=4, 3 seeds), two budgets
    python studies/budget.py --quick   # smoke size (cnn1d-16 > cnn1d-16, kappa 0.05 and 1, 2 seeds)

Beyond the paper (arXiv 2510.15516), which trains every kappa for the same number of EPOCHS: a
student with a small kappa then also gets few optimizer steps, and part of what looks like a data
effect could be a budget effect. kdscale's default gives every kappa the same number of STEPS
(1500 at batch 128). This study runs one grid, model_size's, under both budgets, as two studies:

- `budget_steps`: the default recipe, 1500 steps at every kappa. Its trials are model_size's, so
  under the default storage they come from model_size's results (the shared trial cache).
- `budget_epochs`: the same recipe with E epochs at every kappa (lt and kd alike), E chosen so
  that kappa = 1 (M = N = 4000) sees as many samples as under the step budget:
  E = 1500 * 128 / 4000 = 48, which is 48 * ceil(4000 / 128) = 1536 steps at kappa = 1 (the last
  partial batch of an epoch is a step), 48 at kappa = 0.02 and 6000 at kappa = 4.

The results table's `budget` column (`steps=1500` / `epochs=48`) and each MLflow trial run's
`budget` param say which budget a result was trained with. Each study gets the standard analysis
(the analysis refuses two budgets in one table); the comparison section (PI and PG per budget
side by side, PI paired by seed across budgets, kappa* per budget from analysis.crossover) joins
the epochs study's report and both studies' MLflow parent runs. Both studies keep one recipe for
every cell (`recipe_policy="fixed"`): the question is the fixed recipe's own; the default fair
recipes of the other studies search the budget per cell instead.
480 trials, 240 trained (the epoch budget), 7 min 49 s on this project's 2-core CPU machine. The
answer (under the epoch budget kappa* falls inside the grid, 1.8-3.4, for the four pairs where it
lies beyond kappa = 4 under the step budget) with its numbers: docs/studies.md (budget).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from analysis.budget import epochs_matching_steps
from analysis.sections import budget
from kdscale.config import DataSpec, parse_pair
from kdscale.errors import SpecError
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import (MAIN_KAPPAS, MAIN_PAIRS, Grid, StudyParser, add_run_flags, analyse, finish,
                               resources, run)

GRID = Grid("budget", kappas=MAIN_KAPPAS, quick=dict(pairs=("cnn1d:width=16>cnn1d:width=16",), kappas=(0.05, 1.0),
            seeds=2), pairs=MAIN_PAIRS, name_help="prefix of the two studies' names (default budget, or "
            "budget_quick): NAME_steps and NAME_epochs")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    parser.add_argument("--epochs", type=int, help="the epoch budget (default: the steps budget's samples at "
                        "kappa = 1, steps * batch / N: 48, or 16 with --quick)")
    add_run_flags(parser, recipes=False)  # both studies keep the fixed recipe: the budget is the question
    return parser


def build_specs(args: argparse.Namespace) -> tuple[StudySpec, StudySpec]:
    """(fixed-steps study, fixed-epochs study): one grid, two student budgets."""
    teacher_recipe, steps_recipe = study_recipes("mnist1d", bool(args.quick))
    n_teacher = DataSpec().n_teacher
    epochs = args.epochs
    if epochs is None:
        epochs, _ = epochs_matching_steps(steps_recipe.steps, steps_recipe.batch_size, n_teacher)
    elif epochs < 1:
        raise SpecError(f"--epochs {epochs} is invalid: must be an integer >= 1")
    epochs_recipe = replace(steps_recipe, steps=None, epochs=epochs, warmup=0.0, milestones=())
    prefix = GRID.study_name(args)
    common = dict(data=DataSpec(n_teacher=n_teacher), pairs=tuple(parse_pair(p) for p in GRID.pair_values(args)),
                  kappas=GRID.kappa_values(args), taus=(args.tau,), seeds=GRID.seed_values(args),
                  teacher_recipe=teacher_recipe, resources=resources(args), recipe_policy="fixed")
    return (StudySpec(name=f"{prefix}_steps", recipe=steps_recipe, **common),
            StudySpec(name=f"{prefix}_epochs", recipe=epochs_recipe, **common))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    specs = {}

    def steps_spec(args):  # builds (and so checks) both studies before either runs
        specs["steps"], specs["epochs"] = build_specs(args)
        return specs["steps"]
    steps_result = run(steps_spec, args, "budget")
    if steps_result is None or not steps_result.complete:
        return 2 if steps_result is None else 1
    epochs_result = run(lambda _: specs["epochs"], args, "budget")
    if not args.no_analysis and analyse(steps_result, print_headline=False) is None:
        return 1
    made = []

    def section(out_dir):
        made.append((out_dir, budget.section(steps_result.table, epochs_result.table,
                                             (steps_result.store.study, epochs_result.store.study), out_dir)))
        return made[-1][1]
    status = finish(epochs_result, args, section)
    if status == 0:  # the comparison belongs to both studies: attach it to the steps study's run too
        from kdscale.tracking import log_artifacts

        out_dir, done = made[0]
        files = [out_dir / f"{done.name}.md", *done.figures, *(out_dir / f"{done.name}_{t}.csv" for t in done.tables)]
        log_artifacts(steps_result.tracking_uri, steps_result.parent_run_id, files, artifact_path="analysis")
    return status


if __name__ == "__main__":
    sys.exit(main())
