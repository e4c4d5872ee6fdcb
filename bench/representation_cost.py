"""What the opt-in representation metrics (kdscale.representations) cost at the end of a trial,
against the trial itself.

    python bench/representation_cost.py                    # cnn1d-32 pair, N = 4000: about 30 s on the 2-core CPU
    python bench/representation_cost.py --student cnn1d:width=64 --teacher cnn1d:width=64 --n-pool 16000
    python bench/representation_cost.py --probe-backends   # also times scikit-learn's LogisticRegression

Setting: MNIST-1D (`data.load(DataSpec(), n_pool)`, test set of 2000). A teacher is trained with
lt on the whole pool and the default student recipe (1500 SGD steps: a few seconds, enough for
realistic features; a study's teacher trains for 60 epochs); then one default student trial
(kd at tau = 4 with the tau^2 factor, kappa = 0.1, the default MNIST-1D student recipe, through
`kdscale.train.train`) is timed `--trial-repeats` times. Its trained student and the teacher
are then measured, each step timed `--repeats` times:

  features_test    features_of(student) and features_of(teacher) on the 2000 test samples
  linear_cka       linear CKA of the two (feature-space form, float64)
  minibatch_cka    unbiased minibatch CKA, batches of 500 (for large test sets; not in the total)
  feature_align    feature alignment (same width only)
  spectrum         eigenvalues, effective rank and participation ratio of the student's features
  features_pool    features_of(student) on the n_pool training samples
  linear_probe     logistic regression on the pool features, accuracy on the test features
  ntk_alignment    CKA of the empirical NTKs (trace form) of student and teacher on --ntk-probe samples

then prints the same metrics for an lt student (same M, seed and recipe) and an untrained one, as
reference values, and with --probe-backends times linear_probe against scikit-learn.

Medians of wall and CPU time (process time: with one torch thread, the step's own work, which
leaves out time other jobs held the core). One torch thread, as a trial runs (`--threads`).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
import warnings

import torch

from kdscale import data, models
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec
from kdscale.recipes import default_recipes
from kdscale.representations import (feature_alignment, feature_spectrum, features_of, linear_cka, linear_probe,
                                     minibatch_cka, ntk_alignment)
from kdscale.train import TrainData, train

NOT_IN_TOTAL = ("minibatch_cka",)


def timed(fn, repeats: int):
    """(result of the last call, median wall s, median cpu s)."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return result, statistics.median(walls), statistics.median(cpus)


def probe_backends(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   repeats: int) -> None:
    """linear_probe against scikit-learn's LogisticRegression (lbfgs, same penalty, 100 iterations)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n = len(train_x)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-12)
    a_train, a_test = ((train_x - mean) / std).numpy(), ((test_x - mean) / std).numpy()

    def sklearn_fit(threads):
        def fit():
            with threadpool_limits(threads), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # max_iter reached
                clf = LogisticRegression(C=1.0 / (n * 1e-4), max_iter=100).fit(a_train, train_y.numpy())
            return clf.score(a_test, test_y.numpy()), int(clf.n_iter_[0])
        return fit

    print(f"\nprobe backends on {tuple(train_x.shape)} features (l2 = 1e-4, at most 100 L-BFGS iterations):")
    print("| backend | wall s | cpu s | iterations | ms / iteration (wall) | test acc |\n|---|---|---|---|---|---|")
    rows = [("kdscale linear_probe (torch, 1 thread)",
             lambda: (lambda p: (p.test_acc, p.iterations))(linear_probe(train_x, train_y, test_x, test_y))),
            ("scikit-learn, BLAS/OpenMP at 1 thread", sklearn_fit(1)),
            ("scikit-learn, BLAS/OpenMP at their default", sklearn_fit(None))]
    for name, fit in rows:
        (acc, iterations), wall, cpu = timed(fit, repeats)
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {iterations} | {1e3 * wall / iterations:.1f} | {acc:.4f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", default="cnn1d:width=32")
    parser.add_argument("--teacher", default="cnn1d:width=32")
    parser.add_argument("--n-pool", type=int, default=4000, help="N: teacher samples and the probe's pool")
    parser.add_argument("--kappa", type=float, default=0.1)
    parser.add_argument("--ntk-probe", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trial-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probe-backends", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    loaded = data.load(DataSpec(), args.n_pool)
    x_pool, y_pool = torch.as_tensor(loaded.x_pool[:args.n_pool]), torch.as_tensor(loaded.y_pool[:args.n_pool])
    x_test, y_test = torch.as_tensor(loaded.x_test), torch.as_tensor(loaded.y_test)
    num_classes = loaded.info.num_classes
    _, recipe = default_recipes("mnist1d")
    student_spec, teacher_spec = ModelSpec.parse(args.student), ModelSpec.parse(args.teacher)

    started = time.perf_counter()
    teacher = train(teacher_spec, ObjectiveSpec(name="lt"), recipe, 1,
                    TrainData(x_pool, y_pool, x_test, y_test), num_classes).model.eval()
    teacher_s = time.perf_counter() - started
    with torch.no_grad():
        teacher_train, teacher_test = teacher(x_pool), teacher(x_test)
    m = int(round(args.kappa * args.n_pool))
    trial_data = TrainData(x_pool[:m], y_pool[:m], x_test, y_test, teacher_train[:m], teacher_test)
    result, trial_wall, trial_cpu = timed(
        lambda: train(student_spec, ObjectiveSpec(name="kd", tau=4.0), recipe, 0, trial_data, num_classes),
        args.trial_repeats)
    student = result.model.eval()
    teacher_acc = (teacher_test.argmax(1) == y_test).float().mean().item()

    values: dict[str, str] = {}
    cache: dict[str, torch.Tensor] = {}

    def features_test():
        cache["s"], cache["t"] = features_of(student, x_test), features_of(teacher, x_test)

    def features_pool():
        cache["pool"] = features_of(student, x_pool)

    steps = [("features_test", features_test),
             ("linear_cka", lambda: values.__setitem__("linear_cka", f"{linear_cka(cache['s'], cache['t']):.4f}")),
             ("minibatch_cka", lambda: values.__setitem__(
                 "minibatch_cka", f"{minibatch_cka(cache['s'], cache['t'], batch_size=500):.4f}")),
             ("feature_align", lambda: values.__setitem__(
                 "feature_align", "n/a (widths differ)" if cache["s"].shape[1] != cache["t"].shape[1] else
                 f"{feature_alignment(cache['s'], cache['t']):.4f} (centred "
                 f"{feature_alignment(cache['s'], cache['t'], center=True):.4f})")),
             ("spectrum", lambda: values.__setitem__("spectrum", "effective rank {:.1f}, participation ratio {:.1f}"
                                                     .format(*(lambda s: (s.effective_rank, s.participation_ratio))(
                                                         feature_spectrum(cache["s"]))))),
             ("features_pool", features_pool),
             ("linear_probe", lambda: values.__setitem__("linear_probe", "test acc {:.4f} in {} iterations".format(
                 *(lambda p: (p.test_acc, p.iterations))(linear_probe(cache["pool"], y_pool, cache["s"], y_test))))),
             ("ntk_alignment", lambda: values.__setitem__(
                 "ntk_alignment", f"{ntk_alignment(student, teacher, x_test[:args.ntk_probe]):.4f}"))]
    # a first call of each step outside the timing: one-off imports (torch.optim's first step imports
    # torch._dynamo, about 1 s, which a trial has already paid) and allocator warm-up
    for _, fn in steps:
        fn()
    timings = [(name, *timed(fn, args.repeats)[1:]) for name, fn in steps]

    print(f"# representation metrics cost, {datetime.date.today()}, {platform.node() or 'unknown host'}: "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"Python {platform.python_version()}")
    print(f"# student {student_spec.label} ({models.count_params(student):,} params, D = {cache['s'].shape[1]}), "
          f"teacher {teacher_spec.label} ({models.count_params(teacher):,} params, D = {cache['t'].shape[1]}, "
          f"test acc {teacher_acc:.4f}, trained in {teacher_s:.1f} s); N = {args.n_pool}, M = {m}, "
          f"test {len(x_test)}, NTK probe {args.ntk_probe}")
    print(f"# one default student trial (kd tau=4, {recipe.steps} steps): wall {trial_wall:.2f} s, "
          f"cpu {trial_cpu:.2f} s (median of {args.trial_repeats}); student test acc "
          f"{result.metrics['test_acc']:.4f}")
    print("\n| step | wall s | cpu s | % of trial (wall) | value |\n|---|---|---|---|---|")
    total_wall = total_cpu = 0.0
    for name, wall, cpu in timings:
        if name not in NOT_IN_TOTAL:
            total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        label = name + (" (not in total)" if name in NOT_IN_TOTAL else "")
        print(f"| {label} | {wall:.4f} | {cpu:.4f} | {100 * wall / trial_wall:.1f}% | {values.get(name, '')} |")
    print(f"| **total** | **{total_wall:.3f}** | **{total_cpu:.3f}** | **{100 * total_wall / trial_wall:.1f}%** | |")

    # The same metrics for an lt student (same M, seed and recipe) and an untrained one, so the
    # values above have something to be compared with.
    lt_student = train(student_spec, ObjectiveSpec(name="lt"), recipe, 0, trial_data, num_classes).model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        untrained = models.build(student_spec, tuple(x_pool.shape[1:]), num_classes).eval()
    print("\nthe same metrics for other students (reference values; CKA, FA and NTK alignment to the teacher):")
    print("| student | test acc | linear CKA | FA (centred) | probe test acc | NTK alignment |\n|---|---|---|---|---|---|")
    for name, model in (("kd (the trial above)", student), ("lt, same M and recipe", lt_student),
                        ("untrained", untrained)):
        f_test, f_pool = features_of(model, x_test), features_of(model, x_pool)
        with torch.no_grad():
            acc = (model(x_test).argmax(1) == y_test).float().mean().item()
        fa = ("n/a" if f_test.shape[1] != cache["t"].shape[1] else
              f"{feature_alignment(f_test, cache['t']):.3f} ({feature_alignment(f_test, cache['t'], center=True):.3f})")
        print(f"| {name} | {acc:.4f} | {linear_cka(f_test, cache['t']):.3f} | {fa} | "
              f"{linear_probe(f_pool, y_pool, f_test, y_test).test_acc:.4f} | "
              f"{ntk_alignment(model, teacher, x_test[:args.ntk_probe]):.3f} |")

    if args.probe_backends:
        probe_backends(cache["pool"].float(), y_pool, cache["s"].float(), y_test, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
