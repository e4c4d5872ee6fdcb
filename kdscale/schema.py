"""The results schema: the contract between the engine (which writes it) and `analysis` (which reads it).

One study's results, under a storage that is a local path or a URI pyarrow understands (s3://...):

    <storage>/<study>/results.parquet          one row per trial (COLUMNS), unique trial_id
    <storage>/<study>/predictions/<id>.npz     probs float32 [n_test, C], labels int64 [n_test]; token
                                               models: pred int16 [n_test, T], labels int64 [n_test, T]
    <storage>/<study>/history/<id>.json        the trial's per-epoch reports
    <storage>/<study>/features/<id>.npy        float32 [n_test, D], for trials with extras "features"
    <storage>/_<name>/...                      kdscale's own files (tuned recipes, ...); never a study

This module imports neither torch nor any other part of kdscale, so `analysis` can read results with
it alone; the names here (columns, their types, the files, the labels of an objective's arm and of
M = round(kappa * N)) have no other home.
"""
from __future__ import annotations

import io
import json
import math
import os
from typing import Any

# The results table's columns (DESIGN's contract plus a few that say how a row was trained).
COLUMNS = ("study", "trial_id", "status", "error", "label", "dataset", "n_teacher", "n_train", "kappa",
           "teacher", "student", "teacher_params", "student_params", "teacher_id", "objective", "tau",
           "alpha", "tau_squared", "epsilon", "seed", "budget", "lr", "weight_decay", "batch_size", "test_acc",
           "test_loss", "test_ppl", "test_seq_acc", "train_acc", "fidelity_train", "fidelity_test", "teacher_test_acc",
           "epochs", "steps", "wall_s", "flops", "resumed_from_step", "node_id", "cka_teacher", "fa_teacher",
           "probe_acc", "pack_size", "extras", "fp_iterations", "teacher_test_ppl",
           # issue 18 (random teachers): how the student started, what it was distilled on, and the
           # probes of student and teacher (on the same samples, and on a second task)
           "tau_teacher", "init", "init_scale", "init_distance", "inputs", "teacher_probe_acc",
           "transfer_probe_acc", "teacher_transfer_probe_acc",
           # issue 17: the trained student's relative distance to its teacher's initialisation (NaN
           # unless the student has the teacher's architecture); init_distance is the start's
           "end_distance",
           # issue 17: CKA of the student's and the teacher's empirical NTKs on test samples (Fig. 16)
           "ntk_teacher")
INT_COLUMNS = ("n_teacher", "n_train", "teacher_params", "student_params", "seed", "batch_size", "epochs", "steps",
               "resumed_from_step", "pack_size")
FLOAT_COLUMNS = ("kappa", "tau", "alpha", "epsilon", "lr", "weight_decay", "test_acc", "test_loss", "test_ppl",
                 "test_seq_acc", "fp_iterations",
                 "train_acc", "fidelity_train", "fidelity_test", "teacher_test_acc", "wall_s", "flops", "cka_teacher",
                 "fa_teacher", "probe_acc", "teacher_test_ppl", "tau_teacher", "init_scale", "init_distance",
                 "teacher_probe_acc",
                 "transfer_probe_acc", "teacher_transfer_probe_acc", "end_distance", "ntk_teacher")
BOOL_COLUMNS = ("tau_squared",)
STRING_COLUMNS = tuple(c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS)

# A token without a label (padding, the input half of a copy task): torch's default ignore_index.
IGNORE_LABEL = -100

FINISHED = ("ok", "diverged")  # a diverged trial is a result; a failed one is tried again

RESULTS_FILE = "results.parquet"
PREDICTIONS_DIR, HISTORY_DIR, FEATURES_DIR = "predictions", "history", "features"
TRIAL_FILES = ((PREDICTIONS_DIR, "npz"), (HISTORY_DIR, "json"), (FEATURES_DIR, "npy"))


def n_train(kappa: float, n_teacher: int) -> int:
    """M = round(kappa * N), half away from zero so it is the same on every platform."""
    return int(math.floor(kappa * n_teacher + 0.5))


def pair_label(teacher: str, student: str) -> str:
    """How a teacher-student pair is written everywhere (flags, tables, figures): `cnn1d-64>cnn1d-4`."""
    return f"{teacher}>{student}"


def arm_label(objective: str, tau: float | None = None, alpha: float | None = None,
              tau_squared: bool | None = None, epsilon: float | None = None,
              tau_teacher: float | None = None) -> str:
    """The objective and the settings it reads: `lt`, `kd tau=4`, `kd tau=4 no-tau2 alpha=0.5`,
    `ls eps=0.1`, `hard alpha=0.5`, `embed tau=0.1/0.04` (student/teacher). A missing (None or
    NaN) setting is left out."""
    def given(value):
        return value is not None and not (isinstance(value, float) and math.isnan(value))

    if objective == "kd":
        text = f"kd tau={float(tau):g}" if given(tau) else "kd"
        if given(tau_squared) and not tau_squared:
            text += " no-tau2"
        return text + (f" alpha={float(alpha):g}" if given(alpha) and alpha else "")
    if objective == "ls":
        return f"ls eps={float(epsilon):g}" if given(epsilon) else "ls"
    if objective == "embed" and given(tau):
        return f"embed tau={float(tau):g}" + (f"/{float(tau_teacher):g}" if given(tau_teacher) else "")
    if objective in ("hard", "l2") and given(alpha) and alpha:
        return f"{objective} alpha={float(alpha):g}"
    return objective


def row_arm_label(row: dict) -> str:
    """arm_label of a results row (pandas' NA and NaN count as missing)."""
    def value(key):
        item = row.get(key)
        try:
            missing = item is None or item != item or str(item) == "<NA>"
        except (TypeError, ValueError):  # pandas.NA refuses a truth value
            missing = True
        return None if missing else item

    return arm_label(str(row["objective"]), value("tau"), value("alpha"), value("tau_squared"), value("epsilon"),
                     value("tau_teacher"))


def typed(table):
    """Fixed column types, so a table of failed rows (all nulls) reads back like a full one."""
    import pandas as pd

    table = table.copy()
    for column in INT_COLUMNS:
        table[column] = pd.array(table[column], dtype="Int64")
    for column in FLOAT_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    for column in BOOL_COLUMNS:
        table[column] = pd.array(table[column], dtype="boolean")
    for column in STRING_COLUMNS:
        table[column] = table[column].astype("string")
    return table


# --- where files are and how to read them -------------------------------------------------------


def is_uri(location) -> bool:
    """s3://, gs://, file://...: a storage can be a URI pyarrow understands."""
    return "://" in str(location)


def filesystem(location) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) of a local path (made absolute) or a URI (s3://...)."""
    import pyarrow.fs as pafs

    location = str(location)
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def trial_file(study_root: str, kind: str, trial_id: str) -> str:
    """`<study_root>/<kind>/<trial_id>.<suffix>` for kind in predictions, history, features."""
    suffix = dict(TRIAL_FILES)[kind]
    return f"{study_root.rstrip('/')}/{kind}/{trial_id}.{suffix}"


def read_bytes(fs, path: str) -> bytes | None:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_file(path) as handle:
        return handle.read()


def read_predictions(fs, study_root: str, trial_id: str):
    """(probs float32 [n_test, C], labels int64 [n_test]) of one trial, or None if it has no file.
    A token model's file holds classes, not probabilities: ValueError (read_token_predictions)."""
    import numpy as np

    payload = read_bytes(fs, trial_file(study_root, PREDICTIONS_DIR, trial_id))
    if payload is None:
        return None
    with np.load(io.BytesIO(payload)) as saved:
        if "probs" not in saved:
            raise ValueError("a token model's predictions hold each token's predicted class, not probabilities")
        return np.asarray(saved["probs"]), np.asarray(saved["labels"])


def read_token_predictions(fs, study_root: str, trial_id: str):
    """A token model's (pred [n_test, T], labels [n_test, T], IGNORE_LABEL where none), or None."""
    import numpy as np

    payload = read_bytes(fs, trial_file(study_root, PREDICTIONS_DIR, trial_id))
    if payload is None:
        return None
    with np.load(io.BytesIO(payload)) as saved:
        return np.asarray(saved["pred"]).astype(np.int64), np.asarray(saved["labels"])


def read_features(fs, study_root: str, trial_id: str):
    """A trial's test-set features float32 [n_test, D], or None if it has no file."""
    import numpy as np

    payload = read_bytes(fs, trial_file(study_root, FEATURES_DIR, trial_id))
    return None if payload is None else np.load(io.BytesIO(payload))


def read_history(fs, study_root: str, trial_id: str) -> list[dict[str, Any]]:
    """A trial's per-epoch reports ([] if it has none)."""
    payload = read_bytes(fs, trial_file(study_root, HISTORY_DIR, trial_id))
    return [] if payload is None else json.loads(payload)


def read_table(fs, study_root: str):
    """The study's results table as a DataFrame, or None if there is none yet."""
    import pyarrow.parquet as pq

    payload = read_bytes(fs, f"{study_root.rstrip('/')}/{RESULTS_FILE}")
    return None if payload is None else pq.read_table(io.BytesIO(payload)).to_pandas()
