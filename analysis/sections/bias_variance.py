"""The bias-variance study's section: bias^2 and variance over seeds of each objective's test
probabilities (eq. 2) and their kd - lt differences with paired bootstrap intervals
(studies/bias_variance.py; the paper's section B.2).

The per-trial test probabilities are read from the results directory's prediction files
(kdscale.schema, through analysis.bias_variance and analysis.bias_variance_gap).
Tables: `terms` (per pair, arm, kappa: bias2, variance, their sum, the identity check), `gaps`
(kd - lt of each term with its interval), `regimes` (the counts of the paper's two claims).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.bias_variance import bias_variance
from analysis.bias_variance_gap import bias_variance_gaps, regime_counts
from analysis.sections import Section, Table
from analysis.table import prepare

NAME = "bias_variance"
SMALL_KAPPA, LARGE_KAPPA = 0.1, 1.0  # the paper's two regimes, as this section reads them


def decomposition(table: pd.DataFrame, results_dir, n_boot: int = 2000):
    """(per-arm terms with the identity check, kd - lt differences with bootstrap CIs, notes)."""
    trials = prepare(table, results_dir=results_dir)
    terms, notes = bias_variance(trials)
    gaps, gap_notes = bias_variance_gaps(trials, n_boot=n_boot)
    return terms, gaps, notes + gap_notes


def draw(terms, gaps, out_dir: Path) -> list[Path]:
    from matplotlib.figure import Figure

    pairs = sorted(gaps["pair"].unique())
    figure = Figure(figsize=(10, 3.8 * len(pairs)), layout="constrained")
    axes = figure.subplots(len(pairs), 2, squeeze=False)
    for (left, right), pair in zip(axes, pairs):
        for arm, group in terms[terms["pair"] == pair].groupby("arm", sort=True):
            group = group.sort_values("kappa")
            line, = left.plot(group["kappa"], group["bias2"], marker="o", ms=3, label=f"{arm} bias^2")
            left.plot(group["kappa"], group["variance"], marker="s", ms=3, ls="--", color=line.get_color(),
                      label=f"{arm} variance")
        left.set(xscale="log", xlabel="kappa = M / N", ylabel="squared-loss term", title=f"{pair}: each objective")
        part = gaps[gaps["pair"] == pair].sort_values("kappa")
        for term, label in (("variance", "variance"), ("bias2", "bias^2"), ("expected_loss", "bias^2 + variance")):
            mid = part[f"d_{term}"]
            bars = np.maximum(0, [mid - part[f"d_{term}_low"], part[f"d_{term}_high"] - mid])
            right.errorbar(part["kappa"], mid, yerr=bars, marker="o", ms=3, capsize=2, label=f"d {label}")
        right.axhline(0, color="gray", lw=0.8, ls="--")
        right.set(xscale="log", xlabel="kappa = M / N", ylabel="kd - lt (95% bootstrap CI over seeds)",
                  title=f"{pair}: kd - lt (below 0: kd lower)")
        for ax in (left, right):
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7)
    figure.suptitle("Bias-variance decomposition of the squared loss over seeds (eq. 2)", fontsize=10)
    path = out_dir / "bias_variance_decomposition.png"
    figure.savefig(path, dpi=120)
    return [path]


def gap_table(gaps: pd.DataFrame) -> Table:
    """One row per (pair, kd arm, kappa): each term of lt and kd and their difference, as display text."""
    def diff(row, term):
        return f"{row[f'd_{term}']:+.4f} [{row[f'd_{term}_low']:+.4f}, {row[f'd_{term}_high']:+.4f}]"

    rows = [[row["pair"], row["arm"], f"{row['kappa']:g}", f"{row['bias2_lt']:.4f}", f"{row['bias2_kd']:.4f}",
             diff(row, "bias2"), f"{row['variance_lt']:.4f}", f"{row['variance_kd']:.4f}", diff(row, "variance"),
             f"{row['p_variance_below0']:.2f}", f"{row['expected_loss_lt']:.4f}", f"{row['expected_loss_kd']:.4f}",
             diff(row, "expected_loss")] for row in gaps.to_dict("records")]
    return Table(pd.DataFrame(rows, columns=[
        "pair", "kd arm", "kappa", "bias^2 lt", "bias^2 kd", "d bias^2 [95% CI]", "variance lt", "variance kd",
        "d variance [95% CI]", "P(d var < 0)", "sum lt", "sum kd", "d sum [95% CI]"]))


def section(table: pd.DataFrame, results_dir: str, out_dir: Path, n_boot: int = 2000) -> Section:
    """The study's section: its numbers, text and figure (drawn into out_dir)."""
    terms, gaps, notes = decomposition(table, results_dir, n_boot)
    result = Section(NAME, tables={"terms": terms, "gaps": gaps})
    result.add("## Bias and variance over seeds", "")
    if gaps.empty:
        return result.add("No kappa has two seeds with predictions of both objectives.", *[f"- {n}" for n in notes])
    result.figures = draw(terms, gaps, Path(out_dir))
    counts = regime_counts(gaps, SMALL_KAPPA, LARGE_KAPPA)
    result.tables["regimes"] = pd.DataFrame([{"small_kappa": SMALL_KAPPA, "large_kappa": LARGE_KAPPA, **counts}])
    worst = float(terms["identity_error"].max())
    n_seeds = sorted(set(gaps["n_seeds"]))
    result.add(f"Squared loss of the test probabilities = bias^2 + variance over seeds (eq. 2), averaged over "
               f"test points; the identity holds to {worst:.1e} in every cell. d = kd - lt with a 95% "
               f"expanded-percentile bootstrap interval over {', '.join(map(str, n_seeds))} seeds ({gaps['n_boot'].iloc[0]} paired "
               "replicates; P = share of replicates with kd below lt).", "",
               gap_table(gaps))
    result.add("", f"Small kappa (<= {SMALL_KAPPA:g}): kd's variance is below lt's in {counts['variance_lower']} of "
               f"{counts['small']} cells, with the 95% interval below 0 in {counts['variance_lower_ci']}. "
               f"Large kappa (>= {LARGE_KAPPA:g}): kd's bias^2 is above lt's in {counts['bias_higher']} of "
               f"{counts['large']} cells, with the interval above 0 in {counts['bias_higher_ci']}.")
    if notes:
        result.add("", *[f"- {n}" for n in notes])
    return result
