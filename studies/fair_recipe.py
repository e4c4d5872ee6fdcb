"""How much of kd's measured gain, and of kappa*, depends on how the students' recipes are chosen?

    python studies/fair_recipe.py          # MNIST-1D, cnn1d-16 > cnn1d-16, 8 kappas, 3 seeds, 3 protocols
    python studies/fair_recipe.py --quick  # smoke size: kappa 0.05 and 1, 2 seeds, the quick search and recipes

lt and kd (tau = 4, tau^2 factor, alpha = 0) under three recipe protocols, one study each:
`fixed` (fair_recipe_fixed): both arms the data set's default recipe (lr 0.02, 1500 steps); `lt`
(fair_recipe_lt): both arms the recipe searched for lt (the paper's protocol); `fair`
(fair_recipe_fair): each arm its own searched recipe (kdscale's default). A search (kdscale.search)
picks a cell's lr and step budget by successive halving on a validation split of the student's own
samples. The studies run in one Ray session under one storage: lt's searches run once for `lt`
and `fair`, and their common lt trials train once (the shared trial cache). Printed
(analysis/sections/fair_recipe.py): acc(lt), acc(kd), PI = kd - lt (95% t CI), PG = kd / lt per
protocol and kappa, the recipes trained with, kappa* per protocol, failed trials (diverged or
below 1.5 x chance).

Cost here (2-core CPU shared with other jobs, 2026-11-29, after model_size --grid under one storage): 23.5
min; no search run (model_size's 16 searches of this pair reused), 72 trials trained, 72 reused
(fair's from model_size, lt's lt from fair); --quick about 2 min, a rerun 14 s.
Answer here (3 seeds): the protocol decides the answer. fixed: PI > 0 at every kappa (+0.06 at
0.02, +0.32 at 0.1, +0.20 at 4), kappa* > 4, but lt underfits (0.68 at kappa 4). lt: lt's
searched lr (0.16-0.32) breaks kd at every kappa (23 of 24 kd trials at chance; kd's own search
picks 0.01-0.04), so PI = -0.87 at kappa 4 and kappa* < 0.02 measure a broken kd. fair: kappa* =
0.494 [0.467, 1.13]; PI +0.13 at 0.02, +0.07 at 0.05 and +0.16 at 0.2 (CIs above 0), -0.05 at 2
and -0.07 at 4 (CIs below 0); lr 0.32 also broke lt itself in 3 of 6 trials at kappa 0.02 and 0.1,
inflating PI there. The searched lt gains +0.29 [0.22, 0.37] over fixed at kappa 4 (0.68 to 0.97).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from analysis.sections import fair_recipe
from kdscale.config import DataSpec, parse_pair
from kdscale.recipes import study_recipes
from kdscale.search import QUICK_SPACE, SearchSpace
from kdscale.study import StudySpec
from kdscale.studyargs import MAIN_KAPPAS, Grid, StudyParser, add_run_flags, analyse, finish, needs_ray, resources, run

PAIR = "cnn1d:width=16>cnn1d:width=16"
PROTOCOLS = ("fixed", "lt", "fair")  # the order they run in: lt's searches serve fair
GRID = Grid("fair_recipe", kappas=MAIN_KAPPAS, quick=dict(kappas=(0.05, 1.0), seeds=2), pair=PAIR,
            name_help="prefix of the three studies' names (default fair_recipe, --quick fair_recipe_quick; "
            "then _fixed, _lt, _fair)")


def build_parser() -> argparse.ArgumentParser:
    parser = StudyParser(description=__doc__)
    GRID.add_flags(parser)
    parser.add_argument("--tau", type=float, default=4.0, help="kd's temperature (tau^2 factor on, alpha 0)")
    parser.add_argument("--search-seeds", type=int, help=f"seeds a search candidate is scored on "
                        f"(default {SearchSpace().seeds})")
    add_run_flags(parser, recipes=False)
    return parser


def build_specs(args: argparse.Namespace) -> dict[str, StudySpec]:
    """One StudySpec per protocol, on one grid (bad input raises SpecError here, before compute)."""
    teacher_recipe, student_recipe = study_recipes("mnist1d", bool(args.quick))
    space = QUICK_SPACE if args.quick else SearchSpace()
    if args.search_seeds is not None:
        space = replace(space, seeds=args.search_seeds)
    prefix = args.name or (f"{GRID.name}_quick" if args.quick else GRID.name)
    return {policy: StudySpec(
        name=f"{prefix}_{policy}", data=DataSpec(), pairs=(parse_pair(args.pair),), kappas=GRID.kappa_values(args),
        objectives=("lt", "kd"), taus=(args.tau,), alpha=0.0, tau_squared=True, seeds=GRID.seed_values(args),
        recipe=student_recipe, teacher_recipe=teacher_recipe, resources=resources(args), recipe_policy=policy,
        search=space) for policy in PROTOCOLS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from kdscale import data
    from kdscale.errors import SpecError
    from kdscale.study import check_study

    try:
        specs = build_specs(args)
        for spec in specs.values():  # all three checked before the first one runs
            check_study(spec)
    except SpecError as error:
        print(f"fair_recipe: error: {error}", file=sys.stderr)
        return 2
    from kdscale.engine import ray_session

    results = {}
    with ray_session(args.address, args.verbose, start=needs_ray(specs.values(), args.storage)):
        for policy, spec in specs.items():
            results[policy] = run(lambda _: spec, args, "fair_recipe")
            if results[policy] is None or not results[policy].complete:
                return 2 if results[policy] is None else 1
    n = {k: sum(getattr(r, k) for r in results.values()) for k in ("searched", "search_s", "trained", "train_s",
                                                                    "reused")}
    print(f"fair_recipe: {n['searched']} searches run ({n['search_s']:.0f} s), {n['trained']} trials trained "
          f"({n['train_s']:.0f} s), {n['reused']} reused from another study", file=sys.stderr)
    if not args.no_analysis:
        for policy in PROTOCOLS[:-1]:  # each study's own standard report; fair's comes with the section
            analyse(results[policy], print_headline=False)
    chance = 1.0 / data.info(specs["fair"].data).num_classes
    return finish(results["fair"], args, lambda out_dir: fair_recipe.section(
        {policy: result.table for policy, result in results.items()}, out_dir, chance=chance))


if __name__ == "__main__":
    sys.exit(main())
