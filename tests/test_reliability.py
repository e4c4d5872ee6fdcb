"""Issue 15: one driver per study, environment faults as one clear line, nothing half-done left behind.

Each test meets a fault the way a user would, on the real components (the study script's main, a
real lease file, real MLflow on SQLite, real Parquet, Ray where it is needed: those are slow), and
checks what docs/reliability.md promises: one line naming what and where, exit status 1 (2 for bad
input), the parent run FAILED or KILLED, no temporary file and no file without its row, and a rerun
that completes.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest


def test_mlflow_artifacts_of_a_sqlite_uri_live_beside_the_database(tmp_path, monkeypatch):
    from kdscale.tracking import StudyTracker, open_experiment

    work = tmp_path / "checkout"
    work.mkdir()
    monkeypatch.chdir(work)  # where ./mlruns used to appear
    uri = f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"
    tracker = StudyTracker(uri, "study")
    report = tmp_path / "report.md"
    report.write_text("# report")
    tracker.log_artifacts([report], "analysis")
    tracker.close()
    client, experiment = open_experiment(uri, "study")
    location = client.get_experiment(experiment).artifact_location
    assert location == (tmp_path / "db" / "mlartifacts" / "study").as_uri()
    assert len(list((tmp_path / "db" / "mlartifacts" / "study").rglob("report.md"))) == 1
    client, search = open_experiment(uri, "kdscale-search")  # every experiment kdscale creates
    assert client.get_experiment(search).artifact_location.endswith("/db/mlartifacts/kdscale-search")
    assert list(work.iterdir()) == []


class Payload:
    """A crafted 'batch': unpickling it calls Path.write_text, as a real attack would call os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_the_cifar_unpickler_refuses_a_crafted_batch_and_reads_a_real_one(tmp_path):
    from kdscale.data import cifar
    from kdscale.errors import SpecError
    from tests.test_real_data import write_cifar10

    marker = tmp_path / "marker"
    crafted = tmp_path / "crafted_batch"
    crafted.write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=2))
    with open(crafted, "rb") as f:
        pickle.load(f)  # what plain pickle would do: run it
    assert marker.read_text() == "ran"
    marker.unlink()
    with pytest.raises(SpecError) as refused:
        cifar.read_batch(crafted, "labels")
    assert "(UnpicklingError: it names __builtin__.getattr, which a CIFAR batch never does (refused, not called))" \
        in str(refused.value)  # protocol 2 reaches Path.write_text through getattr, refused before it is called
    assert not marker.exists() and "\n" not in str(refused.value)
    for odd in ({b"data": {1, 2}}, [1, 2], {b"data": np.array([object()], dtype=object)}):
        crafted.write_bytes(pickle.dumps(odd, protocol=2))  # builds, but is not the format
        with pytest.raises(SpecError, match="is not a CIFAR python-version batch"):
            cifar.read_batch(crafted, "labels")

    _, _, x_test, y_test = write_cifar10(tmp_path / "real", per_batch=10, n_test=10)  # Python 2's pickles
    x, y = cifar.read_batch(tmp_path / "real" / "cifar-10-batches-py" / "test_batch", "labels")
    assert np.array_equal(x, x_test.reshape(-1, 3, 32, 32)) and np.array_equal(y, y_test)
