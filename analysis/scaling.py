"""Size scaling: kappa* against the student/teacher parameter ratio, as a log-log regression.

Model 1:  log kappa* = a + b log(P_student / P_teacher)                     (kappa* = e^a ratio^b)
Model 2:  log kappa* = a + b log(P_student / P_teacher) + c log(teacher test error)

Model 2 adds the teacher's quality, which the paper suspects matters; the error enters in logs so
the fit stays a power law in both covariates. Ordinary least squares (statsmodels) on the point
estimates of kappa*: the CIs reflect the scatter of the pairs around the line, not the bootstrap
uncertainty of each kappa*. Only pairs whose kappa* lies inside their grid enter; pairs censored
at an edge are listed, since dropping them can bias the slope.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.crossover import CROSSING, UPWARD

RATIO, RATIO_TEACHER = "ratio", "ratio + teacher error"


def fit_loglog(ratio, kappa_star, teacher_error=None, ci: float = 0.95) -> dict:
    """OLS of log kappa* on log ratio (and log teacher error); slope, CI, p-value and R^2."""
    import statsmodels.api as sm  # heavy; only this section needs it

    y = np.log(np.asarray(kappa_star, dtype=float))
    columns = [np.log(np.asarray(ratio, dtype=float))]
    if teacher_error is not None:
        columns.append(np.log(np.asarray(teacher_error, dtype=float)))
    design = sm.add_constant(np.column_stack(columns), has_constant="add")
    n, k = design.shape
    out = {"model": RATIO if teacher_error is None else RATIO_TEACHER, "n_pairs": n}
    if n <= k:
        return {**out, "message": f"needs more than {k} pairs with kappa* inside the grid (have {n})"}
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
    return out


def size_scaling(cross: pd.DataFrame, info: pd.DataFrame, ci: float = 0.95):
    """Both models per (dataset, kd arm). Returns (fits, points): one row per model, one per pair."""
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
        if usable["size_ratio"].nunique() < 2:
            have = (f"{len(usable)} pair(s) with {usable['size_ratio'].nunique()} distinct ratio(s)"
                    if len(usable) else "no pair has kappa* inside its grid")
            fit_rows.append({**base, "model": RATIO, "n_pairs": len(usable),
                             "message": f"needs kappa* inside the grid for at least 3 pairs of "
                                        f"different size ratios ({have})"})
            continue
        fit_rows.append({**base, **fit_loglog(usable["size_ratio"], usable["kappa_star"], ci=ci)})
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
                                              teacher_error=error[valid], ci=ci)})
    return pd.DataFrame(fit_rows), points


def _exclusion_reasons(group: pd.DataFrame) -> np.ndarray:
    reasons = []
    for row in group.to_dict("records"):
        ratio = row.get("size_ratio", np.nan)
        if row["status"] not in (CROSSING, UPWARD) or not np.isfinite(row["kappa_star"]):
            side = {"above": "kappa* > max kappa", "below": "kappa* < min kappa"}.get(row["status"], "no kappa*")
            reasons.append(f"{side} (censored)")
        elif ratio is None or not np.isfinite(ratio) or ratio <= 0:
            reasons.append("no parameter counts")
        else:
            reasons.append("")
    return np.array(reasons, dtype=object)


def describe(fit: dict, ci: float = 0.95) -> str:
    if fit.get("message") or not np.isfinite(fit.get("slope", np.nan)):
        return f"{fit['model']}: not fitted: {fit.get('message') or 'no fit'}"
    text = (f"kappa* ~ ratio^b with b = {fit['slope']:.3g} [{fit['slope_low']:.3g}, {fit['slope_high']:.3g}] "
            f"({ci:.0%} CI), R^2 = {fit['r2']:.3f}, n = {fit['n_pairs']} pairs")
    if fit["model"] == RATIO_TEACHER:
        text += (f"; teacher error exponent c = {fit['teacher_coef']:.3g} "
                 f"[{fit['teacher_low']:.3g}, {fit['teacher_high']:.3g}], p = {fit['teacher_p']:.2g}")
    return text
