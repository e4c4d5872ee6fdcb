"""The engine against the loops a user could write instead, side by side in one run (issue 16).

    python bench/engine_overhead.py                 # model_size's --quick grid with the fixed recipe
    python bench/engine_overhead.py --grid default  # the main job's default grid (240 trials)

The same trials (model_size's grid, `--recipe fixed`: the trials, not the recipe searches, are
what is timed) four ways, each from cached teachers (trained once before any timing):
  loop        a sequential loop over `kdscale.trial.run_trial`, torch's default threads
  loop-1      the same at one torch thread
  pool        a multiprocessing pool of one process per core, one thread each, over run_trial
  engine      `kdscale.engine.run_study` (Ray Tune, MLflow, Parquet; packs, twins), one CPU a trial
Printed: each way's wall time and its ratio to the pool (the best a user has without kdscale), the
useful FLOP/s of each (the rows' own `flops` over the wall time) next to a 2048 x 2048 fp32 matmul's
FLOP/s on the same threads measured in the same run, and how far the engine's test accuracies are
from the one-thread loop's (packed students sum in another order: within 0.005 is the target).
Target (issue 16): the engine at most 0.8 of the pool's wall time.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "studies"))


def _pool_trial(args):
    """One trial in a pool worker (one thread), from the cached teacher."""
    import torch

    from kdscale.teacher import get_teacher
    from kdscale.trial import run_trial

    trial, n_pool = args
    torch.set_num_threads(1)
    teacher = get_teacher(trial.teacher, n_pool, log=lambda message: None)
    return run_trial(trial, teacher, device="cpu").row


def matmul_flops(threads: int, n: int = 2048, repeats: int = 10) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=("quick", "default"), default="quick")
    parser.add_argument("--ways", nargs="+", default=["loop", "loop-1", "pool", "engine"],
                        choices=("loop", "loop-1", "pool", "engine"))
    args = parser.parse_args()

    import multiprocessing

    import torch

    import model_size
    from kdscale import data
    from kdscale.teacher import get_teacher
    from kdscale.trial import run_trial

    work = Path(tempfile.mkdtemp(prefix="kdscale-bench-"))  # cache, results and MLflow of the timed runs
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ["KDSCALE_CACHE"] = str(work / "cache")
    argv = ["--quick" if args.grid == "quick" else "--grid", "--recipe", "fixed", "--name", "bench"]
    spec = model_size.build_spec(model_size.build_parser().parse_args(argv))
    trials = spec.trials()
    cores, default_threads = os.cpu_count(), torch.get_num_threads()
    print(f"grid: model_size {args.grid}, --recipe fixed: {len(trials)} trials, {len(spec.teachers())} teachers; "
          f"{cores} CPUs; torch {torch.__version__}, {default_threads} default threads")
    needs = {}
    for t in trials:
        needs[t.teacher.id] = max(needs.get(t.teacher.id, 0), data.stream_length_for(t.data.n_teacher, t.n_train))
    teachers = {t.id: get_teacher(t, needs[t.id], log=lambda m: None) for t in spec.teachers()}  # untimed
    rate = {threads: matmul_flops(threads) for threads in sorted({1, default_threads, cores})}
    results = {}

    def loop(threads):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        rows = [run_trial(t, teachers[t.teacher.id], device="cpu").row for t in trials]
        return time.perf_counter() - start, rows

    def pool():
        context = multiprocessing.get_context("spawn")  # a fresh torch per worker, one thread each
        start = time.perf_counter()
        with context.Pool(cores) as workers:
            rows = workers.map(_pool_trial, [(t, needs[t.teacher.id]) for t in trials], chunksize=1)
        return time.perf_counter() - start, rows

    def engine():  # as a study script runs it: run_study starts Ray (one CPU a trial) and stops it
        from kdscale.engine import run_study

        torch.set_num_threads(default_threads)
        start = time.perf_counter()
        result = run_study(spec, storage=str(work / "engine"), tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                           progress=False, log=lambda m: None)
        assert result.complete and len(result.table) == len(trials)
        return time.perf_counter() - start, result.table.to_dict("records")

    runners = {"loop": lambda: loop(default_threads), "loop-1": lambda: loop(1), "pool": pool, "engine": engine}
    for way in args.ways:
        results[way] = runners[way]()
        print(f"  {way}: {results[way][0]:.1f} s", flush=True)

    reference = results.get("pool", results[args.ways[0]])[0]
    print(f"\n{'way':<8} {'wall s':>8} {'vs pool':>8} {'useful GFLOP/s':>15} {'of matmul':>10}")
    for way, (wall, rows) in results.items():
        threads = {"loop": default_threads, "loop-1": 1}.get(way, cores)
        useful = sum(float(r["flops"]) for r in rows) / wall
        print(f"{way:<8} {wall:8.1f} {wall / reference:8.2f} {useful / 1e9:15.1f} {useful / rate[threads]:10.1%}")
    print("matmul 2048^2 fp32: " + ", ".join(f"{t} thread(s) {r / 1e9:.0f} GFLOP/s" for t, r in rate.items()))
    if "engine" in results and "loop-1" in results:
        alone = {r["trial_id"]: r["test_acc"] for r in results["loop-1"][1]}
        gaps = [abs(r["test_acc"] - alone[r["trial_id"]]) for r in results["engine"][1]]
        print(f"engine vs one-thread loop: {sum(g == 0 for g in gaps)} of {len(gaps)} test accuracies identical, "
              f"{sum(g <= 0.005 for g in gaps)} within 0.005 (largest gap {max(gaps):.4f})")


if __name__ == "__main__":
    main()
