"""The analysis report: every fit of a results directory, as Markdown, CSV tables and figures.

`write_report` never stops at a section it cannot compute (a small study, a missing column, no
predictions): the section says why in the report and in the headline. It raises AnalysisError
only when there is nothing to analyse at all (no table, no ok trial, a table the fits cannot read).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import bias_variance as bv
from analysis import crossover as xo
from analysis import fidelity as fid
from analysis import increments as inc
from analysis import scaling as sc
from analysis.table import AnalysisError, Trials, is_uri, load_results, pair_info, prepare

DEFAULT_OUT = "analysis"
REPORT_FILE = "report.md"
TABLE_NAMES = ("pairs", "increments", "paired_by_seed", "crossover", "size_scaling",
               "size_scaling_points", "fidelity_fits", "fidelity_points", "bias_variance")
FIGURE_NAMES = ("error_vs_kappa", "gain_vs_kappa", "kappa_star_vs_ratio", "fidelity_gap", "bias_variance")


@dataclass(frozen=True)
class ReportResult:
    markdown_path: Path
    figure_paths: list[Path]
    headline: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the numbers, also saved as CSV


@dataclass
class Analysis:
    """Every number of the report; `skipped` maps a section to why it could not be computed."""
    trials: Trials
    info: pd.DataFrame
    pairs: list[str]                     # display order: by data, teacher, then size ratio
    ci: float
    n_boot: int
    paired: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    unpaired: dict = field(default_factory=dict)
    cross: pd.DataFrame | None = None
    scaling_fits: pd.DataFrame | None = None
    scaling_points: pd.DataFrame | None = None
    fidelity_points: pd.DataFrame | None = None
    fidelity_fits: pd.DataFrame | None = None
    bias_variance: pd.DataFrame | None = None
    bias_variance_notes: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)     # besides trials.warnings

    def tables(self) -> dict[str, pd.DataFrame]:
        named = {"pairs": self.info, "increments": self.summary, "paired_by_seed": self.paired,
                 "crossover": self.cross, "size_scaling": self.scaling_fits,
                 "size_scaling_points": self.scaling_points, "fidelity_fits": self.fidelity_fits,
                 "fidelity_points": self.fidelity_points, "bias_variance": self.bias_variance}
        return {name: frame for name, frame in named.items() if frame is not None and len(frame)}


def analyse(trials: Trials, n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> Analysis:
    """Run every section that the trials allow."""
    if not 0 < ci < 1:
        raise AnalysisError(f"ci={ci!r} is invalid: must lie in (0, 1), e.g. 0.95")
    if n_boot < 0:
        raise AnalysisError(f"n_boot={n_boot!r} is invalid: must be >= 0")
    info = pair_info(trials.frame)
    order = [c for c in ("dataset", "n_teacher", "teacher", "size_ratio", "pair") if c in info.columns]
    info = info.sort_values(order).reset_index(drop=True)
    result = Analysis(trials=trials, info=info, pairs=list(info["pair"]), ci=ci, n_boot=n_boot)
    higher = trials.metric.higher_is_better
    try:
        result.paired = inc.pair_by_seed(trials)
        result.summary = inc.summarize(result.paired)
        result.unpaired = inc.count_unpaired(trials, result.paired)
        result.cross = xo.crossover(result.paired, higher, n_boot=n_boot, ci=ci, seed=seed)
    except AnalysisError as exc:
        for section in ("increments", "crossover", "scaling"):
            result.skipped[section] = str(exc)
    if result.cross is not None:
        result.scaling_fits, result.scaling_points = sc.size_scaling(result.cross, info, ci=ci)
        result.warnings += _few_seeds(result.cross, ci)
    points, fits, reason = fid.fidelity_gap(trials, ci=ci)
    if reason:
        result.skipped["fidelity"] = reason
    result.fidelity_points, result.fidelity_fits = points, fits
    try:
        result.bias_variance, result.bias_variance_notes = bv.bias_variance(trials)
        if result.bias_variance.empty:
            notes = result.bias_variance_notes
            result.skipped["bias_variance"] = ("no configuration has predictions for 2 or more seeds"
                                               + (f" ({notes[0]})" if notes else ""))
    except AnalysisError as exc:
        result.skipped["bias_variance"] = str(exc)
    return result


def _few_seeds(cross: pd.DataFrame, ci: float) -> list[str]:
    few = cross[(cross["n_seeds"] > 1) & (xo.max_bootstrap_coverage(cross["n_seeds"]) < ci)]
    if few.empty:
        return []
    least = int(few["n_seeds"].min())
    return [f"kappa* intervals rest on as few as {least} seeds: a bootstrap interval over n seeds covers "
            f"at most about 1 - 2^(1-n) ({xo.max_bootstrap_coverage(least):.0%} here), less than the "
            f"{ci:.0%} asked for; run more seeds"]


def write_report(results_dir, out_dir=None, metric: str = "test_acc", tracking_uri: str | None = None,
                 run_id: str | None = None, *, n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                 figures: bool = True) -> ReportResult:
    """Analyse RESULTS_DIR (a path or a URI such as s3://...) and write report.md, CSV tables and
    figures to out_dir.

    out_dir defaults to RESULTS_DIR/analysis, or ./<study>-analysis when RESULTS_DIR is a URI
    (the report is written locally; log it to MLflow to keep it with the study). With tracking_uri
    and run_id, the files are also logged to that MLflow run under `analysis/`. seed fixes the
    bootstrap.
    """
    if (tracking_uri is None) != (run_id is None):
        raise AnalysisError("tracking_uri and run_id go together: give both to log to MLflow, or neither")
    trials = prepare(load_results(results_dir), metric, results_dir=results_dir)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    analysis = analyse(trials, n_boot=n_boot, ci=ci, seed=seed)

    for name in (*TABLE_NAMES, *FIGURE_NAMES):  # a rerun must not leave an older run's files behind
        for suffix in (".csv", ".png"):
            (out_dir / f"{name}{suffix}").unlink(missing_ok=True)
    figure_paths, figure_notes = draw_figures(analysis, out_dir) if figures else ({}, [])
    tables = analysis.tables()
    for name, frame in tables.items():
        frame.to_csv(out_dir / f"{name}.csv", index=False)
    from analysis.render import render  # imported here: render imports this module


    markdown_path = out_dir / REPORT_FILE
    markdown_path.write_text(render(analysis, results_dir, out_dir, figure_paths, figure_notes))
    headline = make_headline(analysis, markdown_path)
    paths = [markdown_path, *figure_paths.values(), *(out_dir / f"{n}.csv" for n in tables)]
    if tracking_uri is not None:
        _log_to_mlflow(tracking_uri, run_id, paths, markdown_path)
    return ReportResult(markdown_path=markdown_path, figure_paths=list(figure_paths.values()),
                        headline=headline, tables=tables)


def default_out_dir(results_dir) -> Path:
    location = str(results_dir).rstrip("/")
    if location.endswith(".parquet"):
        location = location.rsplit("/", 1)[0] if "/" in location else "."
    if is_uri(location):
        return Path.cwd() / f"{location.rsplit('/', 1)[-1]}-{DEFAULT_OUT}"
    return Path(location) / DEFAULT_OUT


def _log_to_mlflow(tracking_uri: str, run_id: str, paths: list[Path], markdown_path: Path) -> None:
    from kdscale.tracking import log_artifacts  # imports mlflow; only when asked to log

    try:
        log_artifacts(tracking_uri, run_id, paths, artifact_path="analysis")
    except Exception as exc:  # a bad URI or run id surfaces as one of several MLflow types
        message = " ".join(str(exc).split())[:200]
        raise AnalysisError(f"report written to {markdown_path}, but logging it to MLflow run {run_id} "
                            f"at {tracking_uri} failed: {type(exc).__name__}: {message}") from exc


def draw_figures(analysis: Analysis, out_dir: Path):
    """Each figure that has data; a figure that fails is noted, since the numbers matter more."""
    from analysis import plots

    trials, paths, notes = analysis.trials, {}, []
    jobs = {"error_vs_kappa": lambda p: plots.error_vs_kappa(trials.frame, trials.metric, analysis.pairs, p)}
    if analysis.summary is not None:
        jobs["gain_vs_kappa"] = lambda p: plots.gain_vs_kappa(
            analysis.summary, analysis.cross, trials.metric.higher_is_better, p)
    if analysis.scaling_points is not None and analysis.scaling_points["used"].any():
        jobs["kappa_star_vs_ratio"] = lambda p: plots.kappa_star_vs_ratio(
            analysis.scaling_points, analysis.scaling_fits, p)
    if analysis.fidelity_points is not None:
        pairs = [p for p in analysis.pairs if p in set(analysis.fidelity_points["pair"])]
        jobs["fidelity_gap"] = lambda p: plots.fidelity_gap(
            analysis.fidelity_points, analysis.fidelity_fits, pairs, p)
    if analysis.bias_variance is not None and len(analysis.bias_variance):
        pairs = [p for p in analysis.pairs if p in set(analysis.bias_variance["pair"])]
        jobs["bias_variance"] = lambda p: plots.bias_variance(analysis.bias_variance, pairs, p)
    for name, draw in jobs.items():
        try:
            paths[name] = draw(out_dir / f"{name}.png")
        except Exception as exc:  # noqa: BLE001 - a plotting glitch must not cost the numbers
            notes.append(f"figure {name} failed: {type(exc).__name__}: {exc}")
    return paths, notes


def headline_rows(analysis: Analysis) -> list[dict]:
    """Per (pair, kd arm): the numbers of the paper-ready table (also used by render)."""
    if analysis.cross is None:
        return []
    info = analysis.info.set_index("pair")
    first = (analysis.summary.sort_values("kappa").drop_duplicates(["pair", "arm"], keep="first")
             .set_index(["pair", "arm"]))
    fits = (analysis.fidelity_fits.set_index(["pair", "arm"])
            if analysis.fidelity_fits is not None else pd.DataFrame())
    rows = []
    for pair in analysis.pairs:
        for row in analysis.cross[analysis.cross["pair"] == pair].to_dict("records"):
            key = (pair, row["arm"])
            out = {**info.loc[pair].to_dict(), **row, "pair": pair}
            smallest = first.loc[key]
            out.update(R_lt_first=smallest["R_lt"], R_kd_first=smallest["R_kd"],
                       PI_first=smallest["PI_mean"], PI_first_se=smallest["PI_se"],
                       PG_first=smallest["PG_mean"], PG_first_se=smallest["PG_se"])
            fit = fits.loc[key].to_dict() if key in fits.index else {}
            out["fidelity"] = fit
            rows.append(out)
    return rows


def make_headline(analysis: Analysis, markdown_path: Path | None = None) -> str:
    trials, level = analysis.trials, f"{analysis.ci:.0%}"
    used = len(trials.frame)
    excluded = ", ".join(f"{k}: {v}" for k, v in trials.excluded.items())
    direction = "higher is better" if trials.metric.higher_is_better else "lower is better"
    lines = [f"kdscale analysis: {used} of {trials.total} trials used"
             + (f" (excluded: {excluded})" if excluded else "")
             + f"; R = {trials.metric.label} ({direction})"]
    lines += [f"warning: {w}" for w in (*trials.warnings, *analysis.warnings)]
    if analysis.cross is None:
        lines.append(f"kappa*: not computed: {analysis.skipped.get('crossover', 'no data')}")
    else:
        lines.append(f"kappa* (PG = R(kd)/R(lt) crosses 1; {level} bootstrap CI over seeds):")
        # The few-seeds caveat is one warning line above, not repeated on every pair.
        lines += [f"  {r['pair']} {r['arm']}: {xo.describe(r, trials.metric.higher_is_better, analysis.ci, False)}"
                  for r in headline_rows(analysis)]
    if analysis.scaling_fits is not None:
        for fit in analysis.scaling_fits.to_dict("records"):
            where = fit["arm"] + (f" [{fit['dataset']}]" if fit.get("dataset") else "")
            lines.append(f"size scaling ({where}): {sc.describe(fit, analysis.ci)}")
    else:
        lines.append(f"size scaling: not computed: {analysis.skipped.get('scaling', 'no data')}")
    if analysis.fidelity_fits is not None:
        fits = analysis.fidelity_fits
        rank = {pair: i for i, pair in enumerate(analysis.pairs)}
        fits = fits.assign(_rank=fits["pair"].map(rank)).sort_values(["_rank", "arm"])
        kd = fits[fits["arm"].str.startswith("kd")]
        shown = kd if len(kd) else fits
        lines.append(f"fidelity gap omega * kappa^-beta ({level} CI; F-test of beta = 0.5):")
        lines += [f"  {r['pair']} {r['arm']}: {fid.describe(r, analysis.ci)}" for r in shown.to_dict("records")]
    else:
        lines.append(f"fidelity gap: not computed: {analysis.skipped.get('fidelity')}")
    if analysis.bias_variance is not None and len(analysis.bias_variance):
        table = analysis.bias_variance
        ok = bool(table["identity_holds"].all())
        lines.append(f"bias-variance: {len(table)} configurations; identity E||p-y||^2 = bias^2 + variance "
                     f"{'holds' if ok else 'FAILS'} (max error {table['identity_error'].max():.1e})")
    else:
        lines.append(f"bias-variance: not computed: {analysis.skipped.get('bias_variance')}")
    if markdown_path is not None:
        lines.append(f"report: {markdown_path}")
    return "\n".join(lines)
