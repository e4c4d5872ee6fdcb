"""A new MLflow SQLite database starts as a copy of an empty, migrated template from the cache
(kdscale.tracking.client.seed_database): checked against the database MLflow makes itself."""
import os
import sqlite3
import time

import mlflow
import pytest

from kdscale.tracking.client import open_experiment, seed_database

pytestmark = pytest.mark.slow  # MLflow migrates a database or two per test: 5-9 s each


def schema(path):
    """Tables with their columns, index names and the migration head: what MLflow's schema is. (Two
    databases MLflow migrates itself can list a table's CHECK constraints in different orders.)"""
    with sqlite3.connect(path) as db:
        names = db.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        tables = {name: db.execute(f'PRAGMA table_info("{name}")').fetchall()
                  for kind, name in names if kind == "table"}
        head = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return tables, sorted(name for kind, name in names if kind == "index"), head


def test_a_seeded_database_is_the_one_mlflow_makes_and_takes_no_migration(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSCALE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    plain, seeded, again = tmp_path / "plain" / "mlflow.db", tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    plain.parent.mkdir()
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{plain}").search_experiments()
    seed_database(seeded)  # makes the template, then copies it
    template, = (tmp_path / "cache" / "mlflow").iterdir()
    assert template.name == f"empty-{mlflow.__version__}.db" and seeded.exists()
    assert not [p for p in seeded.parent.iterdir() if p != seeded]  # no temporary file left beside it
    with sqlite3.connect(seeded) as db:  # in place with MLflow's Default experiment: no driver races to add it
        assert db.execute("SELECT experiment_id, name FROM experiments").fetchall() == [(0, "Default")]
    assert os.stat(seeded).st_mode == os.stat(plain).st_mode
    start = time.perf_counter()
    client, experiment_id = open_experiment(f"sqlite:///{again}", "study")
    assert time.perf_counter() - start < 2.0  # a copy: MLflow's migrations take 5-9 s here
    assert schema(again) == schema(seeded) == schema(plain)
    # the Default experiment is the one MLflow makes in a database of its own
    default, = [e for e in client.search_experiments() if e.experiment_id == "0"]
    plain_default = mlflow.MlflowClient(tracking_uri=f"sqlite:///{plain}").get_experiment("0")
    assert (default.name, default.artifact_location) == (plain_default.name, plain_default.artifact_location)
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "test_acc", 0.5)
    stored = mlflow.MlflowClient(tracking_uri=f"sqlite:///{again}").get_run(run.info.run_id)
    assert stored.data.metrics == {"test_acc": 0.5}


def test_an_existing_database_is_never_touched_and_a_bad_cache_leaves_it_to_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSCALE_CACHE", str(tmp_path / "cache"))
    database = tmp_path / "mlflow.db"
    client, experiment_id = open_experiment(f"sqlite:///{database}", "study")
    run_id = client.create_run(experiment_id).info.run_id
    before = database.read_bytes()
    seed_database(database)
    assert database.read_bytes() == before
    assert open_experiment(f"sqlite:///{database}", "study")[1] == experiment_id
    # a cache that is a file: no template, no copy, and MLflow creates the database itself
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("KDSCALE_CACHE", str(tmp_path / "file"))
    other = tmp_path / "other" / "mlflow.db"
    seed_database(other)
    assert not other.exists()
    client, experiment_id = open_experiment(f"sqlite:///{other}", "study")
    assert client.get_experiment(experiment_id).name == "study" and run_id
