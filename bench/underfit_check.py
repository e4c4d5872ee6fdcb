"""Does the lt baseline underfit? Its chosen recipe against four times the budget (issue 13).

    python bench/underfit_check.py                      # model_size's students, every kappa, 3 seeds
    python bench/underfit_check.py --kappas 1 4 --students cnn1d:width=16 --workers 16

For each student of the main job and each kappa: lt trains with the recipe its search chose on the
validation split (`kdscale.search`; a search stored under --storage, e.g. by studies/model_size.py,
is reused), and with a budget four times larger, whose learning rate is chosen the same way (a
search over the same learning rates at that one budget, on the same validation split). Both train
on the student's M samples for every seed and are scored on the test set. The baseline does not
underfit when four times the budget gains at most max(sd over seeds, 0.01) in mean test accuracy.

The work is a small task graph on --workers processes (one core each): per cell, the chosen
recipe's trials, the longer search in two halves of its learning rates (each stored as a search of
its own, so a rerun reuses it; the two are one search's candidates, ranked together), then the
longer recipe's trials; the longest tasks start first. Rows print as cells finish and --out is
rewritten after each, so a run stopped early keeps what it finished. Give the main job's --cache so
its teachers (which lt never reads; a trial row names one) are loaded, not trained again.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdscale.studyargs import MAIN_KAPPAS, MAIN_PAIRS  # noqa: E402


def _setup(cache: str):
    import torch

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(1)


def _search(student: str, kappa: float, space=None):
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec
    from kdscale.recipes import study_recipes
    from kdscale.search import SearchSpace, SearchSpec

    base = study_recipes("mnist1d")[1]
    return SearchSpec(DataSpec(), ModelSpec.parse(student), ObjectiveSpec("lt"), kappa, base, space or SearchSpace())


def _searched(spec, storage: str, device: str) -> dict:
    """The stored search of `spec`, or run it and store it."""
    from kdscale import data as datasets
    from kdscale.search import read_search, write_search
    from kdscale.searchjob import run_job

    found = read_search(storage, spec.id)
    if found is None:
        loaded = datasets.load(spec.data, datasets.stream_length_for(spec.data.n_teacher, spec.n_train))
        found = run_job([spec], loaded, {}, device=device)[0]
        write_search(storage, found)
    return found


def chosen(student: str, kappa: float, storage: str, cache: str, device: str) -> dict:
    """The cell's chosen recipe (its search, stored or run)."""
    from kdscale.config import to_dict
    from kdscale.search import chosen_recipe

    _setup(cache)
    return to_dict(chosen_recipe(_searched(_search(student, kappa), storage, device)))


def longer_half(student: str, kappa: float, steps: int, half: int, storage: str, cache: str, device: str) -> dict:
    """Half of the longer search's learning rates at `steps` (stored as a search of its own)."""
    from kdscale.search import SearchSpace

    _setup(cache)
    lrs = SearchSpace().lrs
    part = lrs[:len(lrs) // 2] if half == 0 else lrs[len(lrs) // 2:]
    return _searched(_search(student, kappa, SearchSpace(lrs=part, budgets=(steps,), max_epochs=None)), storage, device)


def arm(student: str, kappa: float, recipe: dict, seeds: int, cache: str, device: str) -> list[float]:
    """Test accuracy of lt with `recipe` on each seed's M samples."""
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec, from_dict
    from kdscale.recipes import study_recipes
    from kdscale.trial import run_pack

    _setup(cache)
    spec = _search(student, kappa)
    # the trials carry a teacher for their fidelity columns; lt never reads it (any pair's will do)
    teacher_model = next(t for t, s in (p.split(">") for p in MAIN_PAIRS) if s == student)
    teacher = TeacherSpec(spec.data, ModelSpec.parse(teacher_model), study_recipes("mnist1d")[0])
    specs = [TrialSpec(teacher, spec.student, kappa, ObjectiveSpec("lt"), from_dict(RecipeSpec, recipe), seed)
             for seed in range(seeds)]
    return [r.row["test_acc"] for r in run_pack(specs, device=device, log=lambda message: None)]


def merged_recipe(student: str, kappa: float, halves: list[dict]) -> dict:
    """The longer search's recipe: its two halves' candidates ranked together, as one search's."""
    from kdscale.config import to_dict
    from kdscale.search import SearchSpace, chosen_recipe

    steps = halves[0]["candidates"][0]["steps"]
    whole = _search(student, kappa, SearchSpace(budgets=(steps,), max_epochs=None))
    candidates = [c for half in halves for c in half["candidates"]]
    return to_dict(chosen_recipe({"spec": to_dict(whole), "n_fit": halves[0]["n_fit"], "n_val": halves[0]["n_val"],
                                  "candidates": candidates, "best": halves[0]["best"]}))


def summary(accs: list[float], recipe: dict) -> dict:
    import numpy as np

    return {"lr": recipe["lr"], "steps": recipe["steps"], "test_acc": accs, "mean": float(np.mean(accs)),
            "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    students = sorted({pair.split(">")[1] for pair in MAIN_PAIRS})
    parser.add_argument("--students", nargs="+", default=students, help=f"default {' '.join(students)}")
    parser.add_argument("--kappas", nargs="+", type=float, default=list(MAIN_KAPPAS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--storage", default="kdscale_results", help="where stored searches are read and written")
    parser.add_argument("--cache", default=None, help="data and teacher cache (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes, one core each")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every worker's)")
    parser.add_argument("--out", default="underfit_check.json")
    args = parser.parse_args()
    from kdscale.fileio import cache_dir

    cache = str(Path(args.cache or cache_dir()).resolve())
    started, rows = time.perf_counter(), []
    cells = {}
    for k in sorted(args.kappas, reverse=True):
        for s in args.students:
            search = _search(s, k)
            cells[s, k] = {"student": search.student.label, "kappa": k, "n_train": search.n_train}
    print(f"{'student':<10} {'kappa':>6} {'M':>6}  {'chosen lr/steps':>16} {'acc':>15}  {'4x lr/steps':>16} "
          f"{'acc':>15} {'gain':>7} {'tol':>6}  ok", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(chosen, s, k, args.storage, cache, args.device): ("chosen", s, k) for s, k in cells}
        ready = []  # (steps, kind, cell, task): the tasks whose inputs are known, the longest started first
        while pending or ready:
            for steps, kind, key, call in sorted(ready, key=lambda task: -task[0]):
                pending[pool.submit(*call)] = (kind, *key)
            ready = []
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for job in done:
                kind, s, k = pending.pop(job)
                cell, value = cells[s, k], job.result()
                if kind == "chosen":
                    cell["chosen_recipe"], four = value, 4 * value["steps"]
                    # a pack of 2 seeds x 3 lrs costs about as much per step as 3 seeds of one lr, twice over
                    ready += [(2 * four, "half", (s, k), (longer_half, s, k, four, half, args.storage, cache,
                                                          args.device)) for half in (0, 1)]
                    ready.append((value["steps"], "chosen_arm", (s, k),
                                  (arm, s, k, value, args.seeds, cache, args.device)))
                elif kind == "half":
                    cell.setdefault("halves", []).append(value)
                    if len(cell["halves"]) == 2:
                        cell["four_recipe"] = merged_recipe(s, k, cell["halves"])
                        ready.append((cell["four_recipe"]["steps"], "four_arm", (s, k),
                                      (arm, s, k, cell["four_recipe"], args.seeds, cache, args.device)))
                else:
                    cell[kind] = value
                if "chosen_arm" in cell and "four_arm" in cell:
                    rows.append(finish(cell))
                    write(args.out, rows, len(cells))
    holds = sum(r["holds"] for r in rows)
    print(f"\nthe chosen recipe does not underfit in {holds} of {len(rows)} (student, kappa) cells "
          f"({time.perf_counter() - started:.0f} s, {args.workers} workers)")
    return 0 if holds == len(rows) == len(cells) else 1


def finish(cell: dict) -> dict:
    """A finished cell's row (printed): both arms, the gain and whether it holds."""
    c, f = summary(cell["chosen_arm"], cell["chosen_recipe"]), summary(cell["four_arm"], cell["four_recipe"])
    gain = f["mean"] - c["mean"]
    tolerance = max(c["sd"] if math.isfinite(c["sd"]) else 0.0, 0.01)
    row = {"student": cell["student"], "kappa": cell["kappa"], "n_train": cell["n_train"],
           "chosen": c, "four_times": f, "gain": gain, "tolerance": tolerance, "holds": bool(gain <= tolerance)}
    print(f"{row['student']:<10} {row['kappa']:6g} {row['n_train']:6d}  {c['lr']:8g}/{c['steps']:<7d} "
          f"{c['mean']:.4f}±{c['sd']:.4f}  {f['lr']:8g}/{f['steps']:<7d} {f['mean']:.4f}±{f['sd']:.4f} "
          f"{gain:+.4f} {tolerance:.4f}  {'yes' if row['holds'] else 'NO'}", flush=True)
    return row


def write(out: str, rows: list[dict], cells: int):
    """The table so far, written whole and moved into place."""
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"rows": sorted(rows, key=lambda r: (r["student"], r["kappa"])),
                               "holds": sum(r["holds"] for r in rows), "cells": cells}, indent=1))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
