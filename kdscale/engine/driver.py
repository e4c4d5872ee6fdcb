"""The study runner: run_study(spec) = validate -> take the study's lease -> skip finished trials ->
teachers (read from the cache on the driver, or trained as parallel Ray tasks) -> students as Ray
Tune trials (kdscale.engine.trials, workers) -> rows into the store, runs into MLflow.

The driver owns the results table and MLflow; workers train, checkpoint, and write only their own
trial's prediction and history files. A finished pack's rows reach the table (in one rewrite) the
moment its last report reaches the driver, so Ctrl-C or a crashed driver loses only unfinished work, and the same
command continues the study (finished trials are skipped by id, not by Tune's state).

Before anything starts: the input (SpecError), the tracking URI (kdscale.tracking.check_uri), the
storage, the lease (one driver per study, kdscale.lease), the study's own table, and, once Ray is
up, the trials' resources against the cluster (kdscale.engine.checks). Whatever goes wrong in the
environment ends as one EnvironmentFault naming what and where, with the parent run FAILED, the
open trial runs KILLED, the files of unfinished trials and temporary files removed, and every
finished row kept.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from kdscale import data as datasets
from kdscale.config import TrialSpec, to_dict
from kdscale.engine.checks import check_resources, task_fault
from kdscale.engine.searches import run_searches, stored_searches
from kdscale.engine.session import init_ray
from kdscale.engine.trials import train_students
from kdscale.engine.workers import teacher_task
from kdscale.errors import EnvironmentFault, find_fault
from kdscale.fileio import cache_dir
from kdscale.lease import STALE_S, StudyLease
from kdscale.schema import FINISHED, n_train
from kdscale.search import chosen_recipe
from kdscale.store import ResultsStore, shared_trials
from kdscale.study import StudySpec, check_study
from kdscale.teacher import get_teacher
from kdscale.tracking import StudyTracker, check_uri


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


def run_study(spec: StudySpec, storage: str = "kdscale_results", tracking_uri: str | None = None,
              address: str | None = None, cache: str | None = None, verbose: bool = False,
              progress: bool = True, log=None, fault: dict | None = None, take_over: bool = False,
              lease_stale_s: float = STALE_S) -> StudyResult:
    """Run every unfinished search and trial of `spec`; see the module doc. Returns the study's table.

    Raises SpecError for bad input, EnvironmentFault (LeaseHeld when another driver runs the study)
    for the environment; `take_over` takes the lease of a driver known to be gone."""
    log = log or (lambda message: print(message, file=sys.stderr))
    check_study(spec)  # bad input fails here, before Ray starts
    uri = check_uri(tracking_uri)  # an unknown scheme, a server that does not answer: before any file
    cache = str(Path(cache or cache_dir()).resolve()) if "://" not in str(cache or "") else cache
    store = ResultsStore(storage, spec.name)
    lease = StudyLease(store, stale_s=lease_stale_s, log=log)
    try:
        note = lease.acquire(take_over)
        if note:
            log(note)
        store.table()  # this study's table damaged: one line, before MLflow and Ray
        # MLflow's study opens on a thread while the driver decides what to run and starts Ray (the
        # two took 1.8 s and 2.2 s one after the other on the --quick grid, 2026-12-01).
        with ThreadPoolExecutor(1, thread_name_prefix="kdscale-mlflow") as pool:
            opening = pool.submit(StudyTracker, uri, spec.name, params=_study_params(spec), verbose=verbose)
            return _run(spec, store, opening, address, cache, verbose, progress, log, fault)
    finally:
        lease.release()
        store.remove_if_empty()  # a study that failed before writing anything leaves no folder


def _ray(address: str | None, verbose: bool, spec: StudySpec) -> bool:
    """Start or join Ray and check that a trial fits on a node; True if this call started Ray."""
    started = init_ray(address, verbose)
    try:
        check_resources(spec.resources.cpus_per_trial, spec.resources.gpus_per_trial)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return started


def _run(spec: StudySpec, store: ResultsStore, opening: Future, address, cache: str, verbose: bool,
         progress: bool, log, fault) -> StudyResult:
    started_ray, interrupted, teachers, status, raising = False, False, None, "FAILED", True
    trials, pending, skipped, reused, search_s, train_s, searched = None, [], 0, {}, 0.0, 0.0, 0
    t0 = time.perf_counter()
    tracker = None
    try:
        try:
            searches = spec.searches()
            stored, pending_searches = stored_searches(searches, store.storage)
            searched = len(pending_searches)
            if pending_searches:
                started_ray = _ray(address, verbose, spec)  # while MLflow's study opens
                tracker = _opened(opening, log)
            if searches:
                log(f"study {spec.name}: recipes by search ({spec.recipe_policy}): {len(searches)} searches, "
                    f"{len(stored)} stored, {len(pending_searches)} to run")
            if pending_searches:
                teachers = _train_teachers(spec, cache, log)
                began = time.perf_counter()
                stored |= run_searches(pending_searches, teachers, store.storage, cache, spec.resources, log,
                                       on_result=tracker.log_search)
                search_s = time.perf_counter() - began
            trials = spec.trials({sid: chosen_recipe(result) for sid, result in stored.items()})
            finished = store.finished_ids()
            pending = [t for t in trials if t.id not in finished]
            skipped = len(trials) - len(pending)
            found = shared_trials(store, {t.id: t.extras for t in pending}, warn=log)
            shared_ids = {row["trial_id"] for rows in found.values() for row in rows}
            if any(t.id not in shared_ids for t in pending):
                started_ray = _ray(address, verbose, spec) or started_ray  # while MLflow's study opens
            tracker = tracker or _opened(opening, log)
            _sync_tracker(store, tracker, {t.id: t for t in trials})
            reused = _reuse_shared(pending, found, store, tracker)
            pending = [t for t in pending if t.id not in reused]
            shared = f"{len(reused)} from other studies' results, " if reused else ""
            log(f"study {spec.name}: {len(trials)} trials, {skipped} already finished, {shared}"
                f"{len(pending)} to train; results in {store.uri}, MLflow at {tracker.uri}")
            if pending:
                teachers = teachers or _train_teachers(spec, cache, log)
                began = time.perf_counter()
                interrupted = train_students(spec, pending, teachers, store, tracker, cache, len(trials),
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
        if complete:
            store.clear_resume()  # checkpoints of packs no grid needs any more
        else:
            store.remove_unfinished_files(t.id for t in pending if t.id not in done)
        if store.exists() and "://" not in store.uri:
            tracker.log_artifacts([Path(store.root) / "results.parquet"])
        status, raising = ("FINISHED" if complete else "KILLED"), False
    except BaseException as error:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        _remove_unfinished(store, pending)
        found = find_fault(error)
        if found is not None and found is not error:
            raise EnvironmentFault(str(found)) from error
        raise
    finally:
        try:
            tracker = tracker or _if_opened(opening)  # a fault before the driver waited for it
            if tracker is not None:  # else MLflow's study never opened: its error is the one raised
                tracker.close(status)
        except EnvironmentFault:
            if not raising:  # nothing else is being raised: the close's own fault is the news
                raise
    if complete and (searched or pending):
        total = time.perf_counter() - t0
        log(f"study {spec.name}: done in {total:.0f} s: searches {search_s:.0f} s ({searched} run), students "
            f"{train_s:.0f} s ({len(pending)} trained), teachers and the rest {total - search_s - train_s:.0f} s")
    if not complete:
        missing = "the searches" if trials is None else f"{sum(t.id not in done for t in trials)} trial(s)"
        log(f"study {spec.name}: {missing} not finished{' (interrupted)' if interrupted else ''}; run the same "
            "command again to continue")
    study_ids = {t.id for t in trials or ()}
    return StudyResult(table[table["trial_id"].isin(study_ids)].reset_index(drop=True), store, tracker.uri,
                       tracker.parent_id, len(pending), skipped, complete, len(reused), searched,
                       search_s, train_s)


def _remove_unfinished(store: ResultsStore, pending: list[TrialSpec]) -> None:
    """After a fault: no file of a trial without its row, no temporary file (best effort: the
    storage may be what failed)."""
    try:
        done = store.finished_ids()
        store.remove_unfinished_files(t.id for t in pending if t.id not in done)
    except Exception:
        pass


def _opened(opening: Future, log) -> StudyTracker:
    """The study's MLflow side, once its opening (on a thread since run_study began) is done."""
    tracker = opening.result()
    if tracker.killed:
        log(f"marked {tracker.killed} MLflow run(s) left RUNNING by an earlier driver as KILLED")
    return tracker


def _if_opened(opening: Future) -> StudyTracker | None:
    """The study's MLflow side if it opened, else None (its own error is not the news)."""
    try:
        return opening.result()
    except Exception:
        return None


def _reuse_shared(pending: list[TrialSpec], found: dict, store: ResultsStore, tracker: StudyTracker) -> dict[str, str]:
    """The shared trial cache: pending trials that another study under the same storage finished
    (with at least the extras asked for; `found`, kdscale.store.shared_trials: another study's
    damaged table skipped with a warning) are copied in, row, files and an MLflow run tagged with
    the study that trained them, instead of training again. Returns {trial id: source study}."""
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
            **({"teacher_untrained": True, "teacher_per_seed": spec.teacher_per_seed,
                "inits": [f"{i}:{s:g}" for i, s in spec.inits], "inputs": list(spec.inputs)}
               if spec.teacher_untrained or spec.inits != (("independent", 0.0),) or spec.inputs != ("data",) else {}),
            **({"teacher_weights": spec.teacher_weights, "teacher_weights_sha256": spec.teacher_weights_sha256}
               if spec.teacher_weights else {}),
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
    largest kappa needs. A teacher whose cache entry already holds all that is read here, on the
    driver (files only: no worker to start, 2.2 s for the --quick grid's 3 teachers); the others
    train or extend their logits as Ray tasks."""
    teachers = {t.id: t for t in spec.teachers()}
    reach = max(datasets.stream_length_for(spec.data.n_teacher, n_train(k, spec.data.n_teacher)) for k in spec.kappas)
    cached = {}
    if "://" not in cache:
        for tid, t in teachers.items():
            out = get_teacher(t, reach, root=Path(cache), log=lambda message: None, cached_only=True)
            if out is not None:
                cached[tid] = out
    resources = spec.resources
    threads = max(1, int(resources.cpus_per_trial))
    task = ray.remote(num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial)(teacher_task)
    refs = {tid: task.remote(to_dict(t), reach, cache, threads) for tid, t in teachers.items() if tid not in cached}
    log(f"teachers: {len(teachers)} to train or load" + (f" ({len(cached)} cached)" if cached else ""))
    outputs = {}
    for tid in teachers:
        if tid in cached:
            outputs[tid] = cached[tid]
        else:
            try:
                outputs[tid] = ray.get(refs[tid])
            except ray.exceptions.RayTaskError as error:  # a full cache disk is one line, a bug its traceback
                found = task_fault(error, "cache")
                if found is None:
                    raise
                raise found from error
        out = outputs[tid]
        how = " (initialised)" if out.spec.untrained else " (head fitted)" if out.spec.weights else " (trained)"
        log(f"teacher {out.spec.model.label} [{tid}]: test_acc {out.test_acc:.4f}, {out.params:,} parameters"
            f"{how if out.trained else ' (cached)'}")
    return outputs
