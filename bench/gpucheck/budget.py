"""The time a run may take: the budget with its deadline timer, and the cost model that estimates
every measurement before it runs (and the smallest need of each part, held back for the later ones)."""
from __future__ import annotations

import signal
import statistics
import threading
import time


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
        """The timer off and the previous SIGALRM handler back."""
        if self._previous is not None:
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



# Forward FLOPs per sample of the models the smallest estimates assume: cnn1d-16, cnn1d-32 on MNIST-1D,
# cnn2d-20 on CIFAR (kdscale.train.forward_flops).
CNN1D_16, CNN1D_32, CNN2D_20 = 27_680, 101_440, 10_325_120


def smallest_estimate(ck, part: str) -> float:
    """Seconds the smallest useful form of a part needs, held back while earlier parts run."""
    c, size = ck.costs, ck.size
    if part == "environment":
        return 3 * size.matmul_min_s + 2
    if part == "trial":
        steps = size.trial_student_steps or 1500
        return (2 * c.train_s(3 * CNN1D_16 * 128, steps)
                + 2 * c.train_s(3 * CNN1D_32 * 128, size.trial_teacher_epochs * 32))
    if part == "throughput":
        return c.train_s(3 * CNN1D_16 * size.tp_batch + CNN1D_32 * size.tp_batch, 3 * size.tp_steps, calls=3)
    if part == "grid":
        return c.train_s(3 * CNN2D_20 * size.grid_batch * 4, size.grid_student_epochs * 4, packed=True, calls=2)
    if part == "pack_threshold":
        return 4 * c.train_s(3 * CNN1D_16 * size.thr_batch, size.thr_steps[0])
    return 1.0
