"""Students per hour: kdscale's trainer (alone and packed) against a loop written the paper code's way.

    python bench/gpu_throughput.py                       # the GPU if there is one, else the CPU
    python bench/gpu_throughput.py --steps 100 --pack 4  # shorter
    python bench/gpu_throughput.py --data-root DIR       # real CIFAR-10 files (DIR/cifar-10-batches-py)

Two workloads, each a kd student at kappa = 0.1 with a fixed teacher:
  mnist1d   cnn1d-32 teacher, cnn1d-16 student, MNIST-1D (N = 4000, M = 400)
  cifar     the paper's vanilla CNN (cnn2d width 20) as student, cnn2d width 40 teacher, on
            CIFAR-10 from --data-root if given, else random tensors of CIFAR's shape
            (N = 50,000, M = 5,000: throughput does not depend on the pixels)
Three ways to train the same number of steps:
  paper     a torch DataLoader over a TensorDataset (shuffle, `--workers` worker processes) and the
            teacher's forward pass on every step, as the paper's code does
  kdscale   kdscale.train.train: tensors indexed on the device, teacher logits computed once
  packed    kdscale.train.train_students: `--pack` students of different seeds in one vmapped step
Printed: seconds per student and students per hour for each, and the ratios to `paper`.
The teacher is not trained (random weights): its forward cost is what matters here.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F


def random_split(shape: tuple[int, ...], n_pool: int, n_test: int, seed: int = 0):
    """Random inputs and labels of one sample `shape`, 10 classes: (x_pool, y_pool, x_test, y_test).
    Throughput does not depend on the pixels."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n_pool, *shape, generator=gen), torch.randint(0, 10, (n_pool,), generator=gen),
            torch.randn(n_test, *shape, generator=gen), torch.randint(0, 10, (n_test,), generator=gen))


def workload(name: str, data_root: str | None, device: torch.device, n_teacher: int | None = None,
             n_test: int | None = None, random_data: bool = False):
    """(teacher model, student spec, TrainData per seed builder, description).

    `n_teacher` is N (default 4000 for mnist1d, 50,000 for cifar; kappa = 0.1 either way), `n_test`
    the test samples (default: the data set's, 2000 for random tensors); `random_data` takes random
    tensors of the data set's shape instead of its samples (bench/gpu_check.py, where a machine
    lacks the `mnist1d` package).
    """
    from kdscale import data, models
    from kdscale.config import DataSpec, ModelSpec

    if name == "mnist1d":
        n_teacher = n_teacher or 4000
        if random_data:
            x_pool, y_pool, x_test, y_test = random_split((1, 40), n_teacher, n_test or 2000)
            source = "random tensors of MNIST-1D's shape"
        else:
            loaded = data.load(DataSpec(n_teacher=n_teacher, n_test=n_test), n_teacher)
            x_pool, y_pool, x_test, y_test = (torch.as_tensor(a) for a in
                                              (loaded.x_pool, loaded.y_pool, loaded.x_test, loaded.y_test))
            source = "MNIST-1D"
        teacher_spec, student = ModelSpec.parse("cnn1d:width=32"), ModelSpec.parse("cnn1d:width=16")
    else:
        n_teacher = n_teacher or 50_000
        if data_root and not random_data:  # real files, or one line saying what is missing where
            loaded = data.load(DataSpec(name="cifar10", n_teacher=n_teacher, root=data_root), n_teacher)
            x_pool, y_pool, x_test, y_test = (torch.as_tensor(a) for a in
                                              (loaded.x_pool, loaded.y_pool, loaded.x_test, loaded.y_test))
            if n_test:
                x_test, y_test = x_test[:n_test], y_test[:n_test]
            source = f"CIFAR-10 files in {data_root}"
        else:  # no files given: random tensors of CIFAR's shape
            x_pool, y_pool, x_test, y_test = random_split((3, 32, 32), n_teacher, n_test or 2000)
            source = "random tensors of CIFAR-10's shape"
        teacher_spec, student = ModelSpec.parse("cnn2d:width=40"), ModelSpec.parse("cnn2d:width=20")
    shape = tuple(x_pool.shape[1:])
    torch.manual_seed(0)
    teacher = models.build(teacher_spec, shape, 10).to(device).eval()
    m = n_teacher // 10  # kappa = 0.1
    x_test, y_test = x_test.to(device), y_test.to(device)
    teacher_test = []  # the teacher's test logits, computed once for every seed

    def datas(seeds):
        from kdscale.train import TrainData, predict

        if not teacher_test:
            teacher_test.append(predict(teacher, x_test))
        out = []
        for seed in seeds:
            idx = data.student_indices(y_pool.numpy(), n_teacher, m, seed)
            x, y = x_pool[idx].to(device), y_pool[idx].to(device)
            out.append(TrainData(x, y, x_test, y_test, predict(teacher, x), teacher_test[0]))
        return out
    return teacher, student, datas, f"{source}; teacher {teacher_spec.label}, student {student.label}, M = {m}"


def paper_loop(teacher, student_spec, train_data, steps: int, batch: int, workers: int, device) -> float:
    """The paper code's way: DataLoader batches, teacher forward on every step (kd at tau = 4; with
    `teacher` None, lt: cross-entropy with the labels, no teacher). Returns seconds."""
    from torch.utils.data import DataLoader, TensorDataset

    from kdscale import models

    torch.manual_seed(0)
    model = models.build(student_spec, tuple(train_data.x_train.shape[1:]), 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = DataLoader(TensorDataset(train_data.x_train.cpu(), train_data.y_train.cpu()), batch_size=batch,
                        shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    start, step, tau = time.perf_counter(), 0, 4.0
    while step < steps:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(x)
            logits = model(x)
            if teacher is None:
                loss = F.cross_entropy(logits, y)
            else:
                loss = tau * tau * F.kl_div(F.log_softmax(logits / tau, 1), F.log_softmax(teacher_logits / tau, 1),
                                            reduction="batchmean", log_target=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pack", type=int, default=4, help="students in a pack")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the paper-style loop (its code: 4)")
    parser.add_argument("--data-root", help="a directory holding cifar-10-batches-py/")
    parser.add_argument("--workloads", nargs="+", default=["mnist1d", "cifar"], choices=("mnist1d", "cifar"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()

    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.errors import SpecError
    from kdscale.train import train, train_students

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps at batch {args.batch}")
    recipe = RecipeSpec(lr=0.02, steps=args.steps, batch_size=args.batch)
    objective = ObjectiveSpec("kd", tau=4.0)
    try:  # every workload's data before any timing: a missing file is one line, before the compute
        prepared = [(which, *workload(which, args.data_root, device)) for which in args.workloads]
    except SpecError as error:
        sys.exit(f"gpu_throughput: error: {error}")
    for which, teacher, student, datas, description in prepared:
        print(f"\n{which}: {description}")
        seeds = list(range(args.pack))
        train_datas = datas(seeds)
        train(student, objective, RecipeSpec(lr=0.02, steps=5, batch_size=args.batch), 0, train_datas[0], 10)  # warm-up
        paper = paper_loop(teacher, student, train_datas[0], args.steps, args.batch, args.workers, device)
        alone = train(student, objective, recipe, 0, train_datas[0], 10, max_reports=1).metrics["wall_s"]
        start = time.perf_counter()
        train_students(student, objective, recipe, seeds, train_datas, 10, max_reports=1)
        packed = (time.perf_counter() - start) / len(seeds)
        print(f"  {'way':<28} {'s / student':>12} {'students / hour':>16} {'vs paper':>9}")
        for label, seconds in ((f"paper (DataLoader, {args.workers} workers)", paper), ("kdscale", alone),
                               (f"kdscale packed x{len(seeds)}", packed)):
            print(f"  {label:<28} {seconds:12.2f} {3600 / seconds:16.0f} {paper / seconds:8.2f}x")


if __name__ == "__main__":
    main()
