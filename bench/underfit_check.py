"""Does the lt baseline underfit? Its chosen recipe against four times the budget (issue 13).

    python bench/underfit_check.py                      # model_size's students, every kappa, 3 seeds
    python bench/underfit_check.py --kappas 1 4 --students cnn1d:width=16

For each student of the main job and each kappa: lt trains with the recipe its search chose on the
validation split (`kdscale.search`; a search stored under --storage, e.g. by studies/model_size.py,
is reused), and with a budget four times larger, whose learning rate is chosen the same way (a
search over the same learning rates at that one budget, on the same validation split). Both train
on the student's M samples for every seed and are scored on the test set. The baseline does not
underfit when four times the budget gains at most max(sd over seeds, 0.01) in mean test accuracy.
Cells run two at a time (one per core), the largest kappas first, printed as they finish; the
table and the verdict go to --out as JSON. Give the main job's --cache so its teachers (which lt
never reads; a trial row names one) are loaded, not trained again.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdscale.studyargs import MAIN_KAPPAS, MAIN_PAIRS  # noqa: E402


def cell(student: str, kappa: float, seeds: int, storage: str, cache: str) -> dict:
    """One (student, kappa): the chosen recipe and the 4x budget, each on every seed."""
    import os

    import numpy as np
    import torch

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(1)
    from kdscale import data as datasets
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, TeacherSpec, TrialSpec
    from kdscale.recipes import study_recipes
    from kdscale.search import SearchSpace, SearchSpec, chosen_recipe, read_search, run_job, write_search
    from kdscale.teacher import get_teacher
    from kdscale.trial import run_pack

    started = time.perf_counter()
    teacher_recipe, base = study_recipes("mnist1d")
    data, model = DataSpec(), ModelSpec.parse(student)
    search = SearchSpec(data, model, ObjectiveSpec("lt"), kappa, base, SearchSpace())
    loaded = datasets.load(data, datasets.stream_length_for(data.n_teacher, search.n_train))
    found = read_search(storage, search.id)
    if found is None:
        found = run_job([search], loaded, {})[0]
        write_search(storage, found)
    chosen = chosen_recipe(found)
    longer = SearchSpec(data, model, ObjectiveSpec("lt"), kappa, base,
                        SearchSpace(budgets=(4 * chosen.steps,), max_epochs=None))
    longer_found = read_search(storage, longer.id) or run_job([longer], loaded, {})[0]
    write_search(storage, longer_found)
    four = chosen_recipe(longer_found)
    # the trials carry a teacher for their fidelity columns; lt never reads it (any pair's will do)
    teacher_model = next(t for t, s in (p.split(">") for p in MAIN_PAIRS) if s == student)
    teacher_spec = TeacherSpec(data, ModelSpec.parse(teacher_model), teacher_recipe)
    teacher = get_teacher(teacher_spec, datasets.stream_length_for(data.n_teacher, search.n_train),
                          log=lambda message: None)
    out = {"student": model.label, "kappa": kappa, "n_train": search.n_train}
    for name, recipe in (("chosen", chosen), ("four_times", four)):
        specs = [TrialSpec(teacher_spec, model, kappa, ObjectiveSpec("lt"), recipe, seed) for seed in range(seeds)]
        accs = [r.row["test_acc"] for r in run_pack(specs, {teacher_spec.id: teacher}, device="cpu")]
        out[name] = {"lr": recipe.lr, "steps": recipe.steps, "test_acc": accs, "mean": float(np.mean(accs)),
                     "sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan}
    gain = out["four_times"]["mean"] - out["chosen"]["mean"]
    tolerance = max(out["chosen"]["sd"] if math.isfinite(out["chosen"]["sd"]) else 0.0, 0.01)
    out.update(gain=gain, tolerance=tolerance, holds=bool(gain <= tolerance), wall_s=time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    students = sorted({pair.split(">")[1] for pair in MAIN_PAIRS})
    parser.add_argument("--students", nargs="+", default=students, help=f"default {' '.join(students)}")
    parser.add_argument("--kappas", nargs="+", type=float, default=list(MAIN_KAPPAS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--storage", default="kdscale_results", help="where stored searches are read and written")
    parser.add_argument("--cache", default=None, help="data and teacher cache (default $KDSCALE_CACHE or ~/.cache/kdscale)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="underfit_check.json")
    args = parser.parse_args()
    from kdscale.fileio import cache_dir

    cache = str(Path(args.cache or cache_dir()).resolve())
    started, rows = time.perf_counter(), []
    print(f"{'student':<10} {'kappa':>6} {'M':>6}  {'chosen lr/steps':>16} {'acc':>15}  {'4x lr/steps':>16} "
          f"{'acc':>15} {'gain':>7} {'tol':>6}  ok")
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(cell, s, k, args.seeds, args.storage, cache) for k in sorted(args.kappas, reverse=True)
                for s in args.students]
        for job in as_completed(jobs):
            r = job.result()
            rows.append(r)
            c, f = r["chosen"], r["four_times"]
            print(f"{r['student']:<10} {r['kappa']:6g} {r['n_train']:6d}  {c['lr']:8g}/{c['steps']:<7d} "
                  f"{c['mean']:.4f}±{c['sd']:.4f}  {f['lr']:8g}/{f['steps']:<7d} {f['mean']:.4f}±{f['sd']:.4f} "
                  f"{r['gain']:+.4f} {r['tolerance']:.4f}  {'yes' if r['holds'] else 'NO'}", flush=True)
    holds = sum(r["holds"] for r in rows)
    print(f"\nthe chosen recipe does not underfit in {holds} of {len(rows)} (student, kappa) cells "
          f"({time.perf_counter() - started:.0f} s)")
    Path(args.out).write_text(json.dumps({"rows": sorted(rows, key=lambda r: (r["student"], r["kappa"])),
                                          "holds": holds, "cells": len(rows)}, indent=1))
    return 0 if holds == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
