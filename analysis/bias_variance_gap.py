"""kd - lt differences of the bias-variance terms (eq. 2), with a bootstrap over seeds.

analysis.bias_variance gives bias^2 and variance of each arm at each kappa; whether kd's variance
is lower than lt's, or its bias^2 higher, needs the uncertainty of the difference. A seed draws
the subset, initialisation and batch order of both its kd and its lt student, so a bootstrap
replicate draws seeds with replacement and uses the same draw for both arms (paired).

Every term is a quadratic form in the seed weights w (w_s = count of seed s in the draw / S):
with q_s = mean_x ||p_s||^2, r_s = mean_x <p_s, y>, G_st = mean_x <p_s, p_t>,

    variance = sum_s w_s q_s - w'Gw,   bias^2 = w'Gw - 2 sum_s w_s r_s + 1,

so thousands of replicates cost a few small matrix products. With all seeds once (w = 1/S) these
are exactly analysis.bias_variance.decompose, the point estimates. A replicate that repeats seeds
has a plug-in variance smaller by (S-1)/S on average and a bias^2 larger by variance/S, which would
centre the replicates away from the point estimate (with 3 seeds, a third of a variance). A draw
of a single seed (repeated S times, probability p = S^(1-S)) carries no variance (0 in both arms,
so d variance = 0 exactly; with 5 seeds the expanded levels reached those few draws and every
variance interval ended at +0.000), so it is drawn again; the others have a plug-in variance
smaller by (S-1) / (S (1-p)) on average. Each replicate is therefore centred: variance* =
c * plug-in variance*, bias^2* = plug-in bias^2* - (c - 1) * plug-in variance*, with
c = S (1-p) / (S-1); their sum, the expected loss, is unchanged (it is linear in w, and a single
seed's draws average to the point estimate).

Intervals: the expanded percentile bootstrap of kappa* (analysis.crossover.expanded_tail, Hesterberg
2015): with a handful of seeds the plain percentile interval is too narrow, so its levels are read
where the normal quantile is sqrt(S/(S-1)) times the t_(S-1) quantile. Below about 6 seeds no
bootstrap interval reaches 95% (max_bootstrap_coverage); `bias_variance_gaps` says so in its notes.
Measured (tests/test_analysis_noise.py; 8 paired seeds, 200 replicates): the expanded intervals of
d bias^2 / d variance / d loss covered 94.5% / 92.5% / 94.5%, the plain percentile ones 89% / 85% / 87.5%.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.crossover import expanded_tail, max_bootstrap_coverage
from analysis.table import AnalysisError, Trials, read_predictions

TERMS = ("bias2", "variance", "expected_loss")


def _moments(probs: np.ndarray, labels: np.ndarray):
    """q [S], r [S], G [S, S] of the probabilities [S, n, C] against one-hot labels [n]."""
    probs = np.asarray(probs, dtype=np.float64)
    n_seeds, n_points, n_classes = probs.shape
    onehot = np.eye(n_classes)[labels]
    flat = probs.reshape(n_seeds, -1)
    gram = flat @ flat.T / n_points
    return np.diag(gram).copy(), (probs * onehot).sum(axis=2).mean(axis=1), gram


def _terms(weights: np.ndarray, q: np.ndarray, r: np.ndarray, gram: np.ndarray, centre: bool = False) -> dict:
    """Each plug-in term for every row of weights [B, S]; `centre` applies the replicate
    correction of the module doc."""
    quadratic = np.einsum("bs,st,bt->b", weights, gram, weights)
    variance = weights @ q - quadratic
    bias2 = quadratic - 2 * (weights @ r) + 1.0
    if centre:  # over draws of at least two distinct seeds (module doc)
        n_seeds = weights.shape[1]
        factor = n_seeds * (1.0 - float(n_seeds) ** (1 - n_seeds)) / (n_seeds - 1)
        bias2, variance = bias2 - (factor - 1.0) * variance, variance * factor
    return {"bias2": bias2, "variance": variance, "expected_loss": bias2 + variance}


def bootstrap_difference(probs_kd, probs_lt, labels, n_boot: int = 2000, ci: float = 0.95, seed: int = 0,
                         expanded: bool = True) -> dict:
    """Bias^2, variance and expected loss of both arms and their kd - lt differences, with
    expanded-percentile bootstrap intervals over seeds (module doc; expanded=False: the plain
    percentile levels). probs_*: [S, n_test, C], seed s of kd in row s of both. Keys: `<term>_kd`,
    `<term>_lt`, `d_<term>`, `d_<term>_low`, `d_<term>_high`, `p_<term>_below0` (share of
    replicates with kd below lt), n_seeds, n_boot, max_coverage (the most any bootstrap interval
    over these seeds covers)."""
    probs_kd, probs_lt = np.asarray(probs_kd, dtype=np.float64), np.asarray(probs_lt, dtype=np.float64)
    labels = np.asarray(labels)
    if probs_kd.shape != probs_lt.shape or probs_kd.ndim != 3 or labels.shape != probs_kd.shape[1:2]:
        raise AnalysisError(f"probabilities {probs_kd.shape} (kd) and {probs_lt.shape} (lt) with labels "
                            f"{labels.shape} do not match: expected two [seeds, n_test, classes] and [n_test]")
    n_seeds = probs_kd.shape[0]
    if n_seeds < 2:
        raise AnalysisError(f"a bias-variance difference needs at least 2 seeds in both arms (have {n_seeds})")
    moments = {"kd": _moments(probs_kd, labels), "lt": _moments(probs_lt, labels)}
    everyone = np.full((1, n_seeds), 1.0 / n_seeds)
    point = {arm: _terms(everyone, *m) for arm, m in moments.items()}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    single = draws.min(axis=1) == draws.max(axis=1)
    while single.any():
        draws[single] = rng.integers(0, n_seeds, size=(int(single.sum()), n_seeds))
        single = draws.min(axis=1) == draws.max(axis=1)
    weights = np.zeros((n_boot, n_seeds))
    np.add.at(weights, (np.arange(n_boot)[:, None], draws), 1.0 / n_seeds)
    replicates = {arm: _terms(weights, *m, centre=True) for arm, m in moments.items()}
    out = {"n_seeds": n_seeds, "n_boot": n_boot, "max_coverage": max_bootstrap_coverage(n_seeds)}
    tail = expanded_tail(ci, n_seeds) if expanded else (1.0 - ci) / 2.0
    for term in TERMS:
        kd, lt = float(point["kd"][term][0]), float(point["lt"][term][0])
        diff = replicates["kd"][term] - replicates["lt"][term]
        out.update({f"{term}_kd": kd, f"{term}_lt": lt, f"d_{term}": kd - lt,
                    # "lower"/"higher" pick replicate values and err on the wide side, as for kappa*
                    f"d_{term}_low": float(np.quantile(diff, tail, method="lower")) if n_boot else np.nan,
                    f"d_{term}_high": float(np.quantile(diff, 1.0 - tail, method="higher")) if n_boot else np.nan,
                    f"p_{term}_below0": float(np.mean(diff < 0)) if n_boot else np.nan})
    return out


def bias_variance_gaps(trials: Trials, results_dir=None, treatment: str = "kd", baseline: str = "lt",
                       n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Per (pair, treatment arm, kappa): `bootstrap_difference` over the seeds that both arms have
    predictions for. Returns (table, notes naming the cells left out and why, and a warning where
    the intervals rest on too few seeds to reach `ci`)."""
    results_dir = results_dir if results_dir is not None else trials.results_dir
    if results_dir is None:
        raise AnalysisError("the bias-variance difference needs the results directory (for predictions/)")
    frame = trials.frame
    base = frame[frame["objective"] == baseline].set_index(["pair", "kappa", "seed"])["trial_id"]
    rows, notes = [], []
    treated = frame[frame["objective"] == treatment]
    for (pair, arm, kappa), group in treated.groupby(["pair", "arm", "kappa"], sort=True):
        kd, lt, labels = [], [], None
        for trial_seed, trial_id in sorted(zip(group["seed"], group["trial_id"])):
            if (pair, kappa, trial_seed) not in base.index:
                continue
            pred_kd = read_predictions(results_dir, trial_id)
            pred_lt = read_predictions(results_dir, base.loc[(pair, kappa, trial_seed)])
            if pred_kd is None or pred_lt is None:
                continue
            if labels is None:
                labels = pred_kd[1]
            if not (np.array_equal(pred_kd[1], labels) and np.array_equal(pred_lt[1], labels)):
                notes.append(f"{pair} {arm} kappa={kappa:g}: seed {trial_seed} has other test labels; left out")
                continue
            kd.append(pred_kd[0])
            lt.append(pred_lt[0])
        if len(kd) < 2:
            notes.append(f"{pair} {arm} kappa={kappa:g}: {len(kd)} seed(s) with both predictions, needs 2")
            continue
        result = bootstrap_difference(np.stack(kd), np.stack(lt), labels, n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"pair": pair, "arm": arm, "kappa": kappa, **result})
    table = pd.DataFrame(rows)
    return table, notes + few_seeds_note(table, ci)


def few_seeds_note(table: pd.DataFrame, ci: float = 0.95) -> list[str]:
    """The warning of the report's kappa* (analysis.fits) for these intervals, if they need it."""
    if table.empty:
        return []
    least = int(table["n_seeds"].min())
    if max_bootstrap_coverage(least) >= ci:
        return []
    return [f"intervals rest on as few as {least} seeds: a bootstrap interval over n seeds covers at most "
            f"about 1 - 2^(1-n) ({max_bootstrap_coverage(least):.0%} here), less than the {ci:.0%} asked "
            "for; run more seeds"]


def regime_counts(gaps: pd.DataFrame, small: float, large: float) -> dict:
    """The paper's two claims counted over the cells of `bias_variance_gaps`: at kappa <= small,
    cells where kd's variance is below lt's (`variance_lower`) and where the interval of the
    difference lies below 0 (`variance_lower_ci`), out of `small`; at kappa >= large, cells where
    kd's bias^2 is above lt's (`bias_higher`, `bias_higher_ci`), out of `large`."""
    low, high = gaps[gaps["kappa"] <= small], gaps[gaps["kappa"] >= large]
    return {"small": len(low), "variance_lower": int((low["d_variance"] < 0).sum()),
            "variance_lower_ci": int((low["d_variance_high"] < 0).sum()),
            "large": len(high), "bias_higher": int((high["d_bias2"] > 0).sum()),
            "bias_higher_ci": int((high["d_bias2_low"] > 0).sum())}
