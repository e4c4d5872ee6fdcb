"""The `kdscale` command: `trial` trains one student, `tune` chooses a student's recipe per kappa and
objective (kdscale.search), `analyze` fits a results table.

Bad input exits with status 2 and one line naming the field, before any training; an environment
fault (a full disk, a CUDA device that is not there, an unreachable tracking server) with status 1
and one line naming what failed and where.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from kdscale.errors import EnvironmentFault, SpecError
from kdscale.studyargs import first_paragraph


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


def strict_json(value):
    """A value any JSON parser accepts: NaN and infinities as null, numpy scalars as Python ones."""
    import math

    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


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
    recipe = replace(recipe, **changes) if changes else recipe
    return recipe.with_budget(steps, epochs) if steps is not None or epochs is not None else recipe


def trial_spec_from_flags(args: argparse.Namespace):
    from kdscale import data
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, TeacherSpec, TrialSpec
    from kdscale.recipes import default_recipes
    from kdscale.study import check_models

    n_teacher = data.default_n_teacher(args.dataset) if args.n_teacher is None else args.n_teacher
    data_spec = DataSpec(name=args.dataset, n_teacher=n_teacher, seed=args.data_seed, root=args.data_root)
    data.check(data_spec, [args.kappa])
    teacher_recipe, student_recipe = default_recipes(args.dataset)
    teacher = TeacherSpec(data_spec, ModelSpec.parse(args.teacher),
                          recipe_from_flags(args, teacher_recipe, "teacher-"), seed=args.teacher_seed,
                          weights=args.teacher_weights)
    objective = ObjectiveSpec(args.objective, tau=args.tau, alpha=args.alpha,
                              tau_squared=not args.no_tau_squared, epsilon=args.epsilon)
    spec = TrialSpec(teacher, ModelSpec.parse(args.student), args.kappa, objective,
                     recipe_from_flags(args, student_recipe), seed=args.seed, extras=tuple(args.extras))
    check_models(data_spec, [(spec.teacher.model, spec.student)], (spec.recipe, spec.teacher.recipe))
    if teacher.weights is not None:
        from kdscale.pretrained import check

        check(teacher)
    return spec


def cmd_trial(args: argparse.Namespace) -> int:
    if args.cache:
        os.environ["KDSCALE_CACHE"] = args.cache  # data chunks and teachers alike
    spec = trial_spec_from_flags(args)  # every check before any compute
    from kdscale import data
    from kdscale.teacher import get_teacher
    from kdscale.train import plan_steps
    from kdscale.trial import resolve_device, run_trial

    device = resolve_device(args.device)
    n_stream = data.stream_length_for(spec.data.n_teacher, spec.n_train)
    teacher_total = plan_steps(spec.teacher.recipe, spec.data.n_teacher)[2]
    teacher = get_teacher(spec.teacher, n_stream, device=device,
                          on_report=_progress("teacher", teacher_total))
    student_total = plan_steps(spec.recipe, spec.n_train)[2]
    outcome = run_trial(spec, teacher, device=device, on_report=_progress("student", student_total))
    row = outcome.row
    print(json.dumps(strict_json(row), indent=1, allow_nan=False))  # stdout: the results row, strict JSON
    if row["status"] == "ok":
        print(f"{spec.label}: test_acc {row['test_acc']:.4f}  train_acc {row['train_acc']:.4f}  "
              f"fidelity train/test {row['fidelity_train']:.3f}/{row['fidelity_test']:.3f}  "
              f"teacher {row['teacher_test_acc']:.4f}  M={row['n_train']}  {row['steps']} steps  "
              f"{row['wall_s']:.1f} s  [{spec.id}]", file=sys.stderr)
        return 0
    print(f"{spec.label}: {row['status']} ({row['error']}) after {row['steps']} steps [{spec.id}]",
          file=sys.stderr)
    return 1


def search_specs_from_flags(args: argparse.Namespace):
    """The searches `kdscale tune` asks for: one per (kappa, objective), each checked before compute."""
    from kdscale import data
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, TeacherSpec
    from kdscale.recipes import study_recipes
    from kdscale.schema import n_train
    from kdscale.search import SearchSpec, default_space
    from kdscale.study import check_models

    teacher_recipe, student_recipe = study_recipes(args.dataset, args.quick, args.precision)
    default = default_space(student_recipe.optimizer, args.quick)
    given = {"lrs": tuple(args.lrs or ()), "budgets": tuple(args.budgets or ()), "eta": args.eta,
             "seeds": args.search_seeds, "val_fraction": args.val_fraction}
    space = replace(default, **{k: v for k, v in given.items() if v not in (None, ())})
    n_teacher = data.default_n_teacher(args.dataset) if args.n_teacher is None else args.n_teacher
    data_spec = DataSpec(name=args.dataset, n_teacher=n_teacher, seed=args.data_seed, root=args.data_root)
    info = data.check(data_spec, args.kappas, role="tune")
    student = ModelSpec.parse(args.student)
    teacher = TeacherSpec(data_spec, ModelSpec.parse(args.teacher), teacher_recipe) if args.teacher else None
    check_models(data_spec, [(teacher.model if teacher else student, student)], (student_recipe,),
                 roles=("teacher" if teacher else "student", "student"))
    specs = []
    for kappa in args.kappas:
        m = n_train(kappa, data_spec.n_teacher)
        if m < 2 * info.num_classes:
            raise SpecError(f"tune.kappa={kappa:g} is invalid: M = {m} samples; a validation split needs at least "
                            f"2 x {info.num_classes} classes = {2 * info.num_classes}")
        for name in args.objectives:
            objective = ObjectiveSpec(name, tau=args.tau, alpha=args.alpha, epsilon=args.epsilon)
            if objective.uses_teacher and teacher is None:
                raise SpecError(f"--objectives {name} needs --teacher (its targets come from a teacher)")
            specs.append(SearchSpec(data_spec, student, objective, kappa, student_recipe, space,
                                    teacher if objective.uses_teacher else None))
    return specs


def cmd_tune(args: argparse.Namespace) -> int:
    if args.cache:
        os.environ["KDSCALE_CACHE"] = args.cache
    specs = search_specs_from_flags(args)  # every check before any compute (and before an MLflow database)
    from kdscale.engine.searches import stored_searches
    from kdscale.search import search_path
    from kdscale.study import Resources

    stored, pending = stored_searches(specs, args.storage)
    if args.force:
        stored, pending = {}, specs
    for spec in specs:
        if spec.id in stored:
            print(f"{spec.label}: stored ({search_path(args.storage, spec.id)}; --force to search again)",
                  file=sys.stderr)
    if pending:
        from kdscale import data
        from kdscale.engine import ray_session, run_searches
        from kdscale.fileio import cache_dir
        from kdscale.teacher import get_teacher
        from kdscale.tracking import check_uri, log_search

        check_uri(args.tracking_uri)  # a server that does not answer: one line now, not after the searches

        teachers = {}
        for spec in pending:
            if spec.teacher is not None and spec.teacher.id not in teachers:
                reach = max(data.stream_length_for(spec.data.n_teacher, s.n_train) for s in pending)
                teachers[spec.teacher.id] = get_teacher(spec.teacher, reach)
        with ray_session(args.address, args.verbose):
            stored |= run_searches(pending, teachers, args.storage, str(Path(args.cache or cache_dir()).resolve()),
                                   Resources(cpus_per_trial=args.cpus_per_search, gpus_per_trial=args.gpus_per_search),
                                   lambda line: print(line, file=sys.stderr),
                                   on_result=lambda result: log_search(args.tracking_uri, result))
    print(format_searches(specs, stored, set(s.id for s in pending)))
    return 0


def format_searches(specs, results: dict, ran: set) -> str:
    """The chosen recipe per (kappa, objective), with its validation score and any warning."""
    from kdscale.search import LR_MARGIN, trained_with

    space = specs[0].space
    lines = [f"recipe searches: {specs[0].student.label} on {specs[0].data.name} N={specs[0].data.n_teacher}; "
             f"lr in {', '.join(f'{lr:g}' for lr in space.lrs)}; steps in {', '.join(map(str, space.budgets))} "
             f"(successive halving, keep 1/{space.eta}); {space.seeds} seed(s), validation {space.val_fraction:.0%} of M",
             f"(a cell trains at the longest budget within noise of the best, at lr / {LR_MARGIN} for "
             f"{LR_MARGIN}x the steps: kdscale.search.LR_MARGIN)",
             "   kappa  objective            M   n_val   best lr   steps  val_acc   trains at  steps  search  warnings"]
    for spec in specs:
        result = results[spec.id]
        best, (lr, steps) = result["best"], trained_with(result)
        lines.append(f"  {spec.kappa:6g}  {spec.objective.label:<16} {spec.n_train:5d}  {result['n_val']:6d}  "
                     f"{best['lr']:8g}  {best['steps']:6d}   {best['val_acc']:.4f}  {lr:9g}  "
                     f"{steps:5d}  {'ran' if spec.id in ran else 'stored':>6}"
                     f"  {'; '.join(result['warnings'])}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from kdscale.search import SearchSpace, default_space  # the search's defaults, said in `tune --help`

    parser = argparse.ArgumentParser(prog="kdscale", description=first_paragraph(__doc__))
    commands = parser.add_subparsers(dest="command", required=True)

    trial = commands.add_parser("trial", help="train (or load) a teacher and train one student")
    trial.add_argument("--dataset", default="mnist1d", help="data set name (mnist1d, digits, cifar10, ...: see README)")
    trial.add_argument("--data-root", help="directory of a real data set's files")
    trial.add_argument("--n-teacher", type=int, help="N, the teacher's samples (default 4000; digits 700; cifar5m 60000)")
    trial.add_argument("--data-seed", type=int, default=0, help="seed of the pool's generation and order")
    trial.add_argument("--teacher", default="cnn1d:width=32", help="teacher model, family:width=W,...")
    trial.add_argument("--teacher-seed", type=int, default=0)
    trial.add_argument("--teacher-weights", help="a pretrained teacher: its backbone from this safetensors file or "
                       "torch state_dict, frozen, its head fitted on N (kdscale/pretrained.py)")
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

    tune = commands.add_parser("tune", help="choose a student's recipe (learning rate and step budget) per kappa "
                               "and objective on a validation split of its own samples (successive halving)")
    tune.add_argument("--student", required=True, help="student model, family:width=W,...")
    tune.add_argument("--kappas", nargs="+", type=float, required=True, help="kappa = M / N values to search at")
    tune.add_argument("--objectives", nargs="+", default=["lt"], help="lt, kd, ls, hard or l2 (default lt)")
    tune.add_argument("--teacher", help="teacher model, for objectives that read one (kd, hard, l2)")
    tune.add_argument("--tau", type=float, default=4.0, help="kd temperature (default 4)")
    tune.add_argument("--alpha", type=float, default=0.0, help="weight of the label loss in kd, hard, l2 (default 0)")
    tune.add_argument("--epsilon", type=float, default=0.1, help="ls smoothing (default 0.1)")
    tune.add_argument("--dataset", default="mnist1d", help="data set name (default mnist1d)")
    tune.add_argument("--data-root", help="directory of a real data set's files")
    tune.add_argument("--n-teacher", type=int, help="N (default 4000; digits 700; cifar5m 60000)")
    tune.add_argument("--data-seed", type=int, default=0, help="seed of the pool's generation and order (default 0)")
    quick = default_space(quick=True)
    tune.add_argument("--quick", action="store_true", help="the --quick studies' search: lr "
                      f"{', '.join(f'{lr:g}' for lr in quick.lrs)}; {' and '.join(map(str, quick.budgets))} steps")
    tune.add_argument("--precision", help="forward precision: fp32 or bf16 (autocast)")
    space, adam = SearchSpace(), default_space("adam").lrs
    tune.add_argument("--lrs", nargs="+", type=float, help=f"learning rates to try (default {space.lrs[0]:g} to "
                      f"{space.lrs[-1]:g}, x2 apart; for an Adam or AdamW recipe {adam[0]:g} to {adam[-1]:g})")
    tune.add_argument("--budgets", nargs="+", type=int, help="step budgets, the rungs (default "
                      f"{' '.join(map(str, space.budgets))})")
    tune.add_argument("--eta", type=int, help=f"a rung keeps the best 1/eta of its candidates (default {space.eta})")
    tune.add_argument("--search-seeds", type=int, help="seeds a candidate is scored on: seed s holds out part of the "
                      f"samples the study's seed s trains on (default {space.seeds}; --quick {quick.seeds})")
    tune.add_argument("--val-fraction", type=float, help="share of M held out for validation (default "
                      f"{space.val_fraction:g})")
    tune.add_argument("--cpus-per-search", type=float, default=1.0, help="CPUs per search job (default 1)")
    tune.add_argument("--gpus-per-search", type=float, default=0.0, help="GPUs per search job (default 0)")
    tune.add_argument("--force", action="store_true", help="search again even where a stored search matches")
    tune.add_argument("--storage", default="kdscale_results", help="results directory or URI; searches are stored "
                      "in <storage>/_searches/ and shared with every study under it (default kdscale_results)")
    tune.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    tune.add_argument("--address", help="Ray cluster address")
    tune.add_argument("--cache", help="data and teacher cache (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    tune.add_argument("-v", "--verbose", action="store_true", help="Ray's and MLflow's own output")
    tune.set_defaults(run=cmd_tune)

    # `kdscale analyze ...` is handed to analysis' own parser in main(); listed here for --help
    commands.add_parser("analyze", help="fit the scaling relations of a results directory "
                        "(python -m analysis RESULTS_DIR)")
    return parser


def _analyze(argv: list[str]) -> int:
    """`python -m analysis`'s arguments, plus --tracking-uri and --run-id: the report is then also
    logged to that MLflow run under `analysis/` (analysis itself never imports mlflow)."""
    from analysis.cli import build_parser as analysis_parser, run

    parser = analysis_parser()
    parser.prog = "kdscale analyze"
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI to log the report to")
    parser.add_argument("--run-id", default=None, help="MLflow run to log the report to (with --tracking-uri)")
    args = parser.parse_args(argv)
    if (args.tracking_uri is None) != (args.run_id is None):
        parser.error("--tracking-uri and --run-id go together: give both to log to MLflow, or neither")
    report = run(args)
    if report is None:
        return 2
    print(report.headline)
    if args.tracking_uri is not None:
        from kdscale.tracking import log_artifacts

        try:
            log_artifacts(args.tracking_uri, args.run_id, report.paths, artifact_path="analysis")
        except Exception as exc:  # a bad URI or run id surfaces as one of several MLflow types
            message = " ".join(str(exc).split())[:200]
            print(f"kdscale analyze: error: report written to {report.markdown_path}, but logging it to MLflow "
                  f"run {args.run_id} at {args.tracking_uri} failed: {type(exc).__name__}: {message}",
                  file=sys.stderr)
            return 1
    return 0


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
    except EnvironmentFault as error:  # the storage, the cache, the tracking server, a device: exit 1
        print(f"kdscale: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
