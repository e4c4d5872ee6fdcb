"""Bias-variance decomposition of the squared loss over seeds (eq. 2 of the paper).

For a test point x with one-hot label y and the predicted probabilities p_s of seed s:

    E_s ||p_s - y||^2  =  ||pbar - y||^2  +  E_s ||p_s - pbar||^2,      pbar = E_s p_s
    expected loss      =  bias^2          +  variance

averaged over test points. The three terms are computed separately from the probabilities, so
the identity is a real check of the data and the arithmetic: `identity_error` is
|expected loss - (bias^2 + variance)| and must be below 1e-6. E_s is the plain mean over the
seeds (no n-1): the identity is exact only so. A seed here draws the training subset, the
initialisation and the batch order, so "variance" is over all three.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.table import PREDICTIONS_DIR, AnalysisError, Trials, has_predictions, read_predictions

IDENTITY_TOLERANCE = 1e-6


def decompose(probs, labels) -> dict:
    """probs [seeds, n_test, classes], labels [n_test] -> expected_loss, bias2, variance, identity_error."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 3 or labels.shape != probs.shape[1:2]:
        raise AnalysisError(f"probabilities of shape {probs.shape} and labels of shape {labels.shape} "
                            "do not match: expected [seeds, n_test, classes] and [n_test]")
    n_classes = probs.shape[2]
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise AnalysisError(f"labels must lie in [0, {n_classes}) for {n_classes} classes")
    onehot = np.eye(n_classes)[labels]                                # [n_test, classes]
    mean_probs = probs.mean(axis=0)                                   # pbar, [n_test, classes]
    expected_loss = float(((probs - onehot) ** 2).sum(axis=2).mean())  # mean over seeds and points
    bias2 = float(((mean_probs - onehot) ** 2).sum(axis=1).mean())
    variance = float(((probs - mean_probs) ** 2).sum(axis=2).mean())
    return {"expected_loss": expected_loss, "bias2": bias2, "variance": variance,
            "identity_error": abs(expected_loss - (bias2 + variance))}


def bias_variance(trials: Trials, results_dir=None, tolerance: float = IDENTITY_TOLERANCE):
    """Per (pair, arm, kappa): bias^2, variance, their sum and the expected loss, with the check.

    Returns (table, notes): notes name the configurations left out and why.
    """
    results_dir = results_dir if results_dir is not None else trials.results_dir
    if results_dir is None:
        raise AnalysisError("bias-variance needs the results directory (for predictions/)")
    if not has_predictions(results_dir):
        raise AnalysisError(f"no {PREDICTIONS_DIR}/ directory in {results_dir}: the per-trial test "
                            "probabilities are needed")
    rows, notes, n_missing = [], [], 0
    for (pair, arm, kappa), group in trials.frame.groupby(["pair", "arm", "kappa"], sort=True):
        where = f"{pair} {arm} kappa={kappa:g}"
        loaded = []
        for trial_id in group["trial_id"]:
            item = read_predictions(results_dir, trial_id)
            if item is None:
                n_missing += 1
            else:
                loaded.append(item)
        if len(loaded) < 2:
            notes.append(f"{where}: {len(loaded)} seed(s) with predictions, needs 2")
            continue
        shapes = {probs.shape for probs, _ in loaded}
        if len(shapes) > 1 or any(not np.array_equal(labels, loaded[0][1]) for _, labels in loaded):
            notes.append(f"{where}: seeds differ in test-set shape or labels ({sorted(shapes)})")
            continue
        result = decompose(np.stack([probs for probs, _ in loaded]), loaded[0][1])
        rows.append({"pair": pair, "arm": arm, "kappa": kappa, "n_seeds": len(loaded),
                     "bias2": result["bias2"], "variance": result["variance"],
                     "bias2_plus_variance": result["bias2"] + result["variance"],
                     "expected_loss": result["expected_loss"],
                     "identity_error": result["identity_error"],
                     "identity_holds": result["identity_error"] <= tolerance})
    if n_missing:
        notes.insert(0, f"{n_missing} ok trial(s) have no predictions file")
    return pd.DataFrame(rows), notes
