"""How much a bigger pack saves: the trainer's time per student-step against the pack's size.

    python bench/pack_scaling.py                              # cnn1d-4, -16, -64; packs 1 to 32
    python bench/pack_scaling.py --widths 16 --packs 1 8 16 64 --steps 200 --repeats 5

Each pack trains lt students of one MNIST-1D-shaped model (random inputs of shape (40,), 10
classes, M = 1600 samples each, batch 128, SGD with momentum: the main job's student recipe, one
learning rate) for --steps steps through `kdscale.train.train_students`, on one torch thread, as
an engine worker does. Printed per (width, pack size): ms per student-step (the pack's wall time
over pack size x steps) and its ratio to a pack of 1, the median over --repeats rounds whose
order rotates, so a load change hits every size alike.

What it answers (issue 16): whether packs larger than the engine's (MAX_PACK students of one
configuration) would train faster per student. A pack shares one Python dispatch per step among
its students; once the convolution kernels dominate, a bigger pack costs in proportion.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch


def pack_time(width: int, size: int, steps: int) -> float:
    """Wall seconds of one pack of `size` lt students of cnn1d-`width` for `steps` steps."""
    from kdscale.config import ModelSpec, ObjectiveSpec
    from kdscale.recipes import default_recipes
    from kdscale.train import TrainData, train_students

    recipe = default_recipes("mnist1d")[1].with_budget(steps=steps)
    gen = torch.Generator().manual_seed(size)
    datas = [TrainData(torch.randn(1600, 40, generator=gen), torch.randint(0, 10, (1600,), generator=gen),
                       torch.randn(200, 40, generator=gen), torch.randint(0, 10, (200,), generator=gen))
             for _ in range(size)]
    started = time.perf_counter()
    train_students(ModelSpec("cnn1d", width), ObjectiveSpec("lt"), recipe, list(range(size)), datas, 10, max_reports=1)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread, {args.steps} steps, median of {args.repeats}", flush=True)
    pack_time(args.widths[0], 2, 5)  # warm-up: imports and first kernels
    print("| model | pack | ms / student-step | vs pack of 1 |\n|---|---|---|---|")
    for width in args.widths:
        per_step: dict[int, list[float]] = {size: [] for size in args.packs}
        for repeat in range(args.repeats):
            order = args.packs[repeat % len(args.packs):] + args.packs[:repeat % len(args.packs)]
            for size in order:
                per_step[size].append(1000 * pack_time(width, size, args.steps) / (size * args.steps))
        alone = statistics.median(per_step[min(args.packs)])
        for size in args.packs:
            ms = statistics.median(per_step[size])
            print(f"| cnn1d-{width} | {size} | {ms:.3f} | {ms / alone:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
