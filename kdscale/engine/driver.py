"""The study runner: run_study(spec) = validate -> skip finished trials -> teachers as parallel Ray
tasks -> students as Ray Tune trials (kdscale.engine.workers) -> rows into the store, runs into MLflow.

The driver owns the results table and MLflow; workers train, checkpoint, and write only their own
trial's prediction and history files. A finished trial's row reaches the table the moment its last
report reaches the driver, so Ctrl-C or a crashed driver loses only unfinished work, and the same
command continues the study (finished trials are skipped by id, not by Tune's state).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
from ray import tune

from kdscale import data as datasets
from kdscale.config import TrialSpec, from_dict, spec_id, to_dict
from kdscale.engine.searches import run_searches, stored_searches
from kdscale.engine.session import init_ray
from kdscale.engine.workers import REPORTS_KEY, ROWS_KEY, student_trainable, teacher_task
from kdscale.fileio import cache_dir
from kdscale.schema import FINISHED, n_train
from kdscale.search import chosen_recipe
from kdscale.store import ResultsStore, shared_trials
from kdscale.study import StudySpec, check_study
from kdscale.tracking import StudyTracker
from kdscale.trial import spec_row, training_key

MAX_PACK = 8
# Auto packing only for models of at most this many forward FLOPs per sample. Measured here on
# 2 CPU cores (docs/benchmarks.md): a pack of 3-4 took 0.25-0.71 of the sequential time for
# models of 0.015-0.39 MFLOP, and 1.2x for the vanilla CNN on CIFAR (10.3 MFLOP), compute-bound.
PACK_MAX_FLOPS = 2e6


@dataclass
class StudyResult:
    table: Any  # pandas DataFrame of every finished trial of the study
    store: ResultsStore
    tracking_uri: str
    parent_run_id: str
    trained: int  # trials trained (or tried) by this call
    skipped: int  # trials already finished in the store
    complete: bool  # every trial of the grid has a finished row
    reused: int = 0  # trials copied from other studies' stores under the same storage
    searched: int = 0  # recipe searches run by this call
    search_s: float = 0.0  # wall time of those searches
    train_s: float = 0.0  # wall time of training the students



# --- driver -----------------------------------------------------------------------------------


class _DriverCallback(tune.Callback):
    """Runs in the driver: per-epoch metrics and finished rows into MLflow and the store, progress."""

    def __init__(self, store: ResultsStore, tracker: StudyTracker, total: int, done: int, log, progress: bool,
                 flush_every_s: float):
        from tqdm import tqdm

        self.store, self.tracker, self.log = store, tracker, log
        # Per-epoch metrics wait here and reach MLflow in one batch per trial and interval: a
        # log_batch per report per trial cost the driver (on the trials' cores) a second a trial.
        self.flush_every_s = flush_every_s
        self.buffer: dict[str, list[dict]] = {}
        self.flushed: dict[str, float] = {}
        self.finished, self.done, self.total = 0, done, total
        self.members: dict[str, dict[str, tuple[TrialSpec, dict]]] = {}  # Tune trial -> its students
        self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial", file=sys.stderr,
                        disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True, leave=False)

    def _students(self, trial) -> dict[str, tuple[TrialSpec, dict]]:
        """The pack's students by trial id, parsed once per Tune trial rather than at every report."""
        if trial.trial_id not in self.members:
            specs = [(from_dict(TrialSpec, d), d) for d in trial.config["pack"]]
            self.members[trial.trial_id] = {spec.id: (spec, d) for spec, d in specs}
        return self.members[trial.trial_id]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        students = self._students(trial)
        if ROWS_KEY in result:
            for row in json.loads(result[ROWS_KEY]):
                self._finish(*students[row["trial_id"]], row)
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
                self.tracker.trial_run(trial_id, spec.label, spec_dict)
                self.tracker.log_reports(trial_id, self.buffer.pop(trial_id))
                self.flushed[trial_id] = now

    def on_trial_error(self, iteration, trials, trial, **info):
        error = getattr(trial, "error_file", None) or "the trial's worker failed"
        for spec, spec_dict in self._students(trial).values():
            self._finish(spec, spec_dict, spec_row(spec) | {"status": "failed", "error": f"gave up: {error}"})

    def _finish(self, spec: TrialSpec, spec_dict: dict, row: dict) -> None:
        self.store.add_rows([row])
        self.tracker.finish_trial(row, spec_dict, self.buffer.pop(spec.id, []))
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

    def close(self):
        self.bar.close()


def run_study(spec: StudySpec, storage: str = "kdscale_results", tracking_uri: str | None = None,
              address: str | None = None, cache: str | None = None, verbose: bool = False,
              progress: bool = True, log=None, fault: dict | None = None) -> StudyResult:
    """Run every unfinished search and trial of `spec`; see the module doc. Returns the study's table."""
    log = log or (lambda message: print(message, file=sys.stderr))
    check_study(spec)  # bad input fails here, before Ray starts
    store = ResultsStore(storage, spec.name)
    tracker = StudyTracker(tracking_uri, spec.name, params=_study_params(spec), verbose=verbose)
    if tracker.killed:
        log(f"marked {tracker.killed} MLflow run(s) left RUNNING by an earlier driver as KILLED")
    searches = spec.searches()
    stored, pending_searches = stored_searches(searches, store.storage)
    if searches:
        log(f"study {spec.name}: recipes by search ({spec.recipe_policy}): {len(searches)} searches, "
            f"{len(stored)} stored, {len(pending_searches)} to run")
    cache = str(Path(cache or cache_dir()).resolve()) if "://" not in str(cache or "") else cache
    started_ray, interrupted, teachers = False, False, None
    trials, pending, skipped, reused, search_s, train_s = None, [], 0, {}, 0.0, 0.0
    try:
        if pending_searches:
            started_ray = init_ray(address, verbose)
            teachers = _train_teachers(spec, cache, log)
            began = time.perf_counter()
            stored |= run_searches(pending_searches, teachers, store.storage, cache, spec.resources, log,
                                   on_result=tracker.log_search)
            search_s = time.perf_counter() - began
        trials = spec.trials({sid: chosen_recipe(result) for sid, result in stored.items()})
        finished = store.finished_ids()
        pending = [t for t in trials if t.id not in finished]
        _sync_tracker(store, tracker, {t.id: t for t in trials})
        skipped = len(trials) - len(pending)
        reused = _reuse_shared(pending, store, tracker)
        pending = [t for t in pending if t.id not in reused]
        shared = f"{len(reused)} from other studies' results, " if reused else ""
        log(f"study {spec.name}: {len(trials)} trials, {skipped} already finished, {shared}"
            f"{len(pending)} to train; results in {store.uri}, MLflow at {tracker.uri}")
        if pending:
            started_ray = init_ray(address, verbose) or started_ray
            teachers = teachers or _train_teachers(spec, cache, log)
            began = time.perf_counter()
            interrupted = _train_students(spec, pending, teachers, store, tracker, cache, len(trials),
                                          len(trials) - len(pending), progress, log, fault)
            train_s = time.perf_counter() - began
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if started_ray:
            ray.shutdown()
    table = store.table()
    done = set(table.loc[table["status"].isin(FINISHED), "trial_id"])
    complete = trials is not None and all(t.id in done for t in trials)
    if store.exists() and "://" not in store.uri:
        tracker.log_artifacts([Path(store.root) / "results.parquet"])
    tracker.close("FINISHED" if complete else "KILLED")
    if not complete:
        missing = "the searches" if trials is None else f"{sum(t.id not in done for t in trials)} trial(s)"
        log(f"study {spec.name}: {missing} not finished{' (interrupted)' if interrupted else ''}; run the same "
            "command again to continue")
    study_ids = {t.id for t in trials or ()}
    return StudyResult(table[table["trial_id"].isin(study_ids)].reset_index(drop=True), store, tracker.uri,
                       tracker.parent_id, len(pending), skipped, complete, len(reused), len(pending_searches),
                       search_s, train_s)


def _reuse_shared(pending: list[TrialSpec], store: ResultsStore, tracker: StudyTracker) -> dict[str, str]:
    """The shared trial cache: pending trials that another study under the same storage finished
    (with at least the extras asked for) are copied in, row, files and an MLflow run tagged with
    the study that trained them, instead of training again. Returns {trial id: source study}."""
    found = shared_trials(store, {t.id: t.extras for t in pending})
    specs = {t.id: t for t in pending}
    for source, rows in found.items():
        store.adopt(ResultsStore(store.storage, source), rows)
        for row in rows:
            row = row | {"study": store.study}
            tracker.finish_trial(row, to_dict(specs[row["trial_id"]]), store.history(row["trial_id"]),
                                 tags={"kdscale.reused_from": source})
    return {row["trial_id"]: source for source, rows in found.items() for row in rows}


def _study_params(spec: StudySpec) -> dict:
    return {"dataset": spec.data.name, "n_teacher": spec.data.n_teacher,
            "pairs": ";".join(f"{t}>{s}" for t, s in spec.pairs), "kappas": list(spec.kappas),
            "taus": list(spec.taus), "objectives": list(spec.objectives), "seeds": list(spec.seeds),
            "recipe": to_dict(spec.recipe), "teacher_recipe": to_dict(spec.teacher_recipe),
            "alpha": spec.alpha, "tau_squared": spec.tau_squared,
            "objective_settings": [o.label for o in spec.objective_specs()],
            "budget": spec.recipe.budget, "recipe_policy": spec.recipe_policy,
            "search": to_dict(spec.search) if spec.recipe_policy != "fixed" else None}


def _sync_tracker(store: ResultsStore, tracker: StudyTracker, trials: dict[str, TrialSpec]) -> None:
    """Rows that reached the store but whose MLflow run never finished (a crash between the two)."""
    table = store.table()
    for trial_id in tracker.unfinished(table["trial_id"]):
        if trial_id not in trials:
            continue
        row = table.loc[table["trial_id"] == trial_id].iloc[0].to_dict()
        row = {k: (None if v is None or (isinstance(v, float) and v != v) else v) for k, v in row.items()}
        after = tracker.last_logged_step(trial_id)  # a killed run may hold part of the curve already
        history = [r for r in store.history(trial_id) if r["step"] > after]
        tracker.finish_trial(row, to_dict(trials[trial_id]), history)


def _train_teachers(spec: StudySpec, cache: str, log) -> dict:
    """Every teacher of the study, trained or loaded, with logits as far into the stream as its
    largest kappa needs."""
    needs: dict[str, int] = {}
    teachers = {t.id: t for t in spec.teachers()}
    for teacher_model, _ in spec.pairs:
        tid = spec.teacher(teacher_model).id
        reach = max(datasets.stream_length_for(spec.data.n_teacher, n_train(k, spec.data.n_teacher))
                    for k in spec.kappas)
        needs[tid] = max(needs.get(tid, 0), reach)
    resources = spec.resources
    threads = max(1, int(resources.cpus_per_trial))
    task = ray.remote(num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial)(teacher_task)
    refs = {tid: task.remote(to_dict(t), needs[tid], cache, threads) for tid, t in teachers.items()}
    log(f"teachers: {len(refs)} to train or load")
    outputs = {}
    for tid, ref in refs.items():
        outputs[tid] = ray.get(ref)
        out = outputs[tid]
        log(f"teacher {out.spec.model.label} [{tid}]: test_acc {out.test_acc:.4f}, {out.params:,} parameters"
            f"{' (trained)' if out.trained else ' (cached)'}")
    return outputs


def make_packs(trials: list[TrialSpec], pack_size: int | None) -> list[list[TrialSpec]]:
    """Group trials that differ only by seed, objective, learning rate and teacher into packs
    (kdscale.train) of at most `pack_size` students: same model, budget and data size, so the same
    step count. Twins (kdscale.trial.training_key: lt of several pairs with one student) go to one
    pack and count as one student: they train once.

    None packs up to MAX_PACK students of every packable configuration whose model is small
    (PACK_MAX_FLOPS), where packing was measured faster; an explicit size packs every packable one;
    1 turns packing off (twins still train once).
    """
    from kdscale import data as datasets, models
    from kdscale.train import forward_flops, packable

    size = MAX_PACK if pack_size is None else pack_size
    groups: dict[str, list[TrialSpec]] = {}
    can_pack: dict[tuple, bool] = {}
    for trial in trials:
        key = (trial.student, trial.recipe, trial.data)
        if key not in can_pack:
            info = datasets.info(trial.data)
            model = models.build(trial.student, info.input_shape, info.num_classes, info.vocab_size)
            small = forward_flops(model, info.example()) <= PACK_MAX_FLOPS
            can_pack[key] = packable(model) and (small or pack_size is not None)
        group = _pack_key(trial) if can_pack[key] and size > 1 else training_key(trial)
        groups.setdefault(group, []).append(trial)
    packs = []
    for members in groups.values():
        units: dict[str, list[TrialSpec]] = {}
        for trial in members:
            units.setdefault(training_key(trial), []).append(trial)
        chunks = list(units.values())
        packs += [[t for unit in chunks[i:i + size] for t in unit] for i in range(0, len(chunks), size)]
    return packs


def _pack_key(trial: TrialSpec) -> str:
    """Trials with one pack key train in one pack: same student, data size and recipe, but for the
    seed, the objective, the teacher (one only with augmentation: it runs on the shared augmented
    batch) and, with sgd, the learning rate and weight decay."""
    recipe = trial.recipe
    if recipe.optimizer == "sgd":
        recipe = replace(recipe, lr=1.0, weight_decay=0.0)
    teacher = trial.teacher.id if recipe.augment != "none" else None
    return spec_id((trial.data, trial.student, trial.kappa, recipe, trial.extras, teacher or ""))


def _train_students(spec: StudySpec, pending: list[TrialSpec], teachers: dict, store: ResultsStore,
                    tracker: StudyTracker, cache: str, total: int, done: int, progress: bool, log,
                    fault: dict | None) -> bool:
    resources = spec.resources
    packs = make_packs(pending, resources.pack_size)
    if len(packs) < len(pending):
        log(f"students: {len(pending)} in {len(packs)} Tune trials (seeds and objectives of one configuration "
            "packed)")
    callback = _DriverCallback(store, tracker, total, done, log, progress, resources.metrics_every_s)
    trainable = tune.with_resources(tune.with_parameters(student_trainable, teachers=teachers),
                                    {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})
    shared = {"storage": store.storage, "study": spec.name, "cache": cache, "cpus": resources.cpus_per_trial,
              "checkpoint_every_s": resources.checkpoint_every_s}
    shared.update(fault or {})
    ray_storage = store.uri + "/_tune"
    tuner = tune.Tuner(
        trainable,
        param_space={"pack": tune.grid_search([[to_dict(t) for t in pack] for pack in packs]), **shared},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=resources.max_concurrent),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=ray_storage,
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[callback], verbose=0,
            log_to_file=True))
    try:
        tuner.fit()
    finally:
        callback.close()
    return callback.finished < len(pending)
