"""Issue 15: one driver per study, environment faults as one clear line, nothing half-done left behind.

Each test meets a fault the way a user would, on the real components (the study script's main, a
real lease file, real MLflow on SQLite, real Parquet, Ray where it is needed: those are slow), and
checks what docs/reliability.md promises: one line naming what and where, exit status 1 (2 for bad
input), the parent run FAILED or KILLED, no temporary file and no file without its row, and a rerun
that completes.
"""
from __future__ import annotations

import errno
import pickle
from pathlib import Path

import numpy as np
import pytest

from kdscale.errors import EnvironmentFault
from kdscale.store import ResultsStore


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


def write_table(storage: Path, study: str, trial_ids: list[str]) -> Path:
    store = ResultsStore(str(storage), study)
    store.add_rows([{"trial_id": t, "status": "ok", "label": t} for t in trial_ids])
    return storage / study / "results.parquet"


def test_a_damaged_table_of_another_study_is_skipped_with_a_warning(tmp_path):
    from kdscale.store import shared_trials

    damaged = write_table(tmp_path, "a_damaged", ["t1", "t2"])
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated, as a full disk or a killed copy leaves it
    foreign = tmp_path / "b_foreign" / "results.parquet"
    foreign.parent.mkdir()
    import pandas as pd

    pd.DataFrame({"x": [1]}).to_parquet(foreign)  # some other program's table
    write_table(tmp_path, "c_good", ["t1"])
    warnings = []
    found = shared_trials(ResultsStore(str(tmp_path), "mine"), {"t1": (), "t2": ()}, warn=warnings.append)
    assert {s: [r["trial_id"] for r in rows] for s, rows in found.items()} == {"c_good": ["t1"]}
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert f"study a_damaged: storage: the results table {damaged} is damaged" in warnings[0]
    assert f"study b_foreign: storage: {foreign} is not a kdscale results table (no column trial_id" in warnings[1]


def test_a_full_disk_at_a_store_write_removes_its_temporary_file(tmp_path, monkeypatch):
    import kdscale.store

    table = write_table(tmp_path, "study", ["t1"])
    before = table.read_bytes()

    def full(stream, payload):
        stream.write(payload[:len(payload) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(kdscale.store, "write_payload", full)
    with pytest.raises(EnvironmentFault) as caught:
        ResultsStore(str(tmp_path), "study").add_rows([{"trial_id": "t2", "status": "ok"}])
    assert str(caught.value) == f"storage: writing {table} failed: [Errno 28] No space left on device"
    assert table.read_bytes() == before and not list(tmp_path.rglob(".tmp-*"))


def test_a_full_disk_on_the_cache_is_one_line_naming_the_file(tmp_path, monkeypatch):
    from kdscale import teacher

    def full(file, array):
        file.write(b"\x93NUMPY")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(teacher.np, "save", full)
    with pytest.raises(EnvironmentFault) as caught:
        teacher._save_npy(tmp_path / "teachers" / "x" / "logits_test.npy", np.zeros(3))
    assert str(caught.value) == (f"cache: writing {tmp_path / 'teachers' / 'x' / 'logits_test.npy'} failed: "
                                 "[Errno 28] No space left on device")
    assert list((tmp_path / "teachers" / "x").iterdir()) == []


def test_cuda_without_a_gpu_is_refused_before_any_data_is_made(tmp_path, capsys, monkeypatch):
    import torch

    from kdscale import cli

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["trial", "--device", "cuda", "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdscale: error: device: --device cuda asks for a CUDA GPU, and torch sees none")
    assert "\n" not in err and not (tmp_path / "cache").exists()


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
