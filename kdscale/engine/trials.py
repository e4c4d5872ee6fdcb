"""The students of a study as Ray Tune trials: packs, the driver's callback, and Ctrl-C.

The callback runs in the driver: per-epoch metrics reach MLflow in batches, and a finished trial's
row reaches the table and MLflow the moment its last report arrives, so an interruption loses only
unfinished work. A fault a worker met (a full disk) ends the study as one EnvironmentFault.

Ctrl-C. Tune's own SIGINT handler is off (kdscale.engine.session); ours asks every running trial,
through Ray's key-value store, to write its checkpoint at its next report, waits up to
STOP_GRACE_S for them, then stops the trials. A trial's checkpoint is a file of the study
(`_resume/<pack id>.pt`, kdscale.store), so the next driver's trial of the same students resumes
from it. Trials save only at a report (an epoch end: the state is whole only there), so what an
interrupted trial can lose is bounded by `Resources.checkpoint_every_s` plus one report interval.
A second Ctrl-C stops at once.
"""
from __future__ import annotations

import functools
import json
import math
import signal
import sys
import threading
import time
from dataclasses import replace

from ray import tune

from kdscale.config import TrialSpec, from_dict, spec_id, to_dict
from kdscale.engine.workers import FAULT_KEY, REPORTS_KEY, ROWS_KEY, SAVED_KEY, STARTED_KEY, student_trainable
from kdscale.engine.writes import Writes
from kdscale.errors import EnvironmentFault
from kdscale.store import ResultsStore, resume_id
from kdscale.trial import model_key, spec_row, training_key

# Students a pack holds by default. A student-step of cnn1d-16 (one thread, batch 128) cost 2.5 ms in a
# pack of 8 and 1.9 ms in a pack of 16 (cnn1d-4: 1.8 and 1.4 ms; 2026-11-30): up to about 16 a bigger
# pack still shares the dispatch, and the main job's largest configuration (lt on 3 seeds and kd from
# 4 teachers on 3 seeds, 15 students) trains as one.
MAX_PACK = 16
# Auto packing only for models of at most this many forward FLOPs per sample. Measured here on
# 2 CPU cores (docs/benchmarks.md): a pack of 3-4 took 0.25-0.71 of the sequential time for
# models of 0.015-0.39 MFLOP, and 1.2x for the vanilla CNN on CIFAR (10.3 MFLOP), compute-bound.
PACK_MAX_FLOPS = 2e6
# The same on a GPU (trials with --gpus-per-trial > 0): on one H200 (bench/gpu_check.py, 2026-11-30,
# three runs) a pack of 4 took 0.45-0.62 of the sequential time for models of 0.03-10 MFLOP and
# 0.60-0.72 for cnn2d-40 (39 MFLOP), the largest it measured; larger models train one at a time
# until measured (ResNet-18 of width 16, 70 MFLOP, was 1.4x slower packed).
PACK_MAX_FLOPS_GPU = 4e7
# A training step's fixed cost (dispatch, optimizer, data), in FLOP-equivalents: the engine's estimates of
# a job's work, which order the student packs (`_pack_cost`) and the search jobs (kdscale.engine.searches)
# longest first, count students x steps x (forward FLOPs + this).
STEP_FLOPS = 1e4
# What one step costs a pack whatever its size (dispatch, optimizer, data), in the same FLOP-
# equivalents: a step of k cnn1d-4 (2.6 kFLOP) at batch 128 on one thread took about 1.0 + 0.27 k ms
# and of cnn1d-16 (27.7 kFLOP) 0.65 k ms (2026-12-01, /work's second machine), about 1.5e-5 ms a
# FLOP-equivalent; `make_packs` weighs a further cut of a group (one slot less idle) against it.
PACK_STEP_FLOPS = 6e4
STOP_GRACE_S = 30.0  # after Ctrl-C, how long running trials get to reach a report and save


class _Interrupt:
    """Ctrl-C during the trials: the first asks trials to save and stop, the second stops at once."""

    def __init__(self, key: str, log):
        self.key, self.log, self.at = key, log, None
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        try:
            from ray.experimental import internal_kv

            internal_kv._internal_kv_del(self.key)
        except Exception:
            pass  # Ray already gone

    def _handle(self, signum, frame):
        if self.at is not None:
            raise KeyboardInterrupt
        self.at = time.monotonic()
        from ray.experimental import internal_kv

        internal_kv._internal_kv_put(self.key, b"1", overwrite=True)
        self.log(f"interrupted: running trials save a checkpoint at their next report (up to {STOP_GRACE_S:g} s), "
                 "then stop; Ctrl-C again to stop now")


class _DriverCallback(tune.Callback):
    """Per-epoch metrics and finished rows into MLflow and the store, progress, and the stop on Ctrl-C."""

    def __init__(self, store: ResultsStore, tracker, total: int, done: int, log, progress: bool,
                 flush_every_s: float, interrupt: _Interrupt):
        from tqdm import tqdm

        self.store, self.tracker, self.log, self.interrupt = store, tracker, log, interrupt
        self.writes = Writes()  # the tracker is the writes' thread's alone until close()
        # Per-epoch metrics wait here and reach MLflow in one batch per trial and interval: a
        # log_batch per report per trial cost the driver (on the trials' cores) a second a trial.
        self.flush_every_s = flush_every_s
        self.buffer: dict[str, list[dict]] = {}
        self.flushed: dict[str, float] = {}
        self.finished, self.done, self.total = 0, done, total
        self.members: dict[str, dict[str, tuple[TrialSpec, dict]]] = {}  # Tune trial -> its students
        self.running: set[str] = set()  # Tune trials started and not ended
        self.saved: set[str] = set()  # of those, the ones that saved after Ctrl-C
        self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial", file=sys.stderr,
                        disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True, leave=False)

    def should_stop(self) -> bool:
        if self.interrupt.at is None:
            return False
        return self.running <= self.saved or time.monotonic() - self.interrupt.at > STOP_GRACE_S

    def _students(self, trial) -> dict[str, tuple[TrialSpec, dict]]:
        """The pack's students by trial id, parsed once per Tune trial rather than at every report."""
        if trial.trial_id not in self.members:
            specs = [(from_dict(TrialSpec, d), d) for d in trial.config["pack"]]
            self.members[trial.trial_id] = {spec.id: (spec, d) for spec, d in specs}
        return self.members[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        students = self._students(trial)
        if SAVED_KEY in result:
            self.saved.add(trial.trial_id)
        if FAULT_KEY in result:  # the worker met the environment's fault: the study stops on it
            raise EnvironmentFault(result[FAULT_KEY])
        if ROWS_KEY in result:
            self._finish([(*students[row["trial_id"]], row) for row in json.loads(result[ROWS_KEY])])
            self.store.remove_resume(resume_id(students))
            self.running.discard(trial.trial_id)
            return
        if REPORTS_KEY not in result:
            return
        now = time.monotonic()
        for trial_id, report in json.loads(result[REPORTS_KEY]):
            if report is None:  # this student diverged; its row says so at the end
                continue
            self.buffer.setdefault(trial_id, []).append(report)
            first = self.flushed.setdefault(trial_id, now)
            if now - first >= self.flush_every_s:
                spec, spec_dict = students[trial_id]
                self.writes.submit(self._flush, trial_id, spec.label, spec_dict, result.get(STARTED_KEY),
                                   self.buffer.pop(trial_id))
                self.flushed[trial_id] = now

    def _flush(self, trial_id: str, label: str, spec_dict: dict, started: float | None, reports: list) -> None:
        self.tracker.trial_run(trial_id, label, spec_dict, started=started)
        self.tracker.log_reports(trial_id, reports)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running.discard(trial.trial_id)
        error = getattr(trial, "error_file", None) or "the trial's worker failed"
        self._finish([(spec, spec_dict, spec_row(spec) | {"status": "failed", "error": f"gave up: {error}"})
                      for spec, spec_dict in self._students(trial).values()])

    def _finish(self, finished: list[tuple[TrialSpec, dict, dict]]) -> None:
        """A pack's rows, (spec, spec dict, row) each: stored in one rewrite of the table (it was one per
        row: 48 rewrites took 1.2 s of the driver's time on the --quick grid), then each trial's run."""
        self.store.add_rows([row for _, _, row in finished])
        for spec, spec_dict, row in finished:
            self.writes.submit(self.tracker.finish_trial, row, spec_dict, self.buffer.pop(spec.id, []))
            self.flushed.pop(spec.id, None)
            self.finished += 1
            self.bar.update(1)
            if row["status"] == "ok":
                line = (f"{spec.label}: test_acc {row['test_acc']:.4f} fidelity {row['fidelity_test']:.3f} "
                        f"({row['wall_s']:.1f} s)")
            else:
                line = f"{spec.label}: {row['status']}: {row.get('error')}"
            line = f"[{self.done + self.finished}/{self.total}] {line}"
            if self.bar.disable:
                self.log(line)
            else:
                self.bar.write(line, file=sys.stderr)  # above the bar, which stays at the bottom

    def close(self, drain: bool = True, raise_fault: bool = True):
        """After the trials: the MLflow writes done (`drain`; else only the one under way; the first
        write's fault raised unless `raise_fault` is off), the bar closed."""
        try:
            self.writes.close(drain, raise_fault)
        finally:
            self.bar.close()


class _StopOnInterrupt(tune.Stopper):
    def __init__(self, callback: _DriverCallback):
        self.callback = callback

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return self.callback.should_stop()


def make_packs(trials: list[TrialSpec], pack_size: int | None, gpu: bool = False, slots: int = 1
               ) -> list[list[TrialSpec]]:
    """Group trials that differ only by seed, objective, learning rate, teacher and, for a model
    without batch norm trained without augmentation on a step budget, kappa into packs
    (kdscale.train) of at most `pack_size` students: same model and step count. Twins
    (kdscale.trial.training_key: lt of several pairs with one student) go to one pack and count as
    one student: they train once. A group larger than a pack is cut into packs of even sizes.

    None packs up to MAX_PACK students of every packable configuration whose model is small
    (PACK_MAX_FLOPS, or PACK_MAX_FLOPS_GPU when the trials run on GPUs: `gpu`), where packing was
    measured faster, and then cuts packs further while that shortens the estimated time on `slots`
    trials at once (`_fill_slots`); an explicit size packs every packable one, as asked;
    1 turns packing off (twins still train once).

    The packs come longest first (students x steps x forward FLOPs, `_pack_cost`), the order Tune
    starts them in, so that no long pack is left to run alone at the end. On the main job (2026-12-01,
    18 packs of 4 to 155 s on 2 cores) its packs' measured times give 515 s in the order they were
    built (by student and kappa, the longest last) and 493 s longest first, against 492 s of work a core.
    """
    from kdscale import data as datasets, models
    from kdscale.train import packable
    from kdscale.train.students import packs_across_sizes

    size = MAX_PACK if pack_size is None else pack_size
    groups: dict[str, list[TrialSpec]] = {}
    can_pack: dict[tuple, tuple[bool, bool]] = {}  # (packs, packs across data sizes)
    flops: dict[tuple, float] = {}
    for trial in trials:
        key = (trial.student, trial.recipe, trial.data)
        if key not in can_pack:
            info = datasets.info(trial.data)
            model = models.build(trial.student, info.input_shape, info.num_classes, info.vocab_size)
            flops[key] = model_flops(trial.student, trial.data)
            small = flops[key] <= (PACK_MAX_FLOPS_GPU if gpu else PACK_MAX_FLOPS)
            packs = packable(model) and (small or pack_size is not None)
            can_pack[key] = (packs, packs and packs_across_sizes(model) and trial.recipe.augment == "none"
                             and trial.recipe.epochs is None)
        packs, across = can_pack[key]
        group = _pack_key(trial, across) if packs and size > 1 else training_key(trial)
        groups.setdefault(group, []).append(trial)
    units = []  # per group, its training units (twins together)
    for members in groups.values():
        by_key: dict[str, list[TrialSpec]] = {}
        for trial in members:
            by_key.setdefault(training_key(trial), []).append(trial)
        units.append(sorted(by_key.values(), key=lambda unit: unit[0].n_train))  # a pack's sizes close
    cuts = [math.ceil(len(group) / size) for group in units]  # packs per group
    if pack_size is None and slots > 1:
        cuts = _fill_slots(units, cuts, slots, flops)
    packs = [pack for group, count in zip(units, cuts) for pack in _cut(group, count)]
    return sorted(packs, key=lambda pack: -_pack_cost(pack, flops))


@functools.lru_cache(maxsize=None)
def model_flops(student, data) -> float:
    """Forward FLOPs of one sample of `data` through `student` (kdscale.train.forward_flops), once per
    driver: the trials get them in their config, as torch's flop counter costs a worker 1.2 s of
    imports (torch._dynamo) on its first call."""
    from kdscale import data as datasets, models
    from kdscale.train import forward_flops

    info = datasets.info(data)
    return forward_flops(models.build(student, info.input_shape, info.num_classes, info.vocab_size), info.example())


def _cut(group: list[list[TrialSpec]], count: int) -> list[list[TrialSpec]]:
    """The units of one group in `count` packs of even sizes (each unit's trials in one pack)."""
    bounds = [round(i * len(group) / count) for i in range(count + 1)]
    return [[t for unit in group[a:b] for t in unit] for a, b in zip(bounds, bounds[1:])]


def _fill_slots(units: list[list[list[TrialSpec]]], cuts: list[int], slots: int, flops: dict) -> list[int]:
    """More packs per group while that shortens the estimated makespan of all packs on `slots` trials
    at once (longest first onto the least loaded slot): a pack's step costs PACK_STEP_FLOPS plus its
    students' own, so a cut costs work and pays off only where a slot would otherwise idle."""
    def makespan(counts):
        loads = [0.0] * slots
        for cost in sorted((_pack_cost(pack, flops, fixed=True) for group, count in zip(units, counts)
                            for pack in _cut(group, count)), reverse=True):
            loads[loads.index(min(loads))] += cost
        return max(loads)
    best = makespan(cuts)
    while True:
        options = [(makespan(trial), trial) for g in range(len(cuts)) if cuts[g] < len(units[g])
                   for trial in [cuts[:g] + [cuts[g] + 1] + cuts[g + 1:]]]
        if not options or min(options)[0] >= best:
            return cuts
        best, cuts = min(options)


def _pack_cost(pack: list[TrialSpec], flops: dict[tuple, float], fixed: bool = False) -> float:
    """A pack's work, roughly: students trained (twins once) x steps x (forward FLOPs + STEP_FLOPS),
    plus, with `fixed`, steps x PACK_STEP_FLOPS (what a step costs the pack whatever its size)."""
    from kdscale.train.schedule import plan_steps

    unique = list({training_key(t): t for t in pack}.values())
    steps = max(plan_steps(t.recipe, t.n_train)[2] for t in unique)
    return sum(plan_steps(t.recipe, t.n_train)[2] * (flops[t.student, t.recipe, t.data] + STEP_FLOPS)
               for t in unique) + (steps * PACK_STEP_FLOPS if fixed else 0.0)


def _pack_key(trial: TrialSpec, across_sizes: bool = False) -> str:
    """Trials with one pack key train in one pack: same student, data and recipe, but for the seed,
    the objective, the teacher (one only with augmentation: it runs on the shared augmented batch),
    with sgd the learning rate and weight decay, and with `across_sizes` the kappa (the data size)."""
    recipe = trial.recipe
    if recipe.optimizer == "sgd":
        recipe = replace(recipe, lr=1.0, weight_decay=0.0)
    teacher = trial.teacher.id if recipe.augment != "none" else None
    kappa = None if across_sizes else trial.kappa
    return spec_id((trial.data, trial.student, kappa, recipe, trial.extras, teacher or ""))


def _slots(resources) -> int:
    """How many trials the cluster runs at once: what its CPUs (GPUs) hold, at most max_concurrent."""
    import ray

    total = ray.cluster_resources()
    held = [int(total.get("CPU", 0) // resources.cpus_per_trial)] if resources.cpus_per_trial > 0 else []
    if resources.gpus_per_trial > 0:
        held.append(int(total.get("GPU", 0) // resources.gpus_per_trial))
    slots = max(1, min(held, default=1))
    return slots if resources.max_concurrent is None else max(1, min(slots, resources.max_concurrent))


def train_students(spec, pending: list[TrialSpec], teachers: dict, store: ResultsStore, tracker, cache: str,
                   total: int, done: int, progress: bool, log, fault: dict | None) -> bool:
    """Train the pending trials as Tune trials; True if some did not finish (interrupted). The MLflow
    writes are done before it returns: a thread writing while Ray stops can free a Ray object after
    its core worker is gone, which ends the process (seen once, 2026-12-01)."""
    resources = spec.resources
    packs = make_packs(pending, resources.pack_size, gpu=resources.gpus_per_trial > 0, slots=_slots(resources))
    if len(packs) < len(pending):
        log(f"students: {len(pending)} in {len(packs)} Tune trials (packs of one model: seeds, objectives, "
            "teachers and kappas)")
    name = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    interrupt = _Interrupt(f"kdscale-stop:{store.uri}:{name}", log)
    callback = _DriverCallback(store, tracker, total, done, log, progress, resources.metrics_every_s, interrupt)
    trainable = tune.with_resources(tune.with_parameters(student_trainable, teachers=teachers),
                                    {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})
    shared = {"storage": store.storage, "study": spec.name, "cache": cache, "cpus": resources.cpus_per_trial,
              "checkpoint_every_s": resources.checkpoint_every_s, "stop_key": interrupt.key,
              "forward_flops": {model_key(p[0]): model_flops(p[0].student, p[0].data) for p in packs}}
    shared.update(fault or {})
    tuner = tune.Tuner(
        trainable,
        param_space={"pack": tune.grid_search([[to_dict(t) for t in pack] for pack in packs]), **shared},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=resources.max_concurrent),
        run_config=tune.RunConfig(
            name=name, storage_path=store.uri + "/_tune", stop=_StopOnInterrupt(callback),
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            callbacks=[callback], verbose=0, log_to_file=True))
    try:
        with interrupt:
            tuner.fit()
    except BaseException as error:  # after a second Ctrl-C the queued runs are the next driver's to write
        callback.close(drain=not isinstance(error, KeyboardInterrupt), raise_fault=False)
        raise
    callback.close()
    return callback.finished < len(pending)
