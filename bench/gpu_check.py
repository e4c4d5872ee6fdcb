"""GPU figures in one run: kdscale's CUDA path measured once, every figure into one JSON file (issue 21).

    python bench/gpu_check.py --out DIR                           # the GPU if there is one, else the CPU
    python bench/gpu_check.py --out DIR --device cpu --quick      # CPU smoke run, every part at a few steps
    python bench/gpu_check.py --out DIR --device cuda --budget-s 480

Writes DIR/gpu_check.json (every figure) and DIR/gpu_check.log (what it printed). It drives kdscale's
trainer directly (kdscale.train, .models, .data, .config; the students-per-hour loops of
bench/gpu_throughput.py) and never imports Ray, MLflow or Optuna; the JSON's `forbidden_imports`
says, from sys.modules at the end, that none of them was imported. Seven parts (environment, trial,
throughput, grid, pack_threshold, projection, paths: bench/gpucheck/ holds them, its __init__.py says
what each measures), each timed, each written into the JSON (atomically: a temporary file, then one
rename) the moment it finishes, so a run cut short keeps the finished parts.

Budget: `--budget-s` (default 480) counts from the script's start. Before each part and each
measurement in it, the time it needs is estimated from what ran so far (a per-step overhead and a
FLOP rate fitted to every training run, priors from the matmul rate) with the smallest estimates of
the later parts held back; what cannot fit is skipped with a note in the JSON. A timer (SIGALRM)
cuts any measurement still running a few seconds before the deadline, so the script never passes
its budget. `--quick` shrinks every part to a few steps (a CPU smoke run).

On a lent GPU machine (NVIDIA H100/H200, 16 CPU cores, no network), from the repository root of the
working tree's copy, in one call of the device tool (as run on an H200, 2026-11-30; the device's image
lacks `mnist1d`, whose wheel travels: `pip download --no-deps mnist1d -d .whl` here first):

    run(command="python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && "
                "export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 bench/gpu_check.py "
                "--out $OUT --device cuda --budget-s 450", carry=[".whl"], timeout_s=520)

The script puts the repository root on sys.path itself (kdscale need not be installed) and needs
torch and numpy; MNIST-1D also needs the `mnist1d` package (with scipy) and ResNet-18 torchvision.
Where one is missing it says so in the JSON: part 2 is skipped, part 3 takes random tensors of
MNIST-1D's shape, part 6 uses ResNet-18 FLOPs measured here with kdscale.train.forward_flops and
skips its ResNet-18 timings. $OUT then holds gpu_check.json and gpu_check.log.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # the budget's clock starts before torch is imported

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent), str(HERE)):  # kdscale from this tree (installed or not); gpucheck beside us
    if _path not in sys.path:
        sys.path.insert(0, _path)

from gpucheck import PARTS, run_part  # noqa: E402
from gpucheck.budget import Budget, Costs, OutOfTime  # noqa: E402
from gpucheck.common import SIZES, Check, Recorder, import_error  # noqa: E402

FORBIDDEN = ("ray", "mlflow", "optuna")
SKIPPED = {"status": "skipped", "note": "the budget ran out in an earlier part"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_check(out: Path, device: str = "auto", budget_s: float = 480.0, size: str = "full", echo: bool = True,
              started: float | None = None) -> dict:
    """Every part in turn into out/gpu_check.json and out/gpu_check.log; returns the JSON's content."""
    import torch

    chosen = torch.device("cuda" if (device == "cuda" or (device == "auto" and torch.cuda.is_available())) else "cpu")
    budget = Budget(budget_s, STARTED if started is None else started, 3.0 if size == "full" else 1.0)
    ck = Check(chosen, SIZES[size], budget, Costs(chosen.type), Recorder(Path(out), echo))
    rec = ck.rec
    before = {name for name in FORBIDDEN if name in sys.modules}
    rec.data.update(script="bench/gpu_check.py", issue=21, size=size, device=str(chosen), budget_s=budget_s,
                    argv=sys.argv[1:], parts={}, started=_now())
    if (why := import_error("mnist1d")) is not None:
        ck.state["no_mnist1d"] = why
    rec.say(f"gpu_check: {size} run on {chosen}, budget {budget_s:.0f} s ({budget.elapsed():.1f} s spent on start-up)")
    if chosen.type == "cuda":
        torch.cuda.init()
    out_of_time = False
    try:
        for i, part in enumerate(PARTS):
            fig: dict[str, Any] = {}
            rec.data["parts"][part] = fig
            begun = time.perf_counter()
            try:  # the deadline's timer rings once, wherever it finds the run: here, or in the save below
                if out_of_time:
                    fig.update(SKIPPED)
                else:
                    run_part(ck, i, part, fig)
            except OutOfTime:
                out_of_time = budget.over()
                if "status" not in fig:
                    fig.update(status="cut", note="this part ran past its share of the budget (the time left less "
                                                  "the later parts' smallest estimates); its finished figures are kept")
            budget.stop()
            fig["wall_s"] = time.perf_counter() - begun
            try:
                if fig["status"] != "ok":
                    rec.say(f"  {fig['status']}: {fig.get('note', 'some measurements skipped (see the JSON)')}")
                rec.say(f"  ({fig['wall_s']:.1f} s)")
                rec.save()
            except OutOfTime:
                out_of_time = budget.over()
    except OutOfTime:  # between two parts: the parts not reached are marked below
        pass
    finally:
        with contextlib.suppress(OutOfTime):  # a ring that comes as the timer goes
            budget.disarm()
        for part in PARTS:
            rec.data["parts"].setdefault(part, {**SKIPPED, "wall_s": 0.0})
        imported = {name: name in sys.modules for name in FORBIDDEN}
        rec.data["forbidden_imports"] = {**imported, "none_imported": not any(imported.values()),
                                         "already_imported_by_the_caller": sorted(before)}
        rec.data.update(cost_model=ck.costs.summary(), total_wall_s=budget.elapsed(), finished=_now())
        rec.say(f"\ntotal {rec.data['total_wall_s']:.1f} s of {budget_s:.0f}; Ray, MLflow, Optuna imported: "
                f"{'none' if rec.data['forbidden_imports']['none_imported'] else imported}")
        rec.say(f"wrote {rec.json_path} and {rec.json_path.with_name('gpu_check.log')}")
        rec.save()
        rec.close()
    return rec.data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for gpu_check.json and gpu_check.log")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="cuda, cpu, or auto: the GPU if there is one (default)")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run (default 480; 150 with --quick)")
    parser.add_argument("--quick", action="store_true", help="every part at a few steps (a CPU smoke run)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: 1 on the CPU, torch's with a GPU)")
    parser.add_argument("--size", choices=tuple(SIZES), help=argparse.SUPPRESS)  # tiny: the tests
    args = parser.parse_args(argv)
    if args.budget_s is not None and args.budget_s <= 0:
        parser.error("--budget-s must be positive")
    size = args.size or ("quick" if args.quick else "full")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda, but torch sees no CUDA device here "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})", file=sys.stderr)
        return 2
    on_cpu = args.device == "cpu" or not torch.cuda.is_available()
    # On the project's shared 2-core machine two torch threads, each waiting on a core another job
    # held, ran small models 10-100x slower than one thread (2026-11-29).
    threads = args.threads or (1 if on_cpu else None)
    if threads:
        torch.set_num_threads(threads)
    budget = args.budget_s if args.budget_s is not None else (480.0 if size == "full" else 150.0)
    run_check(Path(args.out), args.device, budget, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
