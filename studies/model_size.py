"""Model size x data size: where does distillation stop helping, and how does that depend on size?

    python studies/model_size.py              # adaptive kappa* search: MNIST-1D, 5 pairs, to +-25%
    python studies/model_size.py --grid       # the fixed grid: 8 kappas x 3 seeds
    python studies/model_size.py --quick      # smoke size (a fixed grid), every part of the pipeline
    python studies/model_size.py --dataset digits --vit --grid   # CNN teachers, ViT students (VIT_PAIRS)

Default: MNIST-1D with N = 4000 teacher samples; teachers cnn1d-8, -16, -32, -64 in five pairs
(cnn1d-64 > cnn1d-4 and every teacher > cnn1d-16) whose student/teacher parameter ratio spans
0.012 to 2.9; lt and kd at tau = 4 (chosen on MNIST-1D: README, "Choosing tau"); each arm's recipe
searched per cell on validation data (kdscale.search). kappa* is searched (analysis.kappa_search,
kdscale.adaptive): a coarse pass at kappa 0.02, 0.1, 0.5, 4 on 2 seeds, then rounds that split
the bracket of kappa* and add seeds where they decide it (6 or more there), until its 95% interval
is within x/1.25 (--target) or the pair has spent 80 trials (--budget); study
`model_size_adaptive`, tested on planted truth (docs/studies.md). `--grid` trains the fixed grid
instead: kappa from 0.02 to 4 (kappa > 1 takes generated samples beyond the teacher's N), 3 seeds,
study `model_size`, whose trials the other studies share. Cost and result on this project's 2-core
CPU machine: README, "The main job".

It prints, per pair, the performance gain PG = acc(kd) / acc(lt) per kappa and the data
equivalence, how many times more data lt needs to reach kd's accuracy (analysis.sections.model_size),
and kappa* (where PG crosses 1, with a bootstrap CI over seeds), then the fits of `analysis`, and
writes the report (these tables included) and figures beside the results table; MLflow (`mlflow ui`)
shows the study as one parent run with a nested run per trial. Reruns train only unfinished trials.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from kdscale.adaptive import add_adaptive_flags, check_mode, coarse_pass, is_adaptive, run_adaptive
from kdscale.config import parse_pair
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.studyargs import (DIGITS_PAIRS, IMAGE_PAIRS, MAIN_KAPPAS, MAIN_PAIRS, VIT_PAIRS, Grid, StudyParser,
                               add_budget_flags, add_data_flags, add_init_flags, add_run_flags, analyse, attach_section,
                               base_recipes, data_spec, inits, mlflow_hint, recipe_fields, resources, run)

GRID = Grid("model_size", kappas=MAIN_KAPPAS, pairs=MAIN_PAIRS, quick=dict(
    pairs=("cnn1d:width=16>cnn1d:width=16", "cnn1d:width=64>cnn1d:width=4", "cnn1d:width=8>cnn1d:width=16"),
    kappas=(0.05, 0.2, 1.0, 2.0), seeds=2))
ADAPTIVE = replace(GRID, name="model_size_adaptive")
TEACHERS_SEED = 1000  # --teacher-per-seed: seed s distils from a teacher of seed 1000 + s, never its own init


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke size: 3 pairs, 4 kappas, 2 seeds, short runs "
                        "(a fixed grid)")
    add_adaptive_flags(parser)
    parser.add_argument("--name", help="study name (default model_size_adaptive; --grid model_size; --quick "
                        "model_size_quick)")
    add_data_flags(parser)
    for flag, options in (  # in --help's order
            ("--pairs", dict(nargs="+", help="TEACHER>STUDENT model pairs, each in quotes (default: the main job's "
                             "five on mnist1d; three on digits; four on images)")),
            ("--kappas", dict(nargs="+", type=float, help="student samples / teacher samples (grid default "
                              "0.02 0.05 0.1 0.2 0.5 1 2 4; --quick 0.05 0.2 1 2); adaptive: the coarse pass "
                              "(default 0.02 0.1 0.5 4)")),
            ("--vit", dict(action="store_true", help="CNN teachers with ViT students (VIT_PAIRS) instead of the "
                           "default pairs")),
            ("--taus", dict(nargs="+", type=float, default=[4.0], help="kd temperatures (default 4)")),
            ("--objectives", dict(nargs="+", default=["lt", "kd"], help="arms: lt kd ls hard l2 (default lt kd)")),
            ("--seeds", dict(type=int, help="number of seeds (grid default 3); adaptive: of the coarse pass "
                             "(default 2)")),
            ("--alpha", dict(type=float, default=0.0, help="weight of the label loss in kd")),
            ("--extras", dict(nargs="+", default=[], help="end-of-trial measurements: cka fa probe features")),
            ("--no-tau-squared", dict(action="store_true", help="kd without the tau^2 factor")),
            ("--teacher-per-seed", dict(action="store_true", help="a teacher per seed (seeds 1000 + s) instead of "
                                        "one per model, so kappa*'s interval resamples teachers too (study "
                                        "NAME_teachers)"))):
        parser.add_argument(flag, **options)
    add_budget_flags(parser)
    add_init_flags(parser)
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    # ViT students train with AdamW (kdscale.recipes, vit-student) unless a recipe is named
    teacher_recipe, student_recipe = base_recipes(args, "vit-student" if args.vit and not args.base_recipe else None)
    if args.vit and args.pairs:
        raise SpecError("--vit and --pairs are exclusive: --vit chooses the pairs")
    defaults = {"mnist1d": GRID.get(args, "pairs", GRID.pairs), "digits": DIGITS_PAIRS}.get(args.dataset, IMAGE_PAIRS)
    check_mode(args)
    adaptive = is_adaptive(args)  # then --kappas and --seeds are the coarse pass's
    kappas, seeds = coarse_pass(args, GRID) if adaptive else (GRID.kappa_values(args), GRID.seed_values(args))
    name = (ADAPTIVE if adaptive else GRID).study_name(args)
    if args.teacher_per_seed and not args.name:  # other teachers, other trials: a study of its own
        name = f"{name}_teachers"
    if args.vit:  # a study of its own, so the main job's table keeps its pairs
        defaults = VIT_PAIRS.get(args.dataset, VIT_PAIRS["images"])
        name = name if args.name else name.replace(GRID.name, f"{GRID.name}_vit", 1)
    return StudySpec(
        name=name, data=data_spec(args), pairs=tuple(parse_pair(p) for p in args.pairs or defaults), kappas=kappas,
        taus=tuple(args.taus), objectives=tuple(args.objectives), seeds=seeds, recipe=student_recipe,
        teacher_recipe=teacher_recipe, alpha=args.alpha,
        tau_squared=not args.no_tau_squared, extras=tuple(args.extras), resources=resources(args), inits=inits(args),
        **({"teacher_per_seed": True, "teacher_seed": TEACHERS_SEED} if args.teacher_per_seed else {}),
        **recipe_fields(args, student_recipe.optimizer))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "model_size", runner=run_adaptive if is_adaptive(args) else None)
    if result is None:
        return 2
    from analysis.sections import model_size, render  # pandas: not before the flags are checked

    out_dir = Path(result.store.root) / "analysis"  # the report's, as in studyargs.finish
    section = model_size.section(result.table, out_dir=None if args.no_analysis else out_dir)
    text = render(section)
    print(text, end="")  # the gain and data-equivalence tables, as fixed-width text
    if not args.no_analysis and result.complete:
        report = analyse(result)
        if report is None:
            return 1
        attach_section(result, report, Path(report.markdown_path).parent, section,
                       "## Gains and data equivalence per pair\n\n```\n" + text + "```\n")
    print(mlflow_hint(result))
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
