"""The MLflow side of a study (StudyTracker): one experiment per study, one parent run, one nested run
per trial, kept exactly once across kills (see kdscale.tracking). A study reads like its results:
the parent run carries the grid as params and the headline results as metrics (`log_headline`);
a trial's run is named objective, kappa and seed first, holds its settings as params (only the
fields its objective reads) and its data set as an input, and only results as metrics (the
per-epoch curves at their optimizer step), with the start and end of its own training.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterable

from kdscale.schema import arm_label, pair_label
from kdscale.tracking.client import (ROLE, STUDY, TRIAL_ID, flatten, log_batched, metrics_of, open_experiment,
                                     resolve_uri)

# A trial's results: its metrics. Everything else of its row is a setting (a param) or bookkeeping.
RESULTS = ("test_acc", "test_loss", "test_ppl", "train_acc", "fidelity_train", "fidelity_test", "teacher_test_acc",
           "teacher_test_ppl", "cka_teacher", "fa_teacher", "probe_acc", "teacher_probe_acc", "transfer_probe_acc",
           "teacher_transfer_probe_acc", "init_distance", "end_distance", "ntk_teacher", "wall_s", "flops")
# The objective's fields each objective reads (the others are reset to defaults: not settings of it).
READS = {"lt": (), "kd": ("tau", "alpha", "tau_squared"), "ls": ("epsilon",), "hard": ("alpha",), "l2": ("alpha",),
         "embed": ("tau", "tau_teacher")}


def _model_label(model: dict[str, Any]) -> str:
    return f"{model['family']}-{model['width']}" + "".join(f"-{k}={v}" for k, v in model.get("options", ()))


def _objective_label(objective: dict[str, Any]) -> str:
    read = READS[objective["name"]]
    return arm_label(objective["name"], *(objective.get(k) if k in read else None
                                          for k in ("tau", "alpha", "tau_squared", "epsilon", "tau_teacher")))


def run_name(spec: dict[str, Any]) -> str:
    """`kd tau=4 kappa=0.1 seed=0 cnn1d-64>cnn1d-4`: what tells trials apart comes first."""
    pair = pair_label(_model_label(spec["teacher"]["model"]), _model_label(spec["student"]))
    return f"{_objective_label(spec['objective'])} kappa={spec['kappa']:g} seed={spec['seed']} {pair}"


def trial_params(spec: dict[str, Any]) -> dict[str, str]:
    """A trial's settings as MLflow params: the pair, the objective's own fields, kappa, seed, the data
    and the student's recipe (defaults that change nothing, like no warm-up, left out)."""
    from kdscale.config import RecipeSpec, from_dict

    objective, recipe = spec["objective"], spec["recipe"]
    params = {"objective": objective["name"], "arm": _objective_label(objective), "kappa": spec["kappa"],
              "seed": spec["seed"], "teacher": _model_label(spec["teacher"]["model"]),
              "student": _model_label(spec["student"]), "budget": from_dict(RecipeSpec, recipe).budget,
              **{f"objective.{k}": objective[k] for k in READS[objective["name"]]},
              **{k: spec[k] for k in ("init", "init_scale", "inputs") if spec.get(k, "x") not in ("x", "independent",
                                                                                                  "data", 0.0)},
              **({"teacher.untrained": True} if spec["teacher"].get("untrained") else {}),
              **{f"data.{k}": v for k, v in spec["teacher"]["data"].items() if k in ("name", "n_teacher", "seed", "n_test")
                 and v is not None}}
    defaults = {"warmup": 0.0, "milestones": [], "augment": "none", "precision": "fp32", "nesterov": False}
    for key, value in recipe.items():
        if key in ("steps", "epochs") or defaults.get(key, object()) == value or value in (None, [], ()):
            continue
        if key == "gamma" and recipe["schedule"] != "step":
            continue
        params[f"recipe.{key}"] = value
    if spec.get("extras"):
        params["extras"] = ",".join(spec["extras"])
    return {k: str(v) for k, v in params.items()}


def data_input(data: dict[str, Any]):
    """The trial's data set as an MLflow dataset input (name, content hash, the spec as its source)."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    from kdscale.config import DataSpec, from_dict, spec_id

    described = {k: v for k, v in data.items() if k != "root" and v not in (None, [], ())}
    dataset = Dataset(name=data["name"], digest=spec_id(from_dict(DataSpec, data)), source_type="kdscale",
                      source=json.dumps(described, sort_keys=True))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def metric_key(text: str) -> str:
    """An MLflow metric key from a label (MLflow allows letters, digits, _ - . / : and spaces):
    `kappa_star/cnn1d-64>cnn1d-4 kd tau=4` becomes `kappa_star/cnn1d-64 to cnn1d-4 kd tau:4`."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", text.replace(">", " to ").replace("=", ":"))


class StudyTracker:
    """The MLflow side of one study, used by the driver alone."""

    def __init__(self, tracking_uri: str | None, study: str, params: dict[str, Any] | None = None,
                 verbose: bool = False):
        self.uri, self.study = resolve_uri(tracking_uri), study
        self.parent_id = None
        self.client, self.experiment_id = open_experiment(self.uri, study, verbose)
        parents = self._search(f"tags.`{ROLE}` = 'study'")
        if parents:
            self.parent_id = parents[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=study, tags={ROLE: "study", STUDY: study})
            self.parent_id = run.info.run_id
        if params:  # the grid: params once (MLflow params are write-once), tags kept current (a grid grows)
            grid = {k: v for k, v in flatten(params).items() if v not in ("None", "()", "[]", "")}
            if not parents:
                self._log(self.parent_id, params=grid)
            self._log(self.parent_id, tags={f"grid.{k}": v for k, v in grid.items()})
        self.killed = 0
        for run in self._search(f"tags.`{ROLE}` = 'trial' and attributes.status = 'RUNNING'"):
            self.client.set_terminated(run.info.run_id, status="KILLED")
            self.killed += 1
        self.runs: dict[str, tuple[str, str]] = {}  # trial id -> (run id, status)
        for run in self._search(f"tags.`{ROLE}` = 'trial'"):
            trial_id = run.data.tags.get(TRIAL_ID)
            if trial_id and (trial_id not in self.runs or run.info.status == "FINISHED"):
                self.runs[trial_id] = (run.info.run_id, run.info.status)

    def _search(self, query: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], query, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log(self, run_id: str, params: dict[str, str] | None = None, metrics: list | None = None,
             tags: dict[str, str] | None = None) -> None:
        log_batched(self.client, run_id, params, metrics, tags)

    def trial_run(self, trial_id: str, label: str, spec: dict[str, Any], started: float | None = None) -> str:
        """The trial's run: the existing one (whatever its status) or a new nested run, named objective,
        kappa and seed first, with its settings as params, its data set as an input, and `started` (the
        trial's own start, epoch seconds) as its start time."""
        if trial_id in self.runs:
            return self._reopen(trial_id)
        run_id = self._create(trial_id, spec, started)
        self._log(run_id, params=trial_params(spec))
        return run_id

    def _reopen(self, trial_id: str) -> str:
        run_id, status = self.runs[trial_id]
        if status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
            self.runs[trial_id] = (run_id, "RUNNING")
        return run_id

    def _create(self, trial_id: str, spec: dict[str, Any], started: float | None) -> str:
        """A new nested run with its tags and its data set as an input; its params are the caller's."""
        run = self.client.create_run(self.experiment_id, run_name=run_name(spec), tags={
            ROLE: "trial", TRIAL_ID: trial_id, "mlflow.parentRunId": self.parent_id, STUDY: self.study},
            start_time=None if started is None else int(started * 1000))
        self.client.log_inputs(run.info.run_id, datasets=[data_input(spec["teacher"]["data"])])
        self.runs[trial_id] = (run.info.run_id, "RUNNING")
        return run.info.run_id

    @staticmethod
    def _report_metrics(reports: Iterable[dict[str, Any]]) -> list:
        now = int(time.time() * 1000)
        return [m for report in reports
                for m in metrics_of({("lr_now" if k == "lr" else k): v for k, v in report.items() if k not in ("step", "epoch")},
                                    int(report["step"]), now)]

    def log_reports(self, trial_id: str, reports: Iterable[dict[str, Any]]) -> None:
        """Per-epoch metrics (each report's `step` is its x axis), in one batch. The schedule's current lr is
        charted as `lr_now`, so that `lr` stays the recipe's setting (a param); the epoch is left out (the
        step is the x axis, and a chart of the epoch against it says nothing)."""
        metrics = self._report_metrics(reports)
        if metrics:
            self._log(self.runs[trial_id][0], metrics=metrics)

    def finish_trial(self, row: dict[str, Any], spec: dict[str, Any], history: Iterable[dict[str, Any]] = (),
                     tags: dict[str, str] | None = None) -> None:
        """Log a finished trial's unlogged per-epoch `history` and its results (metrics only: settings are
        params), and close its run at the trial's own end (creating the run if it never started). A
        new run takes its params, curve, results and tags in one batch: four calls a trial, not six
        (each a transaction on SQLite, on the driver while the workers train)."""
        trial_id = row["trial_id"]
        fresh = trial_id not in self.runs
        run_id = self._create(trial_id, spec, row.get("started_at")) if fresh else self._reopen(trial_id)
        metrics = self._report_metrics(history) + metrics_of({k: row.get(k) for k in RESULTS},
                                                             int(row.get("steps") or 0), int(time.time() * 1000))
        params = {k: str(row[k]) for k in ("student_params", "teacher_params") if row.get(k) is not None}
        self._log(run_id, params=(trial_params(spec) | params) if fresh else params, metrics=metrics,
                  tags={"status": row["status"], "error": row.get("error") or ""} | (tags or {}))
        status = "FINISHED" if row["status"] in ("ok", "diverged") else "FAILED"
        ended = row.get("finished_at")
        self.client.set_terminated(run_id, status=status, end_time=None if ended is None else int(ended * 1000))
        self.runs[trial_id] = (run_id, status)

    def last_logged_step(self, trial_id: str) -> int:
        """The last step with a logged test accuracy in the trial's run (-1 if none)."""
        if trial_id not in self.runs:
            return -1
        history = self.client.get_metric_history(self.runs[trial_id][0], "test_acc")
        return max((m.step for m in history), default=-1)

    def unfinished(self, trial_ids: Iterable[str]) -> list[str]:
        """Which of these trials have no FINISHED run."""
        return [t for t in trial_ids if self.runs.get(t, ("", ""))[1] != "FINISHED"]

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(self.parent_id, str(path), artifact_path)

    def log_search(self, result: dict[str, Any]) -> None:
        """A recipe search the study ran (kdscale.tracking.searches.log_search)."""
        from kdscale.tracking.searches import log_search

        log_search(self.uri, result, study=self.study)

    def kill_running(self) -> int:
        """Mark this driver's open trial runs KILLED (their trials were interrupted); returns how many."""
        killed = 0
        for trial_id, (run_id, status) in list(self.runs.items()):
            if status == "RUNNING":
                self.client.set_terminated(run_id, status="KILLED")
                self.runs[trial_id] = (run_id, "KILLED")
                killed += 1
        return killed

    def close(self, status: str = "FINISHED") -> None:
        """End the study's run: FINISHED, KILLED (interrupted or incomplete) or FAILED (a fault);
        every trial run still open is marked KILLED first."""
        self.kill_running()
        self.client.set_terminated(self.parent_id, status=status)


def log_artifacts(tracking_uri: str, run_id: str, paths: Iterable[str | Path],
                  artifact_path: str | None = None) -> None:
    """Attach files to an existing run (e.g. the analysis report to a study's parent run)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path)


def study_runs(tracking_uri: str | None, study: str) -> list[dict[str, Any]]:
    """Every trial run of a study: trial id, run id, status, name (for checks and tests)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=50000)
    return [{"trial_id": r.data.tags.get(TRIAL_ID), "run_id": r.info.run_id, "status": r.info.status,
             "name": r.info.run_name, "parent": r.data.tags.get("mlflow.parentRunId")} for r in runs]


def log_headline(tracking_uri: str, run_id: str, tables: dict[str, Any]) -> int:
    """A study's headline results on its parent run, as metrics the runs table shows: kappa* (and its
    interval) per pair and arm, PI and PG per pair, arm and kappa (step = kappa x 1000), and the size
    law's exponent with its interval. `tables` are analysis.report's (DataFrames by name). Returns how
    many metrics were logged."""
    import math

    import mlflow

    values: dict[str, float] = {}
    cross = tables.get("crossover")
    if cross is not None:
        for row in cross.to_dict("records"):
            name = metric_key(f"kappa_star/{row['pair']} {row['arm']}")
            for suffix, key in (("", "kappa_star"), ("_low", "ci_low"), ("_high", "ci_high")):
                if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                    values[name + suffix] = float(row[key])
    scaling = tables.get("size_scaling")
    if scaling is not None:
        for row in scaling.to_dict("records"):
            if row.get("model") in (None, "ratio") or str(row.get("model", "")).startswith("ratio"):
                for key in ("slope", "slope_low", "slope_high"):
                    if isinstance(row.get(key), (int, float)) and math.isfinite(row[key]):
                        values[metric_key(f"size_law/{row['arm']} {key.replace('slope', 'exponent')}")] = float(row[key])
    now = int(time.time() * 1000)
    metrics = metrics_of(values, 0, now)
    summary = tables.get("increments")
    if summary is not None:
        for row in summary.to_dict("records"):
            for key in ("PI_mean", "PG_mean"):
                metrics += metrics_of({metric_key(f"{key[:2]}/{row['pair']} {row['arm']}"): row.get(key)},
                                      int(round(float(row["kappa"]) * 1000)), now)
    if metrics:
        log_batched(mlflow.MlflowClient(tracking_uri=resolve_uri(tracking_uri)), run_id, metrics=metrics)
    return len(metrics)
