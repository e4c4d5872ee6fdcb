"""The MLflow connection: tracking URIs (checked before anything starts), a client whose failures are
one line, experiments (artifacts beside a SQLite database; opened on the runs table) and batched logs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from kdscale.errors import EnvironmentFault, SpecError, os_reason

ROLE, TRIAL_ID, STUDY = "kdscale.role", "kdscale.trial_id", "kdscale.study"
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
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
    database = sqlite_path(uri)
    if database is not None:
        seed_database(database)
    try:
        client = _Client(mlflow.MlflowClient(tracking_uri=uri), uri)  # opens (or creates) the store
    except Exception as error:
        reason = " ".join(str(error).split())[:200]
        raise EnvironmentFault(f"tracking: opening MLflow at {uri} failed: {type(error).__name__}: {reason}") from error
    experiment = client.get_experiment_by_name(name)
    if experiment:
        experiment_id = experiment.experiment_id
        if experiment.tags.get(KIND_TAG) != KIND:
            client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
        return client, experiment_id
    artifacts = (database.parent / "mlartifacts" / name).as_uri() if database is not None else None
    # An experiment of kind "custom model development" opens on its runs table; MLflow 3's UI otherwise
    # guesses, and opened kdscale's on the GenAI overview (traces, "No data").
    return client, client.create_experiment(name, artifact_location=artifacts, tags={KIND_TAG: KIND})


def seed_database(database: Path) -> None:
    """Start a new SQLite database as a copy of an empty, migrated one that the cache keeps per MLflow
    version (cache_dir()/mlflow/empty-VERSION.db): MLflow creates a database by running its schema
    migrations one by one, 5-9 s on this project's 2-core machine, once per new database. The
    template holds no experiment; MLflow makes its Default one in the copy, as in a database of its
    own. An existing database is never touched; a copy lands whole (written beside it, then linked
    into place, so two drivers starting at once keep one); where the template cannot be made or
    copied, MLflow creates the database itself, as without it."""
    import sqlite3

    import mlflow

    from kdscale.fileio import atomic_path, cache_dir

    if database.exists():
        return
    try:
        template = cache_dir() / "mlflow" / f"empty-{mlflow.__version__}.db"
        if not template.exists():
            with atomic_path(template) as tmp:
                mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # migrates
                with contextlib.closing(sqlite3.connect(tmp)) as db, db:
                    db.execute("DELETE FROM experiments")
        mask = os.umask(0)
        os.umask(mask)
        with atomic_path(database, exclusive=True) as tmp:  # never over one another driver made meanwhile
            os.chmod(tmp, 0o666 & ~mask)  # as MLflow's own file would be, not mkstemp's 0600
            with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as source, \
                    contextlib.closing(sqlite3.connect(tmp)) as copy:
                source.backup(copy)
            # MLflow adds its Default experiment (artifacts under this process's ./mlruns, wherever the
            # database is) before the copy is in place: two drivers never race to insert it
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp}").get_experiment("0")
    except (OSError, EnvironmentFault, SpecError, sqlite3.Error):
        return  # MLflow creates it (and says why, if it cannot)


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


def metrics_of(values: dict[str, Any], step: int, timestamp: int):
    """MLflow metrics of the finite numbers among `values` (None, NaN, bools and text are left out)."""
    from mlflow.entities import Metric

    return [Metric(key, float(v), timestamp, step) for key, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]


