"""The crossover kappa*: the student/teacher data ratio at which PG = R(kd) / R(lt) crosses 1.

Method. kappa* is where the seed-mean PG curve crosses 1 for good: the last downward crossing (kd
helps at the grid point before it, not at the one after) after which the curve stays on the
not-helping side at every larger kappa of the grid. It is located by linear interpolation in log
kappa between the two grid points that bracket it. Why not a smooth monotone fit: measured PG
curves need not be monotone (they can rise before they fall), a parametric shape would decide
where the crossing lies between grid points with no data to check it, and between neighbouring
points of a log-spaced grid a straight line in log kappa assumes the least.

Why "for good": with a handful of seeds a single noisy grid point can dip below 1 and come back;
the first downward crossing would then report a kappa* that noise made. Upward crossings never
count. So a curve that is below 1 at the largest kappa but above it somewhere has kappa* at the
last downward crossing (the count of all crossings is reported); one below 1 at every kappa has
kappa* below the grid; one above 1 at every kappa has it above the grid; one that dips below 1
and is back above it at the largest kappa has no stable crossing (status `unstable`): if kd stops
helping for good, that happens beyond the grid. Never extrapolated.

Uncertainty: a percentile bootstrap over seeds. A replicate draws seeds with replacement and keeps
the same draw for every kappa of the pair (a seed's trials share its data draw across kappas),
recomputes the mean PG curve and locates its crossing by the same rule. Replicates without a
stable crossing count as +inf (kd helps at the largest kappa) or -inf (kd helps at no kappa), so
a bound of the interval can be "beyond the grid" rather than the censored replicates silently
being dropped. The percentile levels are expanded for few seeds (Hesterberg 2015, see
`expanded_tail`): the plain percentile interval covered 91-92% instead of 95% with 12 seeds in
this package's coverage test; the stable rule's interval covers 95% there
(tests/test_analysis_noise.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# The statuses of a PG curve, as `Crossing.status` and the `status` column name them. UPWARD is
# no longer produced (upward crossings never count); it stays for tables written before.
CROSSING, UPWARD, ABOVE, BELOW, EMPTY = "crossing", "upward", "above", "below", "empty"
UNSTABLE = "unstable"  # below 1 somewhere, back above it at the largest kappa: no stable crossing


@dataclass(frozen=True)
class Crossing:
    """Where one PG curve crosses 1 for good; kappa_star is NaN when it does not inside the grid."""
    kappa_star: float
    status: str          # crossing | above (kappa* > max kappa) | below | unstable | empty
    n_crossings: int     # every crossing of 1, down and up


def gain(pg: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """> 0 where kd helps: PG > 1 for accuracy, PG < 1 for error, loss or perplexity."""
    pg = np.asarray(pg, dtype=float)
    return pg - 1.0 if higher_is_better else 1.0 - pg


def find_crossing(kappas, gains) -> Crossing:
    """Stable crossing of one curve of gains (> 0: kd helps) over a kappa grid; NaN points are skipped."""
    kappas, gains = np.asarray(kappas, dtype=float), np.asarray(gains, dtype=float)
    keep = np.isfinite(gains)
    kappas, gains = kappas[keep], gains[keep]
    order = np.argsort(kappas)
    log_kappa, gains = np.log(kappas[order]), gains[order]
    values, statuses, counts = _crossings(log_kappa, gains[None, :])
    return Crossing(float(np.exp(values[0])) if statuses[0] == CROSSING else np.nan,
                    statuses[0], int(counts[0]))


def _crossings(log_kappa: np.ndarray, gains: np.ndarray):
    """Vectorised over rows of `gains` (replicates x kappas, no NaN): log kappa* of the stable
    crossing, +inf when kd helps at the largest kappa (above, unstable), -inf when it helps nowhere."""
    n_rows, n_kappas = gains.shape
    if n_kappas == 0:
        return np.full(n_rows, np.nan), np.array([EMPTY] * n_rows, dtype=object), np.zeros(n_rows, int)
    helps = gains > 0
    ends_helping = helps[:, -1]
    any_help = helps.any(axis=1)
    values = np.where(ends_helping, np.inf, -np.inf)
    statuses = np.where(ends_helping, np.where((gains < 0).any(axis=1), UNSTABLE, ABOVE), BELOW).astype(object)
    if n_kappas < 2:
        return values, statuses, np.zeros(n_rows, int)
    left, right = gains[:, :-1], gains[:, 1:]
    counts = ((left > 0) & (right <= 0)).sum(axis=1) + ((left < 0) & (right >= 0)).sum(axis=1)
    stable = any_help & ~ends_helping
    # The last grid point where kd helps; on a stable row every later point has gain <= 0.
    last = n_kappas - 1 - np.argmax(helps[:, ::-1], axis=1)
    index = np.where(stable, last, 0)
    rows = np.arange(n_rows)
    g0, g1 = gains[rows, index], gains[rows, np.minimum(index + 1, n_kappas - 1)]
    # On a stable row g0 > 0 >= g1, so g0 - g1 is never 0 there.
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = g0 / (g0 - g1)
    located = log_kappa[index] + fraction * (log_kappa[np.minimum(index + 1, n_kappas - 1)] - log_kappa[index])
    values = np.where(stable, located, values)
    statuses = np.where(stable, CROSSING, statuses).astype(object)
    return values, statuses, counts


def expanded_tail(ci: float, n_seeds: int) -> float:
    """Tail probability of the expanded percentile interval (Hesterberg 2015, The American
    Statistician 69(4), sec. 5.3): the plain percentile interval of a mean over n draws is too
    narrow by about sqrt((n-1)/n) and by using normal rather than t quantiles, which costs real
    coverage with a handful of seeds (about 91% instead of 95% with 12 seeds). The expanded
    interval reads the bootstrap distribution at the level whose normal quantile is
    sqrt(n/(n-1)) times the t_(n-1) quantile. Below about 6 seeds no bootstrap interval reaches
    95% (see `max_bootstrap_coverage`); the report says so."""
    from scipy import stats

    z = np.sqrt(n_seeds / (n_seeds - 1)) * stats.t.ppf(0.5 + ci / 2.0, n_seeds - 1)
    return float(stats.norm.sf(z))


def bootstrap_crossing(kappas, pg_by_seed, higher_is_better: bool = True, n_boot: int = 2000,
                       ci: float = 0.95, seed: int = 0, expanded: bool = True,
                       keep_replicates: bool = False) -> dict:
    """kappa* of the seed-mean PG curve with a percentile bootstrap CI over seeds.

    pg_by_seed: array [seeds, kappas] of per-seed PG, NaN where a seed lacks a kappa.
    expanded: widen the percentile levels for few seeds (see `expanded_tail`); False gives the
    plain percentile interval.
    Returns kappa_star, status, n_crossings, ci_low, ci_high (0 or inf when a bound lies beyond
    the grid; NaN with fewer than 2 seeds), frac_above / frac_below (replicates without a
    stable crossing, by side), n_seeds and n_boot; with keep_replicates, `replicates`: the
    n_boot replicate values of log kappa* (+-inf beyond the grid, NaN undefined; empty without a
    bootstrap), replicate b drawing the same seed rows whatever the curve.
    """
    kappas = np.asarray(kappas, dtype=float)
    matrix = np.asarray(pg_by_seed, dtype=float)
    order = np.argsort(kappas)
    kappas, matrix = kappas[order], matrix[:, order]
    gains = gain(matrix, higher_is_better)
    n_seeds = int(np.isfinite(gains).any(axis=1).sum())
    point = find_crossing(kappas, _nanmean_rows(gains[None])[0])
    out = {"kappa_star": point.kappa_star, "status": point.status, "n_crossings": point.n_crossings,
           "ci_low": np.nan, "ci_high": np.nan, "frac_above": np.nan, "frac_below": np.nan,
           "n_seeds": n_seeds, "n_boot": 0}
    if keep_replicates:
        out["replicates"] = np.empty(0)
    if n_seeds < 2 or n_boot < 1 or len(kappas) < 2:
        return out
    gains = gains[np.isfinite(gains).any(axis=1)]
    rng = np.random.default_rng(seed)  # a fresh generator per curve: results do not depend on order
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    replicate_gains = _nanmean_rows(gains[draws])          # [n_boot, kappas]
    log_kappa = np.log(kappas)
    complete = np.isfinite(replicate_gains).all(axis=1)
    values = np.empty(n_boot)
    values[complete] = _crossings(log_kappa, replicate_gains[complete])[0]
    incomplete = np.flatnonzero(~complete)  # replicates that drew no seed with some kappa: each on the
    if len(incomplete):                     # kappas it has, one call per pattern of missing kappas
        patterns, which = np.unique(np.isfinite(replicate_gains[incomplete]), axis=0, return_inverse=True)
        for p, keep in enumerate(patterns):
            rows = incomplete[which.ravel() == p]
            values[rows] = _crossings(log_kappa[keep], replicate_gains[np.ix_(rows, keep)])[0]
    if keep_replicates:
        out["replicates"] = values.copy()
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return out
    tail = expanded_tail(ci, n_seeds) if expanded else (1.0 - ci) / 2.0
    # "lower"/"higher" pick replicate values instead of interpolating, which keeps +-inf exact
    # and errs on the wide side.
    out.update(ci_low=float(np.exp(np.quantile(values, tail, method="lower"))),
               ci_high=float(np.exp(np.quantile(values, 1.0 - tail, method="higher"))),
               frac_above=float(np.mean(values == np.inf)),
               frac_below=float(np.mean(values == -np.inf)), n_boot=int(n_boot))
    return out


def _nanmean_rows(stack: np.ndarray) -> np.ndarray:
    """Mean over axis -2 ignoring NaN; NaN where a column has no value."""
    finite = np.isfinite(stack)
    counts = finite.sum(axis=-2)
    sums = np.where(finite, stack, 0.0).sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def crossover(paired: pd.DataFrame, higher_is_better: bool = True, n_boot: int = 2000,
              ci: float = 0.95, seed: int = 0, replicates: dict | None = None) -> pd.DataFrame:
    """kappa* per (pair, arm) of a `pair_by_seed` table, with its bootstrap CI and a message.

    replicates: a dict to fill with {(pair, arm): the bootstrap replicates of log kappa*} (see
    `bootstrap_crossing`), for fits that carry each kappa*'s uncertainty (analysis.scaling)."""
    rows = []
    for (pair, arm), group in paired.groupby(["pair", "arm"], sort=True):
        matrix = group.pivot_table(index="seed", columns="kappa", values="PG", aggfunc="first")
        kappas = matrix.columns.to_numpy(dtype=float)
        result = bootstrap_crossing(kappas, matrix.to_numpy(dtype=float), higher_is_better,
                                    n_boot=n_boot, ci=ci, seed=seed, keep_replicates=replicates is not None)
        if replicates is not None:
            replicates[(pair, arm)] = result.pop("replicates")
        result.update(pair=pair, arm=arm, n_kappas=len(kappas), kappa_min=kappas.min(),
                      kappa_max=kappas.max())
        result["message"] = describe(result, higher_is_better, ci)
        rows.append(result)
    columns = ["pair", "arm", "status", "kappa_star", "ci_low", "ci_high", "n_crossings",
               "frac_above", "frac_below", "n_seeds", "n_kappas", "kappa_min", "kappa_max",
               "n_boot", "message"]
    return pd.DataFrame(rows, columns=columns)


def format_kappa(value: float) -> str:
    return f"{value:.3g}"


def format_interval(result: dict) -> str:
    """`[0.41, 1.9]`, with a bound beyond the grid written `<min` or `>max`; `no CI` without one."""
    low, high = result["ci_low"], result["ci_high"]
    if np.isnan(low) or np.isnan(high):
        return "no CI"

    def bound(value):
        if value == np.inf:
            return f">{format_kappa(result['kappa_max'])}"
        if value == 0:
            return f"<{format_kappa(result['kappa_min'])}"
        return format_kappa(value)

    return f"[{bound(low)}, {bound(high)}]"


def max_bootstrap_coverage(n_seeds: int) -> float:
    """About the best coverage any bootstrap interval over n seeds can have: a resample cannot
    reach beyond the most extreme single seed, and all n seeds fall on one side of the truth with
    probability 2 * (1/2)^n."""
    return 1.0 - 2.0 ** (1 - n_seeds)


def describe(result: dict, higher_is_better: bool, ci: float = 0.95, seed_note: bool = True) -> str:
    """One line a reader can trust: the estimate, its interval and what it does not say."""
    status, level = result["status"], f"{ci:.0%}"
    pg_helps = "PG > 1" if higher_is_better else "PG < 1"
    interval = format_interval(result)
    extra = []
    if result["n_seeds"] < 2:
        extra.append("one seed: no CI")
    elif seed_note and max_bootstrap_coverage(result["n_seeds"]) < ci:
        extra.append(f"only {result['n_seeds']} seeds: a bootstrap CI covers at most about "
                     f"{max_bootstrap_coverage(result['n_seeds']):.0%}, not {level}; run more seeds")
    censored = (result.get("frac_above") or 0) + (result.get("frac_below") or 0)
    if censored > 0:
        extra.append(f"{censored:.0%} of bootstrap replicates do not cross inside the grid (to stay)")
    if status == EMPTY:
        return "no finite PG values"
    if result["n_kappas"] < 2:
        side = "helps" if status == ABOVE else "hurts"
        return (f"only one kappa ({format_kappa(result['kappa_min'])}): no crossing can be located; "
                f"kd {side} there")
    if status in (CROSSING, UPWARD):
        text = f"kappa* = {format_kappa(result['kappa_star'])}" + ("" if interval == "no CI" else f" {interval}")
        if status == UPWARD:  # a table written before the stable rule
            text += "; PG crosses 1 only upward: kd hurts at small kappa and starts to help at kappa*"
        elif result["n_crossings"] > 1:
            text += (f"; PG crosses 1 {result['n_crossings']} times, the last downward crossing (after which "
                     "PG stays on the not-helping side) is reported")
    elif status == UNSTABLE:
        text = (f"no stable crossing: kd stops helping somewhere in the grid but helps again at max kappa = "
                f"{format_kappa(result['kappa_max'])} (PG crosses 1 {result['n_crossings']} times); a kappa* "
                "after which kd stops helping for good would lie above the grid")
        if result["n_boot"] and result["ci_low"] < np.inf:
            text += f"; {level} CI {interval}"
    elif status == ABOVE:
        text = (f"kd helps across the whole grid ({pg_helps} at every kappa): "
                f"kappa* > max kappa = {format_kappa(result['kappa_max'])}, not extrapolated")
        if result["n_boot"] and result["ci_low"] < np.inf:
            text += f"; {level} CI {interval}"
    else:
        text = (f"kd hurts across the whole grid ({pg_helps} at no kappa): "
                f"kappa* < min kappa = {format_kappa(result['kappa_min'])}, not extrapolated")
        if result["n_boot"] and result["ci_high"] > 0:
            text += f"; {level} CI {interval}"
    return text + ("; " + "; ".join(extra) if extra else "")
