"""What runs on Ray's workers: a teacher task, a recipe-search task, and a Tune trial that trains a
pack of students.

Workers never talk to MLflow and never write the results table: a trial reports its students'
per-epoch metrics and, at the end, their rows (as JSON) to the driver, and writes only its own
students' prediction, history and feature files and its pack's checkpoint. It checkpoints every
`checkpoint_every_s`, and at its next report after the driver's Ctrl-C, into the study's store
(`_resume/<pack id>.pt`), not Tune's: a worker that dies is restarted by Tune and a study rerun by
a new driver, and both resume the pack from that file. A trial that meets an environment fault
(a full disk) removes its students' files and reports the fault; the driver stops on it.
"""
from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import ray
from ray import tune

from kdscale.config import TrialSpec, from_dict
from kdscale.errors import find_fault
from kdscale.store import ResultsStore, resume_id
from kdscale.trial import model_key, spec_row

ROWS_KEY = "kdscale_rows"  # the final report of a Tune trial: its students' results rows, as JSON
REPORTS_KEY = "kdscale_reports"  # a per-epoch report: [[trial id, report or null], ...], as JSON
STARTED_KEY = "kdscale_started_at"  # with each report: when the pack's training began (epoch seconds)
SAVED_KEY = "kdscale_saved"  # in the report after the driver's Ctrl-C: the checkpoint is written
FAULT_KEY = "kdscale_fault"  # with the final report: the environment fault that ended the trial
STOP_POLL_S = 1.0  # how often a trial looks for the driver's Ctrl-C


def teacher_task(spec_dict: dict, n_pool: int, cache: str, threads: int):
    import torch

    from kdscale.config import TeacherSpec
    from kdscale.teacher import get_teacher

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(threads)
    return get_teacher(from_dict(TeacherSpec, spec_dict), n_pool, root=Path(cache), device="auto"
                       if torch.cuda.is_available() else "cpu", log=lambda message: None)


def search_task(specs: list, cache: str, threads: int, teacher_logits: dict) -> list[dict]:
    """One recipe-search job (kdscale.searchjob.run_job): the searches of one (student, kappa) as one pack."""
    import torch

    from kdscale import data as datasets
    from kdscale.searchjob import run_job

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(threads)
    first = specs[0]
    loaded = datasets.load(first.data, datasets.stream_length_for(first.data.n_teacher, first.n_train))
    return run_job(specs, loaded, teacher_logits, device="cuda" if torch.cuda.is_available() else "cpu")


def student_trainable(config: dict, teachers: dict | None = None) -> None:
    """One Tune trial, a pack of students of one model (kdscale.engine.trials.make_packs): resume from the
    pack's checkpoint if any, train, report, write predictions."""
    import torch

    from kdscale.trial import run_pack

    specs = [from_dict(TrialSpec, trial) for trial in config["pack"]]
    os.environ["KDSCALE_CACHE"] = config["cache"]
    torch.set_num_threads(max(1, int(config["cpus"])))
    store = ResultsStore(config["storage"], config["study"], create=False)
    pack = resume_id(spec.id for spec in specs)
    resume = None
    payload = store.read_resume(pack)
    if payload is not None:
        try:
            resume = torch.load(io.BytesIO(payload), weights_only=True)
        except Exception:
            resume = None  # damaged: the pack starts again
    now, started = time.monotonic(), time.time()  # started: the run's start time in MLflow
    clock = {"count": 0, "saved": now, "polled": now, "stopping": False}

    def on_report(students: list, state) -> None:
        # A checkpoint every `checkpoint_every_s` seconds, not every report: a short trial that
        # loses its worker simply starts again, a long one loses at most that much work.
        clock["count"] += 1
        metrics = {REPORTS_KEY: json.dumps([[s.id, r] for s, r in zip(specs, students)]), STARTED_KEY: started}
        now, stop = time.monotonic(), False
        if not clock["stopping"] and now - clock["polled"] >= STOP_POLL_S:
            clock["polled"] = now
            stop = _stop_requested(config)
        if stop or now - clock["saved"] >= config["checkpoint_every_s"]:
            buffer = io.BytesIO()
            torch.save(state(), buffer)
            store.write_resume(pack, buffer.getvalue())
            clock["saved"] = time.monotonic()
        if stop:
            clock["stopping"] = True
            metrics[SAVED_KEY] = 1
        tune.report(metrics)
        _maybe_die(config, clock["count"])

    fault = None
    try:
        outcomes = run_pack(specs, teachers, on_report=on_report, resume=resume,
                            forward_flops=config.get("forward_flops", {}).get(model_key(specs[0])))
        node = ray.get_runtime_context().get_node_id()
        rows = []
        for spec, outcome in zip(specs, outcomes):
            if outcome.test_probs is not None:
                store.write_predictions(spec.id, outcome.test_probs, outcome.test_labels)
            store.write_history(spec.id, outcome.history)
            if outcome.test_features is not None:
                store.write_features(spec.id, outcome.test_features)
            rows.append(outcome.row | {"node_id": node, "started_at": started, "finished_at": time.time()})
    except Exception as error:  # a bug or an out-of-memory is a failed row, not max_failures retries
        fault = find_fault(error)
        for spec in specs:  # no file of a trial without its row
            store.remove_trial_files(spec.id)
        rows = [spec_row(spec) | {"status": "failed", "error": f"{type(error).__name__}: {error}"[:500]}
                for spec in specs]
    final = {ROWS_KEY: json.dumps(rows, default=_json_default)}
    tune.report(final | ({FAULT_KEY: str(fault)} if fault is not None else {}))


def _stop_requested(config: dict) -> bool:
    """Has the driver been interrupted (Ctrl-C)? Asked of Ray's key-value store."""
    try:
        from ray.experimental import internal_kv

        return bool(config.get("stop_key")) and internal_kv._internal_kv_get(config["stop_key"]) is not None
    except Exception:
        return False


def _maybe_die(config: dict, reports: int) -> None:
    """Fault injection for the tests: SIGKILL this worker once, after `kill_after_reports` reports."""
    marker = config.get("kill_marker")
    if marker and reports == config.get("kill_after_reports") and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    return str(value)


