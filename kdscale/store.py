"""The results store: writes and reads one study's results in the layout of `kdscale.schema`.

The studies under one `storage` are also each other's trial cache: a trial id is a content hash,
so a trial another study finished (with at least the extras this one asks for) is copied into
this study's store, files and row, instead of being trained again (`shared_trials`, `adopt`).

`storage` is a local or shared path, or a URI pyarrow understands (s3://bucket/prefix). Every
file is written whole to a temporary name and moved into place, so a crash never leaves a
half-written table, and a write that fails (a full disk) removes its temporary file and raises
one EnvironmentFault naming the file; the table is de-duplicated on trial_id (a row is never
written twice, and a failed row is replaced by a later success). Tune's own result files are
never read: they lost and duplicated rows across a node loss (DESIGN). A table that cannot be
read is an EnvironmentFault for its own study, and is skipped, with a warning, as another
study's cache.

Besides the schema's files a study directory holds the driver's lease (`_lease.json`,
kdscale.lease) and the checkpoints of unfinished packs (`_resume/<pack id>.pt`), which outlive a
driver so that the next one resumes them.
"""
from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from kdscale import schema
from kdscale.errors import EnvironmentFault, os_reason
from kdscale.schema import COLUMNS, FINISHED, filesystem  # noqa: F401  (FINISHED, filesystem: the store's API)

RESUME_DIR = "_resume"
TMP_PREFIX = ".tmp-"
REQUIRED_COLUMNS = ("trial_id", "status")  # what a table must have to be read at all (older ones lack newer columns)


def write_payload(stream, payload: bytes) -> None:
    """The lowest level of every store write (the tests make it fail with a full disk)."""
    stream.write(payload)


def atomic_write(fs: pafs.FileSystem, path: str, payload: bytes) -> None:
    """Whole file under a temporary name, then one move: readers see the old file or the new. A
    failure removes the temporary file and is one EnvironmentFault naming `path`."""
    directory = path.rsplit("/", 1)[0]
    tmp = f"{directory}/{TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        fs.create_dir(directory, recursive=True)
        with fs.open_output_stream(tmp) as out:
            write_payload(out, payload)
        fs.move(tmp, path)
    except OSError as error:
        try:
            fs.delete_file(tmp)
        except OSError:
            pass  # never created, or the file system is gone: nothing more to do
        raise EnvironmentFault(f"storage: writing {path} failed: {os_reason(error)}") from error


def delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, FileNotFoundError):
        pass


class ResultsStore:
    def __init__(self, storage: str, study: str, create: bool = True):
        self.fs, base = filesystem(storage)
        # the base, shared by every study; local paths made absolute (workers run in other directories)
        self.storage = str(storage) if "://" in str(storage) else base
        self.root = f"{base.rstrip('/')}/{study}"
        self.study = study
        self.uri = self.root if "://" not in str(storage) else f"{str(storage).rstrip('/')}/{study}"
        self.created: list[str] = []  # local directories this store created, deepest last
        if create:
            self._create(base)

    def _create(self, base: str) -> None:
        """The study's directory, or one EnvironmentFault naming the storage and why not."""
        local = isinstance(self.fs, pafs.LocalFileSystem)
        if local and os.path.exists(base) and not os.path.isdir(base):
            raise EnvironmentFault(f"storage: {base} is a file, not a directory: point --storage at a directory")
        if local:
            path = self.root
            while not os.path.exists(path):
                self.created.insert(0, path)
                path = os.path.dirname(path)
        try:
            self.fs.create_dir(self.root, recursive=True)
        except OSError as error:
            raise EnvironmentFault(f"storage: cannot create the study directory {self.root}: "
                                   f"{os_reason(error)}") from error

    def remove_if_empty(self) -> None:
        """Remove the directories this store created if nothing was written into them (a study that
        failed before its first result leaves no empty folder behind)."""
        for path in reversed(self.created):
            try:
                os.rmdir(path)
            except OSError:
                return  # not empty (or gone): keep it and everything above it

    # --- writing --------------------------------------------------------------------------------
    def _write(self, path: str, payload: bytes) -> None:
        atomic_write(self.fs, path, payload)

    def _file(self, kind: str, trial_id: str) -> str:
        return schema.trial_file(self.root, kind, trial_id)

    def write_predictions(self, trial_id: str, probs: np.ndarray, labels: np.ndarray) -> None:
        """Test probabilities [n, C] and labels; per token ([n, T, C]), the predicted class of each token
        instead (schema.read_token_predictions): n T C probabilities would take megabytes a trial."""
        buffer = io.BytesIO()
        if np.ndim(probs) == 3:
            classes = np.asarray(probs).argmax(-1).astype(np.int16 if np.shape(probs)[-1] <= 32768 else np.int32)
            np.savez(buffer, pred=classes, labels=np.asarray(labels, np.int64))
        else:
            np.savez(buffer, probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int64))
        self._write(self._file(schema.PREDICTIONS_DIR, trial_id), buffer.getvalue())

    def write_features(self, trial_id: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(features, np.float32))
        self._write(self._file(schema.FEATURES_DIR, trial_id), buffer.getvalue())

    def write_history(self, trial_id: str, history: list[dict[str, Any]]) -> None:
        self._write(self._file(schema.HISTORY_DIR, trial_id), json.dumps(history).encode())

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
        """Add rows (replacing an earlier row of the same trial_id) and rewrite the table atomically."""
        new = pd.DataFrame([{column: row.get(column) for column in COLUMNS} | {"study": self.study}
                            for row in rows], columns=list(COLUMNS))
        table = pd.concat([self.table(), new], ignore_index=True) if self.exists() else new
        table = table.drop_duplicates("trial_id", keep="last").reset_index(drop=True)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pandas(schema.typed(table), preserve_index=False), sink)
        self._write(self._table_path, sink.getvalue().to_pybytes())
        return table

    # --- reading --------------------------------------------------------------------------------
    @property
    def _table_path(self) -> str:
        return f"{self.root}/{schema.RESULTS_FILE}"

    def exists(self) -> bool:
        return self.fs.get_file_info(self._table_path).type == pafs.FileType.File

    def table(self) -> pd.DataFrame:
        """The study's table; an unreadable or foreign one is an EnvironmentFault naming the file."""
        try:
            table = schema.read_table(self.fs, self.root)
        except Exception as error:  # pyarrow's ArrowInvalid, an OSError, ...: the file is damaged
            reason = " ".join(str(error).split())[:160]
            raise EnvironmentFault(f"storage: the results table {self._table_path} is damaged "
                                   f"({type(error).__name__}: {reason}): restore it, or move it aside to "
                                   "start the study afresh") from None
        if table is None:
            return pd.DataFrame(columns=list(COLUMNS))
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise EnvironmentFault(f"storage: {self._table_path} is not a kdscale results table (no column "
                                   f"{', '.join(missing)}): move it aside, or choose another --storage")
        return table

    def finished_ids(self) -> set[str]:
        table = self.table()
        return set(table.loc[table["status"].isin(FINISHED), "trial_id"])

    def adopt(self, source: "ResultsStore", rows: list[dict[str, Any]]) -> None:
        """Copy finished trials of another study (their files, then their rows) into this one."""
        for row in rows:
            for kind, _ in schema.TRIAL_FILES:
                path = source._file(kind, row["trial_id"])
                if self.fs.get_file_info(path).type == pafs.FileType.File:
                    with self.fs.open_input_stream(path) as f:
                        self._write(self._file(kind, row["trial_id"]), f.read())
        if rows:
            self.add_rows(rows)

    def remove_trial_files(self, trial_id: str) -> None:
        """Delete one trial's prediction, history and feature files (a trial that failed midway)."""
        for kind, _ in schema.TRIAL_FILES:
            delete_quietly(self.fs, self._file(kind, trial_id))

    def remove_unfinished_files(self, trial_ids: Iterable[str]) -> int:
        """Delete the prediction, history and feature files of these trials (unfinished ones: a file
        without a row is half-done work) and any temporary file a killed writer left. Returns the count."""
        ids, removed = set(trial_ids), 0
        trial_dirs = {f"{self.root}/{kind}" for kind, _ in schema.TRIAL_FILES}
        for directory in (self.root, f"{self.root}/{RESUME_DIR}", *sorted(trial_dirs)):
            for entry in self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                name = entry.base_name
                orphan = directory in trial_dirs and name.rsplit(".", 1)[0] in ids
                if entry.type == pafs.FileType.File and (name.startswith(TMP_PREFIX) or orphan):
                    delete_quietly(self.fs, entry.path)
                    removed += 1
        return removed

    # --- pack checkpoints, kept across drivers ----------------------------------------------------
    def _resume_path(self, pack_id: str) -> str:
        return f"{self.root}/{RESUME_DIR}/{pack_id}.pt"

    def write_resume(self, pack_id: str, payload: bytes) -> None:
        self._write(self._resume_path(pack_id), payload)

    def read_resume(self, pack_id: str) -> bytes | None:
        try:
            return schema.read_bytes(self.fs, self._resume_path(pack_id))
        except OSError:
            return None  # unreadable: the pack starts again

    def remove_resume(self, pack_id: str) -> None:
        delete_quietly(self.fs, self._resume_path(pack_id))

    def clear_resume(self) -> None:
        """Every pack checkpoint (the study is complete: none can be resumed any more)."""
        try:
            self.fs.delete_dir(f"{self.root}/{RESUME_DIR}")
        except (OSError, FileNotFoundError):
            pass

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        return schema.read_history(self.fs, self.root, trial_id)

    def predictions(self, trial_id: str) -> tuple[np.ndarray, np.ndarray]:
        found = schema.read_predictions(self.fs, self.root, trial_id)
        if found is None:
            raise FileNotFoundError(self._file(schema.PREDICTIONS_DIR, trial_id))
        return found

    def features(self, trial_id: str) -> np.ndarray:
        """A trial's test-set features [n_test, D] (trials run with extras 'features')."""
        found = schema.read_features(self.fs, self.root, trial_id)
        if found is None:
            raise FileNotFoundError(self._file(schema.FEATURES_DIR, trial_id))
        return found


def resume_id(trial_ids: Iterable[str]) -> str:
    """The id of a pack's checkpoint: its students' trial ids, whatever their order."""
    import hashlib

    return hashlib.sha256(",".join(sorted(trial_ids)).encode()).hexdigest()[:16]


def shared_trials(store: ResultsStore, wanted: dict[str, tuple[str, ...]], warn=None
                  ) -> dict[str, list[dict[str, Any]]]:
    """Finished rows of other studies under the same storage, for the trial ids in `wanted`
    (id -> the extras it needs), grouped by the study that has them: {study: [row, ...]}. Another
    study's table that cannot be read is skipped, with `warn(message)` naming it."""
    found: dict[str, list[dict[str, Any]]] = {}
    wanted = dict(wanted)
    if not wanted:
        return found
    base = store.root.rsplit("/", 1)[0]
    entries = store.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    for entry in sorted(entries, key=lambda e: e.base_name):
        if entry.type != pafs.FileType.Directory or entry.base_name == store.study or entry.base_name.startswith(("_", ".")):
            continue
        other = ResultsStore(store.storage, entry.base_name, create=False)
        try:
            if not other.exists():
                continue
            table = other.table()
        except EnvironmentFault as error:
            if warn is not None:
                warn(f"warning: not reusing trials of study {other.study}: {error}")
            continue
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
