"""What every study script shares: its flags, its MNIST-1D recipes, running it, and its report section.

    GRID = Grid("my_study", kappas=(0.1, 1.0), quick=dict(kappas=(0.1,), seeds=2), pair="cnn1d>cnn1d")
    parser = StudyParser(description=...)
    GRID.add_flags(parser)   # --quick --name --pair --kappas --seeds, defaults said in --help
    add_run_flags(parser)
    add_init_flags(parser)   # --student-init --init-scale (optional); inits(args) is StudySpec.inits
    ...
    GRID.study_name(args), GRID.kappa_values(args), GRID.seed_values(args)
    result = run(build_spec, args, "my_study")   # None after a one-line bad-input error
    finish(result, args, lambda out_dir: my_section(result.table, result.store.uri, out_dir))
                                                  # analysis report + the study's own section

Studies that share trials must build them from the same specs: `recipes.study_recipes("mnist1d",
quick)` is the recipe pair of `model_size.py` (default or --quick), and MAIN_PAIRS and MAIN_KAPPAS
its grid, so their lt trials (and any other common cell) have one id and are trained once for all
of them (the shared trial cache, kdscale.store).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from kdscale.study import Resources

# The main job's grid on MNIST-1D (studies/model_size.py), which the other MNIST-1D studies share:
# teachers cnn1d-8, 16, 32 and 64 (858 to 28,298 parameters), students cnn1d-4 and cnn1d-16, five pairs
# whose student/teacher parameter ratio spans 0.012 to 2.9 (2.4 decades, five distinct ratios).
MAIN_PAIRS = ("cnn1d:width=64>cnn1d:width=4", "cnn1d:width=64>cnn1d:width=16", "cnn1d:width=32>cnn1d:width=16",
              "cnn1d:width=16>cnn1d:width=16", "cnn1d:width=8>cnn1d:width=16")
MAIN_KAPPAS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0)
# model_size's default pairs on the other data sets: digits (8x8 images),
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



def first_paragraph(text: str | None) -> str | None:
    """A docstring's first paragraph as one line: --help's description, never cut mid-sentence."""
    if not text:
        return text
    return " ".join(text.strip().split("\n\n")[0].split())


class StudyParser(argparse.ArgumentParser):
    """argparse with bad input as one line, `prog: error: message`, and exit status 2; no
    abbreviated flags (a misspelt `--epsilon` must fail, not start a default run as `--epsilons`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs["description"] = first_paragraph(kwargs.get("description"))
        kwargs.setdefault("epilog", "Write each TEACHER>STUDENT pair in quotes: an unquoted > redirects the output "
                          "to a file in the shell.")
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


@dataclass(frozen=True)
class Grid:
    """The grid flags the study scripts share (--quick, --name, --pair or --pairs, --kappas, --seeds),
    with each script's defaults stated once, here, and said by --help."""

    name: str  # the study's name, or the prefix of its studies' names; --quick appends _quick
    kappas: tuple[float, ...]
    quick: dict[str, Any] = field(default_factory=dict)  # what --quick changes: kappas, seeds, pairs, ...
    seeds: int = 3
    pair: str | None = None  # one TEACHER>STUDENT: --pair
    pairs: tuple[str, ...] | None = None  # several: --pairs
    name_help: str | None = None
    seeds_help: str = "number of seeds"

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--quick", action="store_true", help=f"smoke size: {self._quick_summary()}, short runs")
        parser.add_argument("--name", help=self.name_help or f"study name (default {self.name}, or {self.name}_quick)")
        if self.pair is not None:
            parser.add_argument("--pair", default=self.pair, help=f"TEACHER>STUDENT (default {self.pair})")
        if self.pairs is not None:
            parser.add_argument("--pairs", nargs="+", help=f"TEACHER>STUDENT model pairs (default {' '.join(self.pairs)})")
        parser.add_argument("--kappas", nargs="+", type=float,
                            help=f"student data / teacher data (default {' '.join(f'{k:g}' for k in self.kappas)})")
        parser.add_argument("--seeds", type=int, help=f"{self.seeds_help} (default {self.seeds})")

    def _quick_summary(self) -> str:
        parts = []
        for key, value in self.quick.items():
            count = len(value) if isinstance(value, (tuple, list)) else value
            label = key.replace("_", " ")
            parts.append(f"{count} {label[:-1] if count == 1 and label.endswith('s') else label}")
        return ", ".join(parts)

    def get(self, args: argparse.Namespace, key: str, default: Any) -> Any:
        """The --quick value of key under --quick, else default."""
        return self.quick.get(key, default) if args.quick else default

    def study_name(self, args: argparse.Namespace) -> str:
        """--name, or the grid's name (+ _quick, + _fixed or _lt when recipes are not fair, + _init-teacher
        or _init-near-S when students do not start independently, `add_init_flags`): one study directory
        per recipe policy and per start, since a table mixes one recipe per cell and one start."""
        policy = getattr(args, "recipe", None) or "fair"
        base = (f"{self.name}_quick" if args.quick else self.name) + ("" if policy == "fair" else f"_{policy}")
        init, scale = inits(args)[0]
        start = "" if init == "independent" else f"_init-{init}" + (f"-{scale:g}" if init == "near" else "")
        return args.name or base + start

    def kappa_values(self, args: argparse.Namespace) -> tuple[float, ...]:
        return tuple(args.kappas or self.get(args, "kappas", self.kappas))

    def seed_values(self, args: argparse.Namespace) -> tuple[int, ...]:
        from kdscale.errors import SpecError

        if args.seeds is not None and args.seeds < 1:
            raise SpecError(f"--seeds {args.seeds} is invalid: must be an integer >= 1")
        return tuple(range(args.seeds if args.seeds is not None else self.get(args, "seeds", self.seeds)))

    def pair_values(self, args: argparse.Namespace) -> tuple[str, ...]:
        """The TEACHER>STUDENT strings of the study: --pair, or --pairs, or the (quick) default."""
        if self.pair is not None:
            return (args.pair,)
        return tuple(args.pairs or self.get(args, "pairs", self.pairs or ()))


def add_run_flags(parser: argparse.ArgumentParser, recipes: bool = True, policy: str = "fair") -> None:
    """Where and how a study runs; with `recipes`, also how its student recipes are chosen (--recipe,
    default `policy`)."""
    parser.add_argument("--storage", default="kdscale_results",
                        help="results directory or URI (s3://... or a shared path on a cluster)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///mlflow.db)")
    parser.add_argument("--address", help="Ray cluster address ('auto' on a cluster's head node)")
    parser.add_argument("--cache", help="teacher and data cache (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs a trial (and a search job) asks "
                        "Ray for; torch uses as many threads (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs a trial asks for; fractions share "
                        "a GPU (default 0)")
    parser.add_argument("--max-concurrent", type=int, help="trials at a time (default: what Ray holds)")
    parser.add_argument("--pack-size", type=int, help="seeds trained together in one trial (default: all "
                        "seeds of small models; 1 = off)")
    parser.add_argument("--take-over", action="store_true", help="take the study's lease from a driver that is "
                        "gone (a stale lease, pid gone or no heartbeat for 120 s, is taken over anyway)")
    parser.add_argument("--no-analysis", action="store_true", help="skip the fits and figures")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's and MLflow's own console output")
    if recipes:
        add_recipe_flags(parser, policy)


def add_recipe_flags(parser: argparse.ArgumentParser, policy: str = "fair") -> None:
    """How each cell's student recipe is chosen (kdscale.search); part of add_run_flags."""
    from kdscale.search import ADAM_LRS, LRS, QUICK_SPACE, SearchSpace

    space = SearchSpace()
    parser.add_argument("--recipe", choices=("fair", "lt", "fixed"), default=policy, help=(
        f"students' recipes (default {policy}): fair gives every arm of a (pair, kappa) its own learning rate and "
        "step budget, chosen on a validation split of the student's own samples; lt gives every arm the recipe "
        "chosen for lt (the paper's protocol); fixed trains every cell with the data set's default recipe"))
    parser.add_argument("--search-lrs", nargs="+", type=float, help="learning rates a search tries (default "
                        f"{LRS[0]:g} to {LRS[-1]:g}, x2 apart, for Adam(W) recipes {ADAM_LRS[0]:g} to {ADAM_LRS[-1]:g}; "
                        f"--quick {' '.join(f'{v:g}' for v in QUICK_SPACE.lrs)})")
    parser.add_argument("--search-budgets", nargs="+", type=int, help="step budgets of a search, its successive-"
                        f"halving rungs (default {' '.join(map(str, space.budgets))}; --quick "
                        f"{' '.join(map(str, QUICK_SPACE.budgets))})")
    parser.add_argument("--search-seeds", type=int, help=f"seeds a candidate is scored on (default {space.seeds})")


STUDENT_INITS, NEAR_SCALE = ("independent", "teacher", "near"), 0.1  # TrialSpec.init; near's default noise


def add_init_flags(parser: argparse.ArgumentParser) -> None:
    """--student-init and --init-scale: where the students start; `inits` reads them."""
    parser.add_argument("--student-init", choices=STUDENT_INITS, default="independent", help=(
        "where students start: their own seed's initialisation (independent, default), their teacher's (teacher; "
        "a study of its own, NAME_init-teacher), or that plus Gaussian noise of --init-scale x each weight "
        "tensor's rms (near); teacher and near need the teacher's architecture (kdscale/train/init.py)"))
    parser.add_argument("--init-scale", type=float, help=f"noise of --student-init near, relative to each weight "
                        f"tensor's rms (default {NEAR_SCALE:g})")


def inits(args: argparse.Namespace) -> tuple[tuple[str, float], ...]:
    """StudySpec.inits of the flags of add_init_flags (independent for a parser without them); a
    SpecError for --init-scale without near."""
    from kdscale.errors import SpecError

    init, scale = getattr(args, "student_init", "independent"), getattr(args, "init_scale", None)
    if scale is not None and init != "near":
        raise SpecError(f"--init-scale {scale:g} is invalid with --student-init {init}: it is near's noise")
    return ((init, NEAR_SCALE if scale is None and init == "near" else scale or 0.0),)


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """--dataset, --data-root, --n-teacher (model_size); `data_spec` reads them."""
    for flag, options in (
            ("--dataset", dict(default="mnist1d", help="data set (default mnist1d; also digits, cifar10, cifar100, "
                               "cifar5m and the image sets of README's Workflows, from --data-root)")),
            ("--data-root", dict(help="directory of a real data set's files")),
            ("--n-teacher", dict(type=int, help="N (default 4000; digits 700; cifar5m 60000)"))):
        parser.add_argument(flag, **options)


def data_spec(args: argparse.Namespace):
    """The DataSpec of the flags of add_data_flags (N: the data set's default unless --n-teacher)."""
    from kdscale.config import DataSpec
    from kdscale.data import default_n_teacher

    n_teacher = default_n_teacher(args.dataset) if args.n_teacher is None else args.n_teacher
    return DataSpec(name=args.dataset, n_teacher=n_teacher, root=args.data_root)


def add_budget_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that change a study's base recipes (model_size): budgets, lr, precision, a named recipe."""
    for flag, options in (
            ("--student-steps", dict(type=int, help="student budget in optimizer steps")),
            ("--student-epochs", dict(type=int, help="student budget in epochs (the paper's protocol)")),
            ("--base-recipe", dict(help="named recipe for teachers and students, e.g. paper-cifar10 "
                                   "(kdscale.recipes; default: the data set's); a search keeps all but its lr and "
                                   "budget")),
            ("--student-recipe", dict(help="named recipe for the students only, e.g. vit-student (AdamW); default: "
                                      "--base-recipe's or the data set's (--vit: vit-student)")),
            ("--student-lr", dict(type=float, help="student learning rate, with --recipe fixed (default: the "
                                  "data set's recipe's, 0.02 on mnist1d)")),
            ("--precision", dict(choices=("fp32", "bf16"), help="forward precision of teachers and students "
                                 "(bf16: autocast, for GPUs)")),
            ("--teacher-epochs", dict(type=int, help="teacher budget in epochs (default: the data set's recipe's, "
                                      "60 on mnist1d; --quick 30)"))):
        parser.add_argument(flag, **options)


def base_recipes(args: argparse.Namespace, student_recipe: str | None = None):
    """(teacher recipe, student recipe) from --dataset, --quick and the flags of add_budget_flags
    (`student_recipe`: the students' named recipe where --student-recipe is not given); a SpecError
    when a flag fights another or the recipe policy (a search chooses lr and budget)."""
    from dataclasses import replace

    from kdscale.errors import SpecError
    from kdscale.recipes import study_recipes

    given = {flag: value for flag, value in (("--student-steps", args.student_steps), ("--student-epochs",
                                            args.student_epochs), ("--student-lr", args.student_lr)) if value is not None}
    if args.recipe != "fixed" and given:
        raise SpecError(f"--recipe {args.recipe} chooses the students' lr and budget per cell: drop "
                        f"{' and '.join(given)}, or use --recipe fixed")
    if args.student_steps is not None and args.student_epochs is not None:
        raise SpecError("--student-steps and --student-epochs are exclusive: give one budget")
    teacher, student = study_recipes(args.dataset, bool(args.quick), args.precision, named=args.base_recipe,
                                     student_named=args.student_recipe or student_recipe)
    if args.student_steps is not None or args.student_epochs is not None:
        student = student.with_budget(args.student_steps, args.student_epochs)
    if args.student_lr is not None:
        student = replace(student, lr=args.student_lr)
    if args.teacher_epochs is not None:
        teacher = teacher.with_budget(epochs=args.teacher_epochs)
    return teacher, student


def recipe_fields(args: argparse.Namespace, optimizer: str = "sgd") -> dict[str, Any]:
    """StudySpec's recipe_policy and search from the flags of add_recipe_flags; `optimizer`: the students'
    base recipe's, whose learning rates the search tries by default."""
    from dataclasses import replace

    from kdscale.search import default_space

    space = default_space(optimizer, bool(args.quick))
    changes = {k: v for k, v in (("lrs", args.search_lrs), ("budgets", args.search_budgets),
                                 ("seeds", args.search_seeds)) if v is not None}
    return {"recipe_policy": args.recipe, "search": replace(space, **changes)}


def resources(args: argparse.Namespace) -> Resources:
    return Resources(cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     max_concurrent=args.max_concurrent, pack_size=args.pack_size)


def run(build_spec, args: argparse.Namespace, prog: str, runner=None):
    """Build the study from the flags and run it (Ray is imported only after the cheap checks):
    through `run_study`, or through `runner(spec, args)` (model_size's adaptive search).

    Returns the StudyResult, or None after printing a bad-input line `prog: error: ...` to stderr
    (the caller exits with status 2). An environment fault (a full disk, an unreachable tracking
    server, resources no node has, another driver running the study) is one line
    `prog: error: ...` and exit status 1 (SystemExit).
    """
    from kdscale.errors import EnvironmentFault, SpecError

    try:
        spec = build_spec(args)
        if runner is not None:
            return runner(spec, args)
        from kdscale.engine import run_study

        return run_study(spec, storage=args.storage, tracking_uri=args.tracking_uri, address=args.address,
                         cache=args.cache, verbose=args.verbose, take_over=getattr(args, "take_over", False))
    except SpecError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return None
    except EnvironmentFault as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def needs_ray(specs, storage: str) -> bool:
    """Whether any search of the studies is not stored or any trial not finished in its own study:
    a script that runs several studies in one Ray session starts none for a rerun."""
    from kdscale.search import chosen_recipe, read_search
    from kdscale.store import ResultsStore

    for spec in specs:
        stored = {s.id: read_search(storage, s.id) for s in spec.searches()}
        if None in stored.values():
            return True
        finished = ResultsStore(storage, spec.name).finished_ids()
        if any(t.id not in finished for t in spec.trials({i: chosen_recipe(r) for i, r in stored.items()})):
            return True
    return False


def analyse(result, print_headline: bool = True):
    """The analysis report of a finished study's trials (rows of an earlier recipe under the same
    study are kept in its store but not analysed), logged to its MLflow parent run (its files as
    artifacts, its headline numbers as metrics); None if it failed."""
    from analysis import AnalysisError
    from analysis.report import write_report
    from kdscale.tracking import log_artifacts, log_headline

    try:
        report = write_report(result.store.uri, table=result.table)  # this spec's trials, not older rows
    except AnalysisError as error:
        print(f"analysis: {error}", file=sys.stderr)
        return None
    log_artifacts(result.tracking_uri, result.parent_run_id, report.paths, artifact_path="analysis")
    log_headline(result.tracking_uri, result.parent_run_id, report.tables)
    if print_headline:
        print()
        print(report.headline)
    return report


def finish(result, args: argparse.Namespace, make_section) -> int:
    """The end of a study script: the standard analysis report, then the study's own section.

    `make_section(out_dir)` returns the study's analysis.sections.Section (figures drawn into
    out_dir). The section is rendered and printed, then saved and appended to the report
    (`attach_section`). Returns the exit status.
    """
    from pathlib import Path

    from analysis.sections import render

    if result is None:
        return 2
    if not result.complete:
        return 1
    report = None if args.no_analysis else analyse(result, print_headline=False)
    out_dir = Path(report.markdown_path).parent if report else Path(result.store.root) / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    section = make_section(out_dir)
    text = render(section)
    print(text.rstrip())
    path = attach_section(result, report, out_dir, section, text)
    print(f"report: {path}")
    print(mlflow_hint(result))
    return 0


def attach_section(result, report, out_dir, section, text: str):
    """Write a study's section `text` (Markdown) with a link to each figure to `<out_dir>/<name>.md`
    and its tables as `<name>_<table>.csv`, append it to the report (if any), and attach its files
    to the study's MLflow parent run. Returns the section's path."""
    from pathlib import Path

    from analysis import markdown as md
    from kdscale.tracking import log_artifacts

    if section.figures:
        text = text.rstrip("\n") + "\n\n" + "".join(md.figure(Path(p).stem, p, out_dir) for p in section.figures)
    path = Path(out_dir) / f"{section.name}.md"
    path.write_text(text)
    csvs = []
    for table_name, frame in section.tables.items():
        csvs.append(Path(out_dir) / f"{section.name}_{table_name}.csv")
        frame.to_csv(csvs[-1], index=False)
    if report:  # the section joins the study's report, beside the standard analysis
        Path(report.markdown_path).write_text(Path(report.markdown_path).read_text() + "\n" + text)
    log_artifacts(result.tracking_uri, result.parent_run_id, [path, *section.figures, *csvs] +
                  ([report.markdown_path] if report else []), artifact_path="analysis")
    return path


def mlflow_hint(result) -> str:
    """The last line of every study: how to open its runs in MLflow's Model training view (MLflow 3
    opens on its GenAI view unless the URL says otherwise)."""
    uri, view = result.tracking_uri, "#/experiments?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"MLflow: {uri.rstrip('/')}/{view} (study {result.store.study!r})"
    return (f"MLflow: mlflow ui --backend-store-uri {uri}, then open http://127.0.0.1:5000/{view} "
            f"(study {result.store.study!r})")
