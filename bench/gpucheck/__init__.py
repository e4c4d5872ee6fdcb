"""The parts of bench/gpu_check.py (issue 21), which runs them in turn; each part is a function
`part_NAME(ck, fig)` that fills `fig`, its object in the JSON, and raises budget.Skip when it cannot run.

  1. environment     torch, device, CUDA capability, GPU memory, CPUs, date, git commit; a matmul's
                     TFLOP/s (4096 x 4096 in fp32, tf32 and bf16 on a GPU; 2048 x 2048 fp32 on a CPU)
  2. trial           one real trial in fp32 and in bf16 (RecipeSpec(precision="bf16")): MNIST-1D
                     (N = 4000, generated offline by `mnist1d`), cnn1d-32 teacher trained briefly,
                     cnn1d-16 kd student at kappa 0.1 (M = 400): accuracy, wall time, steps/s, and
                     whether bf16's student accuracy is within 0.05 of fp32's
  3. throughput      students per hour as bench/gpu_throughput.py measures them, MNIST-1D and the
                     paper's vanilla CNN (cnn2d-40 teacher, cnn2d-20 student) on CIFAR-shaped random
                     tensors: the paper-style loop (DataLoader, teacher forward every step; 0 and 4
                     workers on a GPU), kdscale alone, kdscale packed x2/4/8/16 (capped by memory and
                     time); useful FLOP/s of each (student forward FLOPs x 3 x samples seen, plus the
                     teacher's forward where it runs every step) and its share of the matmul rate
  4. grid            a small Fig. 7-shaped grid driven directly (no Ray): cnn2d 40>20 and 20>40 on
                     N = 5000 random CIFAR-shaped samples, kappa 0.1 and 1, lt and kd, 2 seeds, packed
                     per (pair, kappa) as the engine packs (seeds x objectives in one train_students
                     call): wall time and students per hour (and unpacked, if time allows)
  5. pack_threshold  (packed time per student) / (alone time per student) at pack 4 for cnn1d 16/64/256
                     and cnn2d 10/20/40, by forward FLOPs per sample (kdscale.engine.trials.make_packs'
                     measure); the largest size where packing still wins by >= 10% is the suggested
                     PACK_MAX_FLOPS for the device
  6. projection      the paper's CIFAR grid (assumptions in the JSON: the repo's image pairs, kappas,
                     paper-cifar10 recipe, CIFAR-5m N) in FLOPs, over steady-state seconds per sample
                     measured here per model: GPU-hours through kdscale (packed where faster) against
                     the paper's code path
  7. paths           each path of the trainer on the device (batch norm, ResNet-18 alone then packed,
                     ViT, augmented kd, stacked learning rates, bf16, own test sets, GPT and RNN
                     tokens): a pack against its students alone, within a tolerance (parts_paths)

Modules: budget (the deadline, its timer, the cost model, each part's smallest estimate), common
(sizes, the JSON writer, the Check every part takes, model helpers), parts_env (1), parts_train
(2-4), parts_pack (5, 6), parts_paths (7); here, `run_part`, one part within its share of the
budget. The package imports as `gpucheck` with bench/ on sys.path (the script puts it there) and
imports torch and kdscale only inside functions.
"""
import traceback

from .budget import Skip, smallest_estimate
from .common import Check, has_skips
from .parts_env import part_environment
from .parts_pack import part_pack_threshold, part_projection
from .parts_paths import part_paths
from .parts_train import part_grid, part_throughput, part_trial

PART_FUNCTIONS = {"environment": part_environment, "trial": part_trial, "throughput": part_throughput,
                  "grid": part_grid, "pack_threshold": part_pack_threshold, "projection": part_projection,
                  "paths": part_paths}
PARTS = tuple(PART_FUNCTIONS)


def run_part(ck: Check, i: int, part: str, fig: dict) -> None:
    """One part into `fig`, cut by the timer at the part's end; its failure costs no other part."""
    budget = ck.budget
    # later parts' smallest needs are held back, but never more than half the time left:
    # the earlier parts (environment, the trial, throughput) matter most
    budget.keep = min(sum(smallest_estimate(ck, later) for later in PARTS[i + 1:]),
                      0.5 * max(0.0, budget.left() - budget.final_reserve))
    ck.rec.say(f"\n[{i + 1}/{len(PARTS)}] {part} ({budget.left():.0f} s left, "
               f"{max(0.0, budget.spare()):.0f} s for this part)")
    try:
        budget.check(smallest_estimate(ck, part), part)
        budget.arm(budget.part_end())  # a part that overruns is cut, not the later ones
        PART_FUNCTIONS[part](ck, fig)
        budget.stop()
        fig["status"] = "partial" if has_skips(fig) else "ok"
    except Skip as skip:
        fig.update(status="skipped", note=str(skip))
    except Exception as error:  # one part's failure must not cost the others
        fig.update(status="error", note=f"{type(error).__name__}: {error}")
        ck.rec.say(traceback.format_exc().rstrip())
