"""The Markdown layout of report.md: what a reader sees, in the order they need it.

It opens with the table a researcher pastes into a paper, then warnings and the account of
excluded trials, then one section per relation, each with its method in a sentence or two.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import crossover as xo
from analysis import fidelity as fid
from analysis import markdown as md
from analysis.fits import Analysis, headline_rows

SECTION_FIGURES = {
    "increments": [("error_vs_kappa", "Test performance against kappa"),
                   ("gain_vs_kappa", "PG against kappa with kappa*"),
                   ("gain_vs_ratio", "PG against size ratio at each kappa")],
    "scaling": [("kappa_star_vs_ratio", "kappa* against size ratio")],
    "fidelity": [("fidelity_gap", "Fidelity gap against kappa")],
    "bias_variance": [("bias_variance", "Bias and variance against kappa")],
}


def render(analysis: Analysis, results_dir, out_dir: Path, figures: dict, figure_notes: list) -> str:
    trials = analysis.trials
    study = (", ".join(map(str, trials.frame["study"].unique())) if "study" in trials.frame
             else str(results_dir).rstrip("/").rsplit("/", 1)[-1])
    direction = "higher is better" if trials.metric.higher_is_better else "lower is better"
    parts = [f"# Knowledge distillation scaling analysis: {study}\n",
             f"Results: `{results_dir}`. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
             f"R = {trials.metric.label} ({direction}); PI = R(kd) - R(lt), PG = R(kd) / R(lt), "
             f"paired by seed; {analysis.ci:.0%} intervals.\n",
             _summary(analysis), _warnings(analysis, figure_notes), _trials(analysis)]

    def with_figures(section: str, text: str) -> str:
        links = [md.figure(title, figures[name], out_dir) for name, title in SECTION_FIGURES[section]
                 if name in figures]
        return text + ("\n" + "\n".join(links) if links else "")

    parts.append(with_figures("increments", _increments(analysis)))
    parts.append(_crossover(analysis))
    parts.append(with_figures("scaling", _scaling(analysis)))
    parts.append(with_figures("fidelity", _fidelity(analysis)))
    parts.append(with_figures("bias_variance", _bias_variance(analysis)))
    return "\n".join(parts)


def _skipped(analysis: Analysis, section: str) -> str:
    return f"_Not computed: {analysis.skipped[section]}._\n"


def _summary(analysis: Analysis) -> str:
    rows = headline_rows(analysis)
    text = "## Summary\n\n"
    if not rows:
        return text + _skipped(analysis, "crossover")
    level = f"{analysis.ci:.0%}"
    columns = [("pair", "pair")]
    if "dataset" in rows[0]:
        columns.append(("data", _data_cell))
    columns += [
        ("objective", "arm"),
        ("P_s / P_t", lambda r: md.number(r.get("size_ratio"))),
        ("teacher acc", lambda r: md.fixed(r.get("teacher_test_acc"))),
        ("seeds", lambda r: str(r["n_seeds"])),
        ("kappa grid", lambda r: f"{r['kappa_min']:g} to {r['kappa_max']:g} ({r['n_kappas']})"),
        ("R(lt) at min kappa", lambda r: md.fixed(r["R_lt_first"])),
        ("PI at min kappa (± se)", lambda r: md.mean_pm(r["PI_first"], r["PI_first_se"], sign=True)),
        ("PG at min kappa (± se)", lambda r: md.mean_pm(r["PG_first"], r["PG_first_se"])),
        (f"kappa* [{level} CI]", lambda r: _kappa_cell(r, analysis.ci)),
        (f"fidelity beta [{level} CI]", _beta_cell),
    ]
    notes = ("R is the test measure named above; min kappa is the smallest kappa of the pair's grid. "
             "kappa* is where the seed-mean PG crosses 1 to stay (linear interpolation in log kappa), with a "
             "percentile bootstrap over seeds; a bound written `>x` or `<x` lies beyond the grid. "
             "beta is the exponent of the fidelity gap omega * kappa^-beta (the paper predicts 0.5); "
             "shown by seed (the mean of each seed's exponent, t-interval over seeds) where there are 2 or more "
             "seeds, else the pooled fit; `*` marks a beta whose test (by seed, else the F-test) rejects 0.5 at "
             "the 5% level.")
    return text + md.table(rows, columns) + "\n" + notes + "\n"


def _data_cell(row: dict) -> str:
    n_teacher = pd.to_numeric(pd.Series([row.get("n_teacher")]), errors="coerce").iloc[0]
    return f"{row.get('dataset', '')}" + (f" N={n_teacher:g}" if pd.notna(n_teacher) else "")


def _kappa_cell(row: dict, ci: float) -> str:
    if row["status"] in (xo.CROSSING, xo.UPWARD):
        cell = f"{xo.format_kappa(row['kappa_star'])} {xo.format_interval(row)}"
        if row["status"] == xo.UPWARD:
            cell += " (upward)"
        elif row["n_crossings"] > 1:
            cell += f" (last of {row['n_crossings']} crossings, PG stays past 1 after it)"
        if 1 < row["n_seeds"] and xo.max_bootstrap_coverage(row["n_seeds"]) < ci:
            cell += f" ({row['n_seeds']} seeds: see warnings)"
        return cell
    if row["status"] == xo.ABOVE:
        return f"> {xo.format_kappa(row['kappa_max'])} (kd helps on whole grid)"
    if row["status"] == xo.BELOW:
        return f"< {xo.format_kappa(row['kappa_min'])} (kd hurts on whole grid)"
    if row["status"] == xo.UNSTABLE:
        return f"no stable crossing (kd helps again at max kappa {xo.format_kappa(row['kappa_max'])})"
    return md.MISSING


def _beta_cell(row: dict) -> str:
    fit = row.get("fidelity") or {}
    if not fit or fit.get("message") or not np.isfinite(fit.get("beta", np.nan)):
        return md.MISSING
    if fid.calibrated(fit):
        star = "*" if fit["seed_p"] < 0.05 else ""
        return (f"{fit['seed_beta']:.3g}{star} [{md.number(fit['seed_beta_low'])}, "
                f"{md.number(fit['seed_beta_high'])}]")
    star = "*" if fit.get("f_p", 1.0) < 0.05 else ""
    return f"{fit['beta']:.3g}{star} [{md.number(fit['beta_low'])}, {md.number(fit['beta_high'])}]"


def _warnings(analysis: Analysis, figure_notes: list) -> str:
    items = [*analysis.trials.warnings, *analysis.warnings]
    items += [f"{section.replace('_', '-')}: not computed: {why}" for section, why in analysis.skipped.items()]
    items += figure_notes
    if not items:
        return ""
    return "## Warnings\n\n" + "\n".join(f"- {item}" for item in items) + "\n"


def _trials(analysis: Analysis) -> str:
    trials = analysis.trials
    lines = ["## Trials\n",
             f"{len(trials.frame)} of {trials.total} trials are used: status `ok` with a value of "
             f"`{trials.metric.column}`. {len(analysis.pairs)} pair(s); objectives: "
             + ", ".join(f"{arm} ({n})" for arm, n in trials.frame["arm"].value_counts().sort_index().items())
             + ".\n"]
    if trials.excluded:
        lines.append("Excluded: " + ", ".join(f"{reason}: {n}" for reason, n in trials.excluded.items()) + ".\n")
        if "error" in trials.errors and trials.errors["error"].notna().any():
            counts = trials.errors.groupby(["status", "error"]).size().reset_index(name="trials")
            counts = counts.sort_values("trials", ascending=False).head(10)
            lines.append(md.table(counts, [("status", "status"), ("error", lambda r: str(r["error"])[:120]),
                                           ("trials", lambda r: str(r["trials"]))]))
    else:
        lines.append("No trial was excluded.\n")
    unpaired = {k: v for k, v in analysis.unpaired.items() if v}
    if unpaired:
        lines.append("Without a partner of the same pair, kappa and seed (left out of PI and PG): "
                     + ", ".join(f"{k}: {v}" for k, v in unpaired.items()) + ".\n")
    return "\n".join(lines)


def _increments(analysis: Analysis) -> str:
    text = "## Increments PI and PG\n\n"
    if analysis.summary is None:
        return text + _skipped(analysis, "increments")
    text += ("Per seed, the kd trial is paired with the lt trial of the same pair, kappa and seed; "
             "mean ± sd over seeds, se = sd / sqrt(seeds). PG is the mean of the per-seed ratios.\n\n")
    columns = [("pair", "pair"), ("objective", "arm"), ("kappa", lambda r: f"{r['kappa']:g}"),
               ("seeds", lambda r: str(r["n_seeds"])), ("R(lt)", lambda r: md.fixed(r["R_lt"])),
               ("R(kd)", lambda r: md.fixed(r["R_kd"])),
               ("PI ± sd", lambda r: md.mean_pm(r["PI_mean"], r["PI_sd"], sign=True)),
               ("se(PI)", lambda r: md.fixed(r["PI_se"])),
               ("PG ± sd", lambda r: md.mean_pm(r["PG_mean"], r["PG_sd"])),
               ("se(PG)", lambda r: md.fixed(r["PG_se"]))]
    return text + md.table(_ordered(analysis.summary, analysis.pairs, ["arm", "kappa"]), columns)


def _crossover(analysis: Analysis) -> str:
    text = "## Crossover kappa*\n\n"
    if analysis.cross is None:
        return text + _skipped(analysis, "crossover")
    text += ("kappa* is where the seed-mean PG curve crosses 1 for good: the last crossing from helping to "
             "not helping after which PG stays on the not-helping side at every larger kappa (a single noisy "
             "dip that comes back does not count, nor does an upward crossing). It is located by linear "
             "interpolation in log kappa between the two grid points around it: PG curves need not be "
             "monotone, and a straight line in log kappa between neighbouring grid points assumes the least. "
             "Without a stable crossing, kappa* lies beyond the grid on the side given and is not "
             "extrapolated. "
             f"CI: percentile bootstrap, {analysis.n_boot} replicates resampling seeds with the same draw "
             "at every kappa, with percentile levels expanded for few seeds (Hesterberg 2015); "
             "each replicate uses the same rule, and replicates without a stable crossing count as beyond the grid.\n\n")
    columns = [("pair", "pair"), ("objective", "arm"), ("result", "message"),
               ("no crossing in replicates", lambda r: _censored(r))]
    return text + md.table(_ordered(analysis.cross, analysis.pairs, ["arm"]), columns)


def _censored(row: dict) -> str:
    if not row["n_boot"]:
        return md.MISSING
    return f"{row['frac_above']:.0%} above grid, {row['frac_below']:.0%} below"


def _scaling(analysis: Analysis) -> str:
    text = "## Size scaling: kappa* against P_student / P_teacher\n\n"
    if analysis.scaling_fits is None:
        return text + _skipped(analysis, "scaling")
    text += ("OLS in logs (statsmodels): log kappa* = a + b log(P_s/P_t) [+ c log(teacher test error)], "
             "on the pairs with a stable kappa* inside the grid. The interval of b joins two: the OLS "
             "interval (from the pairs' scatter about the line) and a percentile bootstrap that refits the "
             "line on each kappa*'s bootstrap replicates over seeds plus the pairs' scatter beyond their seed "
             "noise (it carries each kappa*'s own uncertainty, also where it reaches beyond the grid). "
             "p-values of b = 0 and of the paper's b = -1 reject only where both readings do. Leave-one-out: "
             "the line without the largest ratio predicts its kappa*; the miss is in log10 units, with its "
             "prediction interval. Pairs censored at the grid's edge or without a stable crossing are left "
             "out and listed.\n\n")
    columns = [("objective", "arm"), ("model", "model"), ("pairs", lambda r: str(r.get("n_pairs", ""))),
               ("ratios", lambda r: md.number(r.get("n_ratios"))),
               ("slope b [CI]", lambda r: _interval(r, "slope", "exponent" if _has(r, "exponent_low") else None)),
               ("bootstrap [CI]", lambda r: _bounds(r, "slope_boot")), ("OLS [CI]", lambda r: _bounds(r, "slope")),
               ("p (b = 0)", lambda r: md.number(r.get("p_slope0"), 2)),
               ("p (b = -1)", lambda r: md.number(r.get("p_slope_paper"), 2)),
               ("leave-one-out miss (log10) [PI]", _loo_cell),
               ("teacher-error exponent c [CI]", lambda r: _interval(r, "teacher_coef", "teacher")),
               ("R^2", lambda r: md.number(r.get("r2"))),
               ("note", lambda r: "; ".join(x for x in (r.get("message") or "", r.get("excluded") or "") if x))]
    text += md.table(analysis.scaling_fits, columns) + "\n"
    points = analysis.scaling_points
    columns = [("pair", "pair"), ("objective", "arm"), ("P_s / P_t", lambda r: md.number(r.get("size_ratio"))),
               ("teacher acc", lambda r: md.fixed(r.get("teacher_test_acc"))),
               ("kappa*", lambda r: md.number(r["kappa_star"])),
               ("used", lambda r: "yes" if r["used"] else f"no: {r['reason']}")]
    return text + md.table(_ordered(points, analysis.pairs, ["arm"]), columns)


def _has(row: dict, key: str) -> bool:
    value = row.get(key)
    return value is not None and not pd.isna(value)


def _bounds(row: dict, prefix: str) -> str:
    if not _has(row, prefix + "_low"):
        return md.MISSING
    return f"[{md.number(row[prefix + '_low'])}, {md.number(row[prefix + '_high'])}]"


def _loo_cell(row: dict) -> str:
    note = row.get("loo_note")
    if not _has(row, "loo_miss_log10"):
        return note if isinstance(note, str) and note else md.MISSING
    inside = "inside" if row["loo_covered"] else "outside"
    return (f"{row['loo_miss_log10']:+.2f} [{row['loo_low_log10']:+.2f}, {row['loo_high_log10']:+.2f}], "
            f"{inside} (ratio {md.number(row['loo_ratio'])})")


def _interval(row: dict, key: str, prefix: str | None = None) -> str:
    prefix = prefix or key
    value = row.get(key)
    if value is None or not np.isfinite(value):
        return md.MISSING
    return f"{value:.3g} [{md.number(row.get(prefix + '_low'))}, {md.number(row.get(prefix + '_high'))}]"


def _fidelity(analysis: Analysis) -> str:
    text = "## Fidelity gap: fidelity_train - fidelity_test against kappa\n\n"
    if analysis.fidelity_fits is None:
        return text + _skipped(analysis, "fidelity")
    text += ("Nonlinear least squares (scipy curve_fit) of omega * kappa^-beta on every trial's gap; "
             "t-intervals from the fit's covariance (they assume the noise has one size at every kappa). "
             "The test of the paper's beta = 0.5 that holds its level is the test by seed: each seed's gaps "
             "give one exponent (the log-log slope where every gap is positive, else least squares in the gap), "
             "and a t-test over seeds asks whether their mean is 0.5; it does not assume noise of one size or "
             "independent trials within a seed. The unweighted F-test of the nested models and the Wald t-test "
             "are shown too; with noise that shrinks with the gap they reject a true 0.5 too often "
             "(see analysis/fidelity.py).\n\n")
    columns = [("pair", "pair"), ("objective", "arm"), ("trials", lambda r: str(r["n_trials"])),
               ("beta [CI]", lambda r: _interval(r, "beta")), ("omega [CI]", lambda r: _interval(r, "omega")),
               ("R^2", lambda r: md.number(r.get("r2"))),
               ("beta by seed [CI]", lambda r: _interval(r, "seed_beta")),
               ("p (by seed, beta = 0.5)", lambda r: md.number(r.get("seed_p"), 2)),
               ("p (F, beta = 0.5)", lambda r: md.number(r.get("f_p"), 2)),
               ("p (Wald)", lambda r: md.number(r.get("wald_p"), 2)),
               ("note", lambda r: r.get("message") or "")]
    return text + md.table(_ordered(analysis.fidelity_fits, analysis.pairs, ["arm"]), columns)


def _bias_variance(analysis: Analysis) -> str:
    text = "## Bias-variance decomposition over seeds (eq. 2)\n\n"
    notes = analysis.bias_variance_notes
    if "bias_variance" in analysis.skipped:
        return text + _skipped(analysis, "bias_variance") + "".join(f"- {n}\n" for n in notes)
    table = analysis.bias_variance
    worst = float(table["identity_error"].max())
    verdict = "holds" if table["identity_holds"].all() else "FAILS"
    text += ("E_s ||p_s - y||^2 = ||pbar - y||^2 + E_s ||p_s - pbar||^2 (expected squared loss = bias^2 + "
             "variance), from the per-trial test probabilities, averaged over test points; each term is "
             f"computed separately. The identity {verdict} in all {len(table)} configurations "
             f"(largest |loss - (bias^2 + variance)| = {worst:.1e}; tolerance 1e-6).\n\n")
    columns = [("pair", "pair"), ("objective", "arm"), ("kappa", lambda r: f"{r['kappa']:g}"),
               ("seeds", lambda r: str(r["n_seeds"])), ("bias^2", lambda r: md.number(r["bias2"], 4)),
               ("variance", lambda r: md.number(r["variance"], 4)),
               ("bias^2 + variance", lambda r: md.number(r["bias2_plus_variance"], 6)),
               ("expected loss", lambda r: md.number(r["expected_loss"], 6)),
               ("identity error", lambda r: f"{r['identity_error']:.1e}")]
    text += md.table(_ordered(table, analysis.pairs, ["arm", "kappa"]), columns)
    return text + "".join(f"\n- {n}" for n in notes) + ("\n" if notes else "")


def _ordered(frame: pd.DataFrame, pairs: list[str], then: list[str]) -> pd.DataFrame:
    """Rows in the report's pair order (by size ratio), then by the given columns."""
    rank = {pair: i for i, pair in enumerate(pairs)}
    return (frame.assign(_rank=frame["pair"].map(rank)).sort_values(["_rank", *then])
            .drop(columns="_rank"))
