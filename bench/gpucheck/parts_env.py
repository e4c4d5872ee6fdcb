"""Part 1, the environment (bench/gpucheck/__init__.py says what it measures), and the calibration
of the cost model that follows it."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from .common import REPO, Check, fwd_flops, import_error, input_shape, label


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
    """Part 1: versions, device, memory, CPUs, date, commit, the matmul rates; then `calibrate`."""
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
                                 if (why := import_error(name))})
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
    from kdscale.config import ObjectiveSpec, RecipeSpec
    from kdscale.train import TrainData

    out, fixed = {}, []
    for text, batch, steps in (("cnn1d:width=16", 128, 10),
                               ("cnn2d:width=20", 128 if ck.cuda else 32, 10 if ck.cuda else 3)):
        shape = input_shape(text)
        data = TrainData(*(t.to(ck.device) for t in random_split(shape, batch, batch, seed=5)))

        def run(k: int) -> float:
            return ck.fit(text, ObjectiveSpec("lt"), RecipeSpec(lr=0.01, steps=k, batch_size=batch), 0, data)[1]
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

