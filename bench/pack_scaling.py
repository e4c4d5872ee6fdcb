"""How much a bigger pack saves: the trainer's time per student-step against the pack's size.

    python bench/pack_scaling.py                              # cnn1d-4, -16, -64; packs 1 to 32
    python bench/pack_scaling.py --widths 16 --packs 1 8 16 64 --steps 200 --repeats 5
    python bench/pack_scaling.py --forward both --packs 4 8 16   # the family's packed forward vs vmap
    python bench/pack_scaling.py --loss both --mix kd --widths 16  # grouped losses vs one per student

Each pack trains lt students of one MNIST-1D-shaped model (random inputs of shape (40,), 10
classes, M = 1600 samples each, batch 128, SGD with momentum: the main job's student recipe, one
learning rate) for --steps steps through `kdscale.train.train_students`, on one torch thread, as
an engine worker does. Printed per (width, pack size): ms per student-step (the pack's wall time
over pack size x steps) and its ratio to a pack of 1, the median over --repeats rounds whose
order rotates, so a load change hits every size alike.

What it answers (issue 16): whether packs larger than the engine's (MAX_PACK students of one
configuration) would train faster per student. A pack shares one Python dispatch per step among
its students; once the convolution kernels dominate, a bigger pack costs in proportion.

`--forward both` times each pack twice in the same round, through the model family's own packed
forward (`packed_logits`: cnn1d's grouped convolutions, the default) and through vmap of the
model's forward (kdscale.train.students.FAMILY_FORWARD off), and prints the ratio. `--loss both`
does the same for the pack's losses: lt and kd computed over the stacked logits of the students of
one objective (`kdscale.objectives.pack_loss`, the default) against one call of `loss` per student
(GROUPED_LOSS off). `--mix kd` makes the pack
the main job's: one student in five lt, the others kd at tau 4 from fixed random teacher logits.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import torch


def pack_time(width: int, size: int, steps: int, variant: str = "family", mix: str = "lt") -> float:
    """Wall seconds of one pack of `size` students of cnn1d-`width` (all lt, or the main job's mix of
    lt and kd) for `steps` steps. `variant`: "family" or "grouped" runs the trainer's default (the
    family's packed forward, grouped losses), "vmap" vmaps the model's forward instead, "loop" calls
    the loss once per student instead."""
    from kdscale import objectives
    from kdscale.config import ModelSpec, ObjectiveSpec
    from kdscale.recipes import default_recipes
    from kdscale.train import TrainData, students, train_students

    students.FAMILY_FORWARD = variant != "vmap"
    objectives.GROUPED_LOSS = variant != "loop"
    specs = [ObjectiveSpec("lt") if mix == "lt" or s % 5 == 0 else ObjectiveSpec("kd", tau=4.0) for s in range(size)]

    recipe = default_recipes("mnist1d")[1].with_budget(steps=steps)
    gen = torch.Generator().manual_seed(size)
    datas = [TrainData(torch.randn(1600, 40, generator=gen), torch.randint(0, 10, (1600,), generator=gen),
                       torch.randn(200, 40, generator=gen), torch.randint(0, 10, (200,), generator=gen),
                       3 * torch.randn(1600, 10, generator=gen)) for _ in range(size)]
    started = time.perf_counter()
    train_students(ModelSpec("cnn1d", width), specs, recipe, list(range(size)), datas, 10, max_reports=1)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", type=int, default=[4, 16, 64])
    parser.add_argument("--packs", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--forward", choices=("family", "vmap", "both"), default="family",
                        help="a pack's forward: the family's packed_logits, vmap, or both side by side")
    parser.add_argument("--loss", choices=("grouped", "loop", "both"), default="grouped",
                        help="a pack's losses: grouped per objective, one call per student, or both")
    parser.add_argument("--mix", choices=("lt", "kd"), default="lt",
                        help="the pack's objectives: all lt, or one in five lt and the others kd (the main job's)")
    args = parser.parse_args()
    if args.forward != "family" and args.loss != "grouped":
        parser.error("change one thing at a time: --forward or --loss")
    variants = {"both": ("family", "vmap"), "vmap": ("vmap",)}.get(args.forward) or \
        {"both": ("grouped", "loop"), "loop": ("loop",)}.get(args.loss) or ("family",)
    torch.set_num_threads(1)
    print(f"# {datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"1 thread, {args.steps} steps, median of {args.repeats}, forward: {args.forward}, loss: {args.loss}, "
          f"objectives: {args.mix}", flush=True)
    pack_time(args.widths[0], 2, 5)  # warm-up: imports and first kernels
    heads = [f"ms / student-step ({f})" for f in variants] + ["vs pack of 1"] + \
        ([f"{variants[0]} / {variants[1]}"] if len(variants) > 1 else [])
    print("| model | pack | " + " | ".join(heads) + " |\n|" + "---|" * (2 + len(heads)))
    for width in args.widths:
        per_step = {(size, f): [] for size in args.packs for f in variants}
        for repeat in range(args.repeats):
            order = args.packs[repeat % len(args.packs):] + args.packs[:repeat % len(args.packs)]
            for size in order:
                for v in (variants if repeat % 2 == 0 else variants[::-1]):
                    per_step[size, v].append(1000 * pack_time(width, size, args.steps, v, args.mix) / (size * args.steps))
        ms = {key: statistics.median(values) for key, values in per_step.items()}
        alone = ms[min(args.packs), variants[0]]
        for size in args.packs:
            cells = [f"{ms[size, f]:.3f}" for f in variants] + [f"{ms[size, variants[0]] / alone:.2f}"]
            if len(variants) > 1:
                cells.append(f"{ms[size, variants[0]] / ms[size, variants[1]]:.2f}")
            print(f"| cnn1d-{width} | {size} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
