"""Supervision signals against label training (sections 5-6 of arXiv 2510.15516).

The label-smoothing, temperature and hard-vs-soft studies compare several objectives ("arms":
`ls eps=0.1`, `kd tau=4`, `kd tau=10 no-tau2`, `hard`, `l2`, ...) with `lt` on one grid of kappa
and seeds. Everything here is paired by seed: the trials of one seed at one (pair, kappa) share
the student's subset, initialisation and batch order, so a difference within a seed cancels that
draw's luck, and the spread of the per-seed differences is the uncertainty of the mean.

- `increments`: PI = R(arm) - R(lt) per (pair, arm, kappa, seed).
- `summarize`: mean, sd, se and n of any per-seed column per (pair, arm, kappa).
- `contrast`: R(arm a) - R(arm b) per kappa, paired by seed, with a t confidence interval.
- `kappa_dependence`: does an arm's PI change with kappa? The criterion of the label-smoothing
  study (see its docstring).
- `status_counts`: ok and diverged trials per (pair, arm, kappa); diverged trials are results.

Seeds at different kappas are not independent draws (one seed's subsets are nested), so the tests
across kappa treat them as if they were; with a handful of seeds that is the usual approximation.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.paired import mean_ci
from analysis.table import arm_label, prepare

# A PI that changes by less than this per decade of kappa (accuracy, i.e. 2 points per 10x data)
# counts as flat, provided the whole 95% CI of the slope lies inside +-FLAT_MARGIN.
FLAT_MARGIN = 0.02
LEVEL = 0.95


def increments(table: pd.DataFrame, baseline: str = "lt", metric: str = "test_acc") -> pd.DataFrame:
    """PI = R(arm) - R(baseline) for every usable non-baseline trial that has a baseline trial of
    the same pair, kappa and seed. Columns: pair, arm, objective, tau, tau_squared, epsilon, kappa,
    seed, R, R_lt, PI, fidelity_train, fidelity_test (the last two as NaN where absent)."""
    frame = prepare(table, metric).frame
    for column in ("tau", "tau_squared", "epsilon", "fidelity_train", "fidelity_test"):
        if column not in frame.columns:
            frame[column] = np.nan
    base = frame[frame["objective"] == baseline][["pair", "kappa", "seed", "R"]]
    treated = frame[frame["objective"] != baseline]
    paired = treated.merge(base, on=["pair", "kappa", "seed"], suffixes=("", "_lt"))
    paired["PI"] = paired["R"] - paired["R_lt"]
    columns = ["pair", "arm", "objective", "tau", "tau_squared", "epsilon", "kappa", "seed", "R", "R_lt", "PI",
               "fidelity_train", "fidelity_test"]
    return paired[columns].sort_values(["pair", "arm", "kappa", "seed"]).reset_index(drop=True)


def usable(table: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """The trials analysis.table.prepare keeps (status ok, metric present), with R, pair and arm."""
    return prepare(table, metric).frame


def baseline_accuracy(table: pd.DataFrame, baseline: str = "lt", metric: str = "test_acc") -> pd.DataFrame:
    """Per (pair, kappa): mean, sd and n of R for the baseline arm."""
    frame = prepare(table, metric).frame
    return summarize(frame[frame["objective"] == baseline].assign(arm=baseline), "R")


def summarize(per_seed: pd.DataFrame, value: str = "PI") -> pd.DataFrame:
    """Per (pair, arm, kappa): n, mean, sd (over seeds, ddof 1) and se of `value`; NaNs left out."""
    rows = []
    for (pair, arm, kappa), group in per_seed.groupby(["pair", "arm", "kappa"], sort=True):
        values = mean_ci(pd.to_numeric(group[value], errors="coerce"))
        rows.append({"pair": pair, "arm": arm, "kappa": kappa, **{k: values[k] for k in ("n", "mean", "sd", "se")}})
    return pd.DataFrame(rows, columns=["pair", "arm", "kappa", "n", "mean", "sd", "se"])


def contrast(per_seed: pd.DataFrame, arm_a: str, arm_b: str, value: str = "R") -> pd.DataFrame:
    """Per (pair, kappa): `value` of arm a minus arm b, paired by seed (seeds where both have a
    finite value), with mean, sd and a 95% t interval. Columns: pair, kappa, n, mean, sd, low, high."""
    a = per_seed[per_seed["arm"] == arm_a].set_index(["pair", "kappa", "seed"])[value]
    b = per_seed[per_seed["arm"] == arm_b].set_index(["pair", "kappa", "seed"])[value]
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()
    rows = []
    for (pair, kappa), group in both.groupby(level=["pair", "kappa"], sort=True):
        difference = mean_ci(group["a"] - group["b"])
        rows.append({"pair": pair, "kappa": kappa, **{k: difference[k] for k in ("n", "mean", "sd", "low", "high")}})
    return pd.DataFrame(rows, columns=["pair", "kappa", "n", "mean", "sd", "low", "high"])


def slope_ci(x, y, level: float = LEVEL) -> tuple[float, float, float, int]:
    """Least-squares slope of y on x with a t confidence interval: (slope, low, high, n)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return math.nan, math.nan, math.nan, n
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.5 + level / 2, n - 2)) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), n


def kappa_dependence(per_seed: pd.DataFrame, value: str = "PI", margin: float = FLAT_MARGIN,
                     level: float = LEVEL) -> dict:
    """Does `value` (one arm of one pair, per seed) change with kappa?

    Two views of the seed-level values: the slope against log10 kappa with its 95% CI (a trend),
    and a one-way ANOVA with kappa as the factor (any dependence, also a rise and fall). Verdict:
    - `flat`: ANOVA p >= 1 - level and the slope's whole CI inside +-margin per decade;
    - `varies`: otherwise, if ANOVA p < 1 - level or the slope's CI excludes 0;
    - `inconclusive`: neither (too noisy to say either way).
    Also the range (max - min) of the per-kappa means.
    """
    from scipy import stats

    values = per_seed[np.isfinite(pd.to_numeric(per_seed[value], errors="coerce").astype(float))]
    slope, low, high, n = slope_ci(np.log10(values["kappa"].astype(float)), values[value], level)
    groups = [g[value].to_numpy(dtype=float) for _, g in values.groupby("kappa", sort=True)]
    usable = [g for g in groups if len(g) >= 1]
    if len(usable) >= 2 and sum(len(g) for g in usable) > len(usable) and \
            any(np.ptp(g) > 0 for g in usable if len(g) > 1):
        f_stat, p_value = (float(v) for v in stats.f_oneway(*usable))
    else:
        f_stat, p_value = math.nan, math.nan
    means = [float(np.mean(g)) for g in usable]
    alpha = 1 - level
    if not (math.isfinite(low) and math.isfinite(p_value)):
        verdict = "inconclusive"
    elif p_value >= alpha and -margin <= low and high <= margin:
        verdict = "flat"
    elif p_value < alpha or low > 0 or high < 0:
        verdict = "varies"
    else:
        verdict = "inconclusive"
    return {"slope": slope, "slope_low": low, "slope_high": high, "n": n, "kappas": len(usable),
            "f": f_stat, "p": p_value, "range": (max(means) - min(means)) if means else math.nan,
            "verdict": verdict}


def status_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Trials per (pair-less) arm and kappa by status: columns arm, kappa, ok, diverged, other."""
    frame = table.copy()
    frame["arm"] = [arm_label(row) for row in frame.to_dict("records")]
    frame["kappa"] = [float(f"{float(k):.10g}") for k in frame["kappa"]]
    status = frame["status"].fillna("missing").astype(str)
    frame["ok"] = status == "ok"
    frame["diverged"] = status == "diverged"
    frame["other"] = ~(frame["ok"] | frame["diverged"])
    counts = frame.groupby(["arm", "kappa"], sort=True)[["ok", "diverged", "other"]].sum().astype(int)
    return counts.reset_index()


def summary_cell(summary: pd.DataFrame, key, signed: bool = False) -> str:
    """`mean ± sd` of the row `key`, e.g. (arm, kappa), of a `summarize` frame indexed by it; `-` if none."""
    if key not in summary.index:
        return "-"
    return mean_sd(summary.loc[key, "mean"], summary.loc[key, "sd"], signed=signed)


def contrast_text(row) -> str:
    """`+0.123 [+0.100, +0.146]`: a `contrast` row's mean and 95% t CI (the mean alone for one seed)."""
    if row["n"] < 2:
        return f"{row['mean']:+.3f}"
    return f"{row['mean']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]"


def mean_sd(mean: float, sd: float, digits: int = 3, signed: bool = False) -> str:
    """`0.123 ± 0.004` (a missing sd, e.g. one seed, is shown as `± -`)."""
    if not math.isfinite(mean):
        return "-"
    text = f"{mean:+.{digits}f}" if signed else f"{mean:.{digits}f}"
    return f"{text} ± {sd:.{digits}f}" if math.isfinite(sd) else f"{text} ± -"
