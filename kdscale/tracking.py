"""MLflow tracking: the only module of kdscale that imports mlflow.

One experiment per study, one parent run, one nested run per trial. Workers never talk to MLflow;
the driver logs everything from one process (several processes creating one SQLite database at
once broke its schema migration, see DESIGN).

Ray's MLflowLoggerCallback keeps its trial-to-run map in memory and duplicated runs after a driver
kill, so this module keeps its own: each trial run carries the tag `kdscale.trial_id`, looked up
before a run is created. At start-up the study's trial runs left RUNNING by a killed driver are
marked KILLED (SIGKILL cannot be caught; this sweep is the only defence), and a trial whose row
reached the results store but whose run did not finish is logged again from the store. A driver
that stops (Ctrl-C, a fault) marks its open trial runs KILLED itself (`StudyTracker.close`).

The tracking URI is checked before anything starts (`check_uri`): its scheme, a server's reachability
(one request, 5 s) and a SQLite database's directory. With a `sqlite:` URI, artifacts go beside the
database (`<db dir>/mlartifacts/<experiment>`), never into the working directory's ./mlruns.
A failing MLflow call is one EnvironmentFault naming the URI.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

from kdscale.errors import EnvironmentFault, SpecError, os_reason

ROLE, TRIAL_ID, STUDY = "kdscale.role", "kdscale.trial_id", "kdscale.study"
SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
SERVER_TIMEOUT_S = 5.0


def resolve_uri(tracking_uri: str | None) -> str:
    """Default ./mlflow.db; a relative SQLite path becomes absolute (trials run elsewhere, DESIGN)."""
    uri = tracking_uri or "sqlite:///mlflow.db"
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    elif "://" not in uri:  # a bare path: a file store directory or a .db file
        uri = (prefix + str(Path(uri).resolve())) if uri.endswith(".db") else Path(uri).resolve().as_uri()
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a resolved sqlite:/// URI, else None."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def check_uri(tracking_uri: str | None, timeout_s: float = SERVER_TIMEOUT_S) -> str:
    """The resolved URI, after checking what can be checked before anything starts: a scheme MLflow
    tracks to (else SpecError), a server that answers within `timeout_s` (else EnvironmentFault: MLflow
    itself retries for minutes), a SQLite database whose directory can be made and written."""
    uri = resolve_uri(tracking_uri)
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else "file"
    if scheme not in SCHEMES:
        raise SpecError(f"--tracking-uri {uri} is invalid: MLflow tracks to sqlite:///PATH, http(s)://HOST:PORT, "
                        "file:///DIR or a database URI (postgresql://, mysql://, mssql://)")
    if scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass  # it answered: reachable (a proxy or an old server without /health)
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            reason = os_reason(reason) if isinstance(reason, OSError) else " ".join(str(reason).split())
            raise EnvironmentFault(f"tracking: the MLflow server at {uri} did not answer within {timeout_s:g} s "
                                   f"({reason}): start it, or pass another --tracking-uri") from None
    database = sqlite_path(uri)
    if database is not None:
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise EnvironmentFault(f"tracking: cannot create {database.parent} for the MLflow database {database}: "
                                   f"{os_reason(error)}") from None
        target = database if database.exists() else database.parent
        if not database.parent.is_dir() or not os.access(target, os.W_OK):
            raise EnvironmentFault(f"tracking: the MLflow database {database} is not writable ({target})")
    return uri


class _Client:
    """An MlflowClient whose failures are one EnvironmentFault naming the URI and the call."""

    def __init__(self, client, uri: str):
        self._client, self._uri = client, uri

    def __getattr__(self, name: str):
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except Exception as error:
                reason = " ".join(str(error).split())[:200]
                raise EnvironmentFault(f"tracking: MLflow at {self._uri}: {name} failed: "
                                       f"{type(error).__name__}: {reason}") from error
        return call


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted keys, values as strings (MLflow params)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): str(value)}


def budget_of(recipe: dict[str, Any]) -> str:
    """The budget label (`RecipeSpec.budget`) of a recipe given as `to_dict` writes it."""
    from kdscale.config import RecipeSpec, from_dict

    return from_dict(RecipeSpec, recipe).budget


def open_experiment(tracking_uri: str | None, name: str, verbose: bool = False) -> tuple[Any, str]:
    """(MlflowClient, id of the experiment `name`, created if missing, with its artifacts beside a
    SQLite database). Unless verbose, mlflow's INFO lines ("Creating initial MLflow database
    tables..." and the like) are turned off. A failure is an EnvironmentFault naming the URI."""
    import logging

    import mlflow

    if not verbose:
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = resolve_uri(tracking_uri)
    try:
        client = _Client(mlflow.MlflowClient(tracking_uri=uri), uri)  # opens (or creates) the store
    except Exception as error:
        reason = " ".join(str(error).split())[:200]
        raise EnvironmentFault(f"tracking: opening MLflow at {uri} failed: {type(error).__name__}: {reason}") from error
    experiment = client.get_experiment_by_name(name)
    if experiment:
        return client, experiment.experiment_id
    database = sqlite_path(uri)
    artifacts = (database.parent / "mlartifacts" / name).as_uri() if database is not None else None
    return client, client.create_experiment(name, artifact_location=artifacts)


def log_batched(client, run_id: str, params: dict[str, str] | None = None, metrics: list | None = None,
                tags: dict[str, str] | None = None) -> None:
    """One log_batch call per 1000 metrics / 100 params (MLflow's limits): 0.1 s, not 24 ms each."""
    from mlflow.entities import Param, RunTag

    params_left = [Param(k, v) for k, v in (params or {}).items()]
    metrics_left = list(metrics or [])
    tags_left = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    while True:
        client.log_batch(run_id, metrics=metrics_left[:1000], params=params_left[:100], tags=tags_left)
        metrics_left, params_left, tags_left = metrics_left[1000:], params_left[100:], []
        if not metrics_left and not params_left:
            return


def _metrics(values: dict[str, Any], step: int, timestamp: int):
    from mlflow.entities import Metric

    return [Metric(key, float(v), timestamp, step) for key, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]


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
        if params:  # tags, not params: a grown grid changes them, and MLflow params are write-once
            self._log(self.parent_id, tags={f"grid.{k}": v for k, v in flatten(params).items()})
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

    def trial_run(self, trial_id: str, label: str, spec: dict[str, Any]) -> str:
        """The trial's run: the existing one (whatever its status) or a new nested run."""
        if trial_id in self.runs:
            run_id, status = self.runs[trial_id]
            if status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
                self.runs[trial_id] = (run_id, "RUNNING")
            return run_id
        run = self.client.create_run(self.experiment_id, run_name=label, tags={
            ROLE: "trial", TRIAL_ID: trial_id, "mlflow.parentRunId": self.parent_id, STUDY: self.study})
        self._log(run.info.run_id, params=flatten(spec) | {"budget": budget_of(spec["recipe"])})
        self.runs[trial_id] = (run.info.run_id, "RUNNING")
        return run.info.run_id

    def log_reports(self, trial_id: str, reports: Iterable[dict[str, Any]]) -> None:
        """Per-epoch metrics (each report's `step` is its x axis), in one batch."""
        run_id, _ = self.runs[trial_id]
        now = int(time.time() * 1000)
        metrics = [m for report in reports
                   for m in _metrics({k: v for k, v in report.items() if k != "step"}, int(report["step"]), now)]
        if metrics:
            self._log(run_id, metrics=metrics)

    def finish_trial(self, row: dict[str, Any], spec: dict[str, Any], history: Iterable[dict[str, Any]] = (),
                     tags: dict[str, str] | None = None) -> None:
        """Log a finished trial's unlogged per-epoch `history` and final metrics, and close its run
        (creating the run if it never started)."""
        trial_id = row["trial_id"]
        run_id = self.trial_run(trial_id, row["label"], spec)
        self.log_reports(trial_id, history)
        metrics = _metrics({k: v for k, v in row.items() if k not in ("seed", "kappa", "tau", "alpha")},
                           int(row.get("steps") or 0), int(time.time() * 1000))
        self._log(run_id, metrics=metrics, tags={"status": row["status"], "error": row.get("error") or ""} | (tags or {}))
        status = "FINISHED" if row["status"] in ("ok", "diverged") else "FAILED"
        self.client.set_terminated(run_id, status=status)
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
        """A recipe search the study ran (see `log_search`)."""
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

SEARCH_EXPERIMENT, SEARCH_ID = "kdscale-search", "kdscale.search_id"


def log_search(tracking_uri: str | None, result: dict[str, Any], study: str | None = None,
               verbose: bool = False) -> str:
    """One recipe search (kdscale.search) as a run of the experiment `kdscale-search`, once: the cell
    and the chosen recipe as params, its validation score as metrics, and every candidate's
    learning rate, budget and validation accuracy and loss as metrics at step = candidate index."""
    client, experiment_id = open_experiment(tracking_uri, SEARCH_EXPERIMENT, verbose)
    found = client.search_runs([experiment_id], f"tags.`{SEARCH_ID}` = '{result['id']}'", max_results=1)
    if found:
        return found[0].info.run_id
    spec = result["spec"]
    run = client.create_run(experiment_id, run_name=result["label"], tags={
        ROLE: "search", SEARCH_ID: result["id"], **({STUDY: study} if study else {})})
    objective = spec["objective"]
    params = {"student": _model_label(spec["student"]), "objective": objective["name"], "kappa": spec["kappa"],
              "teacher": _model_label(spec["teacher"]["model"]) if spec.get("teacher") else "none",
              "n_fit": result["n_fit"], "n_val": result["n_val"], "chosen.lr": result["best"]["lr"],
              "chosen.steps": result["best"]["steps"], "space.lrs": spec["space"]["lrs"],
              "space.budgets": spec["space"]["budgets"], "space.seeds": spec["space"]["seeds"]}
    if objective["name"] == "kd":
        params["objective.tau"] = objective["tau"]
    now = int(time.time() * 1000)
    metrics = _metrics({"best_val_acc": result["best"]["val_acc"], "search_wall_s": result["wall_s"]}, 0, now)
    for index, candidate in enumerate(result["candidates"]):
        metrics += _metrics({"candidate_" + k: candidate[k] for k in ("lr", "steps", "val_acc", "val_loss")},
                            index, now)
    log_batched(client, run.info.run_id, {k: str(v) for k, v in params.items()}, metrics,
                tags={"warnings": "; ".join(result["warnings"])})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def _model_label(model: dict[str, Any]) -> str:
    from kdscale.config import ModelSpec, from_dict

    return from_dict(ModelSpec, model).label


def search_runs(tracking_uri: str | None) -> list[dict[str, Any]]:
    """Every logged recipe search: run id, search id, status, chosen lr and steps (for checks and tests)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    experiment = client.get_experiment_by_name(SEARCH_EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'search'", max_results=50000)
    return [{"run_id": r.info.run_id, "search_id": r.data.tags.get(SEARCH_ID), "status": r.info.status,
             "lr": float(r.data.params["chosen.lr"]), "steps": int(r.data.params["chosen.steps"]),
             "best_val_acc": r.data.metrics.get("best_val_acc")} for r in runs]
