"""What every part shares: the sizes, the JSON writer, the Check the parts take, and model helpers.

torch and kdscale are imported inside the functions: the run's clock starts before them, and the
JSON's `forbidden_imports` looks at sys.modules after the run.
"""
from __future__ import annotations

import ast
import functools
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .budget import Budget, Costs

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 10
# ResNet-18 forward FLOPs per 3x32x32 sample (kdscale.train.forward_flops, torch's flop counter), for
# a machine without torchvision; measured on the project's CPU machine, 2026-11-24.
RESNET18_FLOPS = {16: 70_093_312.0, 64: 1_110_845_440.0}


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


# --- the JSON and the log -------------------------------------------------------------------------


def clean(value: Any) -> Any:
    """JSON-able: floats rounded to 6 significant digits, NaN and infinity as None."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def has_skips(fig: Any) -> bool:
    """Does a part's figure note a skipped measurement anywhere in it?"""
    if isinstance(fig, dict):
        return any(k in ("skipped", "packs_skipped") or has_skips(v) for k, v in fig.items())
    if isinstance(fig, list):
        return any(has_skips(v) for v in fig)
    return False


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
            tmp.write_text(json.dumps(clean(self.data), indent=1) + "\n")
            os.replace(tmp, self.json_path)
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})

    def close(self) -> None:
        self.log.close()


# --- the check the parts share --------------------------------------------------------------------


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

    def fit(self, spec, objective, recipe, seed: int, data, **kw) -> tuple[Any, float]:
        """One student through kdscale.train.train (`spec` a ModelSpec or its text): (result, seconds)."""
        from kdscale.train import train

        spec = parse(spec)
        return self.timed(lambda: train(spec, objective, recipe, seed, data, NUM_CLASSES, max_reports=1, **kw))

    def fit_pack(self, spec, objective, recipe, seeds, datas, **kw) -> tuple[Any, float]:
        """A pack through kdscale.train.train_students: (results, seconds)."""
        from kdscale.train import train_students

        spec = parse(spec)
        return self.timed(lambda: train_students(spec, objective, recipe, list(seeds), datas, NUM_CLASSES,
                                                 max_reports=1, **kw))

    def free_bytes(self) -> float:
        if self.cuda:
            import torch

            return float(torch.cuda.mem_get_info()[0])
        try:
            return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return 8e9


# --- helpers --------------------------------------------------------------------------------------


def import_error(name: str) -> str | None:
    """None if `name` imports, else why not (one line)."""
    try:
        __import__(name)
        return None
    except Exception as error:  # noqa: BLE001  # ImportError, or a dependency failing at import
        return f"{type(error).__name__}: {error}"


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


def parse(spec):
    """A ModelSpec from its text (a ModelSpec stays as it is)."""
    from kdscale.config import ModelSpec

    return ModelSpec.parse(spec) if isinstance(spec, str) else spec


def label(spec_text: str) -> str:
    return parse(spec_text).label


def input_shape(spec_text: str) -> tuple[int, ...]:
    """One sample's shape: MNIST-1D's for a cnn1d, CIFAR's for the rest."""
    return (1, 40) if spec_text.startswith("cnn1d") else (3, 32, 32)


def build(spec_text: str, shape: tuple[int, ...], device):
    from kdscale import models

    return models.build(parse(spec_text), shape, NUM_CLASSES).to(device)


@functools.lru_cache(maxsize=None)
def fwd_flops(spec_text: str, shape: tuple[int, ...]) -> float:
    """Forward FLOPs per sample (kdscale.train.forward_flops), on the CPU; ResNet-18's from
    RESNET18_FLOPS where torchvision is missing."""
    import torch

    from kdscale.train import forward_flops

    if spec_text.startswith("resnet18") and import_error("torchvision"):
        width = parse(spec_text).width
        if width in RESNET18_FLOPS and tuple(shape) == (3, 32, 32):
            return RESNET18_FLOPS[width]
    return forward_flops(build(spec_text, shape, "cpu"), torch.zeros(1, *shape))
