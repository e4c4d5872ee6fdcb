"""Engine overhead: the same grid through the engine (Ray Tune, MLflow, Parquet) and a bare loop.

The engine runs the grid twice: with seeds of one configuration packed into one trial (the
default; kdscale.train) and with packing off (`Resources(pack_size=1)`).

    python bench/engine_overhead.py            # the model_size --quick grid (48 trials)
    python bench/engine_overhead.py --small    # 16 trials

Both sides use cached teachers (trained once before timing) and torch with one thread per trial.
The bare loop calls `kdscale.trial.run_trial` for each trial in turn; the engine runs them as Tune
trials on local Ray with one CPU per trial, so on P cores it runs P at a time. Printed:
  - wall time of each side, and their ratio engine / bare;
  - the engine's overhead per trial: (engine wall x P - bare wall) / trials, the core-seconds each
    trial costs beyond its own training, Ray start-up included and, separately, excluded.
Target (issue 3): under 1 s per trial on local 2-CPU Ray. Target (issue 8): the packed engine
no slower than the bare sequential loop (ratio <= 1.0), with the same metrics per seed.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "studies"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one pair, 2 kappas, 2 seeds (16 trials)")
    args = parser.parse_args()

    import torch

    import model_size
    from kdscale import data
    from kdscale.teacher import get_teacher
    from kdscale.trial import run_trial

    work = Path(tempfile.mkdtemp(prefix="kdscale-bench-"))  # cache, results and MLflow of the timed runs
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ["KDSCALE_CACHE"] = str(work / "cache")
    spec = model_size.build_spec(model_size.build_parser().parse_args(["--quick", "--name", "bench"]))
    if args.small:
        from dataclasses import replace
        spec = replace(spec, pairs=spec.pairs[:2], kappas=spec.kappas[:2])
    trials = spec.trials()
    cores = os.cpu_count()
    print(f"grid: {len(trials)} trials, {len(spec.teachers())} teachers; {cores} CPUs; torch {torch.__version__}")

    needs = {}
    for t in trials:
        needs[t.teacher.id] = max(needs.get(t.teacher.id, 0), data.stream_length_for(t.data.n_teacher, t.n_train))
    teachers = {t.id: get_teacher(t, needs[t.id], log=lambda m: None) for t in spec.teachers()}  # untimed

    torch.set_num_threads(1)
    start = time.perf_counter()
    bare_rows = [run_trial(t, teachers[t.teacher.id], device="cpu").row for t in trials]
    bare = time.perf_counter() - start
    torch.set_num_threads(cores)

    import ray

    from kdscale.engine import run_study

    def engine(pack_size, name):
        from dataclasses import replace

        study = replace(spec, name=name, resources=replace(spec.resources, pack_size=pack_size))
        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_start = time.perf_counter() - start
        try:
            # Each run has its own storage: under one storage the second would adopt the first's trials
            # (the shared trial cache) and train nothing.
            result = run_study(study, storage=str(work / name), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                               progress=False, log=lambda m: None)
        finally:
            ray.shutdown()
        assert result.complete and len(result.table) == len(trials)
        return time.perf_counter() - start, ray_start, result.table

    n = len(trials)
    bare_acc = {r["trial_id"]: r["test_acc"] for r in bare_rows}
    print(f"bare sequential loop     : {bare:8.1f} s  ({bare / n:.2f} s per trial)")
    for label, pack_size in (("engine, unpacked", 1), ("engine, packed", None)):
        wall, ray_start, table = engine(pack_size, f"bench-{pack_size or 'packed'}")
        acc = dict(zip(table["trial_id"], table["test_acc"]))
        exact = sum(acc[t] == bare_acc[t] for t in acc)
        close = sum(abs(acc[t] - bare_acc[t]) <= 0.005 for t in acc)
        print(f"{label:<25}: {wall:8.1f} s  (Ray start-up {ray_start:.1f} s; trials per Tune trial "
              f"{table['pack_size'].mean():.1f})")
        print(f"  ratio engine / bare    : {wall / bare:8.2f}")
        print(f"  overhead per trial     : {(wall * cores - bare) / n:8.2f} core-s with Ray start-up, "
              f"{((wall - ray_start) * cores - bare) / n:.2f} without (target < 1 s)")
        print(f"  test accuracy vs bare  : {exact} of {n} identical, {close} within 0.005")


if __name__ == "__main__":
    main()
