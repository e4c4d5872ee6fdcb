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
