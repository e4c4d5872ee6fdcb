"""The adaptive kappa* search through the engine: each round of `analysis.kappa_search` is one
`run_study` call on the same study, its spec grown by the round's cells (StudySpec.plan).

Why successive run_study calls rather than a Tune searcher: the store already keeps every finished
trial by id, so a round reruns nothing that an earlier round (or an earlier, killed driver, or
another study under the same storage) finished, and the decisions are a function of the table
alone. A killed search is the same command again: the rounds replay from the stored table, train
nothing until the round that was cut, and continue from there; a finished one trains nothing.

Ray is started once, at the first round that has anything to train, and kept for the rest.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import replace

from kdscale import schema
from kdscale.study import StudySpec

BUDGET, TARGET = 80, 1.25  # per pair: trials (the grid spends 48), and the interval's x/ target


def pair_labels(spec: StudySpec) -> list[str]:
    """The results table's pair label of each of the spec's pairs (analysis names pairs so)."""
    return [schema.pair_label(teacher.label, student.label) for teacher, student in spec.pairs]


def design_spec(base: StudySpec, design: dict[str, dict[float, int]]) -> StudySpec:
    """`base` with exactly the cells of a design {pair label: {kappa: seeds}}: seeds 0..n-1 there."""
    index = {label: i for i, label in enumerate(pair_labels(base))}
    kappas = tuple(sorted({kappa for cells in design.values() for kappa in cells}))
    most = max(n for cells in design.values() for n in cells.values())
    plan = tuple((index[label], kappa, n) for label, cells in design.items() for kappa, n in sorted(cells.items()))
    return replace(base, kappas=kappas, seeds=tuple(range(most)), plan=plan)


def run_search(base: StudySpec, settings, storage: str = "kdscale_results", tracking_uri: str | None = None,
               address: str | None = None, cache: str | None = None, verbose: bool = False, log=None,
               max_rounds: int = 20, take_over: bool = False):
    """Search kappa* for every pair of `base` (its kappas and seeds are replaced by the search's).

    settings: analysis.kappa_search.SearchSettings. Returns (SearchResult, the last StudyResult);
    the StudyResult is None when no round ran."""
    from analysis.kappa_search import search
    from kdscale.engine import ray_session, run_study
    from kdscale.studyargs import needs_ray

    log = log or (lambda message: print(message, file=sys.stderr))
    last = {}
    with contextlib.ExitStack() as stack:
        def fetch(design):
            spec = design_spec(base, design)
            if not last.get("ray") and needs_ray([spec], storage):
                stack.enter_context(ray_session(address, verbose))
                last["ray"] = True
            result = run_study(spec, storage=storage, tracking_uri=tracking_uri, address=address,
                               cache=cache, verbose=verbose, log=log, take_over=take_over)
            last["result"] = result
            return result.table if result.complete else None

        found = search(fetch, pair_labels(base), settings, max_rounds=max_rounds, log=log,
                       metric="test_acc")
    return found, last.get("result")


def add_adaptive_flags(parser) -> None:
    """model_size's flags of the search: --adaptive, --grid, --target, --budget."""
    for flag, options in (
            ("--adaptive", dict(action="store_true", help="search kappa* adaptively (rounds of kappas and seeds): "
                                "the default but with --quick")),
            ("--grid", dict(action="store_true", help="train the fixed grid (--kappas x --seeds) instead of "
                            "searching kappa*")),
            ("--target", dict(type=float, default=TARGET, help=f"adaptive: stop when kappa*'s 95%% interval is within "
                              f"x/ TARGET (default {TARGET}: +-25%%)")),
            ("--budget", dict(type=int, default=BUDGET, help=f"adaptive: trials per pair, lt and kd counted "
                              f"(default {BUDGET})"))):
        parser.add_argument(flag, **options)


def is_adaptive(args) -> bool:
    """The search, unless --grid or --quick (a grid) says otherwise (check_mode refuses --adaptive with them)."""
    return not (args.grid or args.quick)


def check_mode(args) -> None:
    """--adaptive with --grid or --quick is a SpecError: one of them would be ignored."""
    from kdscale.errors import SpecError

    if args.adaptive and (args.grid or args.quick):
        raise SpecError(f"--adaptive and {'--grid' if args.grid else '--quick'} are exclusive: --grid and --quick "
                        "train a fixed grid, --adaptive (the default) searches kappa*")


def coarse_pass(args, grid) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The coarse pass's kappas and seeds: --kappas and --seeds, or the search's defaults."""
    from analysis.kappa_search import SearchSettings

    kappas = tuple(args.kappas or SearchSettings.coarse)
    return kappas, tuple(range(SearchSettings.coarse_seeds)) if args.seeds is None else grid.seed_values(args)


def search_settings(args, spec: StudySpec):
    """The adaptive search's settings from the flags (its coarse pass: the spec's kappas and seeds)."""
    from analysis import AnalysisError
    from kdscale.errors import SpecError
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


def run_adaptive(spec: StudySpec, args):
    """model_size --adaptive: the kappa* search of `spec` with the settings of the flags `args`
    (--budget, --target, --seeds and the run flags); the last round's StudyResult."""
    from kdscale.study import check_study

    check_study(spec)  # the data's capacity and the models, as every round will, before the search's own checks
    settings = search_settings(args, spec)
    found, result = run_search(spec, settings, storage=args.storage, tracking_uri=args.tracking_uri,
                               address=args.address, cache=args.cache, verbose=args.verbose,
                               take_over=getattr(args, "take_over", False))
    if result is not None and found.complete:
        print(f"kappa* search: {found.rounds} rounds, {len(result.table)} trials", file=sys.stderr)
    return result
