"""Every fit of a study's report, computed once: `analyse(trials)` returns the numbers that the report
(analysis.report) writes and the Markdown (analysis.render) lays out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis import bias_variance as bv
from analysis import crossover as xo
from analysis import fidelity as fid
from analysis import increments as inc
from analysis import scaling as sc
from analysis.table import AnalysisError, Trials, pair_info


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
    cross_replicates: dict = field(default_factory=dict)  # {(pair, arm): bootstrap log kappa*}
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
        result.cross = xo.crossover(result.paired, higher, n_boot=n_boot, ci=ci, seed=seed,
                                    replicates=result.cross_replicates)
    except AnalysisError as exc:
        for section in ("increments", "crossover", "scaling"):
            result.skipped[section] = str(exc)
    if result.cross is not None:
        result.scaling_fits, result.scaling_points = sc.size_scaling(
            result.cross, info, ci=ci, replicates=result.cross_replicates, seed=seed)
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
