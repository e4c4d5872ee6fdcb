"""The results store: the contract between the engine and `analysis`.

    <storage>/<study>/results.parquet          one row per trial (trial.COLUMNS), unique trial_id
    <storage>/<study>/predictions/<id>.npz     probs float32 [n_test, C], labels int64 [n_test]
    <storage>/<study>/history/<id>.json        the trial's per-epoch reports
    <storage>/<study>/features/<id>.npy        float32 [n_test, D], for trials with extras "features"

The studies under one `storage` are also each other's trial cache: a trial id is a content hash,
so a trial another study finished (with at least the extras this one asks for) is copied into
this study's store, files and row, instead of being trained again (`shared_trials`, `adopt`).

`storage` is a local or shared path, or a URI pyarrow understands (s3://bucket/prefix). Every
file is written whole to a temporary name and moved into place, so a crash never leaves a
half-written table; the table is de-duplicated on trial_id (a row is never written twice, and a
failed row is replaced by a later success). Tune's own result files are never read: they lost
and duplicated rows across a node loss (DESIGN).
"""
from __future__ import annotations

import io
import json
import uuid
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kdscale.trial import COLUMNS

FINISHED = ("ok", "diverged")  # a diverged trial is a result; a failed one is tried again


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path in it) of a local path (made absolute) or a URI (s3://...)."""
    uri = str(uri)
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    import os

    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def atomic_write(fs: pafs.FileSystem, path: str, payload: bytes) -> None:
    """Whole file under a temporary name, then one move: readers see the old file or the new."""
    directory = path.rsplit("/", 1)[0]
    fs.create_dir(directory, recursive=True)
    tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as out:
        out.write(payload)
    fs.move(tmp, path)


class ResultsStore:
    def __init__(self, storage: str, study: str):
        self.fs, base = filesystem(storage)
        # the base, shared by every study; local paths made absolute (workers run in other directories)
        self.storage = str(storage) if "://" in str(storage) else base
        self.root = f"{base.rstrip('/')}/{study}"
        self.study = study
        self.uri = self.root if "://" not in str(storage) else f"{str(storage).rstrip('/')}/{study}"
        self.fs.create_dir(self.root, recursive=True)

    # --- writing --------------------------------------------------------------------------------
    def _write(self, path: str, payload: bytes) -> None:
        atomic_write(self.fs, path, payload)

    def write_predictions(self, trial_id: str, probs: np.ndarray, labels: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int64))
        self._write(f"{self.root}/predictions/{trial_id}.npz", buffer.getvalue())

    def write_features(self, trial_id: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(features, np.float32))
        self._write(f"{self.root}/features/{trial_id}.npy", buffer.getvalue())

    def features(self, trial_id: str) -> np.ndarray:
        """A trial's test-set features [n_test, D] (trials run with extras 'features')."""
        with self.fs.open_input_file(f"{self.root}/features/{trial_id}.npy") as f:
            return np.load(io.BytesIO(f.read()))

    def write_history(self, trial_id: str, history: list[dict[str, Any]]) -> None:
        self._write(f"{self.root}/history/{trial_id}.json", json.dumps(history).encode())

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Add rows (replacing an earlier row of the same trial_id) and rewrite the table atomically."""
        new = pd.DataFrame([{column: row.get(column) for column in COLUMNS} | {"study": self.study}
                            for row in rows], columns=list(COLUMNS))
        table = pd.concat([self.table(), new], ignore_index=True) if self.exists() else new
        table = table.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(_typed(table), preserve_index=False), sink)
        self._write(f"{self.root}/results.parquet", sink.getvalue().to_pybytes())
        return table

    # --- reading --------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.fs.get_file_info(f"{self.root}/results.parquet").type == pafs.FileType.File

    def table(self) -> pd.DataFrame:
        if not self.exists():
            return pd.DataFrame(columns=list(COLUMNS))
        with self.fs.open_input_file(f"{self.root}/results.parquet") as f:
            return pq.read_table(f).to_pandas()

    def finished_ids(self) -> set[str]:
        table = self.table()
        return set(table.loc[table["status"].isin(FINISHED), "trial_id"])

    def adopt(self, source: "ResultsStore", rows: list[dict[str, Any]]) -> None:
        """Copy finished trials of another study (their files, then their rows) into this one."""
        for row in rows:
            trial_id = row["trial_id"]
            for kind, suffix in (("predictions", "npz"), ("history", "json"), ("features", "npy")):
                path = f"{source.root}/{kind}/{trial_id}.{suffix}"
                if self.fs.get_file_info(path).type == pafs.FileType.File:
                    with self.fs.open_input_stream(path) as f:
                        self._write(f"{self.root}/{kind}/{trial_id}.{suffix}", f.read())
        if rows:
            self.add_rows(rows)

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        path = f"{self.root}/history/{trial_id}.json"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return []
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read())

    def predictions(self, trial_id: str) -> tuple[np.ndarray, np.ndarray]:
        with self.fs.open_input_file(f"{self.root}/predictions/{trial_id}.npz") as f:
            with np.load(io.BytesIO(f.read())) as saved:
                return saved["probs"], saved["labels"]


_INTS = ("n_teacher", "n_train", "teacher_params", "student_params", "seed", "batch_size", "epochs", "steps",
         "resumed_from_step", "pack_size")
_FLOATS = ("kappa", "tau", "alpha", "epsilon", "lr", "weight_decay", "test_acc", "test_loss", "test_ppl", "train_acc",
           "fidelity_train", "fidelity_test", "teacher_test_acc", "wall_s", "flops", "cka_teacher", "fa_teacher",
           "probe_acc")


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Fixed column types, so a table of failed rows (all nulls) reads back like a full one."""
    table = table.copy()
    for column in _INTS:
        table[column] = pd.array(table[column], dtype="Int64")
    for column in _FLOATS:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("float64")
    table["tau_squared"] = pd.array(table["tau_squared"], dtype="boolean")
    for column in set(COLUMNS) - set(_INTS) - set(_FLOATS) - {"tau_squared"}:
        table[column] = table[column].astype("string")
    return table


def shared_trials(store: ResultsStore, wanted: dict[str, tuple[str, ...]]) -> dict[str, list[dict[str, Any]]]:
    """Finished rows of other studies under the same storage, for the trial ids in `wanted`
    (id -> the extras it needs), grouped by the study that has them: {study: [row, ...]}."""
    found: dict[str, list[dict[str, Any]]] = {}
    wanted = dict(wanted)
    if not wanted:
        return found
    base = store.root.rsplit("/", 1)[0]
    entries = store.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    for entry in sorted(entries, key=lambda e: e.base_name):
        if entry.type != pafs.FileType.Directory or entry.base_name == store.study or entry.base_name.startswith(("_", ".")):
            continue
        other = ResultsStore(store.storage, entry.base_name)
        if not other.exists():
            continue
        table = other.table()
        if "extras" not in table.columns:
            table["extras"] = None
        table = table[table["trial_id"].isin(list(wanted)) & table["status"].isin(FINISHED)]
        for row in table.to_dict("records"):
            trial_id = row["trial_id"]
            have = set(str(row["extras"]).split(",")) if isinstance(row["extras"], str) and row["extras"] else set()
            if trial_id in wanted and set(wanted[trial_id]) <= have:
                found.setdefault(other.study, []).append(_plain(row))
                del wanted[trial_id]
    return found


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as plain Python values (pandas' NA and NaN as None)."""
    return {k: (None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else
                v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def load_table(storage: str, study: str) -> pd.DataFrame:
    """A study's results table as a DataFrame (empty, with the columns, if nothing has finished)."""
    return ResultsStore(storage, study).table()
