"""The `kdscale` command: `trial` trains one student, `analyze` fits a results table.

Bad input exits with status 2 and one line naming the field, before any training.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace

from kdscale.errors import SpecError


def _progress(desc: str, total_steps: int):
    """A per-report callback that draws a progress bar over optimizer steps on stderr."""
    from tqdm import tqdm

    bar = tqdm(total=total_steps, desc=desc, unit="step", file=sys.stderr, leave=False,
               disable=not sys.stderr.isatty())

    def on_report(report, _state):
        bar.update(report["step"] - bar.n)
        bar.set_postfix(test_acc=f"{report['test_acc']:.3f}", loss=f"{report['train_loss']:.3g}")
        if bar.n >= total_steps:
            bar.close()
    return on_report


def add_recipe_flags(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """--lr, --steps, --epochs, --batch-size, --recipe (with a prefix for the teacher's)."""
    who = prefix.rstrip("-") or "student"
    parser.add_argument(f"--{prefix}recipe", help=f"named {who} recipe (default: the data set's)")
    parser.add_argument(f"--{prefix}lr", type=float, help=f"{who} learning rate")
    parser.add_argument(f"--{prefix}steps", type=int, help=f"{who} budget in optimizer steps")
    parser.add_argument(f"--{prefix}epochs", type=int, help=f"{who} budget in epochs")
    parser.add_argument(f"--{prefix}batch-size", type=int, help=f"{who} batch size")
    parser.add_argument(f"--{prefix}augment", help=f"{who} augmentation: none, crop-flip, crop-flip-rotate")
    parser.add_argument(f"--{prefix}precision", help=f"{who} forward precision: fp32 or bf16 (autocast)")


def recipe_from_flags(args: argparse.Namespace, default, prefix: str = ""):
    from kdscale.recipes import RECIPES

    key = prefix.replace("-", "_")
    name = getattr(args, f"{key}recipe")
    recipe = RECIPES.get(name) if name else default
    changes = {field: getattr(args, f"{key}{field}") for field in ("lr", "batch_size", "augment", "precision")
               if getattr(args, f"{key}{field}") is not None}
    steps, epochs = getattr(args, f"{key}steps"), getattr(args, f"{key}epochs")
    if steps is not None and epochs is not None:
        raise SpecError(f"--{prefix}steps and --{prefix}epochs are exclusive: give one budget")
    if steps is not None or epochs is not None:  # a new budget: warm-up and milestones were in the old unit
        changes.update(steps=steps, epochs=epochs, warmup=0.0, milestones=())
    return replace(recipe, **changes) if changes else recipe


def trial_spec_from_flags(args: argparse.Namespace):
    from kdscale import data
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, TeacherSpec, TrialSpec
    from kdscale.recipes import default_recipes
    from kdscale.study import check_models

    data_spec = DataSpec(name=args.dataset, n_teacher=args.n_teacher, seed=args.data_seed, root=args.data_root)
    data.check(data_spec, [args.kappa])
    teacher_recipe, student_recipe = default_recipes(args.dataset)
    teacher = TeacherSpec(data_spec, ModelSpec.parse(args.teacher),
                          recipe_from_flags(args, teacher_recipe, "teacher-"), seed=args.teacher_seed)
    objective = ObjectiveSpec(args.objective, tau=args.tau, alpha=args.alpha,
                              tau_squared=not args.no_tau_squared, epsilon=args.epsilon)
    spec = TrialSpec(teacher, ModelSpec.parse(args.student), args.kappa, objective,
                     recipe_from_flags(args, student_recipe), seed=args.seed, extras=tuple(args.extras))
    check_models(data_spec, [(spec.teacher.model, spec.student)], (spec.recipe, spec.teacher.recipe))
    return spec


def cmd_trial(args: argparse.Namespace) -> int:
    if args.cache:
        os.environ["KDSCALE_CACHE"] = args.cache  # data chunks and teachers alike
    spec = trial_spec_from_flags(args)  # every check before any compute
    from kdscale import data
    from kdscale.teacher import get_teacher
    from kdscale.trainer import plan_steps
    from kdscale.trial import resolve_device, run_trial

    device = resolve_device(args.device)
    n_stream = data.stream_length_for(spec.data.n_teacher, spec.n_train)
    teacher_total = plan_steps(spec.teacher.recipe, spec.data.n_teacher)[2]
    teacher = get_teacher(spec.teacher, n_stream, device=device,
                          on_report=_progress("teacher", teacher_total))
    student_total = plan_steps(spec.recipe, spec.n_train)[2]
    outcome = run_trial(spec, teacher, device=device, on_report=_progress("student", student_total))
    row = outcome.row
    print(json.dumps(row, default=str, indent=1))  # stdout: the results row, for scripts
    if row["status"] == "ok":
        print(f"{spec.label}: test_acc {row['test_acc']:.4f}  train_acc {row['train_acc']:.4f}  "
              f"fidelity train/test {row['fidelity_train']:.3f}/{row['fidelity_test']:.3f}  "
              f"teacher {row['teacher_test_acc']:.4f}  M={row['n_train']}  {row['steps']} steps  "
              f"{row['wall_s']:.1f} s  [{spec.id}]", file=sys.stderr)
        return 0
    print(f"{spec.label}: {row['status']} ({row['error']}) after {row['steps']} steps [{spec.id}]",
          file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdscale", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    trial = commands.add_parser("trial", help="train (or load) a teacher and train one student")
    trial.add_argument("--dataset", default="mnist1d", help="data set name (mnist1d, digits, cifar10, ...: see README)")
    trial.add_argument("--data-root", help="directory of a real data set's files")
    trial.add_argument("--n-teacher", type=int, default=4000, help="N, the teacher's samples (default 4000)")
    trial.add_argument("--data-seed", type=int, default=0, help="seed of the pool's generation and order")
    trial.add_argument("--teacher", default="cnn1d:width=32", help="teacher model, family:width=W,...")
    trial.add_argument("--teacher-seed", type=int, default=0)
    trial.add_argument("--student", default="mlp:width=64", help="student model, family:width=W,...")
    trial.add_argument("--kappa", type=float, default=0.1, help="M / N, the student's share of N")
    trial.add_argument("--objective", default="kd", help="lt, kd, ls, hard or l2")
    trial.add_argument("--tau", type=float, default=4.0, help="kd temperature")
    trial.add_argument("--alpha", type=float, default=0.0, help="weight of the label loss in kd, hard, l2")
    trial.add_argument("--no-tau-squared", action="store_true", help="kd without the tau^2 factor (eq. 1 as printed)")
    trial.add_argument("--epsilon", type=float, default=0.1, help="ls smoothing")
    trial.add_argument("--seed", type=int, default=0, help="student seed: subset, initialisation, batch order")
    trial.add_argument("--extras", nargs="+", default=[], help="end-of-trial measurements: cka fa probe "
                       "(to the teacher; see kdscale.representations)")
    add_recipe_flags(trial)
    add_recipe_flags(trial, "teacher-")
    trial.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    trial.add_argument("--cache", help="cache directory for data and teachers (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    trial.set_defaults(run=cmd_trial)

    # `kdscale analyze ...` is handed to analysis' own parser in main(); listed here for --help
    commands.add_parser("analyze", help="fit the scaling relations of a results directory "
                        "(python -m analysis RESULTS_DIR)")
    return parser


def _analyze(argv: list[str]) -> int:
    from analysis.__main__ import main

    return main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["analyze"]:  # analysis has its own parser (and --help)
        return _analyze(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as error:
        print(f"kdscale: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
