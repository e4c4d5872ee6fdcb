"""Model size x data size: where does distillation stop helping, and how does that depend on size?

    python studies/model_size.py             # default grid: MNIST-1D, 5 pairs, 8 kappas, 3 seeds
    python studies/model_size.py --quick     # smoke size, every part of the pipeline
    python studies/model_size.py --dataset digits --vit   # CNN teachers, ViT students (VIT_PAIRS)

Default: MNIST-1D with N = 4000 teacher samples; teachers cnn1d-16 and cnn1d-64, students cnn1d-4,
cnn1d-16 and cnn1d-64 in five pairs whose student/teacher parameter ratio spans 0.012 to 11;
kappa from 0.02 to 4 (kappa > 1 takes generated samples beyond the teacher's N); lt and kd at
tau = 4 (chosen on MNIST-1D: README, "Choosing tau"); 3 seeds; students get 1500 SGD steps at
every kappa (kdscale/recipes.py). Cost and result on this project's 2-core CPU machine: README,
"The main job".

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
from kdscale.study import StudySpec
from kdscale.studyargs import (MAIN_KAPPAS, MAIN_PAIRS, Grid, StudyParser, add_run_flags, analyse, attach_section,
                               mlflow_hint, recipe_fields, resources, run)

GRID = Grid("model_size", kappas=MAIN_KAPPAS, pairs=MAIN_PAIRS, quick=dict(
    pairs=("cnn1d:width=16>cnn1d:width=16", "cnn1d:width=64>cnn1d:width=4", "cnn1d:width=8>cnn1d:width=16"),
    kappas=(0.05, 0.2, 1.0, 2.0), seeds=2))
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
            ("--quick", dict(action="store_true", help="smoke size: 3 pairs, 4 kappas, 2 seeds, short runs")),
            ("--name", dict(help="study name (default model_size, or model_size_quick)")),
            ("--dataset", dict(default="mnist1d", help="data set (default mnist1d; also digits, cifar10, cifar100, "
                               "cifar5m and the image sets of README's Workflows, from --data-root)")),
            ("--data-root", dict(help="directory of a real data set's files")),
            ("--n-teacher", dict(type=int, help="N (default 4000; digits 700; cifar5m 60000)")),
            ("--pairs", dict(nargs="+", help="TEACHER>STUDENT model pairs, each in quotes (default: the main job's "
                             "five on mnist1d; three on digits; four on images)")),
            ("--kappas", dict(nargs="+", type=float, help="student samples / teacher samples (default "
                              "0.02 0.05 0.1 0.2 0.5 1 2 4; --quick 0.05 0.2 1 2)")),
            ("--vit", dict(action="store_true", help="CNN teachers with ViT students (VIT_PAIRS) instead of the "
                           "default pairs")),
            ("--taus", dict(nargs="+", type=float, default=[4.0], help="kd temperatures (default 4)")),
            ("--objectives", dict(nargs="+", default=["lt", "kd"], help="arms: lt kd ls hard l2 (default lt kd)")),
            ("--seeds", dict(type=int, help="number of seeds (default 3)")),
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
    name = GRID.study_name(args)
    if args.vit:  # a study of its own, so the main job's table keeps its pairs
        defaults = VIT_PAIRS.get(args.dataset, VIT_PAIRS["images"])
        name = name if args.name else name.replace(GRID.name, f"{GRID.name}_vit", 1)
    return StudySpec(
        name=name, data=data, pairs=tuple(parse_pair(p) for p in args.pairs or defaults),
        kappas=GRID.kappa_values(args), taus=tuple(args.taus), objectives=tuple(args.objectives),
        seeds=GRID.seed_values(args), recipe=student_recipe, teacher_recipe=teacher_recipe, alpha=args.alpha,
        tau_squared=not args.no_tau_squared, extras=tuple(args.extras), resources=resources(args),
        **recipe_fields(args))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(build_spec, args, "model_size")
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
