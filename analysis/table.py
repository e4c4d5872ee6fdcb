"""Reading and checking a results table (DESIGN's schema) before any fit.

Everything downstream works on `Trials.frame`: the usable trials only (status `ok`, the metric
present), with three columns added: `R` (the performance measure), `pair` (a readable, unique
name of the teacher/student pair and its data) and `arm` (the objective with its settings, e.g.
`kd tau=4`). What was left out, and why, is counted in `Trials.excluded` for the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kdscale import schema
from kdscale.schema import PREDICTIONS_DIR, RESULTS_FILE, is_uri  # noqa: F401  (is_uri: the table's API)


class AnalysisError(ValueError):
    """Bad input for the analysis. The message is one line: what is wrong and what would fix it."""



# The analysis cannot start without these; the rest of DESIGN's schema is optional here and a
# section that needs a missing column says so in the report instead of failing.
REQUIRED_COLUMNS = ("trial_id", "status", "teacher", "student", "kappa", "objective", "seed")
# A pair is the teacher model on its data (teacher_id tells apart teachers of one model name
# trained on other data or with another seed, unless each student seed has its own teacher: then
# the ids are the seeds' draws of one pair's teacher) and the student model.
PAIR_COLUMNS = ("dataset", "n_teacher", "teacher_id", "teacher", "student")


@dataclass(frozen=True)
class Metric:
    """A performance measure R: where it comes from and which direction is better."""
    name: str
    column: str
    higher_is_better: bool
    label: str

    def values(self, frame: pd.DataFrame) -> pd.Series:
        values = pd.to_numeric(frame[self.column], errors="coerce").astype(float)
        return 1.0 - values if self.name == "test_error" else values


METRICS = {
    "test_acc": Metric("test_acc", "test_acc", True, "test accuracy"),
    "test_error": Metric("test_error", "test_acc", False, "test error (1 - test accuracy)"),
    "test_loss": Metric("test_loss", "test_loss", False, "test loss"),
    "test_ppl": Metric("test_ppl", "test_ppl", False, "test perplexity"),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise AnalysisError(f"metric={name!r} is unknown: choose one of {', '.join(METRICS)}")
    return METRICS[name]


@dataclass
class Trials:
    """The usable trials of a results table and an account of the rest."""
    frame: pd.DataFrame          # status ok, metric present; with R, pair and arm columns
    metric: Metric
    total: int                   # rows in the table (after de-duplicating trial ids)
    excluded: dict[str, int]     # reason -> number of trials left out
    errors: pd.DataFrame         # trial_id, status, error of the trials that did not end ok
    warnings: list[str] = field(default_factory=list)
    results_dir: str | None = None  # a path or a URI, kept as text (Path would mangle s3://)


def _filesystem(location: str):
    """(pyarrow filesystem, path) of a path or URI; an unusable URI is an AnalysisError."""
    try:
        return schema.filesystem(location)
    except Exception as exc:  # an unknown scheme or missing credentials
        raise AnalysisError(f"cannot open {location}: {type(exc).__name__}: {_one_line(exc)}") from exc


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The raw results table of a study: RESULTS_DIR/results.parquet, RESULTS_DIR a path or a URI."""
    location = str(results_dir).rstrip("/")
    table_location = location if location.endswith(".parquet") else f"{location}/{RESULTS_FILE}"
    try:
        if is_uri(location):
            import pyarrow.fs as pafs
            import pyarrow.parquet as pq

            fs, path = _filesystem(table_location)
            if fs.get_file_info(path).type == pafs.FileType.NotFound:
                raise AnalysisError(f"no results table at {table_location}: expected RESULTS_DIR/{RESULTS_FILE}")
            return pq.read_table(path, filesystem=fs).to_pandas()
        path = Path(table_location)
        if not path.exists():
            where = (f"{location} does not exist" if not Path(location).exists()
                     else f"no {RESULTS_FILE} in it")
            raise AnalysisError(f"no results table at {path} ({where}): expected RESULTS_DIR/{RESULTS_FILE}")
        return pd.read_parquet(path)
    except AnalysisError:
        raise
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise AnalysisError(f"cannot read {table_location}: {type(exc).__name__}: {_one_line(exc)}") from exc


def has_predictions(results_dir) -> bool:
    location = f"{str(results_dir).rstrip('/')}/{PREDICTIONS_DIR}"
    if not is_uri(location):
        return Path(location).is_dir()
    import pyarrow.fs as pafs

    fs, path = _filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def read_predictions(results_dir, trial_id: str):
    """(probs [n_test, classes], labels [n_test]) of one trial, or None if it has no file."""
    location = str(results_dir).rstrip("/")
    try:
        fs, root = _filesystem(location)
        return schema.read_predictions(fs, root, trial_id)
    except AnalysisError:
        raise
    except Exception as exc:  # a truncated file or one without the two arrays
        where = schema.trial_file(location, PREDICTIONS_DIR, trial_id)
        raise AnalysisError(f"cannot read {where}: {type(exc).__name__}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def prepare(table: pd.DataFrame, metric: str | Metric = "test_acc",
            results_dir: str | Path | None = None) -> Trials:
    """Check a results table and keep the trials the fits can use; raise AnalysisError if none."""
    metric = metric if isinstance(metric, Metric) else get_metric(metric)
    if hasattr(table, "to_pandas"):  # a pyarrow Table
        table = table.to_pandas()
    if not isinstance(table, pd.DataFrame):
        table = pd.DataFrame(table)
    if table.empty:
        raise AnalysisError("the results table has no rows: nothing to analyse")
    missing = [c for c in (*REQUIRED_COLUMNS, metric.column) if c not in table.columns]
    if missing:
        raise AnalysisError(f"the results table lacks column(s) {', '.join(missing)} "
                            f"(DESIGN's results schema; it has {len(table.columns)} columns: "
                            f"{', '.join(map(str, table.columns[:12]))}{', ...' if len(table.columns) > 12 else ''})")

    table = table.reset_index(drop=True)  # a concatenated table repeats index labels
    table["trial_id"] = table["trial_id"].astype(str)
    excluded: dict[str, int] = {}
    # A rerun may append a trial again; its last record is the one that counts.
    n_dup = int(table.duplicated("trial_id", keep="last").sum())
    if n_dup:
        table = table.drop_duplicates("trial_id", keep="last")
        excluded["repeated trial_id (earlier record dropped)"] = n_dup
    total = len(table)

    status = table["status"].fillna("missing").astype(str).str.strip().str.lower()
    not_ok = table[status != "ok"]
    for name, count in status[status != "ok"].value_counts().items():
        excluded[str(name)] = int(count)
    errors = not_ok.reindex(columns=["trial_id", "status", "error"]).reset_index(drop=True)
    if len(not_ok) == total:
        counts = ", ".join(f"{k}: {v}" for k, v in status.value_counts().items())
        first = _first_error(not_ok)
        raise AnalysisError(f"no trial ended ok: all {total} failed or diverged ({counts})"
                            + (f"; first error: {first}" if first else ""))

    frame = table[status == "ok"].copy()
    frame["R"] = metric.values(frame)
    no_metric = ~np.isfinite(frame["R"].to_numpy())
    if no_metric.any():
        excluded[f"ok but {metric.column} missing or not finite"] = int(no_metric.sum())
        frame = frame[~no_metric]
    if frame.empty:
        raise AnalysisError(f"no ok trial has a value of {metric.column}; choose another metric "
                            f"({', '.join(METRICS)})")

    frame["kappa"] = pd.to_numeric(frame["kappa"], errors="coerce")
    bad_kappa = ~(frame["kappa"] > 0)
    if bad_kappa.any():
        raise AnalysisError(f"kappa must be a positive number; {int(bad_kappa.sum())} ok trial(s) have "
                            f"e.g. kappa={frame.loc[bad_kappa, 'kappa'].iloc[0]!r}")
    # kappa = M / N may carry float noise from the engine; equal kappas must group together.
    frame["kappa"] = [float(f"{k:.10g}") for k in frame["kappa"]]
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce")
    if frame["seed"].isna().any():
        raise AnalysisError("seed must be an integer; some ok trials have none")
    frame["seed"] = frame["seed"].astype(int)
    frame["objective"] = frame["objective"].astype(str)
    frame["pair"] = _pair_labels(frame)
    frame["arm"] = [arm_label(row) for row in frame.to_dict("records")]
    _check_unique(frame)

    warnings = []
    seeds_per_config = frame.groupby(["pair", "arm", "kappa"])["seed"].nunique()
    if seeds_per_config.max() < 2:
        warnings.append("one seed per configuration: no standard deviations, standard errors or "
                        "bootstrap confidence intervals can be computed; run more seeds")
    # One order whatever order the trials finished in: float sums (and an ill-conditioned fit) must
    # not change with the order of the rows.
    frame = frame.sort_values(["pair", "arm", "kappa", "seed"], kind="stable")
    return Trials(frame=frame.reset_index(drop=True), metric=metric, total=total, excluded=excluded,
                  errors=errors, warnings=warnings,
                  results_dir=str(results_dir) if results_dir is not None else None)


def _first_error(frame: pd.DataFrame) -> str:
    if "error" not in frame.columns:
        return ""
    messages = frame["error"].dropna().astype(str)
    return _one_line(Exception(messages.iloc[0])) if len(messages) else ""


def pair_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in PAIR_COLUMNS if c in frame.columns]


def _pair_labels(frame: pd.DataFrame) -> pd.Series:
    """`teacher -> student`, with the data and teacher id added only where they tell pairs apart."""
    columns = pair_columns(frame)
    keys = frame[columns].astype(object).where(frame[columns].notna(), "")
    base = pd.Series([schema.pair_label(t, s) for t, s in zip(frame["teacher"].astype(str), frame["student"].astype(str))],
                     index=frame.index)
    label = base.copy()
    if "dataset" in columns and keys["dataset"].nunique() > 1:
        label = label + " [" + keys["dataset"].astype(str) + "]"
    if "n_teacher" in columns and keys["n_teacher"].nunique() > 1:
        label = label + " N=" + keys["n_teacher"].astype(str)
    if "teacher_id" in columns:
        ids_per_label = keys.groupby(label)["teacher_id"].transform("nunique")
        if "seed" in frame.columns:  # one teacher per seed: that seed's draw of the pair's teacher, not a pair
            per_seed = keys["teacher_id"].groupby([label, frame["seed"]]).transform("nunique")
            ids_per_label = ids_per_label.where(per_seed.groupby(label).transform("max") > 1, 1)
        label = label.where(ids_per_label < 2, label + " #" + keys["teacher_id"].astype(str).str[:6])
    return label


def arm_label(row: dict) -> str:
    """The objective and the settings it reads (kdscale.schema.arm_label, as ObjectiveSpec.label)."""
    return schema.row_arm_label(row)


def _check_unique(frame: pd.DataFrame) -> None:
    """One trial per (pair, arm, kappa, seed), else pairing kd with lt by seed is ambiguous."""
    key = ["pair", "arm", "kappa", "seed"]
    dup = frame[frame.duplicated(key, keep=False)]
    if dup.empty:
        return
    ignored = set(key) | {"trial_id", "R", "error", "status"}
    group = dup[(dup[key] == dup[key].iloc[0]).all(axis=1)]
    varying = [c for c in group.columns  # repr: NaN and None count as values too
               if c not in ignored and len(set(map(repr, group[c].tolist()))) > 1]
    example = dup.iloc[0]
    raise AnalysisError(
        f"{len(dup)} ok trials share (pair, objective, kappa, seed) with another, e.g. "
        f"{example['pair']} {example['arm']} kappa={example['kappa']:g} seed={example['seed']}; "
        + (f"they differ in {', '.join(varying[:6])}, which the analysis does not group by: "
           "analyse one setting at a time" if varying else "they look identical: de-duplicate the table"))


def pair_info(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per pair: its data, models, parameter counts, size ratio and teacher accuracy."""
    wanted = [c for c in (*PAIR_COLUMNS, "teacher_params", "student_params", "teacher_test_acc")
              if c in frame.columns]
    numeric = [c for c in ("teacher_params", "student_params", "teacher_test_acc") if c in wanted]
    other = [c for c in wanted if c not in numeric]
    info = frame.groupby("pair", sort=True)[other].first() if other else pd.DataFrame(index=sorted(frame["pair"].unique()))
    for column in numeric:
        info[column] = pd.to_numeric(frame[column], errors="coerce").groupby(frame["pair"]).mean()
    if {"teacher_params", "student_params"} <= set(info.columns):
        info["size_ratio"] = info["student_params"] / info["teacher_params"]
    info.index.name = "pair"
    return info.reset_index()


