"""Fidelity gap: delta(kappa) = fidelity_train - fidelity_test, fitted as omega * kappa^(-beta).

The paper claims the gap shrinks as 1/sqrt(kappa) (beta = 0.5). The fit is nonlinear least
squares (scipy's curve_fit) on every trial of a (pair, arm), not on per-kappa means, so a kappa
with more seeds weighs more and the residual scatter estimates the noise. CIs are the usual
t-intervals from the fit's covariance, which assume the noise has one size at every kappa.

The test of beta = 0.5 against the free exponent is the extra-sum-of-squares F-test of the nested
models (omega free and beta fixed at 0.5, versus both free); the Wald t-test is reported too.
It is least squares in the gap itself, not in log gap, because a measured gap can be 0 or negative
at large kappa and a log would drop exactly the points that pin beta down.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

from analysis.table import Trials

PAPER_BETA = 0.5


def power_law(kappa, omega, beta):
    return omega * np.power(kappa, -beta)


def fit_power_law(kappa, delta, ci: float = 0.95, beta_null: float = PAPER_BETA) -> dict:
    """omega, beta with t-CIs, R^2, and tests of beta = beta_null; `message` says why not, if not."""
    kappa, delta = np.asarray(kappa, dtype=float), np.asarray(delta, dtype=float)
    keep = np.isfinite(kappa) & np.isfinite(delta) & (kappa > 0)
    kappa, delta = kappa[keep], delta[keep]
    n, n_kappas = len(delta), len(np.unique(kappa))
    out = {"n_trials": n, "n_kappas": n_kappas, "message": ""}
    if n_kappas < 2 or n < 3:
        out["message"] = f"needs at least 2 kappas and 3 trials with both fidelities (have {n_kappas} and {n})"
        return out
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)  # reported via inf covariance
            params, cov = optimize.curve_fit(power_law, kappa, delta, p0=_start(kappa, delta), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        out["message"] = f"the fit did not converge ({exc})"
        return out
    omega, beta = (float(p) for p in params)
    residuals = delta - power_law(kappa, omega, beta)
    rss = float(residuals @ residuals)
    tss = float(((delta - delta.mean()) ** 2).sum())
    dof = n - 2
    se = np.sqrt(np.diag(cov)) if np.all(np.isfinite(cov)) else np.full(2, np.nan)
    t_crit = stats.t.ppf(0.5 + ci / 2.0, dof) if dof > 0 else np.nan
    out.update(omega=omega, omega_se=float(se[0]), omega_low=omega - t_crit * se[0],
               omega_high=omega + t_crit * se[0], beta=beta, beta_se=float(se[1]),
               beta_low=beta - t_crit * se[1], beta_high=beta + t_crit * se[1],
               r2=1.0 - rss / tss if tss > 0 else np.nan, rss=rss, dof=dof)
    # Restricted model: beta fixed, omega by linear least squares (closed form).
    basis = np.power(kappa, -beta_null)
    omega_null = float(basis @ delta / (basis @ basis))
    rss_null = float(((delta - omega_null * basis) ** 2).sum())
    if rss > 0:
        f_stat = max(rss_null - rss, 0.0) / (rss / dof)
        f_p = float(stats.f.sf(f_stat, 1, dof))
    else:  # an exact fit: the null holds exactly or is rejected outright
        f_stat, f_p = (0.0, 1.0) if rss_null <= 1e-300 else (np.inf, 0.0)
    wald_p = float(2 * stats.t.sf(abs(beta - beta_null) / se[1], dof)) if se[1] > 0 else np.nan
    out.update(beta_null=beta_null, omega_null=omega_null, f_stat=f_stat, f_p=f_p, wald_p=wald_p)
    return out


def _start(kappa: np.ndarray, delta: np.ndarray) -> list[float]:
    """A log-log line through the positive gaps, else the paper's exponent."""
    positive = delta > 0
    if positive.sum() >= 2 and len(np.unique(kappa[positive])) >= 2:
        slope, intercept = np.polyfit(np.log(kappa[positive]), np.log(delta[positive]), 1)
        return [float(np.exp(intercept)), float(-slope)]
    return [float(np.mean(delta * np.sqrt(kappa))) or 1e-3, PAPER_BETA]


def fidelity_gap(trials: Trials, ci: float = 0.95):
    """Per (pair, arm): the gap by kappa (points) and the power-law fit (fits)."""
    frame = trials.frame
    missing = [c for c in ("fidelity_train", "fidelity_test") if c not in frame.columns]
    if missing:
        return None, None, f"no {' or '.join(missing)} column"
    frame = frame.assign(delta=pd.to_numeric(frame["fidelity_train"], errors="coerce")
                         - pd.to_numeric(frame["fidelity_test"], errors="coerce"))
    frame = frame[np.isfinite(frame["delta"])]
    if frame.empty:
        return None, None, "no trial has both fidelity_train and fidelity_test"
    points = (frame.groupby(["pair", "arm", "kappa"], sort=True)["delta"]
              .agg(delta_mean="mean", delta_sd="std", n_seeds="count").reset_index())
    points["delta_se"] = points["delta_sd"] / np.sqrt(points["n_seeds"])
    fits = []
    for (pair, arm), group in frame.groupby(["pair", "arm"], sort=True):
        fits.append({"pair": pair, "arm": arm, **fit_power_law(group["kappa"], group["delta"], ci=ci)})
    return points, pd.DataFrame(fits), ""


def describe(fit: dict, ci: float = 0.95) -> str:
    if fit.get("message"):
        return f"not fitted: {fit['message']}"
    verdict = "consistent with it" if fit["f_p"] >= 0.05 else "rejected at 5%"
    return (f"beta = {fit['beta']:.3g} [{fit['beta_low']:.3g}, {fit['beta_high']:.3g}], "
            f"omega = {fit['omega']:.3g} [{fit['omega_low']:.3g}, {fit['omega_high']:.3g}] ({ci:.0%} CI); "
            f"test of beta = {fit['beta_null']:g}: F-test p = {fit['f_p']:.2g}, {verdict}")
