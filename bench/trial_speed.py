"""Wall time of one MNIST-1D student trial through kdscale's trainer against the same loop in bare PyTorch.

    python bench/trial_speed.py                      # ~1 min on the 2-core CPU (2.6 min at --repeats 15)
    python bench/trial_speed.py --teacher-steps 300  # a shorter teacher: same student timings, faster
    python bench/trial_speed.py --student mlp:width=64 --repeats 15

What it measures: the student of DESIGN's reference setting (N = 4000, kappa = 0.1 so M = 400,
kd at tau = 4 with the tau^2 factor, MNIST-1D's default student recipe from kdscale.recipes, which
the output prints: SGD with momentum, batch 128, a step budget, cosine), trained three ways on one
thread:

  trainer      kdscale.train.train: its reports (up to 20 test-set evaluations), the final
               train/test predictions and fidelity, FLOP counting.
  bare+evals   a plain PyTorch loop doing the same training and the same test-set evaluations at
               the same epochs as the trainer's reports, then one final test evaluation: the
               like-for-like baseline; trainer / bare+evals - 1 is the trainer's overhead.
  bare         the same loop with only the final test evaluation: what a trial would cost with no
               progress reporting at all.

Both loops start from the same seeds (initialisation and batch order, via `derive_seed`), so they
compute the same numbers: the table shows both final test accuracies as a check that the bare loop
really is the same training. Runs alternate (the order rotates each repeat) and each ratio is the
median of per-repeat ratios, so a load change on the machine hits both sides of a ratio alike.
Wall and CPU time are both reported: on a machine shared with other jobs single runs scatter by
tens of percent; CPU time (one torch thread) leaves out the time other jobs held the core, though
not their effect on caches, so it scatters less but still does. Use --repeats 15 or more there.
The target is an overhead under 10%.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdscale import data, models
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, TeacherSpec
from kdscale.recipes import default_recipes
from kdscale.teacher import get_teacher
from kdscale.train import TrainData, derive_seed, train

SEED = 0
VARIANTS = ("trainer", "bare+evals", "bare")


def bare_trial(model_spec: ModelSpec, recipe, tau: float, tensors: TrainData, num_classes: int,
               eval_epochs: frozenset[int]) -> float:
    """The student's training written out in plain PyTorch; returns the final test accuracy.

    Evaluates on the test set at the end of each epoch in `eval_epochs` (as the trainer reports),
    then once more at the end (as the trainer's final metrics do).
    """
    written_out = (recipe.optimizer == "sgd" and not recipe.nesterov and recipe.schedule == "cosine"
                   and recipe.warmup == 0 and recipe.steps is not None)
    if not written_out:
        raise SystemExit(f"the bare loop writes out SGD, cosine, no warm-up, a step budget; the student "
                         f"recipe is now {recipe}: extend bare_trial to match it")
    # kd at alpha = 0 (the bench's objective) reads no labels: the teacher's logits are the targets.
    x_train, x_test, y_test = tensors.x_train, tensors.x_test, tensors.y_test
    teacher_train = tensors.teacher_train
    torch.manual_seed(derive_seed(SEED, 1))
    model = models.build(model_spec, tuple(x_train.shape[1:]), num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    n_train = len(x_train)
    batch = min(recipe.batch_size, n_train)
    total = recipe.steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1.0, total)))))
    order = torch.Generator().manual_seed(derive_seed(SEED, 2))

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            logits = model(x_test)
            accuracy = (logits.argmax(1) == y_test).float().mean().item()
            F.cross_entropy(logits, y_test).item()  # the trainer reports the test loss too
        model.train()
        return accuracy

    step, epoch = 0, 0
    model.train()
    while step < total:
        perm = torch.randperm(n_train, generator=order)
        for start in range(0, n_train, batch):
            if step >= total:
                break
            idx = perm[start:start + batch]
            logits = model(x_train[idx])
            loss = tau * tau * F.kl_div(F.log_softmax(logits / tau, dim=1),
                                        F.log_softmax(teacher_train[idx] / tau, dim=1),
                                        reduction="batchmean", log_target=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
        epoch += 1
        if epoch in eval_epochs:
            evaluate()
    return evaluate()


CLOCKS = ("wall", "cpu")


def timed(fn) -> tuple[dict[str, float], float]:
    """Run `fn`; its wall time and this process's CPU time, and what it returned (a test accuracy).

    With one torch thread a trial's CPU time is its wall time less the time it waited while other
    jobs held the core. Other jobs still share caches and memory bandwidth, so CPU time scatters
    too, only less.
    """
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    accuracy = fn()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}, accuracy


def paired(times: dict, clock: str, a: str, b: str) -> tuple[float, float, float]:
    """(median, min, max) over repeats of time(a) / time(b) - 1, each ratio within one repeat."""
    ratios = [x / y - 1.0 for x, y in zip(times[clock][a], times[clock][b])]
    return statistics.median(ratios), min(ratios), max(ratios)


def bench_student(student: ModelSpec, recipe, objective: ObjectiveSpec, tensors: TrainData, num_classes: int,
                  repeats: int) -> dict:
    def run_trainer() -> float:
        return train(student, objective, recipe, SEED, tensors, num_classes).metrics["test_acc"]

    # Untimed warm-up, which also tells at which epochs the trainer evaluates.
    history = train(student, objective, recipe, SEED, tensors, num_classes).history
    eval_epochs = frozenset(report["epoch"] for report in history)
    runs = {"trainer": run_trainer,
            "bare+evals": lambda: bare_trial(student, recipe, objective.tau, tensors, num_classes, eval_epochs),
            "bare": lambda: bare_trial(student, recipe, objective.tau, tensors, num_classes, frozenset())}
    for name in ("bare+evals", "bare"):
        runs[name]()  # warm-up

    times = {clock: {name: [] for name in VARIANTS} for clock in CLOCKS}
    accuracy: dict[str, float] = {}
    for r in range(repeats):
        for name in VARIANTS[r % 3:] + VARIANTS[:r % 3]:  # rotate, so no variant always runs first
            seconds, accuracy[name] = timed(runs[name])
            for clock in CLOCKS:
                times[clock][name].append(seconds[clock])
    params = models.count_params(models.build(student, tuple(tensors.x_train.shape[1:]), num_classes))
    return {"student": str(student), "params": params, "evals": len(eval_epochs), "accuracy": accuracy,
            "median": {clock: {name: statistics.median(times[clock][name]) for name in VARIANTS}
                       for clock in CLOCKS},
            "overhead": {clock: paired(times, clock, "trainer", "bare+evals") for clock in CLOCKS},
            "vs_bare": {clock: paired(times, clock, "trainer", "bare") for clock in CLOCKS}}


def percent(stats: tuple[float, float, float]) -> str:
    median, low, high = stats
    return f"{median:+.1%} ({low:+.1%} .. {high:+.1%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", action="append", default=None,
                        help="student model, repeatable (default: cnn1d:width=32 and mlp:width=64)")
    parser.add_argument("--teacher", default="cnn1d:width=32")
    parser.add_argument("--teacher-steps", type=int, default=None,
                        help="train the teacher for this many steps instead of the default recipe's 60 epochs")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each variant (default 5)")
    parser.add_argument("--kappa", type=float, default=0.1)
    parser.add_argument("--tau", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--cache", default=None,
                        help="kdscale cache (data, teachers) to use and keep; default: a temporary directory")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(args.threads)
    temporary = None
    if args.cache is None:
        temporary = tempfile.TemporaryDirectory(prefix="kdscale-bench-")
        cache = Path(temporary.name)
    else:
        cache = Path(args.cache).expanduser()
    os.environ["KDSCALE_CACHE"] = str(cache)  # the data chunks are cached there as well

    data_spec = DataSpec("mnist1d", n_teacher=4000)
    teacher_recipe, student_recipe = default_recipes("mnist1d")
    if args.teacher_steps is not None:
        teacher_recipe = dataclasses.replace(teacher_recipe, epochs=None, steps=args.teacher_steps)
    teacher_spec = TeacherSpec(data_spec, ModelSpec.parse(args.teacher), teacher_recipe, seed=0)
    objective = ObjectiveSpec("kd", tau=args.tau)
    n_train = int(math.floor(args.kappa * data_spec.n_teacher + 0.5))
    n_stream = data.stream_length_for(data_spec.n_teacher, n_train)

    started = time.perf_counter()
    teacher = get_teacher(teacher_spec, n_stream, root=cache, device="cpu", log=lambda m: print(m, file=sys.stderr))
    loaded = data.load(data_spec, n_stream)
    indices = data.student_indices(loaded.y_pool, data_spec.n_teacher, n_train, SEED)
    tensors = TrainData(*(torch.as_tensor(a).contiguous() for a in (
        loaded.x_pool[indices], loaded.y_pool[indices], loaded.x_test, loaded.y_test,
        teacher.logits_train[indices], teacher.logits_test)))
    setup_s = time.perf_counter() - started

    students = [ModelSpec.parse(s) for s in (args.student or ["cnn1d:width=32", "mlp:width=64"])]
    print(f"# trial speed: kdscale trainer vs bare PyTorch  ({datetime.date.today().isoformat()})")
    print(f"machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), Python {platform.python_version()}")
    print(f"teacher {teacher_spec.model} ({teacher_recipe.budget_unit}="
          f"{teacher_recipe.epochs or teacher_recipe.steps}): test accuracy {teacher.test_acc:.3f}; "
          f"data + teacher ready in {setup_s:.1f} s (not timed below)")
    print(f"student trial: N={data_spec.n_teacher}, kappa={args.kappa:g} (M={n_train}), {objective.label}, "
          f"SGD lr {student_recipe.lr:g} momentum {student_recipe.momentum:g}, batch {student_recipe.batch_size}, "
          f"{student_recipe.steps} steps, cosine; {args.repeats} timed repeats per variant, alternating")
    print("bare+evals evaluates on the test set at the same epochs as the trainer's reports (like for like);"
          " bare evaluates only once, at the end\n")

    rows = [bench_student(student, student_recipe, objective, tensors, loaded.info.num_classes, args.repeats)
            for student in students]

    print("| student | params | test evals | clock | trainer s | bare+evals s | bare s "
          "| overhead: trainer / bare+evals - 1 | trainer / bare - 1 |")
    print("|" + "---|" * 9)
    for row in rows:
        for clock in CLOCKS:
            m = row["median"][clock]
            print(f"| {row['student']} | {row['params']:,} | {row['evals']} + 1 final | {clock} "
                  f"| {m['trainer']:.3f} | {m['bare+evals']:.3f} | {m['bare']:.3f} "
                  f"| {percent(row['overhead'][clock])} | {percent(row['vs_bare'][clock])} |")
    print("\nseconds: median per trial; percentages: median of the per-repeat ratios (min .. max); "
          "cpu: process CPU time, which leaves out the time other jobs on the machine held the core")
    for row in rows:
        acc = row["accuracy"]
        print(f"{row['student']}: final test accuracy trainer {acc['trainer']:.4f}, bare+evals "
              f"{acc['bare+evals']:.4f}, bare {acc['bare']:.4f} (same seeds: equal means the same training)")
    for clock in CLOCKS:
        worst = max(row["overhead"][clock][0] for row in rows)
        verdict = "meets" if worst < 0.10 else "MISSES"
        print(f"trainer overhead, like for like ({clock} time): at most {worst:+.1%} -> {verdict} the < 10% target")
    if temporary is not None:
        temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
