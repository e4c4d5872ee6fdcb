"""The analysis report: every fit of a results directory, as Markdown, CSV tables and figures.

`write_report` never stops at a section it cannot compute (a small study, a missing column, no
predictions): the section says why in the report and in the headline. It raises AnalysisError
only when there is nothing to analyse at all (no table, no ok trial, a table the fits cannot read).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import crossover as xo
from analysis import fidelity as fid
from analysis import scaling as sc
from analysis.fits import Analysis, analyse, headline_rows
from analysis.render import render
from analysis.table import is_uri, load_results, prepare

DEFAULT_OUT = "analysis"
REPORT_FILE = "report.md"
TABLE_NAMES = ("pairs", "increments", "paired_by_seed", "crossover", "size_scaling",
               "size_scaling_points", "fidelity_fits", "fidelity_points", "bias_variance")
FIGURE_NAMES = ("error_vs_kappa", "gain_vs_kappa", "gain_vs_ratio", "kappa_star_vs_ratio", "fidelity_gap",
                "bias_variance")


@dataclass(frozen=True)
class ReportResult:
    markdown_path: Path
    figure_paths: list[Path]
    headline: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the numbers, also saved as CSV
    paths: list[Path] = field(default_factory=list)  # every file written: report, figures, CSVs


def write_report(results_dir, out_dir=None, metric: str = "test_acc", *, n_boot: int = 2000, ci: float = 0.95,
                 seed: int = 0, figures: bool = True, table=None) -> ReportResult:
    """Analyse RESULTS_DIR (a path or a URI such as s3://...) and write report.md, CSV tables and
    figures to out_dir.

    out_dir defaults to RESULTS_DIR/analysis, or ./<study>-analysis when RESULTS_DIR is a URI
    (the report is written locally; `kdscale analyze --tracking-uri URI --run-id ID` also logs it to
    an MLflow run, `ReportResult.paths` being the files). seed fixes the bootstrap. `table`, when
    given, holds the rows to analyse (a results table; a study passes its current trials, so rows a
    change of recipe left in RESULTS_DIR stay there, unanalysed); by default all of RESULTS_DIR's.
    """
    rows = load_results(results_dir) if table is None else table
    trials = prepare(rows, metric, results_dir=results_dir)
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
    markdown_path = out_dir / REPORT_FILE
    markdown_path.write_text(render(analysis, results_dir, out_dir, figure_paths, figure_notes))
    headline = make_headline(analysis, markdown_path)
    paths = [markdown_path, *figure_paths.values(), *(out_dir / f"{n}.csv" for n in tables)]
    return ReportResult(markdown_path=markdown_path, figure_paths=list(figure_paths.values()),
                        headline=headline, tables=tables, paths=paths)


def default_out_dir(results_dir) -> Path:
    location = str(results_dir).rstrip("/")
    if location.endswith(".parquet"):
        location = location.rsplit("/", 1)[0] if "/" in location else "."
    if is_uri(location):
        return Path.cwd() / f"{location.rsplit('/', 1)[-1]}-{DEFAULT_OUT}"
    return Path(location) / DEFAULT_OUT


def draw_figures(analysis: Analysis, out_dir: Path):
    """Each figure that has data; a figure that fails is noted, since the numbers matter more."""
    from analysis import plots

    trials, paths, notes = analysis.trials, {}, []
    jobs = {"error_vs_kappa": lambda p: plots.error_vs_kappa(trials.frame, trials.metric, analysis.pairs, p)}
    if analysis.summary is not None:
        jobs["gain_vs_kappa"] = lambda p: plots.gain_vs_kappa(
            analysis.summary, analysis.cross, trials.metric.higher_is_better, p)
        if "size_ratio" in analysis.info.columns and analysis.info["size_ratio"].nunique() > 1:
            jobs["gain_vs_ratio"] = lambda p: plots.gain_vs_ratio(
                analysis.summary, analysis.info, trials.metric.higher_is_better, p)
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
        frame = trials.frame  # a pair holds several teacher ids only where each seed had its own (table.py)
        one_teacher = "teacher_id" in frame and (frame.groupby("pair")["teacher_id"].nunique() <= 1).all()
        over = ("the students' seeds, one teacher per pair: another teacher draw can move it further" if one_teacher
                else "seeds")
        lines.append(f"kappa* (PG = R(kd)/R(lt) crosses 1; {level} bootstrap CI over {over}):")
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
        lines.append(f"fidelity gap omega * kappa^-beta ({level} CI; tests of beta = 0.5, the verdict by seed):")
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
