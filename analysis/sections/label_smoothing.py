"""The label-smoothing study's section (studies/label_smoothing.py): the paper's Table 2 layout,
whether each arm's PI depends on kappa, whether "ls is flat in kappa, kd is not" holds, one figure.

    section(table, results_dir, out_dir) -> Section "label_smoothing"

Tables: `pi` (per arm and kappa: n, mean, sd, se of PI = acc - acc(lt), paired by seed), `lt`
(per kappa: acc(lt)), `kappa_dependence` (per arm: slope of PI per decade of kappa with its 95% CI,
ANOVA F and p, range of the per-kappa means, verdict) and `conclusions` (per ls and kd arm: the
verdicts, whether the conclusion holds, and how many times as much kd's PI moves as ls's).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from kdscale import schema

from analysis.markdown import budgets
from analysis.sections import Section, Table
from analysis.supervision import baseline_accuracy, increments, kappa_dependence, summarize, summary_cell

NAME = "label_smoothing"
FIGURE = "label_smoothing_pi_vs_kappa.png"
SAYS = {"flat": "is flat", "varies": "varies with kappa", "inconclusive": "is inconclusive"}
TEST_COLUMNS = ["slope", "slope_low", "slope_high", "n", "kappas", "f", "p", "range", "verdict"]


def section(table: pd.DataFrame, results_dir: str | None, out_dir: Path) -> Section:
    """The Table 2 layout, the flatness test per arm, the answer, and one figure (results_dir is
    not read: the table holds all)."""
    per_seed = increments(table)
    pi = summarize(per_seed, "PI")
    pi_cells = pi.set_index(["arm", "kappa"])
    lt_frame = baseline_accuracy(table)
    lt = lt_frame.set_index("kappa")
    arms = sorted(per_seed["arm"].unique(), key=lambda a: (not a.startswith("ls"), a))
    ls_arms = [a for a in arms if a.startswith("ls")]
    kd_arms = [a for a in arms if a.startswith("kd")]
    tests = {arm: kappa_dependence(per_seed[per_seed["arm"] == arm]) for arm in arms}
    pairs = conclusions(tests, ls_arms, kd_arms)
    row = table.iloc[0]

    result = Section(NAME, tables={
        "pi": pi, "lt": lt_frame,
        "kappa_dependence": pd.DataFrame([{"arm": arm, **{k: tests[arm][k] for k in TEST_COLUMNS}} for arm in arms],
                                         columns=["arm", *TEST_COLUMNS]),
        "conclusions": pairs})
    rows = []
    for kappa in sorted(pi["kappa"].unique()):
        cells = [summary_cell(pi_cells, (arm, kappa), signed=True) for arm in arms]
        seeds = int(pi[pi["kappa"] == kappa]["n"].min())
        rows.append([f"{kappa:g}", summary_cell(lt, kappa), *cells, f"{seeds}"])
    result.add("## Label smoothing against distillation (paper Table 2)", "",
               f"{schema.pair_label(row['teacher'], row['student'])} on {row['dataset']}, N = {row['n_teacher']}, "
               f"{budgets(table['budget'])}. PI = acc(objective) - acc(lt), paired by seed; mean ± sd over "
               f"seeds (n per cell in the last column).", "",
               display(["kappa", "acc(lt)", *(f"PI {a}" for a in arms), "seeds"], rows))

    rows = [[arm, f"{t['slope']:+.4f} [{t['slope_low']:+.4f}, {t['slope_high']:+.4f}]",
             f"F = {t['f']:.2f}, p = {_p(t['p'])}", f"{t['range']:.3f}", t["verdict"]]
            for arm, t in tests.items()]
    result.add("", "Does PI depend on kappa? Per arm, on the seed-level PIs: the least-squares slope of PI against "
               "log10 kappa with its 95% t CI, and a one-way ANOVA of PI with kappa as the factor (H0: PI the "
               "same at every kappa). Criterion: *flat* if the ANOVA gives p >= 0.05 and the slope's whole CI "
               "lies within ±0.02 per decade of kappa; *varies* if p < 0.05 or the slope's CI excludes 0; "
               "*inconclusive* otherwise. Seeds are nested across kappa, so the tests treat as independent "
               "what is only approximately so.", "",
               display(["arm", "slope of PI per decade of kappa [95% CI]", "ANOVA F, p", "range of per-kappa mean PI",
                        "verdict"], rows), "")
    for c in pairs.itertuples(index=False):
        ls, kd = tests[c.ls], tests[c.kd]
        result.add(f"- **{c.ls}** against **{c.kd}**: ls {SAYS[ls['verdict']]} "
                   f"(range {ls['range']:.3f}, slope {ls['slope']:+.4f}/decade, "
                   f"p = {_p(ls['p'])}), kd {SAYS[kd['verdict']]} (range {kd['range']:.3f}, "
                   f"p = {_p(kd['p'])}): the conclusion \"ls is flat in kappa, kd is not\" "
                   f"**{'holds' if c.holds else 'does not hold'}** here.")
    result.add("", magnitudes(pi, ls_arms, kd_arms, tests), "")
    result.figures = [draw(out_dir, per_seed, pi, lt, arms)]
    return result


def display(columns: list[str], rows: list[list[str]]) -> Table:
    return Table(pd.DataFrame(rows, columns=columns))


def conclusions(tests: dict, ls_arms: list[str], kd_arms: list[str]) -> pd.DataFrame:
    """Per (kd arm, ls arm): both verdicts, whether "ls is flat, kd is not" holds, and kd's range of
    per-kappa mean PI over ls's (NaN where ls's range is 0)."""
    rows = []
    for kd in kd_arms:
        for ls in ls_arms:
            holds = tests[ls]["verdict"] == "flat" and tests[kd]["verdict"] == "varies"
            ratio = tests[kd]["range"] / tests[ls]["range"] if tests[ls]["range"] > 1e-9 else math.nan
            rows.append([kd, ls, tests[kd]["verdict"], tests[ls]["verdict"], holds, ratio])
    return pd.DataFrame(rows, columns=["kd", "ls", "kd_verdict", "ls_verdict", "holds", "range_ratio"])


def magnitudes(pi, ls_arms, kd_arms, tests) -> str:
    """How much PI moves with kappa and where it lies, ls against kd, whatever the verdicts."""
    parts = []
    for arm in ls_arms + kd_arms:
        means = pi[pi["arm"] == arm]["mean"]
        parts.append(f"{arm} from {means.min():+.3f} to {means.max():+.3f} (range {tests[arm]['range']:.3f})")
    text = "In size: the per-kappa mean PI of " + "; ".join(parts) + "."
    for kd in kd_arms:
        ratios = [tests[kd]["range"] / tests[ls]["range"] for ls in ls_arms if tests[ls]["range"] > 1e-9]
        if ratios:
            text += (f" kd's PI moves {min(ratios):.1f}" + (f" to {max(ratios):.1f}" if len(ratios) > 1 else "")
                     + " times as much over kappa as ls's.")
    return text


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"


def draw(out_dir: Path, per_seed, pi, lt, arms) -> Path:
    """Accuracy and PI against kappa, mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.errorbar(lt.index, lt["mean"], yerr=lt["sd"].fillna(0), label="lt", marker="o", capsize=3, color="black")
    for arm in arms:
        acc = summarize(per_seed[per_seed["arm"] == arm], "R")
        part = pi[pi["arm"] == arm]
        left.errorbar(acc["kappa"], acc["mean"], yerr=acc["sd"].fillna(0), label=arm, marker="o", capsize=3)
        right.errorbar(part["kappa"], part["mean"], yerr=part["sd"].fillna(0), label=arm, marker="o", capsize=3)
    right.axhline(0, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="kappa = M / N", ylabel="test accuracy", title="accuracy (mean ± sd over seeds)")
    right.set(xscale="log", xlabel="kappa = M / N", ylabel="PI = acc - acc(lt)", title="increment over lt (Table 2)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure = out_dir / FIGURE
    fig.savefig(figure, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return figure
