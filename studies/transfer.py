"""Does distillation from a pretrained, transferred teacher help a student trained from scratch on a
small, shifted task, and at which kappa (the paper's Table 1, at MNIST-1D size)?

    python studies/transfer.py          # source N = 16000, target N = 1000, 5 kappas, 3 seeds
    python studies/transfer.py --quick  # smoke size: source N = 4000, 2 kappas, 2 seeds, short runs
    python studies/transfer.py --teacher-weights FILE  # your backbone (safetensors or a torch state_dict)

Source: MNIST-1D as generated (templates original), the first --n-source samples; a cnn1d-32
teacher trained on them by label training (the mnist1d teacher recipe, 60 epochs; --quick 30),
in this process, into kdscale's teacher cache. Target: MNIST-1D with each class's template
reversed in time (data option templates=reversed: the same generator and input statistics, other
class shapes), N = --n-teacher = 1000 samples. The transfer teacher is the source teacher's
backbone, frozen, with its linear head alone fitted on the target's N samples (kdscale/pretrained.py:
L-BFGS logistic regression, its weight decay chosen on a stratified 20% of the N). With
--teacher-weights the file's backbone replaces the source teacher (nothing is trained on the source).
Students: cnn1d-16 from scratch on M = kappa N target samples, kappa 0.05 to 1, lt and kd at tau 1
and 4 (tau^2 factor on, alpha 0), 3 seeds.
Recipes: --recipe lt by default, the paper's protocol for this table: each (student, kappa)'s lt
recipe (learning rate and step budget) is searched on a validation split of its own M samples and
reused for kd (kdscale/search.py); --recipe fair searches kd's own (a study of its own,
transfer_fair), --recipe fixed trains every cell with the mnist1d student recipe.
Printed (analysis/sections/transfer.py): the source teacher's accuracy on its own task, the
transfer teacher's on the target, and per kappa lt and kd accuracy with 95% t CIs over seeds, PI
and PG paired by seed, and kappa*.

Cost here (2-core CPU shared with other jobs): see README, "Studies".
Answer here: see README, "Studies", and docs/studies.md.
"""
from __future__ import annotations

import argparse
import sys

from analysis.sections import transfer
from kdscale.config import DataSpec, TeacherSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.study import StudySpec
from kdscale.studyargs import Grid, StudyParser, add_run_flags, finish, recipe_fields, resources, run

PAIR = "cnn1d:width=32>cnn1d:width=16"
N_SOURCE, QUICK_N_SOURCE, N_TARGET = 16000, 4000, 1000
GRID = Grid("transfer", kappas=(0.05, 0.1, 0.2, 0.5, 1.0), quick=dict(kappas=(0.1, 0.5), seeds=2), pair=PAIR,
            name_help="study name (default transfer, or transfer_quick; _fair or _fixed appended for those recipes)")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--taus", nargs="+", type=float, default=[1.0, 4.0], help="kd's temperatures (default 1 4)")
    parser.add_argument("--n-source", type=int, help=f"source samples (default {N_SOURCE}; --quick {QUICK_N_SOURCE})")
    parser.add_argument("--n-teacher", type=int, default=N_TARGET, help=f"target N (default {N_TARGET})")
    parser.add_argument("--target-templates", default="reversed", help="the target's mnist1d templates (default "
                        "reversed; original gives the source's own task)")
    parser.add_argument("--teacher-weights", help="a backbone file to transfer instead of the source teacher")
    add_run_flags(parser, policy="lt")
    return parser


def source_teacher(args: argparse.Namespace) -> TeacherSpec:
    teacher_recipe, _ = study_recipes("mnist1d", bool(args.quick))
    n = args.n_source if args.n_source is not None else QUICK_N_SOURCE if args.quick else N_SOURCE
    return TeacherSpec(DataSpec("mnist1d", n_teacher=n), parse_pair(args.pair)[0], teacher_recipe)


def build_spec(args: argparse.Namespace, weights: str | None = None) -> StudySpec:
    _, student_recipe = study_recipes("mnist1d", bool(args.quick))
    name = args.name or (f"{GRID.name}_quick" if args.quick else GRID.name) + ("" if args.recipe == "lt" else
                                                                                f"_{args.recipe}")
    target = DataSpec("mnist1d", n_teacher=args.n_teacher, options=(("templates", args.target_templates),))
    return StudySpec(
        name=name, data=target, pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd"), taus=tuple(args.taus), seeds=GRID.seed_values(args), recipe=student_recipe,
        teacher_weights=weights, resources=resources(args), **recipe_fields(args))


def pretrain(args: argparse.Namespace) -> tuple[str, dict]:
    """The backbone file, and what the section says of where it came from."""
    if args.teacher_weights:
        return args.teacher_weights, {"source": f"read from {args.teacher_weights}"}
    import torch
    from pathlib import Path

    from kdscale.fileio import cache_dir
    from kdscale.teacher import get_teacher

    torch.set_num_threads(max(1, int(args.cpus_per_trial)))
    spec = source_teacher(args)
    out = get_teacher(spec, root=Path(args.cache or cache_dir()).resolve())
    return str(out.directory / "weights.safetensors"), {
        "source": f"trained on N = {spec.data.n_teacher} mnist1d samples (templates original)",
        "source_acc": out.test_acc}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kdscale.errors import SpecError
    from kdscale.study import check_study

    try:  # every flag checked before the source teacher trains
        check_study(build_spec(args))
        source_teacher(args)
    except SpecError as error:
        print(f"transfer: error: {error}", file=sys.stderr)
        return 2
    weights, source = pretrain(args)
    result = run(lambda a: build_spec(a, weights), args, "transfer")
    return finish(result, args, lambda out_dir: transfer.section(
        result.table, out_dir, **source, target=f"mnist1d, templates {args.target_templates}", recipe=args.recipe))


if __name__ == "__main__":
    sys.exit(main())
