"""Size scaling: kappa* against the student/teacher parameter ratio, as a log-log regression.

Model 1:  log kappa* = a + b log(P_student / P_teacher)                     (kappa* = e^a ratio^b)
Model 2:  log kappa* = a + b log(P_student / P_teacher) + c log(teacher test error)

Model 2 adds the teacher's quality, which the paper suspects matters; the error enters in logs so
the fit stays a power law in both covariates. The point estimates are ordinary least squares
(statsmodels) on the kappa* estimates. Only pairs with a stable crossing inside their grid enter
(analysis.crossover: the last downward crossing after which PG stays below 1); pairs censored at an
edge or without a stable crossing are listed, since dropping them can bias the slope.

Two readings of each exponent's uncertainty. The OLS t-interval (`slope_low`/`slope_high`)
reads it from the scatter of the pairs around the line alone. The bootstrap interval
(`slope_boot_low`/`slope_boot_high`) carries each kappa*'s own uncertainty: replicate b refits the
line on replicate b of every pair's bootstrap over seeds (analysis.crossover draws the same seed
rows for every pair, so where pairs share seeds this resamples seeds across pairs), plus a draw of
the pairs' scatter beyond their seed noise, tau^2 (a method-of-moments estimate from the OLS
residuals, 0 when the seed noise explains them); it is the percentile interval of the refitted
exponents. A replicate whose kappa* lies beyond the grid keeps it there (+-inf), which can make a
bound infinite rather than silently narrow. Each reading alone undercovers somewhere: OLS where the
pairs' kappa* differ in precision or are censored in some replicates, the bootstrap where the pairs
scatter about the law (its tau^2 rests on n - 2 residual degrees of freedom). The headline
interval (`exponent_low`/`exponent_high`) is therefore their union, and the tests of b = 0 and of
the paper's b = -1 (`p_slope0`, `p_slope_paper`) take the larger of the OLS t-test's and the
two-sided percentile-bootstrap p-value, so they reject only where both readings do. Measured
(tests/test_analysis_noise.py, 5 pairs, 8 seeds, 200 replicates): on an exact law the union covers
the planted exponent in 99.5% (bootstrap alone 96.0%, OLS alone 98.0%); with pair scatter of sd
0.15 in log kappa*, 94.5% (bootstrap alone 85.5%, OLS alone 93.0%).

Leave-one-out: the line is refitted without the pair(s) of the largest ratio, their log kappa* is
predicted, and the miss (observed - predicted, in log10 units) is set against the prediction
interval of that miss under the law: the bootstrap one (both sides' seed noise and the scatter)
joined with the OLS one of the left-in pairs (which needs 3 of them). It covered 97.5% (exact law)
and 96.0% (with scatter) in the same runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.crossover import CROSSING

RATIO, RATIO_TEACHER = "ratio", "ratio + teacher error"
PAPER_SLOPE = -1.0  # the paper's exponent of kappa* in the size ratio


def fit_loglog(ratio, kappa_star, teacher_error=None, ci: float = 0.95, replicates=None,
               seed: int = 0) -> dict:
    """OLS of log kappa* on log ratio (and log teacher error); slope, CI, p-value and R^2.

    replicates: [pairs, n_boot] bootstrap replicates of log kappa* (one row per pair, replicate b of
    every pair in column b), for the bootstrap interval, the tests of b = 0 and b = -1 and (model 1)
    the leave-one-out check; without them only the OLS numbers."""
    import statsmodels.api as sm  # heavy; only this section needs it

    y = np.log(np.asarray(kappa_star, dtype=float))
    columns = [np.log(np.asarray(ratio, dtype=float))]
    if teacher_error is not None:
        columns.append(np.log(np.asarray(teacher_error, dtype=float)))
    design = sm.add_constant(np.column_stack(columns), has_constant="add")
    n, k = design.shape
    n_ratios = len(np.unique(columns[0]))
    out = {"model": RATIO if teacher_error is None else RATIO_TEACHER, "n_pairs": n, "n_ratios": n_ratios}
    if n <= k:
        return {**out, "message": f"needs more than {k} pairs with kappa* inside the grid (have {n}, "
                                  f"of {n_ratios} distinct size ratio(s))"}
    if np.linalg.matrix_rank(design) < k:
        if np.ptp(columns[0]) == 0:
            why = "the size ratio is the same for every pair"
        elif np.ptp(columns[-1]) == 0:
            why = "the teacher error is the same for every pair, so its effect cannot be separated"
        else:
            why = "the teacher error is collinear with the size ratio, so their effects cannot be separated"
        return {**out, "message": why}
    fit = sm.OLS(y, design).fit()
    bounds = fit.conf_int(alpha=1.0 - ci)
    out.update(intercept=float(fit.params[0]), prefactor=float(np.exp(fit.params[0])),
               slope=float(fit.params[1]), slope_se=float(fit.bse[1]),
               slope_low=float(bounds[1, 0]), slope_high=float(bounds[1, 1]),
               slope_p=float(fit.pvalues[1]), r2=float(fit.rsquared),
               adj_r2=float(fit.rsquared_adj), residual_df=int(fit.df_resid), message="")
    if teacher_error is not None:
        out.update(teacher_coef=float(fit.params[2]), teacher_se=float(fit.bse[2]),
                   teacher_low=float(bounds[2, 0]), teacher_high=float(bounds[2, 1]),
                   teacher_p=float(fit.pvalues[2]))
    if replicates is not None and np.size(replicates):
        out.update(bootstrap_law(design, y, np.asarray(replicates, dtype=float), ci, seed))
        # The headline: the union of the two intervals, and tests that reject only where both do.
        out.update(exponent_low=min(out["slope_low"], out["slope_boot_low"]),
                   exponent_high=max(out["slope_high"], out["slope_boot_high"]))
        for null, key in ((0.0, "p_slope0"), (PAPER_SLOPE, "p_slope_paper")):
            ols_p = float(2 * stats.t.sf(abs(out["slope"] - null) / out["slope_se"], fit.df_resid))
            out[key] = max(out[key], ols_p)
    return out


def bootstrap_law(design: np.ndarray, y: np.ndarray, replicates: np.ndarray, ci: float = 0.95,
                  seed: int = 0) -> dict:
    """Percentile-bootstrap intervals of the coefficients (module doc) with the tests of the size
    exponent, and for the ratio-only model the leave-one-out check of the largest ratio."""
    n, k = design.shape
    tau2 = scatter_variance(design, y, replicates)
    rng = np.random.default_rng(seed)
    boot = replicates.T + np.sqrt(tau2) * rng.standard_normal((replicates.shape[1], n))   # [B, n]
    coefs = _refit(design, boot)                                                          # [B, k]
    tail = (1.0 - ci) / 2.0
    out = {"n_boot": int(boot.shape[0]), "scatter_sd": float(np.sqrt(tau2))}
    names = ["slope", "teacher"][: k - 1]
    for j, name in enumerate(names, start=1):
        low, high = _percentile(coefs[:, j], tail)
        out[f"{name}_boot_low"], out[f"{name}_boot_high"] = low, high
    out["p_slope0"] = _percentile_p(coefs[:, 1], 0.0)
    out["p_slope_paper"] = _percentile_p(coefs[:, 1], PAPER_SLOPE)
    if k == 2:
        out.update(leave_largest_out(design, y, replicates, ci, rng))
    return out


def scatter_variance(design: np.ndarray, y: np.ndarray, replicates: np.ndarray) -> float:
    """tau^2, the pairs' scatter about the line beyond their seed noise: E[RSS] = sum_i (1 - h_ii)
    (v_i + tau^2) with v_i each kappa*'s bootstrap variance (a robust one: half the 16-84% range,
    squared, which is infinite when over 16% of a pair's replicates lie beyond the grid)."""
    n, k = design.shape
    if n <= k:
        return 0.0
    if np.isnan(replicates).all(axis=1).any():
        return 0.0
    with np.errstate(invalid="ignore"):
        q16, q84 = np.nanquantile(replicates, [0.16, 0.84], axis=1)
        variance = np.where(np.isfinite(q84 - q16), ((q84 - q16) / 2.0) ** 2, np.inf)
    hat = np.einsum("ij,jk,ik->i", design, np.linalg.pinv(design.T @ design), design)
    residuals = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    explained = float(((1.0 - hat) * variance).sum())
    if not np.isfinite(explained):
        return 0.0
    return max(0.0, (float(residuals @ residuals) - explained) / (n - k))


def leave_largest_out(design: np.ndarray, y: np.ndarray, replicates: np.ndarray, ci: float,
                      rng: np.random.Generator) -> dict:
    """Refit without the pair(s) of the largest ratio and predict their mean log kappa*."""
    x = design[:, 1]
    out_mask = x == x.max()
    inside = design[~out_mask]
    if len(np.unique(inside[:, 1])) < 2:
        return {"loo_note": "leave-one-out needs 2 distinct ratios besides the largest"}
    coef = np.linalg.lstsq(inside, y[~out_mask], rcond=None)[0]
    predicted = float(coef[0] + coef[1] * x.max())
    observed = float(y[out_mask].mean())
    miss = observed - predicted
    n_in, n_out = len(inside), int(out_mask.sum())
    if n_in > 2:  # the OLS prediction interval of the miss, from the left-in pairs' scatter
        rss = float(((y[~out_mask] - inside @ coef) ** 2).sum())
        point = np.array([1.0, x.max()])
        spread = np.sqrt(rss / (n_in - 2) * (1.0 / n_out + point @ np.linalg.pinv(inside.T @ inside) @ point))
        ols_half = float(stats.t.ppf(0.5 + ci / 2.0, n_in - 2) * spread)
    else:
        ols_half = 0.0
    tau2 = scatter_variance(inside, y[~out_mask], replicates[~out_mask])
    n_boot = replicates.shape[1]
    boot_in = replicates[~out_mask].T + np.sqrt(tau2) * rng.standard_normal((n_boot, len(inside)))
    coefs = _refit(inside, boot_in)
    boot_out = replicates[out_mask].mean(axis=0) + np.sqrt(tau2 / n_out) * rng.standard_normal(n_boot)
    with np.errstate(invalid="ignore"):
        centred = boot_out - (coefs[:, 0] + coefs[:, 1] * x.max()) - miss   # the miss's spread under the law
    low, high = _percentile(centred, (1.0 - ci) / 2.0)
    low, high = min(low, -ols_half), max(high, ols_half)
    log10 = np.log(10.0)
    return {"loo_ratio": float(np.exp(x.max())), "loo_pairs": n_out, "loo_observed": float(np.exp(observed)),
            "loo_predicted": float(np.exp(predicted)), "loo_miss_log10": miss / log10,
            "loo_low_log10": low / log10, "loo_high_log10": high / log10,
            "loo_covered": bool(low <= miss <= high), "loo_note": ""}


def _refit(design: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """OLS coefficients of every row of boot [B, n]; +-inf stays where an infinite kappa* decides the
    sign, NaN where two pull opposite ways (or a replicate is undefined)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return boot @ np.linalg.pinv(design).T


def _percentile(values: np.ndarray, tail: float) -> tuple[float, float]:
    """Percentile bounds; NaN replicates count half at -inf and half at +inf (the wide side)."""
    undefined = np.isnan(values)
    if undefined.all():
        return -np.inf, np.inf
    half = int(undefined.sum()) // 2
    values = np.concatenate([values[~undefined], np.full(half, -np.inf),
                             np.full(int(undefined.sum()) - half, np.inf)])
    return (float(np.quantile(values, tail, method="lower")),
            float(np.quantile(values, 1.0 - tail, method="higher")))


def _percentile_p(values: np.ndarray, null: float) -> float:
    """Two-sided percentile-bootstrap p-value of `null` (NaN replicates count on both sides)."""
    undefined = np.isnan(values)
    below = (np.sum(values[~undefined] <= null) + undefined.sum()) / len(values)
    above = (np.sum(values[~undefined] >= null) + undefined.sum()) / len(values)
    return float(min(1.0, 2.0 * min(below, above)))


def size_scaling(cross: pd.DataFrame, info: pd.DataFrame, ci: float = 0.95, replicates: dict | None = None,
                 seed: int = 0):
    """Both models per (dataset, kd arm). Returns (fits, points): one row per model, one per pair.

    replicates: {(pair, arm): bootstrap replicates of log kappa*} as `crossover(..., replicates=)`
    fills it; without it the fits have only the OLS intervals."""
    points = cross.merge(info, on="pair", how="left")
    if "dataset" not in points.columns:
        points["dataset"] = ""
    points["dataset"] = points["dataset"].fillna("").astype(str)
    points["used"] = False
    points["reason"] = ""
    fit_rows = []
    for (dataset, arm), group in points.groupby(["dataset", "arm"], sort=True):
        reasons = _exclusion_reasons(group)
        points.loc[group.index, "reason"] = reasons
        usable = group[reasons == ""]
        excluded = [f"{p}: {r}" for p, r in zip(group["pair"], reasons) if r]
        base = {"dataset": dataset, "arm": arm, "excluded": "; ".join(excluded)}
        if "size_ratio" not in group.columns:
            fit_rows.append({**base, "model": RATIO, "n_pairs": 0,
                             "message": "no teacher_params/student_params columns"})
            continue
        points.loc[usable.index, "used"] = True
        n_ratios = usable["size_ratio"].nunique()
        if n_ratios < 2:
            have = (f"{len(usable)} pair(s) with {n_ratios} distinct ratio(s)"
                    if len(usable) else "no pair has a stable kappa* inside its grid")
            fit_rows.append({**base, "model": RATIO, "n_pairs": len(usable), "n_ratios": n_ratios,
                             "message": f"needs kappa* inside the grid for at least 3 pairs of at least "
                                        f"2 distinct size ratios (stable crossings; have {have})"})
            continue
        boot, note = _replicates(usable, arm, replicates)
        base["boot_note"] = note
        fit_rows.append({**base, **fit_loglog(usable["size_ratio"], usable["kappa_star"], ci=ci,
                                              replicates=boot, seed=seed)})
        if "teacher_test_acc" not in usable.columns:
            fit_rows.append({**base, "model": RATIO_TEACHER, "n_pairs": len(usable),
                             "message": "no teacher_test_acc column"})
            continue
        error = 1.0 - usable["teacher_test_acc"]
        valid = (error > 0) & np.isfinite(error)
        if not valid.all():
            excluded.append("teacher error 0 or missing: " + ", ".join(usable["pair"][~valid]))
            base["excluded"] = "; ".join(excluded)
        fit_rows.append({**base, **fit_loglog(usable["size_ratio"][valid], usable["kappa_star"][valid],
                                              teacher_error=error[valid], ci=ci, seed=seed,
                                              replicates=None if boot is None else boot[valid.to_numpy()])})
    return pd.DataFrame(fit_rows), points


def _replicates(usable: pd.DataFrame, arm: str, replicates: dict | None):
    """[pairs, n_boot] replicates of the usable pairs, or None and why not."""
    if replicates is None:
        return None, "no bootstrap replicates given: OLS intervals only"
    rows = [np.asarray(replicates.get((pair, arm), ()), dtype=float) for pair in usable["pair"]]
    lengths = {len(row) for row in rows}
    if 0 in lengths or len(lengths) != 1:
        return None, "some kappa* has no bootstrap (fewer than 2 seeds): OLS intervals only"
    return np.vstack(rows), ""


def _exclusion_reasons(group: pd.DataFrame) -> np.ndarray:
    reasons = []
    for row in group.to_dict("records"):
        ratio = row.get("size_ratio", np.nan)
        if row["status"] != CROSSING or not np.isfinite(row["kappa_star"]):
            side = {"above": "kappa* > max kappa", "below": "kappa* < min kappa",
                    "unstable": "no stable crossing", "upward": "only an upward crossing"
                    }.get(row["status"], "no kappa*")
            reasons.append(f"{side} (censored)")
        elif ratio is None or not np.isfinite(ratio) or ratio <= 0:
            reasons.append("no parameter counts")
        else:
            reasons.append("")
    return np.array(reasons, dtype=object)


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"= {value:.2g}"


def describe(fit: dict, ci: float = 0.95) -> str:
    if fit.get("message") or not np.isfinite(fit.get("slope", np.nan)):
        return f"{fit['model']}: not fitted: {fit.get('message') or 'no fit'}"
    level = f"{ci:.0%}"
    pairs = f"n = {fit['n_pairs']} pairs of {fit.get('n_ratios', fit['n_pairs'])} distinct ratios"
    if not np.isnan(fit.get("exponent_low", np.nan)):
        text = (f"kappa* ~ ratio^b with b = {fit['slope']:.3g} [{fit['exponent_low']:.3g}, "
                f"{fit['exponent_high']:.3g}] ({level} CI: bootstrap over seeds [{fit['slope_boot_low']:.3g}, "
                f"{fit['slope_boot_high']:.3g}] joined with OLS [{fit['slope_low']:.3g}, {fit['slope_high']:.3g}]), "
                f"p(b = 0) {_p(fit['p_slope0'])}, p(b = {PAPER_SLOPE:g}) {_p(fit['p_slope_paper'])}, "
                f"R^2 = {fit['r2']:.3f}, {pairs}")
    else:
        text = (f"kappa* ~ ratio^b with b = {fit['slope']:.3g} [{fit['slope_low']:.3g}, {fit['slope_high']:.3g}] "
                f"({level} CI from the pairs' scatter only), R^2 = {fit['r2']:.3f}, {pairs}")
    if fit["model"] == RATIO_TEACHER:
        text += (f"; teacher error exponent c = {fit['teacher_coef']:.3g} "
                 f"[{fit['teacher_low']:.3g}, {fit['teacher_high']:.3g}], p = {fit['teacher_p']:.2g}")
    elif np.isfinite(fit.get("loo_miss_log10", np.nan)):
        verdict = "inside" if fit["loo_covered"] else "OUTSIDE"
        text += (f"; leave-one-out: without ratio {fit['loo_ratio']:.3g}, predicted kappa* "
                 f"{fit['loo_predicted']:.3g} vs {fit['loo_observed']:.3g} measured, a miss of "
                 f"{fit['loo_miss_log10']:+.2f} in log10, {verdict} its {level} prediction interval "
                 f"[{fit['loo_low_log10']:+.2f}, {fit['loo_high_log10']:+.2f}]")
    return text
