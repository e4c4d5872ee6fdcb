"""Model size x data size: where does distillation stop helping, and how does that depend on size?

    python studies/model_size.py              # the grid: MNIST-1D, 5 pairs, 8 kappas x 3 seeds
    python studies/model_size.py --adaptive   # adaptive kappa* search, to +-25% (not yet measured here)
    python studies/model_size.py --quick      # smoke size (a fixed grid), every part of the pipeline
    python studies/model_size.py --dataset digits --vit   # CNN teachers, ViT students (VIT_PAIRS)

Default: MNIST-1D with N = 4000 teacher samples; teachers cnn1d-8, -16, -32, -64 in five pairs
(cnn1d-64 > cnn1d-4 and every teacher > cnn1d-16) whose student/teacher parameter ratio spans
0.012 to 2.9; kappa from 0.02 to 4 (kappa > 1 takes generated samples beyond the teacher's N); lt
and kd at tau = 4 (chosen on MNIST-1D: README, "Choosing tau"); 3 seeds; each arm's recipe
searched per cell on validation data (kdscale.search). `--adaptive` searches kappa* instead
(analysis.kappa_search, kdscale.adaptive): a coarse pass at kappa 0.02, 0.1, 0.5, 4 on 2 seeds,
then rounds that split the bracket of kappa* and add seeds where they decide it, until its 95%
interval is within x/1.25 (--target) or the pair has spent 96 trials (--budget); study
`model_size_adaptive`. It is tested on planted truth (docs/studies.md) but not yet timed on the
default pairs, so the grid stays the default. Cost and result on this project's 2-core CPU
machine: README, "The main job".

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

from kdscale.config import DataSpec, parse_pair
from kdscale.data import default_n_teacher
from kdscale.errors import SpecError
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec, check_study
from kdscale.studyargs import (MAIN_KAPPAS, MAIN_PAIRS, Grid, StudyParser, add_run_flags, analyse, attach_section,
                               mlflow_hint, recipe_fields, resources, run)

GRID = Grid("model_size", kappas=MAIN_KAPPAS, pairs=MAIN_PAIRS, quick=dict(
    pairs=("cnn1d:width=16>cnn1d:width=16", "cnn1d:width=64>cnn1d:width=4", "cnn1d:width=8>cnn1d:width=16"),
    kappas=(0.05, 0.2, 1.0, 2.0), seeds=2))
ADAPTIVE = replace(GRID, name="model_size_adaptive")
BUDGET, TARGET = 96, 1.25  # per pair: trials (the grid spends 48), and the interval's x/ target
DIGITS_PAIRS = ("cnn2d:width=4>cnn2d:width=4", "cnn2d:width=16>cnn2d:width=4", "cnn2d:width=4>cnn2d:width=16")
# CIFAR-sized images: the paper's ResNet-18 and vanilla CNN (20/40/60/160 channels), both ways.
IMAGE_PAIRS = ("resnet18:width=64>cnn2d:width=20", "resnet18:width=64>resnet18:width=16",
               "cnn2d:width=20>cnn2d:width=20", "cnn2d:width=20>resnet18:width=64")
# --vit: CNN teachers with vision-transformer students (the paper's Fig. 9), a small and a larger
# student per data set: 2x2 patches of 8x8 digits (16 tokens), 4x4 of 32x32 images (64), pieces of
# 4 samples of MNIST-1D's 40 (10). ViTs learn slowly under SGD: on digits (cnn2d-16 teacher, kappa 1,
# 600 steps) vit-16 lt reached 0.13 at SGD lr 0.01 (the digits recipe), 0.53 at 0.05, 0.87 with AdamW
# 3e-3; the fair search (the default) gives each arm its own SGD lr and budget.
VIT_PAIRS = {"mnist1d": ("cnn1d:width=64>vit:width=16,depth=2", "cnn1d:width=64>vit:width=64,depth=4"),
             "digits": ("cnn2d:width=16>vit:width=16,depth=2,patch=2", "cnn2d:width=16>vit:width=64,depth=4,patch=2"),
             "images": ("cnn2d:width=20>vit:width=64,depth=4", "resnet18:width=64>vit:width=128,depth=6")}


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    for flag, options in (  # in --help's order
            ("--quick", dict(action="store_true", help="smoke size: 3 pairs, 4 kappas, 2 seeds, short runs (a grid)")),
            ("--adaptive", dict(action="store_true", help="search kappa* adaptively (rounds of kappas and seeds) "
                                "instead of training the fixed grid")),
            ("--grid", dict(action="store_true", help="train the fixed grid (--kappas x --seeds): the default")),
            ("--target", dict(type=float, default=TARGET, help=f"adaptive: stop when kappa*'s 95%% interval is within "
                              f"x/ TARGET (default {TARGET}: +-25%%)")),
            ("--budget", dict(type=int, default=BUDGET, help=f"adaptive: trials per pair, lt and kd counted "
                              f"(default {BUDGET})")),
            ("--name", dict(help="study name (default model_size, or model_size_quick)")),
            ("--dataset", dict(default="mnist1d", help="data set (default mnist1d; also digits, cifar10, cifar100, "
                               "cifar5m and the image sets of README's Workflows, from --data-root)")),
            ("--data-root", dict(help="directory of a real data set's files")),
            ("--n-teacher", dict(type=int, help="N (default 4000; digits 700; cifar5m 60000)")),
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
            ("--student-steps", dict(type=int, help="student budget in optimizer steps")),
            ("--student-epochs", dict(type=int, help="student budget in epochs (the paper's protocol)")),
            ("--base-recipe", dict(help="named recipe for teachers and students, e.g. paper-cifar10 "
                                   "(kdscale.recipes; default: the data set's); a search keeps all but its lr and "
                                   "budget")),
            ("--student-lr", dict(type=float, help="student learning rate, with --recipe fixed (default: the "
                                  "data set's recipe's, 0.02 on mnist1d)")),
            ("--precision", dict(choices=("fp32", "bf16"), help="forward precision of teachers and students "
                                 "(bf16: autocast, for GPUs)")),
            ("--teacher-epochs", dict(type=int, help="teacher budget in epochs (default: the data set's recipe's, "
                                      "60 on mnist1d; --quick 30)"))):
        parser.add_argument(flag, **options)
    add_run_flags(parser)
    return parser


def build_spec(args: argparse.Namespace) -> StudySpec:
    searched = args.recipe != "fixed"  # a search chooses the students' lr and budget per cell
    given = {flag: value for flag, value in (("--student-steps", args.student_steps), ("--student-epochs", args.student_epochs),
                                            ("--student-lr", args.student_lr)) if value is not None}
    if searched and given:
        raise SpecError(f"--recipe {args.recipe} chooses the students' lr and budget per cell: drop "
                        f"{' and '.join(given)}, or use --recipe fixed")
    if args.student_steps is not None and args.student_epochs is not None:
        raise SpecError("--student-steps and --student-epochs are exclusive: give one budget")
    teacher_recipe, student_recipe = study_recipes(args.dataset, bool(args.quick), args.precision,
                                                   named=args.base_recipe)
    if args.student_steps is not None or args.student_epochs is not None:
        student_recipe = student_recipe.with_budget(args.student_steps, args.student_epochs)
    if args.student_lr is not None:
        student_recipe = replace(student_recipe, lr=args.student_lr)
    if args.teacher_epochs is not None:
        teacher_recipe = teacher_recipe.with_budget(epochs=args.teacher_epochs)
    data = DataSpec(name=args.dataset, n_teacher=default_n_teacher(args.dataset) if args.n_teacher is None else args.n_teacher,
                    root=args.data_root)
    if args.vit and args.pairs:
        raise SpecError("--vit and --pairs are exclusive: --vit chooses the pairs")
    defaults = {"mnist1d": GRID.get(args, "pairs", GRID.pairs), "digits": DIGITS_PAIRS}.get(args.dataset, IMAGE_PAIRS)
    adaptive = is_adaptive(args)  # then --kappas and --seeds are the coarse pass's
    if adaptive:
        from analysis.kappa_search import SearchSettings
    kappas = tuple(args.kappas or SearchSettings.coarse) if adaptive else GRID.kappa_values(args)
    seeds = tuple(range(SearchSettings.coarse_seeds)) if adaptive and args.seeds is None else GRID.seed_values(args)
    name = (ADAPTIVE if adaptive else GRID).study_name(args)
    if args.vit:  # a study of its own, so the main job's table keeps its pairs
        defaults = VIT_PAIRS.get(args.dataset, VIT_PAIRS["images"])
        name = name if args.name else name.replace(GRID.name, f"{GRID.name}_vit", 1)
    return StudySpec(
        name=name, data=data, pairs=tuple(parse_pair(p) for p in args.pairs or defaults), kappas=kappas,
        taus=tuple(args.taus), objectives=tuple(args.objectives), seeds=seeds, recipe=student_recipe,
        teacher_recipe=teacher_recipe, alpha=args.alpha,
        tau_squared=not args.no_tau_squared, extras=tuple(args.extras), resources=resources(args),
        **recipe_fields(args))


def is_adaptive(args: argparse.Namespace) -> bool:
    return args.adaptive and not (args.grid or args.quick)


def search_settings(args: argparse.Namespace, spec: StudySpec):
    """The adaptive search's settings from the flags (its coarse pass: the spec's kappas and seeds)."""
    from analysis import AnalysisError
    from analysis.kappa_search import SearchSettings

    if not {"lt", "kd"} <= set(spec.objectives):
        raise SpecError(f"--objectives {' '.join(spec.objectives)} is invalid for the adaptive search: kappa* compares "
                        "kd with lt, so both are needed (or leave out --adaptive)")
    if args.seeds is not None and args.seeds < 2:
        raise SpecError(f"--seeds {args.seeds} is invalid for the adaptive search: its coarse pass needs 2 or more "
                        "(or leave out --adaptive)")
    try:
        return SearchSettings(coarse=spec.kappas, coarse_seeds=len(spec.seeds), budget=args.budget,
                              target=args.target, min_seeds=max(SearchSettings.min_seeds, len(spec.seeds)),
                              trials_per_cell=len(spec.objective_specs()))
    except AnalysisError as error:
        raise SpecError(f"{error} (--kappas, --seeds, --target, --budget)") from None


def run_adaptive(spec: StudySpec, args: argparse.Namespace):
    """The rounds of the kappa* search (kdscale.adaptive), each a run of the growing study."""
    from kdscale.adaptive import run_search

    check_study(spec)  # the data's capacity and the models, as every round will, before the search's own checks
    settings = search_settings(args, spec)
    found, result = run_search(spec, settings, storage=args.storage, tracking_uri=args.tracking_uri,
                               address=args.address, cache=args.cache, verbose=args.verbose,
                               take_over=getattr(args, "take_over", False))
    if result is not None and found.complete:
        print(f"kappa* search: {found.rounds} rounds, {len(result.table)} trials", file=sys.stderr)
    return result


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
