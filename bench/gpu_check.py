"""GPU figures in one run: kdscale's CUDA path measured once, every figure into one JSON file (issue 21).

    python bench/gpu_check.py --out DIR                           # the GPU if there is one, else the CPU
    python bench/gpu_check.py --out DIR --device cpu --quick      # CPU smoke run, every part at a few steps
    python bench/gpu_check.py --out DIR --device cuda --budget-s 480

Writes DIR/gpu_check.json (every figure) and DIR/gpu_check.log (what it printed). It drives kdscale's
trainer directly (kdscale.train, .models, .data, .config; the students-per-hour loops of
bench/gpu_throughput.py) and never imports Ray, MLflow or Optuna; the JSON's `forbidden_imports`
says, from sys.modules at the end, that none of them was imported. Six parts, each timed, each
written into the JSON (atomically: a temporary file, then one rename) the moment it finishes, so a
run cut short keeps the finished parts:

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
                     and cnn2d 10/20/40, by forward FLOPs per sample (kdscale.engine.driver.make_packs'
                     measure); the largest size where packing still wins by >= 10% is the suggested
                     PACK_MAX_FLOPS for the device
  6. projection      the paper's CIFAR grid (assumptions in the JSON: the repo's image pairs, kappas,
                     paper-cifar10 recipe, CIFAR-5m N) in FLOPs, over steady-state seconds per sample
                     measured here per model: GPU-hours through kdscale (packed where faster) against
                     the paper's code path

Budget: `--budget-s` (default 480) counts from the script's start. Before each part and each
measurement in it, the time it needs is estimated from what ran so far (a per-step overhead and a
FLOP rate fitted to every training run, priors from the matmul rate) with the smallest estimates of
the later parts held back; what cannot fit is skipped with a note in the JSON. A timer (SIGALRM)
cuts any measurement still running a few seconds before the deadline, so the script never passes
its budget. `--quick` shrinks every part to a few steps (a CPU smoke run).

On a lent GPU machine (NVIDIA H100/H200, 16 CPU cores, no network), from the repository root of the
working tree's copy, in one call of the device tool:

    run(command="PYTHONUNBUFFERED=1 python bench/gpu_check.py --out $OUT --device cuda", timeout_s=540)

No carry and no extra package need to travel: the script puts the repository root on sys.path itself
(kdscale need not be installed) and needs torch and numpy; MNIST-1D also needs the `mnist1d` package
(with scipy) and ResNet-18 torchvision. Where one is missing it says so in the JSON: part 2 is skipped,
part 3 takes random tensors of MNIST-1D's shape, part 6 uses ResNet-18 FLOPs measured here with
kdscale.train.forward_flops and skips its ResNet-18 timings. $OUT then holds gpu_check.json and
gpu_check.log.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # the budget's clock starts before torch is imported

import argparse  # noqa: E402
import ast  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
import functools  # noqa: E402
from dataclasses import dataclass, field, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for _path in (str(REPO), str(HERE)):  # kdscale from this tree (installed or not), gpu_throughput beside us
    if _path not in sys.path:
        sys.path.insert(0, _path)

PARTS = ("environment", "trial", "throughput", "grid", "pack_threshold", "projection")
FORBIDDEN = ("ray", "mlflow", "optuna")
NUM_CLASSES = 10
# ResNet-18 forward FLOPs per 3x32x32 sample (kdscale.train.forward_flops, torch's flop counter), for
# a machine without torchvision; measured on the project's CPU machine, 2026-11-24.
RESNET18_FLOPS = {16: 70_093_312.0, 64: 1_110_845_440.0}


# --- sizes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    """How big each part runs: `full` on a GPU, `quick` a CPU smoke run, `tiny` the tests."""
    name: str
    matmul_n: int  # matrix side on a GPU; a CPU takes min(matmul_n, 2048)
    matmul_min_s: float  # seconds each matmul rate is measured for
    trial_n: int  # part 2: N (kappa 0.1 of it)
    trial_teacher_epochs: int
    trial_student_steps: int | None  # None: the MNIST-1D student recipe's 1500
    tp_steps: int  # part 3
    tp_batch: int
    tp_packs: tuple[int, ...]
    tp_cifar_n: int
    tp_test: int
    grid_n: int  # part 4
    grid_test: int
    grid_batch: int
    grid_teacher_epochs: int
    grid_student_epochs: int
    thr_models: tuple[str, ...]  # part 5
    thr_m: int
    thr_batch: int
    thr_steps: tuple[int, int]  # (fewest, most) steps of a measurement
    thr_target_s: float  # seconds a measurement aims at, between those bounds
    thr_repeats: int
    proj_batch: int  # part 6
    proj_steps: int  # steady state: time at n and 3n steps (after a warm-up)
    proj_pack: int
    grid_unpacked: bool = True  # part 4 also trains the grid one student at a time, if time allows
    proj_resnet: bool = True  # part 6 times the ResNet-18 students (else their figures come from part 3)


THR_MODELS = ("cnn1d:width=16", "cnn1d:width=64", "cnn1d:width=256", "cnn2d:width=10", "cnn2d:width=20",
              "cnn2d:width=40")
SIZES = {
    "full": Size("full", 4096, 1.0, 4000, 20, None, 300, 128, (2, 4, 8, 16), 50_000, 2000,
                 5000, 1000, 256, 10, 10, THR_MODELS, 1024, 128, (20, 300), 1.5, 2, 256, 10, 4),
    "quick": Size("quick", 1024, 0.3, 4000, 2, 60, 10, 32, (2, 4, 8, 16), 2000, 256,
                  500, 100, 32, 1, 1, THR_MODELS, 128, 32, (5, 5), 0.0, 1, 4, 1, 2),
    "tiny": Size("tiny", 256, 0.05, 4000, 1, 5, 3, 16, (2,), 200, 64,
                 100, 32, 16, 1, 1, ("cnn1d:width=16", "cnn2d:width=10"), 32, 16, (3, 3), 0.0, 1, 2, 1, 2,
                 grid_unpacked=False, proj_resnet=False),
}


# --- budget, costs, records ---------------------------------------------------------------------


class OutOfTime(BaseException):
    """The budget's deadline came during a measurement. A BaseException, so that no `except Exception`
    on the way (torch's, the DataLoader's, this script's) swallows it."""


class Skip(Exception):
    """A part or measurement that cannot run here; its message is the note."""


class Budget:
    """The deadline, the time held back for later parts, and a timer that cuts a measurement at the end."""

    def __init__(self, seconds: float, start: float, final_reserve_s: float):
        self.start, self.deadline, self.final_reserve = start, start + seconds, final_reserve_s
        self.keep = 0.0  # seconds held back for the parts still to come
        self._previous = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def spare(self) -> float:
        """Seconds this part may still spend."""
        return self.left() - self.keep - self.final_reserve

    def fits(self, estimate: float) -> bool:
        return estimate <= self.spare()

    def check(self, estimate: float, what: str) -> None:
        if not self.fits(estimate):
            raise Skip(f"{what}: estimated {estimate:.1f} s, {max(0.0, self.spare()):.1f} s left for it")

    def part_end(self) -> float:
        """When the part starting now must stop: the later parts' share and the final reserve stay free."""
        return self.deadline - self.final_reserve - self.keep

    def over(self) -> bool:
        """Is the whole budget spent (but the final reserve)?"""
        return self.left() <= self.final_reserve + 0.5

    def arm(self, until: float) -> None:
        """SIGALRM at `until` (perf_counter time) raises OutOfTime in the main thread; once."""
        if threading.current_thread() is not threading.main_thread():
            return
        if self._previous is None:
            def ring(signum, frame):
                raise OutOfTime("the part's share of the budget")
            self._previous = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, max(0.01, until - time.perf_counter()))

    def stop(self) -> None:
        """The timer off (its handler stays)."""
        if self._previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def disarm(self) -> None:
        if self._previous is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)
        self._previous = None


class Costs:
    """Seconds of a training run from what ran so far: steps x (overhead + FLOPs per step / rate).

    Every timed training run is an observation (FLOPs per step, seconds per step, packed or not).
    The rate is the best FLOP/s any run reached (a step takes at least FLOPs / rate); the per-step
    overhead, one student's or a pack's, is the median step time of the runs that rate leaves
    overhead-bound (FLOPs / rate under half the step). Priors until then: a quarter of the matmul
    rate and a few milliseconds a step."""
    SAFETY = 1.5

    def __init__(self, device_type: str):
        gpu = device_type == "cuda"
        self.rate = 5e12 if gpu else 2e10  # training FLOP/s until measured
        self.overhead = 4e-3 if gpu else 1.5e-3  # seconds per step of one student
        self.pack_overhead = 2 * self.overhead
        self.call = 1.0 if gpu else 0.3  # seconds per training call: model, first kernels, final evaluation
        self.obs: list[tuple[float, float, bool]] = []

    def from_matmul(self, fp32_flops: float) -> None:
        if not self.obs:
            self.rate = 0.25 * fp32_flops

    def observe(self, flops_per_step: float, steps: int, seconds: float, packed: bool = False,
                whole_call: bool = True) -> None:
        """One timed run; `whole_call`: its seconds include a training call's fixed cost (`call`)."""
        if steps <= 0 or seconds <= 0 or flops_per_step <= 0:
            return
        if whole_call:
            seconds = max(seconds - self.call, 0.5 * seconds)
        self.obs.append((flops_per_step, seconds / steps, packed))
        self.rate = max(f / t for f, t, _ in self.obs)
        for packs, name in ((False, "overhead"), (True, "pack_overhead")):
            bound = [t for f, t, p in self.obs if p == packs and f / self.rate < 0.5 * t]
            if bound:
                setattr(self, name, statistics.median(bound))
        if not any(p for _, _, p in self.obs):
            self.pack_overhead = max(self.pack_overhead, 2 * self.overhead)

    def step_s(self, flops_per_step: float, packed: bool = False) -> float:
        return (self.pack_overhead if packed else self.overhead) + flops_per_step / self.rate

    def train_s(self, flops_per_step: float, steps: int, packed: bool = False, forward_flops: float = 0.0,
                calls: int = 1) -> float:
        """Estimated seconds of `steps` steps in all, over `calls` training calls, plus `forward_flops`
        of inference."""
        return self.SAFETY * (calls * self.call + steps * self.step_s(flops_per_step, packed)
                              + forward_flops / self.rate)

    def summary(self) -> dict:
        return {"overhead_ms_per_step": 1e3 * self.overhead, "pack_overhead_ms_per_step": 1e3 * self.pack_overhead,
                "training_tflops": self.rate / 1e12, "call_s": self.call, "observations": len(self.obs)}


def samples_seen(steps: int, batch: int, m: int) -> int:
    """Samples a loop over M samples in shuffled batches of `batch` (the last one partial) sees in `steps`."""
    batch = min(batch, m)
    per_epoch = math.ceil(m / batch)
    full, rest = divmod(steps, per_epoch)
    return full * m + rest * batch


def _clean(value: Any) -> Any:
    """JSON-able: floats rounded to 6 significant digits, NaN and infinity as None."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


class Recorder:
    """DIR/gpu_check.json, rewritten atomically after every part, and DIR/gpu_check.log, a copy of stdout."""

    def __init__(self, out: Path, echo: bool = True):
        out.mkdir(parents=True, exist_ok=True)
        self.json_path, self.echo = out / "gpu_check.json", echo
        self.log = open(out / "gpu_check.log", "w")
        self.data: dict[str, Any] = {}

    def say(self, text: str = "") -> None:
        if self.echo:
            print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def save(self) -> None:
        blocked = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
        if blocked:  # the deadline's timer waits until the file is whole
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            tmp = self.json_path.with_name(f".{self.json_path.name}.tmp")
            tmp.write_text(json.dumps(_clean(self.data), indent=1) + "\n")
            os.replace(tmp, self.json_path)
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    def close(self) -> None:
        self.log.close()


@dataclass
class Check:
    """What the parts share: device, sizes, budget, cost model, recorder, and figures later parts use."""
    device: Any  # torch.device
    size: Size
    budget: Budget
    costs: Costs
    rec: Recorder
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - start

    def free_bytes(self) -> float:
        if self.cuda:
            import torch

            return float(torch.cuda.mem_get_info()[0])
        try:
            return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 8e9


# --- helpers ------------------------------------------------------------------------------------


def module_available(name: str) -> str | None:
    """None if `name` imports, else why not (one line)."""
    try:
        __import__(name)
        return None
    except Exception as error:  # noqa: BLE001  # ImportError, or a dependency failing at import
        return f"{type(error).__name__}: {error}"


def git_commit(repo: Path) -> dict:
    """The checked-out commit: from `git` if it is there, else read from .git by hand."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            return {"commit": out.stdout.strip(), "source": "git",
                    "modified_files": len(status.stdout.splitlines()) if status.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        git = repo / ".git"
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return {"commit": head, "source": ".git/HEAD (detached)"}
        ref = head.split(":", 1)[1].strip()
        common = Path(git / (git / "commondir").read_text().strip()) if (git / "commondir").exists() else git
        for base in (git, common):
            if (base / ref).exists():
                return {"commit": (base / ref).read_text().strip(), "ref": ref, "source": ".git/HEAD"}
            packed = base / "packed-refs"
            if packed.exists():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return {"commit": line.split()[0], "ref": ref, "source": ".git/packed-refs"}
        return {"commit": None, "ref": ref, "source": ".git/HEAD (ref not found)"}
    except (OSError, IndexError):
        return {"commit": None, "source": "no git and no .git here"}


def repo_constant(relative: str, name: str, fallback: Any) -> tuple[Any, str]:
    """A module-level literal of a repo file, read without importing it (the engine imports Ray)."""
    path = REPO / relative
    try:
        for node in ast.parse(path.read_text()).body:
            targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
                return ast.literal_eval(node.value), f"{relative}: {name}"
    except (OSError, SyntaxError, ValueError):
        pass
    return fallback, f"assumed (not readable from {relative})"


def build(spec_text: str, shape: tuple[int, ...], device):
    from kdscale import models
    from kdscale.config import ModelSpec

    return models.build(ModelSpec.parse(spec_text), shape, NUM_CLASSES).to(device)


@functools.lru_cache(maxsize=None)
def fwd_flops(spec_text: str, shape: tuple[int, ...]) -> float:
    """Forward FLOPs per sample (kdscale.train.forward_flops), on the CPU; ResNet-18's from
    RESNET18_FLOPS where torchvision is missing."""
    import torch

    from kdscale.config import ModelSpec
    from kdscale.train import forward_flops

    if spec_text.startswith("resnet18") and module_available("torchvision"):
        width = ModelSpec.parse(spec_text).width
        if width in RESNET18_FLOPS and tuple(shape) == (3, 32, 32):
            return RESNET18_FLOPS[width]
    return forward_flops(build(spec_text, shape, "cpu"), torch.zeros(1, *shape))


def label(spec_text: str) -> str:
    from kdscale.config import ModelSpec

    return ModelSpec.parse(spec_text).label


# --- part 1: environment ------------------------------------------------------------------------


def matmul_tflops(ck: Check, n: int, dtype, min_s: float) -> float:
    import torch

    gen = torch.Generator(device=ck.device).manual_seed(0)
    a = torch.randn(n, n, device=ck.device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=ck.device, dtype=dtype, generator=gen)
    for _ in range(3):
        a @ b
    ck.sync()
    reps, per_round, start = 0, 10 if ck.cuda else 1, time.perf_counter()
    while True:
        for _ in range(per_round):
            a @ b
        ck.sync()
        reps += per_round
        elapsed = time.perf_counter() - start
        if elapsed >= min_s:
            return 2.0 * n ** 3 * reps / elapsed / 1e12


def part_environment(ck: Check, fig: dict) -> None:
    import numpy
    import torch

    fig.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
               python=platform.python_version(), platform=platform.platform(), numpy=numpy.__version__,
               device=str(ck.device), cpu_count=os.cpu_count(),
               cpus_usable=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
               torch_threads=torch.get_num_threads(),
               date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               git=git_commit(REPO), float32_matmul_precision=torch.get_float32_matmul_precision(),
               cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
               missing_packages={name: why for name in ("mnist1d", "torchvision", "scipy")
                                 if (why := module_available(name))})
    try:
        fig["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    if ck.cuda:
        props = torch.cuda.get_device_properties(ck.device)
        fig.update(device_name=props.name, cuda_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=props.total_memory / 2 ** 30, multiprocessors=props.multi_processor_count,
                   gpu_count=torch.cuda.device_count())
    else:
        name = platform.processor()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        fig["device_name"] = f"CPU: {name or 'unknown'}"
    n = ck.size.matmul_n if ck.cuda else min(ck.size.matmul_n, 2048)
    rates: dict[str, float] = {"fp32": matmul_tflops(ck, n, torch.float32, ck.size.matmul_min_s)}
    fig["matmul"] = {"n": n, "tflops": rates}
    if ck.cuda:
        precision = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("high")  # TF32 tensor cores, which cuDNN's convolutions use
            rates["tf32"] = matmul_tflops(ck, n, torch.float32, ck.size.matmul_min_s)
        finally:
            torch.set_float32_matmul_precision(precision)
        rates["bf16"] = matmul_tflops(ck, n, torch.bfloat16, ck.size.matmul_min_s)
    ck.state["matmul_fp32"] = rates["fp32"] * 1e12
    ck.costs.from_matmul(rates["fp32"] * 1e12)
    ck.rec.say(f"  {fig['device_name']}; torch {torch.__version__}; commit {fig['git'].get('commit')}")
    ck.rec.say("  matmul " + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in rates.items()) + f" at {n} x {n}")
    calibrate(ck, fig)


def calibrate(ck: Check, fig: dict) -> None:
    """Two short training runs (a small cnn1d, the vanilla CNN) that set the cost model's per-step
    overhead, FLOP rate and fixed cost per call before any part is estimated: time at n and 3n steps
    after a warm-up."""
    from gpu_throughput import random_split
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
    from kdscale.train import TrainData, train

    out, fixed = {}, []
    for text, shape, batch, steps in (("cnn1d:width=16", (1, 40), 128, 10),
                                      ("cnn2d:width=20", (3, 32, 32), 128 if ck.cuda else 32, 10 if ck.cuda else 3)):
        x, y, x_test, y_test = (t.to(ck.device) for t in random_split(shape, batch, batch, seed=5))
        spec, data = ModelSpec.parse(text), TrainData(x, y, x_test, y_test)

        def run(k: int) -> float:
            recipe = RecipeSpec(lr=0.01, steps=k, batch_size=batch)
            return ck.timed(lambda: train(spec, ObjectiveSpec("lt"), recipe, 0, data, NUM_CLASSES, max_reports=1))[1]
        run(2)  # warm-up
        t1, t3 = run(steps), run(3 * steps)
        per_step = max((t3 - t1) / (2 * steps), 1e-6)
        fixed.append(max(t1 - steps * per_step, 0.0))
        ck.costs.observe(3 * fwd_flops(text, shape) * batch, 2 * steps, t3 - t1, whole_call=False)
        out[label(text)] = {"batch": batch, "ms_per_step": 1e3 * per_step, "call_fixed_s": fixed[-1]}
    ck.costs.call = max(0.05, statistics.median(fixed))
    fig["calibration"] = {**out, "cost_model": ck.costs.summary()}
    ck.rec.say("  calibration: " + ", ".join(f"{k} {v['ms_per_step']:.2f} ms/step at batch {v['batch']}"
                                             for k, v in out.items()))


# --- part 2: one real trial, fp32 and bf16 --------------------------------------------------------


def part_trial(ck: Check, fig: dict) -> None:
    import torch

    from kdscale import data
    from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec
    from kdscale.recipes import RECIPES
    from kdscale.train import TrainData, predict, train

    if ck.state.get("no_mnist1d"):
        raise Skip(f"MNIST-1D cannot be generated here ({ck.state['no_mnist1d']})")
    size, n = ck.size, ck.size.trial_n
    m = n // 10
    teacher_spec, student_spec = ModelSpec.parse("cnn1d:width=32"), ModelSpec.parse("cnn1d:width=16")
    f_t, f_s = fwd_flops("cnn1d:width=32", (1, 40)), fwd_flops("cnn1d:width=16", (1, 40))
    t_recipe = RECIPES.get("mnist1d-teacher").with_budget(epochs=size.trial_teacher_epochs)
    s_recipe = RECIPES.get("mnist1d-student")
    if size.trial_student_steps:
        s_recipe = s_recipe.with_budget(steps=size.trial_student_steps)
    t_steps = t_recipe.epochs * math.ceil(n / t_recipe.batch_size)
    fig["setup"] = {"data": f"MNIST-1D, N = {n}, M = {m} (kappa 0.1)", "teacher": teacher_spec.label,
                    "student": student_spec.label, "objective": "kd tau=4 (tau^2 factor)",
                    "teacher_recipe": f"SGD lr {t_recipe.lr}, batch {t_recipe.batch_size}, {t_recipe.epochs} epochs "
                                      f"({t_steps} steps), cosine",
                    "student_recipe": f"SGD lr {s_recipe.lr}, batch {s_recipe.batch_size}, {s_recipe.steps} steps, "
                                      "cosine", "forward_flops": {"teacher": f_t, "student": f_s}}
    start = time.perf_counter()
    loaded = data.load(DataSpec(n_teacher=n), n)
    fig["data_s"] = time.perf_counter() - start
    x_pool, y_pool, x_test, y_test = (torch.as_tensor(a).to(ck.device) for a in
                                      (loaded.x_pool[:n], loaded.y_pool[:n], loaded.x_test, loaded.y_test))
    idx = torch.as_tensor(data.student_indices(loaded.y_pool[:n], n, m, 0)).to(ck.device)
    kd = ObjectiveSpec("kd", tau=4.0)
    for precision in ("fp32", "bf16"):
        # bf16 autocast on a CPU ran 4-10x slower than fp32 here (no bf16 units)
        slow = 1.0 if ck.cuda or precision == "fp32" else 10.0
        estimate = slow * (ck.costs.train_s(3 * f_t * t_recipe.batch_size, t_steps)
                           + ck.costs.train_s(3 * f_s * s_recipe.batch_size, s_recipe.steps))
        try:
            ck.budget.check(estimate, f"{precision} trial")
        except Skip as skip:
            fig[precision] = {"skipped": str(skip)}
            ck.rec.say(f"  {precision}: skipped: {skip}")
            continue
        t_rec, s_rec = replace(t_recipe, precision=precision), replace(s_recipe, precision=precision)
        teacher, t_wall = ck.timed(lambda: train(teacher_spec, ObjectiveSpec("lt"), t_rec, 0,
                                                 TrainData(x_pool, y_pool, x_test, y_test), NUM_CLASSES, max_reports=1))
        x, y = x_pool[idx], y_pool[idx]
        teacher_logits = (predict(teacher.model, x), predict(teacher.model, x_test))
        student, s_wall = ck.timed(lambda: train(student_spec, kd, s_rec, 0,
                                                 TrainData(x, y, x_test, y_test, *teacher_logits), NUM_CLASSES,
                                                 max_reports=1))
        if precision == "fp32":
            ck.costs.observe(3 * f_t * t_recipe.batch_size, teacher.metrics["steps"], t_wall)
            ck.costs.observe(3 * f_s * s_recipe.batch_size, student.metrics["steps"], s_wall)
        fig[precision] = {
            "teacher": {"status": teacher.status, "test_acc": teacher.metrics.get("test_acc"), "wall_s": t_wall,
                        "steps": teacher.metrics["steps"], "steps_per_s": teacher.metrics["steps"] / t_wall},
            "student": {"status": student.status, "test_acc": student.metrics.get("test_acc"),
                        "fidelity_test": student.metrics.get("fidelity_test"), "wall_s": s_wall,
                        "steps": student.metrics["steps"], "steps_per_s": student.metrics["steps"] / s_wall}}
        ck.rec.say(f"  {precision}: teacher acc {_fmt(teacher.metrics.get('test_acc'))} ({t_wall:.1f} s, "
                   f"{teacher.metrics['steps'] / t_wall:.0f} steps/s); kd student acc "
                   f"{_fmt(student.metrics.get('test_acc'))} ({s_wall:.1f} s, {student.metrics['steps'] / s_wall:.0f} "
                   "steps/s)")
        ck.rec.save()
    both = [fig.get(p, {}).get("student", {}).get("test_acc") for p in ("fp32", "bf16")]
    if all(a is not None for a in both):
        fig["bf16_minus_fp32_student_acc"] = both[1] - both[0]
        fig["bf16_within_0.05"] = abs(both[1] - both[0]) <= 0.05
        teachers = [fig[p]["teacher"]["test_acc"] for p in ("fp32", "bf16")]
        fig["bf16_minus_fp32_teacher_acc"] = teachers[1] - teachers[0]
        fig["bf16_speed_ratio"] = fig["fp32"]["student"]["wall_s"] / fig["bf16"]["student"]["wall_s"]
        ck.rec.say(f"  bf16 - fp32 student accuracy {both[1] - both[0]:+.4f}: "
                   f"{'within' if fig['bf16_within_0.05'] else 'NOT within'} 0.05")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --- part 3: students per hour ---------------------------------------------------------------------


def part_throughput(ck: Check, fig: dict) -> None:
    import torch

    from gpu_throughput import paper_loop, workload
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.train import forward_flops, train, train_students

    size = ck.size
    workers_list = (0, 4) if ck.cuda else (0,)
    kd = ObjectiveSpec("kd", tau=4.0)
    rows: list[dict] = []
    fig["setup"] = {"steps": size.tp_steps, "batch": size.tp_batch, "objective": "kd tau=4, kappa 0.1",
                    "timing": "one call per way, wall clock, as bench/gpu_throughput.py (after one 3-step "
                              "kdscale warm-up)", "useful_flops": "3 x student forward FLOPs x samples seen, plus "
                              "the teacher's forward FLOPs x samples seen in the paper-style loop"}
    fig["rows"] = rows
    matmul = ck.state.get("matmul_fp32")
    for which in ("mnist1d", "cifar"):
        n = 4000 if which == "mnist1d" else size.tp_cifar_n
        shape = (1, 40) if which == "mnist1d" else (3, 32, 32)
        t_text, s_text = (("cnn1d:width=32", "cnn1d:width=16") if which == "mnist1d"
                          else ("cnn2d:width=40", "cnn2d:width=20"))
        f_t, f_s = fwd_flops(t_text, shape), fwd_flops(s_text, shape)
        m = n // 10
        batch = min(size.tp_batch, m)
        steps = size.tp_steps
        seen = samples_seen(steps, batch, m)
        n_test = size.tp_test
        # data, teacher logits on one seed's M and the test set, warm-up, paper loop(s), alone, pack x2
        first = (ck.costs.train_s(3 * f_s * batch, steps * (len(workers_list) + 2), calls=len(workers_list) + 2,
                                  forward_flops=f_t * (m + n_test) + f_t * seen * len(workers_list))
                 + ck.costs.train_s(3 * f_s * batch * 2, steps, packed=True, forward_flops=f_t * m)
                 + (8.0 if which == "mnist1d" else 2e-8 * n * math.prod(shape)))
        try:
            ck.budget.check(first, f"{which} workload")
        except Skip as skip:
            fig[which] = {"skipped": str(skip)}
            ck.rec.say(f"  {which}: skipped: {skip}")
            continue
        random_data = which == "mnist1d" and bool(ck.state.get("no_mnist1d"))
        teacher, student, datas, description = workload(which, None, ck.device, n_teacher=n,
                                                        n_test=n_test, random_data=random_data)
        train_datas = datas([0])
        f_t = forward_flops(teacher, train_datas[0].x_train)
        info = {"description": description, "M": m, "batch": batch, "steps": steps, "samples_seen": seen,
                "forward_flops": {"teacher": f_t, "student": f_s}}
        fig[which] = info
        ck.rec.say(f"  {which}: {description}")
        recipe = RecipeSpec(lr=0.02, steps=steps, batch_size=batch)
        train(student, kd, RecipeSpec(lr=0.02, steps=3, batch_size=batch), 0, train_datas[0], NUM_CLASSES)

        def row(way: str, seconds: float, students: int, useful: float, **extra) -> dict:
            r = {"workload": which, "way": way, **extra, "seconds": seconds, "seconds_per_student": seconds / students,
                 "students_per_hour": 3600 * students / seconds, "useful_tflops": useful / seconds / 1e12,
                 "share_of_matmul_fp32": useful / seconds / matmul if matmul else None}
            rows.append(r)
            ck.rec.say(f"    {way:<30} {r['seconds_per_student']:9.3f} s/student {r['students_per_hour']:10.0f} "
                       f"students/h {r['useful_tflops']:9.4f} TFLOP/s"
                       + (f" ({100 * r['share_of_matmul_fp32']:.1f}% of fp32 matmul)" if matmul else ""))
            ck.rec.save()
            return r

        paper_best = None
        for workers in workers_list:
            try:
                ck.budget.check(ck.costs.train_s(3 * f_s * batch + f_t * batch, steps) + (4.0 if workers else 0.0),
                                f"paper loop, {workers} workers")
            except Skip as skip:
                info[f"paper_{workers}_workers"] = {"skipped": str(skip)}
                continue
            seconds = paper_loop(teacher, student, train_datas[0], steps, batch, workers, ck.device)  # its own clock
            r = row(f"paper (DataLoader, {workers} workers)", seconds, 1, (3 * f_s + f_t) * seen, workers=workers)
            if paper_best is None or r["seconds"] < paper_best["seconds"]:
                paper_best = r
        result, seconds = ck.timed(lambda: train(student, kd, recipe, 0, train_datas[0], NUM_CLASSES, max_reports=1))
        ck.costs.observe(3 * f_s * batch, steps, seconds)
        alone = row("kdscale", seconds, 1, 3 * f_s * seen, pack=1)
        best_pack = alone
        sample_bytes = 4 * math.prod(shape)
        for pack in size.tp_packs:
            new = pack - len(train_datas)
            estimate = ck.costs.train_s(3 * f_s * batch * pack, steps, packed=True, forward_flops=f_t * m * max(0, new))
            memory = 3 * pack * m * sample_bytes + pack * batch * f_s / 10  # data (3 copies), activations
            try:
                if memory > 0.5 * ck.free_bytes():
                    raise Skip(f"pack of {pack}: about {memory / 2 ** 30:.1f} GiB, over half the free memory")
                ck.budget.check(estimate, f"pack of {pack}")
            except Skip as skip:
                info.setdefault("packs_skipped", []).append(str(skip))
                ck.rec.say(f"    pack of {pack}: skipped: {skip}")
                continue
            if new > 0:
                train_datas += datas(range(len(train_datas), pack))
            _, seconds = ck.timed(lambda: train_students(student, kd, recipe, list(range(pack)), train_datas[:pack],
                                                         NUM_CLASSES, max_reports=1))
            ck.costs.observe(3 * f_s * batch * pack, steps, seconds, packed=True)
            r = row(f"kdscale packed x{pack}", seconds, pack, 3 * f_s * seen * pack, pack=pack)
            if r["seconds_per_student"] < best_pack["seconds_per_student"]:
                best_pack = r
        for r in rows:
            if r["workload"] == which and paper_best is not None:
                r["vs_paper"] = paper_best["seconds_per_student"] / r["seconds_per_student"]
        info["best"] = {"paper": paper_best and paper_best["way"], "kdscale": best_pack["way"]}
        ck.state[f"throughput_{which}"] = {"paper": paper_best, "alone": alone, "best": best_pack,
                                           "f_s": f_s, "f_t": f_t}
        train_datas.clear()  # the pack's tensors go before the next workload's
        if ck.cuda:
            torch.cuda.empty_cache()


# --- part 4: a small Fig. 7-shaped grid -------------------------------------------------------------


def part_grid(ck: Check, fig: dict) -> None:
    import torch

    from gpu_throughput import random_split
    from kdscale import data
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
    from kdscale.schema import n_train
    from kdscale.train import TrainData, predict, train, train_students

    size = ck.size
    n, n_test, batch = size.grid_n, size.grid_test, size.grid_batch
    pairs = (("cnn2d:width=40", "cnn2d:width=20"), ("cnn2d:width=20", "cnn2d:width=40"))
    kappas, seeds = (0.1, 1.0), (0, 1)
    objectives = (ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=4.0))
    shape = (3, 32, 32)
    flops = {t: fwd_flops(t, shape) for t in ("cnn2d:width=20", "cnn2d:width=40")}
    t_recipe = RecipeSpec(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=batch, epochs=size.grid_teacher_epochs,
                          steps=None, schedule="cosine")
    s_recipe = RecipeSpec(lr=0.05, momentum=0.9, weight_decay=1e-3, batch_size=batch, epochs=size.grid_student_epochs,
                          steps=None, schedule="cosine")
    pack = len(seeds) * len(objectives)

    def grid_estimate(packed: bool) -> float:
        total = 0.0
        for t_text, s_text in pairs:
            for kappa in kappas:
                m = n_train(kappa, n)
                steps = s_recipe.epochs * math.ceil(m / min(batch, m))
                per = 3 * flops[s_text] * min(batch, m)
                total += (ck.costs.train_s(per * pack, steps, packed=True) if packed
                          else ck.costs.train_s(per, steps * pack, calls=pack))
        return total

    teachers_s = sum(ck.costs.train_s(3 * f * batch, t_recipe.epochs * math.ceil(n / batch),
                                      forward_flops=f * (2 * n + n_test)) for f in flops.values())
    ck.budget.check(teachers_s + grid_estimate(True), "the packed grid")
    fig["setup"] = {"pairs": [f"{label(t)} > {label(s)}" for t, s in pairs], "kappas": kappas, "N": n,
                    "n_test": n_test, "data": "random tensors of CIFAR-10's shape", "objectives": ["lt", "kd tau=4"],
                    "seeds": list(seeds), "students": len(pairs) * len(kappas) * pack,
                    "teacher_recipe": f"SGD lr 0.05, batch {batch}, {t_recipe.epochs} epochs on N, cosine",
                    "student_recipe": f"SGD lr 0.05, batch {batch}, {s_recipe.epochs} epochs on M, cosine",
                    "packing": f"one train_students call per (pair, kappa): {len(seeds)} seeds x lt and kd = {pack}"}
    x_pool, y_pool, x_test, y_test = (t.to(ck.device) for t in random_split(shape, n, n_test, seed=1))
    y_numpy = y_pool.cpu().numpy()
    start = time.perf_counter()
    teachers = {}
    for t_text in dict.fromkeys(t for t, _ in pairs):
        result, seconds = ck.timed(lambda: train(ModelSpec.parse(t_text), ObjectiveSpec("lt"), t_recipe, 0,
                                                 TrainData(x_pool, y_pool, x_test, y_test), NUM_CLASSES, max_reports=1))
        ck.costs.observe(3 * flops[t_text] * batch, result.metrics["steps"], seconds)
        teachers[t_text] = (result.model, predict(result.model, x_test))
        fig.setdefault("teachers", {})[label(t_text)] = {"wall_s": seconds, "steps": result.metrics["steps"],
                                                         "test_acc": result.metrics.get("test_acc")}
    teachers_wall = time.perf_counter() - start
    fig["teachers_wall_s"] = teachers_wall
    ck.rec.say(f"  teachers: {teachers_wall:.1f} s")

    def members(t_text: str, kappa: float):
        model, teacher_test = teachers[t_text]
        m = n_train(kappa, n)
        by_seed = {}
        for seed in seeds:
            idx = torch.as_tensor(data.student_indices(y_numpy, n, m, seed)).to(ck.device)
            x = x_pool[idx]
            by_seed[seed] = TrainData(x, y_pool[idx], x_test, y_test, predict(model, x), teacher_test)
        specs = [(seed, objective) for objective in objectives for seed in seeds]
        return m, specs, [by_seed[seed] for seed, _ in specs]

    packs: list[dict] = []
    fig["packs"] = packs
    students_wall = 0.0
    for t_text, s_text in pairs:
        for kappa in kappas:
            m, specs, datas = members(t_text, kappa)
            results, seconds = ck.timed(lambda: train_students(
                ModelSpec.parse(s_text), [o for _, o in specs], s_recipe, [s for s, _ in specs], datas, NUM_CLASSES,
                max_reports=1, teacher_forward_flops=flops[t_text]))
            steps = results[0].metrics["steps"]
            ck.costs.observe(3 * flops[s_text] * min(batch, m) * pack, steps, seconds, packed=True)
            students_wall += seconds
            packs.append({"pair": f"{label(t_text)} > {label(s_text)}", "kappa": kappa, "M": m, "steps": steps,
                          "wall_s": seconds, "students": [
                              {"seed": s, "objective": o.name, "status": r.status, "test_acc": r.metrics.get("test_acc")}
                              for (s, o), r in zip(specs, results)]})
            ck.rec.say(f"  {label(t_text)} > {label(s_text)} kappa {kappa:g} (M = {m}, {steps} steps): pack of "
                       f"{len(specs)} in {seconds:.2f} s")
            ck.rec.save()
    students = len(pairs) * len(kappas) * pack
    total = time.perf_counter() - start
    fig.update(students_wall_s=students_wall, total_wall_s=total, students_per_hour=3600 * students / students_wall,
               students_per_hour_with_teachers=3600 * students / total)
    ck.rec.say(f"  {students} students packed: {students_wall:.1f} s ({3600 * students / students_wall:.0f} students/h; "
               f"{total:.1f} s and {3600 * students / total:.0f}/h with the teachers)")
    # the same students one at a time (the engine's default for models over PACK_MAX_FLOPS), if time allows
    estimate = grid_estimate(False)
    if not size.grid_unpacked:
        fig["unpacked"] = {"skipped": f"not at the {size.name} size"}
        return
    if not ck.budget.fits(estimate):
        fig["unpacked"] = {"skipped": f"estimated {estimate:.1f} s, {max(0.0, ck.budget.spare()):.1f} s left"}
        return
    unpacked = 0.0
    for t_text, s_text in pairs:
        for kappa in kappas:
            m, specs, datas = members(t_text, kappa)
            for (seed, objective), d in zip(specs, datas):
                result, seconds = ck.timed(lambda: train(ModelSpec.parse(s_text), objective, s_recipe, seed, d,
                                                         NUM_CLASSES, max_reports=1))
                ck.costs.observe(3 * flops[s_text] * min(batch, m), result.metrics["steps"], seconds)
                unpacked += seconds
    fig["unpacked"] = {"students_wall_s": unpacked, "students_per_hour": 3600 * students / unpacked,
                       "packed_speedup": unpacked / students_wall}
    ck.rec.say(f"  the same {students} one at a time: {unpacked:.1f} s (packing {unpacked / students_wall:.2f}x)")


# --- part 5: the packing threshold ------------------------------------------------------------------


def part_pack_threshold(ck: Check, fig: dict) -> None:
    from gpu_throughput import random_split
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
    from kdscale.train import TrainData, train_students

    size = ck.size
    pack = 4
    current, source = repo_constant("kdscale/engine/driver.py", "PACK_MAX_FLOPS", 2e6)
    fig["setup"] = {"pack": pack, "objective": "lt", "M": size.thr_m, "batch": size.thr_batch,
                    "data": "random tensors of the model's input shape", "win": "ratio <= 0.9",
                    "ratio": "(packed seconds / 4) / (alone seconds), one call each, after a warm-up; the "
                             f"lower of {size.thr_repeats} alternating repeats",
                    "current_PACK_MAX_FLOPS": current, "current_source": source}
    models = sorted(((fwd_flops(t, _shape(t)), t) for t in size.thr_models))
    rows: list[dict] = []
    fig["models"] = rows
    lt = ObjectiveSpec("lt")
    batch = min(size.thr_batch, size.thr_m)
    for f, text in models:
        shape = _shape(text)
        per = 3 * f * batch
        lo, hi = size.thr_steps
        steps = int(min(hi, max(lo, size.thr_target_s / ck.costs.step_s(per)))) if size.thr_target_s else lo
        estimate = size.thr_repeats * (ck.costs.train_s(per, steps) + ck.costs.train_s(per * pack, steps, packed=True)) \
            + ck.costs.train_s(per * (1 + pack), 4, calls=2)
        try:
            ck.budget.check(estimate, label(text))
        except Skip as skip:
            rows.append({"model": label(text), "forward_flops": f, "skipped": str(skip)})
            ck.rec.say(f"  {label(text)}: skipped: {skip}")
            continue
        x, y, x_test, y_test = (t.to(ck.device) for t in random_split(shape, size.thr_m, batch, seed=2))
        d = TrainData(x, y, x_test, y_test)
        spec = ModelSpec.parse(text)

        def run(students: int, n_steps: int) -> float:
            recipe = RecipeSpec(lr=0.01, steps=n_steps, batch_size=batch)
            return ck.timed(lambda: train_students(spec, lt, recipe, list(range(students)), [d] * students,
                                                   NUM_CLASSES, max_reports=1))[1]
        run(1, 2)
        run(pack, 2)  # warm-ups: kernels, the vmapped path
        alone, packed = math.inf, math.inf
        for _ in range(size.thr_repeats):
            a, p = run(1, steps), run(pack, steps)
            ck.costs.observe(per, steps, a)
            ck.costs.observe(per * pack, steps, p, packed=True)
            alone, packed = min(alone, a), min(packed, p)
        ratio = (packed / pack) / alone
        rows.append({"model": label(text), "forward_flops": f, "steps": steps, "alone_s": alone,
                     "packed_s_per_student": packed / pack, "ratio": ratio, "packing_wins": ratio <= 0.9})
        ck.rec.say(f"  {label(text):<12} {f / 1e6:9.3f} MFLOP  alone {alone:.3f} s, packed {packed / pack:.3f} s/student "
                   f"over {steps} steps: ratio {ratio:.2f}")
        ck.rec.save()
    measured = [r for r in rows if "ratio" in r]
    if not measured:
        raise Skip("no model size fitted in the time left")
    wins = [r["forward_flops"] for r in measured if r["packing_wins"]]
    monotone = 0.0
    for r in measured:  # ascending FLOPs: the largest size below which every measured size wins
        if not r["packing_wins"]:
            break
        monotone = r["forward_flops"]
    fig["largest_winning_flops"] = max(wins) if wins else None
    fig["largest_flops_all_smaller_win"] = monotone or None
    fig["suggested_PACK_MAX_FLOPS"] = max(wins) if wins else 0.0
    fig["suggestion_note"] = ("suggested = the largest measured forward-FLOPs size where a pack of 4 took <= 0.9 of the alone time "
                   "per student; the true threshold lies between it and the next measured size")
    ck.rec.say(f"  suggested PACK_MAX_FLOPS for this device: {fig['suggested_PACK_MAX_FLOPS']:.3g} "
               f"(now {current:.3g})")


def _shape(spec_text: str) -> tuple[int, ...]:
    return (1, 40) if spec_text.startswith("cnn1d") else (3, 32, 32)


# --- part 6: projection of the paper's CIFAR grid ------------------------------------------------------


def part_projection(ck: Check, fig: dict) -> None:
    import torch

    from gpu_throughput import paper_loop, random_split
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
    from kdscale.recipes import RECIPES
    from kdscale.schema import n_train
    from kdscale.train import TrainData, train, train_students

    size = ck.size
    shape = (3, 32, 32)
    pairs_text, pairs_source = repo_constant("studies/model_size.py", "IMAGE_PAIRS", (
        "resnet18:width=64>cnn2d:width=20", "resnet18:width=64>resnet18:width=16",
        "cnn2d:width=20>cnn2d:width=20", "cnn2d:width=20>resnet18:width=64"))
    kappas, kappas_source = repo_constant("kdscale/studyargs.py", "MAIN_KAPPAS", (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0))
    n_teachers, n_source = repo_constant("studies/model_size.py", "N_TEACHER", {"cifar5m": 60_000})
    n = int(n_teachers.get("cifar5m", 60_000))
    paper = RECIPES.get("paper-cifar10")
    epochs, p_batch, seeds, n_test = paper.epochs, paper.batch_size, 3, 10_000
    pairs = [tuple(p.split(">")) for p in pairs_text]
    no_torchvision = module_available("torchvision")
    flops = {t: fwd_flops(t, shape) for pair in pairs for t in pair}
    fig["assumptions"] = {
        "pairs": [f"{label(t)} > {label(s)}" for t, s in pairs], "pairs_source": pairs_source
        + " (the paper's ResNet-18 and vanilla CNN, both ways; Fig. 7's exact pairs are not in this repo)",
        "data": f"CIFAR-5m, N = {n} teacher samples ({n_source}), test set 10,000 (CIFAR-10's)",
        "kappas": kappas, "kappas_source": kappas_source, "objectives": ["lt", "kd (one tau)"],
        "seeds": f"{seeds} (the repo's default; the paper's count is not in this repo)",
        "recipe": f"paper-cifar10 (kdscale.recipes): {epochs} epochs at batch {p_batch} for teachers (on N) and "
                  "students (on M)",
        "teachers": "one per teacher model, trained with lt; the same in both paths",
        "kdscale_teacher_logits": "once per teacher on the stream a grid needs (N blocks up to max kappa) and the "
                                  "test set, cached (kdscale.teacher)",
        "paper_teacher_forward": "on every kd step (samples seen); lt students have no teacher",
        "not_counted": "evaluations, data loading outside the timed loop, checkpoints",
        "time": "FLOPs over steady-state seconds per sample measured here per model (and per pair for the paper "
                "loop): time at n and 3n steps after a warm-up, (t3n - tn) / 2n; fp32; unmeasured figures fall back "
                "to part 3's cifar rates (a FLOP-rate conversion), as `sources` says"}
    fig["forward_flops"] = {label(t): f for t, f in flops.items()}
    batch = size.proj_batch
    m = 4 * batch  # whole batches: no partial one
    workers = 4 if ck.cuda else 0
    students = list(dict.fromkeys(s for _, s in pairs))
    measured: dict[str, dict[str, float]] = {"alone": {}, "paper_kd": {}, "paper_lt": {}, "packed": {}}
    fig["measured_s_per_sample"] = measured
    fig["measured_setup"] = {"batch": batch, "M": m, "n": size.proj_steps, "pack": size.proj_pack,
                             "paper_workers": workers}
    x, y, x_test, y_test = (t.to(ck.device) for t in random_split(shape, m, batch, seed=3))
    kd, n_steps = ObjectiveSpec("kd", tau=4.0), size.proj_steps
    warm = 1 if size.name != "full" else 2
    built_teachers: dict[str, Any] = {}

    def teacher_of(text: str):
        if text not in built_teachers:
            torch.manual_seed(0)
            built_teachers[text] = build(text, shape, ck.device).eval()
        return built_teachers[text]

    def steady(run: Callable[[int], float], per_step_flops: float, packed: bool, what: str) -> float | None:
        steps_total = warm + 4 * n_steps
        estimate = ck.costs.train_s(per_step_flops, steps_total, packed=packed, calls=3)
        try:
            if any(t.startswith("resnet18") for t in what.split()):
                if no_torchvision:
                    raise Skip(f"{what}: torchvision is missing ({no_torchvision})")
                if not size.proj_resnet:
                    raise Skip(f"{what}: not at the {size.name} size")
            ck.budget.check(estimate, what)
        except Skip as skip:
            fig.setdefault("skipped", []).append(str(skip))
            ck.rec.say(f"  {what}: skipped: {skip}")
            return None
        run(warm)
        t1, t3 = run(n_steps), run(3 * n_steps)
        ck.costs.observe(per_step_flops, 3 * n_steps, t3, packed=packed)
        per_step = (t3 - t1) / (2 * n_steps)
        if per_step <= 0:  # noise larger than the difference: the plain average
            per_step = t3 / (3 * n_steps)
        ck.rec.say(f"  {what}: {1e3 * per_step:.2f} ms/step ({t1:.2f} s at {n_steps}, {t3:.2f} s at {3 * n_steps} steps)")
        return per_step / batch

    # kdscale's step does not run the teacher: random logits stand in for its cached ones
    gen = torch.Generator().manual_seed(4)
    cached = TrainData(x, y, x_test, y_test, torch.randn(m, NUM_CLASSES, generator=gen).to(ck.device),
                       torch.randn(batch, NUM_CLASSES, generator=gen).to(ck.device))
    plain = TrainData(x, y, x_test, y_test)  # the paper loop's: samples and labels

    # (a) kdscale alone per student model, (b) the paper loop per pair (kd), (c) the paper loop per
    # student model (lt), (d) kdscale packed per student model; the most needed first
    for s_text in students:
        spec = ModelSpec.parse(s_text)
        sps = steady(lambda k: ck.timed(lambda: train(spec, kd, RecipeSpec(lr=0.02, steps=k, batch_size=batch), 0, cached,
                                                      NUM_CLASSES, max_reports=1))[1],
                     3 * flops[s_text] * batch, False, f"kdscale alone {s_text}")
        if sps is not None:
            measured["alone"][label(s_text)] = sps
    ck.rec.save()
    for t_text, s_text in pairs:
        spec = ModelSpec.parse(s_text)
        sps = steady(lambda k: ck.timed(lambda: paper_loop(teacher_of(t_text), spec, plain, k, batch, workers,
                                                           ck.device))[1],
                     (3 * flops[s_text] + flops[t_text]) * batch, False, f"paper kd {t_text} > {s_text}")
        if sps is not None:
            measured["paper_kd"][f"{label(t_text)} > {label(s_text)}"] = sps
    ck.rec.save()
    for s_text in students:
        spec = ModelSpec.parse(s_text)
        sps = steady(lambda k: ck.timed(lambda: paper_loop(None, spec, plain, k, batch, workers, ck.device))[1],
                     3 * flops[s_text] * batch, False, f"paper lt {s_text}")
        if sps is not None:
            measured["paper_lt"][label(s_text)] = sps
    ck.rec.save()
    pack = size.proj_pack
    for s_text in students:
        spec = ModelSpec.parse(s_text)
        sps = steady(lambda k: ck.timed(lambda: train_students(spec, kd, RecipeSpec(lr=0.02, steps=k, batch_size=batch),
                                                               list(range(pack)), [cached] * pack, NUM_CLASSES,
                                                               max_reports=1))[1],
                     3 * flops[s_text] * batch * pack, True, f"kdscale packed x{pack} {s_text}")
        if sps is not None:
            measured["packed"][label(s_text)] = sps / pack
    ck.rec.save()
    built_teachers.clear()

    # seconds per sample for every figure the projection needs, measured or converted from part 3
    cifar = ck.state.get("throughput_cifar")
    sources: dict[str, str] = {}

    def rate_from(key: str) -> tuple[float, str]:
        if cifar and cifar.get(key):
            return cifar[key]["useful_tflops"] * 1e12, f"part 3 cifar {cifar[key]['way']}"
        if ck.costs.obs:
            return ck.costs.rate, "the best training FLOP/s of this run (its cost model)"
        return 0.25 * ck.state.get("matmul_fp32", 1e13), "a quarter of the fp32 matmul rate (nothing measured)"

    def sps_alone(s: str) -> float:
        if label(s) in measured["alone"]:
            return measured["alone"][label(s)]
        rate, src = rate_from("alone")
        sources[f"alone {label(s)}"] = src
        return 3 * flops[s] / rate

    def sps_packed(s: str) -> float:
        if label(s) in measured["packed"]:
            return min(measured["packed"][label(s)], sps_alone(s))
        return sps_alone(s)

    def sps_paper(t: str | None, s: str) -> float:
        key = label(s) if t is None else f"{label(t)} > {label(s)}"
        table = measured["paper_lt" if t is None else "paper_kd"]
        if key in table:
            return table[key]
        useful = 3 * flops[s] + (0 if t is None else flops[t])
        rate, src = rate_from("paper")
        sources[f"paper {'lt' if t is None else 'kd'} {key}"] = src
        return useful / rate

    from kdscale.data import stream_length_for

    stream = stream_length_for(n, n_train(max(kappas), n))
    per_pair, totals = [], {"kdscale_flops": 0.0, "paper_flops": 0.0, "kdscale_packed_s": 0.0, "kdscale_alone_s": 0.0,
                            "paper_s": 0.0}
    teachers = list(dict.fromkeys(t for t, _ in pairs))
    for t in teachers:  # teachers: the same training in both paths; kdscale also caches their logits once
        seen = epochs * n
        train_flops = 3 * flops[t] * seen
        logits_flops = flops[t] * (stream + n_test)
        totals["kdscale_flops"] += train_flops + logits_flops
        totals["paper_flops"] += train_flops
        t_kd = seen * sps_alone(t) + (stream + n_test) * sps_alone(t) / 3
        totals["kdscale_packed_s"] += t_kd
        totals["kdscale_alone_s"] += t_kd
        totals["paper_s"] += seen * sps_paper(None, t)
    for t, s in pairs:
        row = {"pair": f"{label(t)} > {label(s)}", "kdscale_flops": 0.0, "paper_flops": 0.0, "kdscale_packed_s": 0.0,
               "kdscale_alone_s": 0.0, "paper_s": 0.0}
        for kappa in kappas:
            seen = epochs * n_train(kappa, n)
            for objective in ("lt", "kd"):
                student_flops = 3 * flops[s] * seen * seeds
                row["kdscale_flops"] += student_flops
                row["paper_flops"] += student_flops + (flops[t] * seen * seeds if objective == "kd" else 0.0)
                row["kdscale_packed_s"] += seen * seeds * sps_packed(s)
                row["kdscale_alone_s"] += seen * seeds * sps_alone(s)
                row["paper_s"] += seen * seeds * sps_paper(t if objective == "kd" else None, s)
        for key in totals:
            totals[key] += row[key]
        row.update(kdscale_packed_gpu_hours=row["kdscale_packed_s"] / 3600, paper_gpu_hours=row["paper_s"] / 3600)
        per_pair.append(row)
    fig["per_pair"] = per_pair
    fig["sources"] = sources or "every figure measured in this part"
    fig["trials"] = {"students": len(pairs) * len(kappas) * 2 * seeds, "teachers": len(teachers)}
    fig["total"] = {
        "kdscale_pflop": totals["kdscale_flops"] / 1e15, "paper_pflop": totals["paper_flops"] / 1e15,
        "kdscale_packed_gpu_hours": totals["kdscale_packed_s"] / 3600,
        "kdscale_alone_gpu_hours": totals["kdscale_alone_s"] / 3600, "paper_gpu_hours": totals["paper_s"] / 3600,
        "paper_over_kdscale_packed": totals["paper_s"] / totals["kdscale_packed_s"],
        "kdscale_useful_tflops": totals["kdscale_flops"] / totals["kdscale_packed_s"] / 1e12,
        "paper_useful_tflops": totals["paper_flops"] / totals["paper_s"] / 1e12}
    tot = fig["total"]
    ck.rec.say(f"  paper grid ({fig['trials']['students']} students, {len(teachers)} teachers): kdscale "
               f"{tot['kdscale_pflop']:.1f} PFLOP, {tot['kdscale_packed_gpu_hours']:.2f} device-hours (packed where faster; "
               f"{tot['kdscale_alone_gpu_hours']:.2f} alone); paper code {tot['paper_pflop']:.1f} PFLOP, "
               f"{tot['paper_gpu_hours']:.2f} device-hours ({tot['paper_over_kdscale_packed']:.2f}x)")


# --- the run ----------------------------------------------------------------------------------------

PART_FUNCTIONS: dict[str, Callable[[Check, dict], None]] = {
    "environment": part_environment, "trial": part_trial, "throughput": part_throughput, "grid": part_grid,
    "pack_threshold": part_pack_threshold, "projection": part_projection}


def smallest_estimate(ck: Check, part: str) -> float:
    """Seconds the smallest useful form of a part needs, held back while earlier parts run."""
    c, size = ck.costs, ck.size
    if part == "environment":
        return 3 * size.matmul_min_s + 2
    if part == "trial":
        steps = size.trial_student_steps or 1500
        return 2 * c.train_s(3 * 27_680 * 128, steps) + 2 * c.train_s(3 * 101_440 * 128, size.trial_teacher_epochs * 32)
    if part == "throughput":
        return c.train_s(3 * 27_680 * size.tp_batch + 101_440 * size.tp_batch, 3 * size.tp_steps, calls=3)
    if part == "grid":
        return c.train_s(3 * 10_325_120 * size.grid_batch * 4, size.grid_student_epochs * 4, packed=True, calls=2)
    if part == "pack_threshold":
        return 4 * c.train_s(3 * 27_680 * size.thr_batch, size.thr_steps[0])
    return 1.0


def run_check(out: Path, device: str = "auto", budget_s: float = 480.0, size: str = "full", echo: bool = True,
              started: float | None = None) -> dict:
    """Every part in turn into out/gpu_check.json and out/gpu_check.log; returns the JSON's content."""
    import torch

    start = STARTED if started is None else started
    chosen = torch.device("cuda" if (device == "cuda" or (device == "auto" and torch.cuda.is_available())) else "cpu")
    ck = Check(chosen, SIZES[size], Budget(budget_s, start, 3.0 if size == "full" else 1.0), Costs(chosen.type),
               Recorder(Path(out), echo))
    rec = ck.rec
    before = {name for name in FORBIDDEN if name in sys.modules}
    rec.data.update(script="bench/gpu_check.py", issue=21, size=size, device=str(chosen), budget_s=budget_s,
                    argv=sys.argv[1:], parts={}, started=datetime.datetime.now(datetime.timezone.utc).isoformat(
                        timespec="seconds"))
    if (why := module_available("mnist1d")) is not None:
        ck.state["no_mnist1d"] = why
    rec.say(f"gpu_check: {size} run on {chosen}, budget {budget_s:.0f} s "
            f"({ck.budget.elapsed():.1f} s spent on start-up)")
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
                    fig.update(status="skipped", note="the budget ran out in an earlier part")
                else:
                    # later parts' smallest needs are held back, but never more than half the time left:
                    # the earlier parts (environment, the trial, throughput) matter most
                    ck.budget.keep = min(sum(smallest_estimate(ck, later) for later in PARTS[i + 1:]),
                                         0.5 * max(0.0, ck.budget.left() - ck.budget.final_reserve))
                    rec.say(f"\n[{i + 1}/{len(PARTS)}] {part} ({ck.budget.left():.0f} s left, "
                            f"{max(0.0, ck.budget.spare()):.0f} s for this part)")
                    try:
                        ck.budget.check(smallest_estimate(ck, part), part)
                        ck.budget.arm(ck.budget.part_end())  # a part that overruns is cut, not the later ones
                        PART_FUNCTIONS[part](ck, fig)
                        ck.budget.stop()
                        fig["status"] = "partial" if _has_skips(fig) else "ok"
                    except Skip as skip:
                        fig.update(status="skipped", note=str(skip))
                    except Exception as error:  # one part's failure must not cost the others
                        fig.update(status="error", note=f"{type(error).__name__}: {error}")
                        rec.say(traceback.format_exc().rstrip())
            except OutOfTime:
                out_of_time = ck.budget.over()
                if "status" not in fig:
                    fig.update(status="cut", note="this part ran past its share of the budget (the time left less "
                                                  "the later parts' smallest estimates); its finished figures are kept")
            ck.budget.stop()
            fig["wall_s"] = time.perf_counter() - begun
            try:
                if fig["status"] != "ok":
                    rec.say(f"  {fig['status']}: {fig.get('note', 'some measurements skipped (see the JSON)')}")
                rec.say(f"  ({fig['wall_s']:.1f} s)")
                rec.save()
            except OutOfTime:
                out_of_time = ck.budget.over()
    except OutOfTime:  # between two parts: the parts not reached are marked below
        pass
    finally:
        try:
            ck.budget.disarm()
        except OutOfTime:
            pass
        for part in PARTS:
            rec.data["parts"].setdefault(part, {"status": "skipped", "note": "the budget ran out in an earlier part",
                                                "wall_s": 0.0})
        imported = {name: name in sys.modules for name in FORBIDDEN}
        rec.data["forbidden_imports"] = {**imported, "none_imported": not any(imported.values()),
                                         "already_imported_by_the_caller": sorted(before)}
        rec.data["cost_model"] = ck.costs.summary()
        rec.data["total_wall_s"] = ck.budget.elapsed()
        rec.data["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        rec.say(f"\ntotal {rec.data['total_wall_s']:.1f} s of {budget_s:.0f}; Ray, MLflow, Optuna imported: "
                f"{'none' if rec.data['forbidden_imports']['none_imported'] else imported}")
        rec.say(f"wrote {rec.json_path} and {rec.json_path.with_name('gpu_check.log')}")
        rec.save()
        rec.close()
    return rec.data


def _has_skips(fig: Any) -> bool:
    if isinstance(fig, dict):
        return any(k in ("skipped", "packs_skipped") or _has_skips(v) for k, v in fig.items())
    if isinstance(fig, list):
        return any(_has_skips(v) for v in fig)
    return False


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
