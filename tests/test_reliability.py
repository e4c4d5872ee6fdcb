"""Issue 15: one driver per study, environment faults as one clear line, nothing half-done left behind.

Each test meets a fault the way a user would, on the real components (the study script's main, a
real lease file, real MLflow on SQLite, real Parquet, Ray where it is needed: those are slow), and
checks what docs/reliability.md promises: one line naming what and where, exit status 1 (2 for bad
input), the parent run FAILED or KILLED, no temporary file and no file without its row, and a rerun
that completes.
"""
from __future__ import annotations

import errno
import io
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kdscale.errors import EnvironmentFault
from kdscale.store import ResultsStore
from tests.scripts import REPO, load_script

TINY = ["--dataset", "digits", "--pairs", "mlp:width=32>mlp:width=16", "--kappas", "0.25", "--seeds", "1",
        "--recipe", "fixed", "--no-analysis", "--grid"]


def main(name: str, *argv: str):
    """studies/NAME.py's main(ARGV) in this process, exit status and output as a process gives them."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = load_script(name).main(list(argv))
        except SystemExit as exit:
            code = exit.code
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def where(root: Path) -> list[str]:
    return ["--storage", str(root / "results"), "--tracking-uri", f"sqlite:///{root / 'db' / 'mlflow.db'}"]


def assert_one_line(done, status: int, message: str) -> str:
    """Exit `status`, the error as the last line of stderr, naming `message`, and no traceback."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status, done.stderr
    assert lines and "error: " in lines[-1] and message in lines[-1], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return lines[-1]


# --- one driver per study -----------------------------------------------------------------------


def within(seconds: float, condition) -> bool:
    """Whether `condition()` comes true within `seconds` (a heartbeat thread of 0.05 s may wait its
    turn for a core much longer on a loaded machine: a fixed 0.3 s failed once beside the suite)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_second_driver_is_refused_naming_the_holder_and_a_stale_lease_is_taken_over(tmp_path):
    from kdscale.lease import LEASE_FILE, LeaseHeld, StudyLease

    store = ResultsStore(str(tmp_path), "study")
    first = StudyLease(store, heartbeat_s=0.05)
    assert first.acquire() is None
    with pytest.raises(LeaseHeld) as refused:
        StudyLease(store).acquire()
    message = str(refused.value)
    assert all(part in message for part in (f"pid {os.getpid()}", socket.gethostname(), "--take-over"))
    assert "\n" not in message
    beat = first.record["heartbeat"]
    assert within(10.0, lambda: first.record["heartbeat"] > beat)  # the heartbeat thread refreshes it
    taker = StudyLease(store)
    assert "--take-over" in taker.acquire(take_over=True)  # a live holder, taken over on request
    assert within(10.0, lambda: first.lost is not None)  # ... which the old holder notices
    first.release()
    assert (tmp_path / "study" / LEASE_FILE).exists()  # releasing a lost lease leaves the new one
    taker.release()
    assert not (tmp_path / "study" / LEASE_FILE).exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = StudyLease(store)
    stale.record["pid"] = int(gone.stdout)
    stale._create()  # a lease whose driver died without releasing it
    note = StudyLease(store).acquire()
    assert f"pid {int(gone.stdout)} on this host, is gone" in note
    silent = StudyLease(store)
    silent.record.update(host="elsewhere", heartbeat=time.time() - 500)
    (tmp_path / "study" / LEASE_FILE).unlink()
    silent._create()  # a driver on another node whose heartbeat stopped
    assert "no heartbeat for 500 s" in StudyLease(store, stale_s=120).acquire()


# --- storage and tracking: one line before anything starts ----------------------------------------


def test_a_storage_that_is_a_file_or_cannot_be_made_is_one_line(tmp_path):
    import ray

    afile = tmp_path / "afile"
    afile.write_text("")
    done = main("model_size", *TINY, *where(tmp_path), "--storage", str(afile))
    assert_one_line(done, 1, f"storage: {afile} is a file, not a directory")
    done = main("model_size", *TINY, *where(tmp_path), "--storage", "/proc/nope")
    assert_one_line(done, 1, "storage: cannot create the study directory /proc/nope/model_size_fixed")
    assert not ray.is_initialized() and not (tmp_path / "db" / "mlflow.db").exists()


def test_an_unreachable_tracking_server_fails_fast_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    began = time.perf_counter()
    done = main("model_size", *TINY, *where(tmp_path), "--tracking-uri", f"http://127.0.0.1:{port}")
    assert time.perf_counter() - began < 10
    assert_one_line(done, 1, f"tracking: the MLflow server at http://127.0.0.1:{port} did not answer within 5 s")
    assert not (tmp_path / "results").exists()  # nothing written, not even an empty folder


@pytest.mark.parametrize("uri, status, message", [
    ("ftp://x", 2, "--tracking-uri ftp://x is invalid: MLflow tracks to sqlite:///PATH"),
    ("sqlite:////proc/nope/mlflow.db", 1, "tracking: cannot create /proc/nope for the MLflow database"),
])
def test_a_tracking_uri_that_cannot_work_is_one_line_and_leaves_no_folder(tmp_path, uri, status, message):
    done = main("model_size", *TINY, *where(tmp_path), "--tracking-uri", uri)
    assert_one_line(done, status, message)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
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


# --- damaged tables -------------------------------------------------------------------------------


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


def test_a_damaged_table_of_the_study_itself_is_one_line_before_mlflow(tmp_path):
    damaged = write_table(tmp_path / "results", "model_size_fixed", ["t1"])
    damaged.write_bytes(b"PAR1 truncated")
    done = main("model_size", *TINY, *where(tmp_path))
    assert_one_line(done, 1, f"storage: the results table {damaged} is damaged")
    assert damaged.read_bytes() == b"PAR1 truncated" and not (tmp_path / "db" / "mlflow.db").exists()
    assert sorted(p.name for p in damaged.parent.iterdir()) == ["results.parquet"]  # lease released


# --- full disks -----------------------------------------------------------------------------------


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


# --- CIFAR's pickles, loaded as safely as pickle allows -------------------------------------------


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


# --- on Ray: resources, double launches, full disks mid-study, Ctrl-C ------------------------------

DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from kdscale.config import RecipeSpec
    from kdscale.engine import run_study
    from kdscale.study import Resources
    from test_engine import small_study
    spec = small_study(name="interrupted", kappas=(0.25, 0.5), seeds=(0,), recipe=RecipeSpec(lr=0.05, steps=6000,
                       batch_size=64), resources=Resources(metrics_every_s=0, checkpoint_every_s=1000, pack_size=1))
    result = run_study(spec, storage={storage!r}, tracking_uri={uri!r}, cache={cache!r}, address={address!r},
                       progress=False)
    print("complete" if result.complete else "incomplete")
""")


def runs_of(root: Path, study: str) -> list[dict]:
    from kdscale.tracking import study_runs

    return study_runs(f"sqlite:///{root / 'db' / 'mlflow.db'}", study)


def parent_status(root: Path, study: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'db' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(study)
    [parent] = client.search_runs([experiment.experiment_id], "tags.`kdscale.role` = 'study'")
    return parent.info.status


def check_once(root: Path, study: str, count: int) -> None:
    table = ResultsStore(str(root / "results"), study).table()
    assert len(table) == count and table["trial_id"].is_unique and set(table["status"]) == {"ok"}
    runs = runs_of(root, study)
    assert sorted(r["trial_id"] for r in runs) == sorted(table["trial_id"])  # one run per trial
    assert {r["status"] for r in runs} == {"FINISHED"}
    assert not list((root / "results").rglob(".tmp-*"))


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--cpus-per-trial", "--gpus-per-trial"])
def test_resources_no_node_has_are_refused_before_training(tmp_path, ray_address, flag):
    import torch

    gpus = torch.cuda.device_count() + 1  # one more GPU than there is: 1 on a machine without one
    value, asked = ("64", "64 CPU and 0 GPU") if flag == "--cpus-per-trial" else (str(gpus), f"1 CPU and {gpus} GPU")
    done = main("model_size", *TINY, *where(tmp_path), flag, value, "--address", ray_address)
    line = assert_one_line(done, 1, f"resources: a trial asks for {asked} on one node; no node of the Ray cluster")
    assert "(largest node: " in line and "lower --cpus-per-trial / --gpus-per-trial" in line
    assert "teachers:" not in done.stderr  # refused before the first teacher
    assert parent_status(tmp_path, "model_size_fixed") == "FAILED"


@pytest.mark.slow
def test_two_drivers_of_one_study_train_every_trial_once(tmp_path, ray_address):
    """The same command started twice at once into one storage and one MLflow database."""
    argv = [sys.executable, str(REPO / "studies" / "model_size.py"), "--dataset", "digits", "--pairs",
            "mlp:width=32>mlp:width=16", "--kappas", "0.25", "0.5", "--seeds", "2", "--recipe", "fixed", "--grid",
            "--student-steps", "1000", "--pack-size", "1", "--no-analysis", "--address", ray_address, *where(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    drivers = [subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [d.communicate(timeout=400) for d in drivers]
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 1], outputs
    refused = outputs[[d.returncode for d in drivers].index(1)][1]
    assert len(refused.strip().splitlines()) == 1, refused
    assert "model_size: error: study model_size_fixed is being run by another driver" in refused
    assert "--take-over" in refused
    check_once(tmp_path, "model_size_fixed", 8)


@pytest.mark.slow
def test_a_full_disk_at_the_table_write_is_one_line_and_the_rerun_completes(tmp_path, ray_address, monkeypatch):
    import kdscale.store

    calls = []

    def fills_up(stream, payload):  # the driver's third table write meets a full disk halfway
        calls.append(len(payload))
        if len(calls) == 3:
            stream.write(payload[:len(payload) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        stream.write(payload)
    monkeypatch.setattr(kdscale.store, "write_payload", fills_up)
    argv = [*TINY, "--kappas", "0.25", "0.5", "--pack-size", "1", "--max-concurrent", "1", "--address", ray_address,
            *where(tmp_path)]
    done = main("model_size", *argv)
    table_path = tmp_path / "results" / "model_size_fixed" / "results.parquet"
    assert_one_line(done, 1, f"storage: writing {table_path} failed: [Errno 28] No space left on device")
    store = ResultsStore(str(tmp_path / "results"), "model_size_fixed")
    kept = set(store.table()["trial_id"])
    assert len(kept) == 2  # what finished before the fault is kept
    assert not list((tmp_path / "results").rglob(".tmp-*"))
    written = {p.stem for kind in ("predictions", "history") for p in (table_path.parent / kind).glob("*")}
    assert written <= kept  # no file of a trial without its row
    assert parent_status(tmp_path, "model_size_fixed") == "FAILED"
    assert "RUNNING" not in {r["status"] for r in runs_of(tmp_path, "model_size_fixed")}

    monkeypatch.undo()
    again = main("model_size", *argv)
    assert again.returncode == 0, again.stderr
    check_once(tmp_path, "model_size_fixed", 4)
    assert parent_status(tmp_path, "model_size_fixed") == "FINISHED"


@pytest.mark.slow
def test_ctrl_c_marks_the_runs_killed_and_the_rerun_resumes_from_the_checkpoint(tmp_path, ray_address):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(REPO / "tests"), storage=str(tmp_path / "results"),
                                    uri=f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}", cache=str(tmp_path / "cache"),
                                    address=ray_address))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    driver = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    table = tmp_path / "results" / "interrupted" / "_tune"
    deadline = time.time() + 240
    try:  # MLflow is read only once the driver has made its database (two processes creating one break it)
        while time.time() < deadline and not (table.exists() and any(
                r["status"] == "RUNNING" and r["trial_id"] for r in runs_of(tmp_path, "interrupted"))):
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.5)
        time.sleep(2)
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert "incomplete" in out and "interrupted: running trials save a checkpoint" in err, err
    assert "Traceback" not in err, err
    assert {r["status"] for r in runs_of(tmp_path, "interrupted")} <= {"KILLED", "FINISHED"}
    assert parent_status(tmp_path, "interrupted") == "KILLED"
    assert list((tmp_path / "results" / "interrupted" / "_resume").glob("*.pt"))  # saved at the signal
    assert not (tmp_path / "results" / "interrupted" / "_lease.json").exists()

    rerun = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.stdout.strip() == "complete", rerun.stderr
    resumed = ResultsStore(str(tmp_path / "results"), "interrupted").table()
    assert (resumed["resumed_from_step"] > 0).any()  # continued, not started again
    check_once(tmp_path, "interrupted", 4)
