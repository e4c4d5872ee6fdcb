"""What runs on Ray's workers: a teacher task, a recipe-search task, and a Tune trial that trains a
pack of students.

Workers never talk to MLflow and never write the results table: a trial reports its students'
per-epoch metrics and, at the end, their rows (as JSON) to the driver, and writes only its own
students' prediction, history and feature files. It checkpoints every `checkpoint_every_s`, so a
worker that dies is restarted by Tune from its last checkpoint.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

from kdscale.config import TrialSpec, from_dict
from kdscale.store import ResultsStore
from kdscale.trial import spec_row

ROWS_KEY = "kdscale_rows"  # the final report of a Tune trial: its students' results rows, as JSON
REPORTS_KEY = "kdscale_reports"  # a per-epoch report: [[trial id, report or null], ...], as JSON


def teacher_task(spec_dict: dict, n_pool: int, cache: str, threads: int):
    import torch

    from kdscale.config import TeacherSpec
    from kdscale.teacher import get_teacher

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(threads)
    return get_teacher(from_dict(TeacherSpec, spec_dict), n_pool, root=Path(cache), device="auto"
                       if torch.cuda.is_available() else "cpu", log=lambda message: None)


def search_task(specs: list, cache: str, threads: int, teacher_logits: dict) -> list[dict]:
    """One recipe-search job (kdscale.search.run_job): the searches of one (student, kappa) as one pack."""
    import torch

    from kdscale import data as datasets
    from kdscale.search import run_job

    os.environ["KDSCALE_CACHE"] = cache
    torch.set_num_threads(threads)
    first = specs[0]
    loaded = datasets.load(first.data, datasets.stream_length_for(first.data.n_teacher, first.n_train))
    return run_job(specs, loaded, teacher_logits, device="cuda" if torch.cuda.is_available() else "cpu")


def student_trainable(config: dict, teachers: dict | None = None) -> None:
    """One Tune trial, a pack of students that differ only by seed (often of one): resume from the
    last checkpoint if any, train, report, write predictions."""
    import torch

    from kdscale.trial import run_pack

    specs = [from_dict(TrialSpec, trial) for trial in config["pack"]]
    os.environ["KDSCALE_CACHE"] = config["cache"]
    torch.set_num_threads(max(1, int(config["cpus"])))
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(Path(directory) / "state.pt", weights_only=True)
    reports = {"count": 0, "saved": time.monotonic()}

    def on_report(students: list, state) -> None:
        # A checkpoint every `checkpoint_every_s` seconds, not every report: a short trial that
        # loses its worker simply starts again, a long one loses at most that much work.
        reports["count"] += 1
        metrics = {REPORTS_KEY: json.dumps([[s.id, r] for s, r in zip(specs, students)])}
        if time.monotonic() - reports["saved"] >= config["checkpoint_every_s"]:
            with tempfile.TemporaryDirectory() as directory:
                torch.save(state(), Path(directory) / "state.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
            reports["saved"] = time.monotonic()
        else:
            tune.report(metrics)
        _maybe_die(config, reports["count"])

    try:
        outcomes = run_pack(specs, teachers, on_report=on_report, resume=resume)
        store = ResultsStore(config["storage"], config["study"])
        node = ray.get_runtime_context().get_node_id()
        rows = []
        for spec, outcome in zip(specs, outcomes):
            if outcome.test_probs is not None:
                store.write_predictions(spec.id, outcome.test_probs, outcome.test_labels)
            store.write_history(spec.id, outcome.history)
            if outcome.test_features is not None:
                store.write_features(spec.id, outcome.test_features)
            rows.append(outcome.row | {"node_id": node})
    except Exception as error:  # a bug or an out-of-memory is a failed row, not max_failures retries
        rows = [spec_row(spec) | {"status": "failed", "error": f"{type(error).__name__}: {error}"[:500]}
                for spec in specs]
    tune.report({ROWS_KEY: json.dumps(rows, default=_json_default)})


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


