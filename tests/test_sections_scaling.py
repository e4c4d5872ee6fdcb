"""The sections of the fidelity, bias-variance, linear-probe and budget studies
(analysis.sections) on small hand-made tables whose numbers are computed here by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.crossover import ABOVE, BELOW, CROSSING, UNSTABLE, UPWARD
from analysis.sections import Table, bias_variance, budget, fidelity, linear_probe, render
from kdscale.store import ResultsStore

PAIR = "cnn1d-16>cnn1d-16"


def row(objective, kappa, seed, acc, tau=4.0, **extra):
    arm = "lt" if objective == "lt" else f"kd{tau:g}"
    return {"trial_id": f"{arm}-{kappa:g}-{seed}", "status": "ok", "teacher": "cnn1d-16", "student": "cnn1d-16",
            "kappa": kappa, "objective": objective, "tau": tau if objective == "kd" else None, "alpha": 0.0,
            "seed": seed, "test_acc": acc, **extra}


def table_lines(section):
    """The Markdown lines of the section's first Table block, as render writes them."""
    table = next(block for block in section.blocks if isinstance(block, Table))
    return render(type(section)("t", [table])).splitlines()


# --- fidelity ------------------------------------------------------------------------------------

# per kappa: (fidelity_test lt, kd) and (test_acc lt, kd), each for seeds 0 and 1
FIDELITY = {0.25: ((0.50, 0.60), (0.70, 0.70), (0.45, 0.55), (0.60, 0.62)),
            1.0: ((0.70, 0.70), (0.80, 0.90), (0.65, 0.65), (0.72, 0.84)),
            4.0: ((0.80, 0.84), (0.85, 0.85), (0.75, 0.79), (0.79, 0.79))}


def fidelity_table():
    """The train-test gap is 0.1 * kappa^-0.5 (kd) and 0.1 * kappa^-1 (lt) at the seed mean, seed 0
    5% above it and seed 1 5% below: a least-squares power law through the means is exact."""
    rows = []
    for kappa, (test_lt, test_kd, acc_lt, acc_kd) in FIDELITY.items():
        for seed, scale in ((0, 1.05), (1, 0.95)):
            for objective, test, acc, beta in (("lt", test_lt, acc_lt, 1.0), ("kd", test_kd, acc_kd, 0.5)):
                rows.append(row(objective, kappa, seed, acc[seed], fidelity_test=test[seed],
                                fidelity_train=test[seed] + scale * 0.1 * kappa ** -beta, teacher_test_acc=0.9))
    return pd.DataFrame(rows)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_fidelity_section_by_hand(tmp_path):
    section = fidelity.section(fidelity_table(), str(tmp_path), tmp_path)
    assert section.name == "fidelity"
    cells = section.tables["cells"].set_index(["arm", "kappa"])
    assert cells.loc[("lt", 0.25), "fidelity_test_mean"] == pytest.approx(0.55)
    assert cells.loc[("lt", 0.25), "fidelity_test_sd"] == pytest.approx(math.sqrt(0.005))
    assert cells.loc[("kd tau=4", 1.0), "test_acc_mean"] == pytest.approx(0.78)
    assert cells.loc[("kd tau=4", 4.0), "fidelity_train_mean"] == pytest.approx(0.85 + 0.05)
    # dF per seed: 0.20, 0.10 | 0.10, 0.20 | 0.05, 0.01;  PI per seed: 0.15, 0.07 | 0.07, 0.19 | 0.04, 0.00
    gains = section.tables["gains"].set_index("kappa")
    assert list(gains["fidelity_test_gain_mean"]) == pytest.approx([0.15, 0.15, 0.03])
    assert list(gains["test_acc_gain_mean"]) == pytest.approx([0.11, 0.13, 0.02])
    assert gains.loc[4.0, "test_acc_gain_sd"] == pytest.approx(math.sqrt(0.0008))
    d_f = [0.20, 0.10, 0.10, 0.20, 0.05, 0.01]
    pi = [0.15, 0.07, 0.07, 0.19, 0.04, 0.00]
    corr = section.tables["correlations"].set_index("group")
    assert corr.loc["all", "r"] == pytest.approx(np.corrcoef(d_f, pi)[0, 1]) and corr.loc["all", "n"] == 6
    assert corr.loc[PAIR, "r"] == pytest.approx(corr.loc["all", "r"])
    excess = [f - p for f, p in zip(d_f, pi)]   # 0.05, 0.03, 0.03, 0.01, 0.01, 0.01
    assert section.tables["excess"].iloc[0]["mean"] == pytest.approx(np.mean(excess))
    assert section.tables["excess"].iloc[0]["sd"] == pytest.approx(np.std(excess, ddof=1))
    assert section.tables["teachers"].to_dict("records") == [{"teacher": "cnn1d-16", "teacher_test_acc": 0.9}]
    fits = section.tables["gap_fits"].set_index("arm")
    assert fits.loc["kd tau=4", "beta"] == pytest.approx(0.5, abs=1e-6)
    assert fits.loc["kd tau=4", "omega"] == pytest.approx(0.1, abs=1e-7)
    assert fits.loc["kd tau=4", "f_p"] == pytest.approx(1.0)  # the free fit is the null's
    assert fits.loc["lt", "beta"] == pytest.approx(1.0, abs=1e-6) and fits.loc["lt", "f_p"] < 0.05

    text = render(section)
    lines = table_lines(section)
    assert lines[0] == "| pair | kd arm | kappa | seeds | train lt | train kd | test lt | test kd | dF (test) | PI |"
    assert lines[2] == (f"| {PAIR} | kd tau=4 | 0.25 | 2 | 0.950 ± 0.042 | 0.900 ± 0.014 | 0.550 ± 0.071 | "
                        "0.700 ± 0.000 | +0.150 ± 0.071 | +0.110 ± 0.057 |")
    assert "Test fidelity of kd is above lt's in 3 of 3 (pair, kappa) cells (seed-mean dF from +0.030 to +0.150)." in text
    assert "(teacher test accuracy cnn1d-16 0.900), so dF and PI are close by construction: dF - PI = +0.023 ± 0.016" in text
    assert "- all pairs pooled: r = " in text and "n = 6" in text
    assert f"- {PAIR}, kd tau=4: beta = 0.5 [" in text
    assert "beta = 1/2 is consistent with the data (F-test p >= 0.05) in 1 of 2 fits; fitted beta ranges from 0.50 to 1.00." in text
    # Fig. 10: every trial inside max(0, a + t - 1) <= F <= 1 - |a - t| (t = 0.9); kd at kappa 0.25, seed 0 on
    # the upper bound (a 0.60, F 0.70); mean distances to it: lt 0.05 everywhere, kd (0, .02 | .02, .04 | .04, .04) / 6
    points = section.tables["accuracy_points"]
    assert len(points) == 12 and points["inside"].all()
    kd_point = points[(points["arm"] == "kd tau=4") & (points["kappa"] == 0.25) & (points["seed"] == 0)].iloc[0]
    assert (kd_point["lower"], kd_point["upper"], kd_point["slack"]) == pytest.approx((0.5, 0.7, 0.0))
    arms = section.tables["accuracy_arms"].set_index("arm")
    assert arms.loc["lt", "slack_mean"] == pytest.approx(0.05) and arms.loc["kd tau=4", "slack_mean"] == pytest.approx(0.16 / 6)
    lt = points[points["arm"] == "lt"]
    assert arms.loc["lt", "r"] == pytest.approx(np.corrcoef(lt["test_acc"], lt["fidelity_test"])[0, 1])
    assert "Test fidelity F against test accuracy a (paper Fig. 10): 12 of 12 trials lie within" in text
    assert f"- {PAIR}, kd tau=4: r = " in text and "mean distance to the bound 0.027 (n = 6)" in text
    assert [p.name for p in section.figures] == ["fidelity_vs_kappa.png", "fidelity_gain_vs_pi.png",
                                                 "fidelity_vs_accuracy.png", "fidelity_gap_fit.png"]
    assert all(p.exists() for p in section.figures)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_fidelity_section_without_a_fit(tmp_path):
    # one kappa: no power law can be fitted, so no fit is tested
    table = fidelity_table()
    section = fidelity.section(table[table["kappa"] == 1.0], str(tmp_path), tmp_path)
    text = render(section)
    assert f"- {PAIR}, kd tau=4: not fitted: needs at least 2 kappas" in text
    assert "beta = 1/2 is consistent" not in text
    assert "in 1 of 1 (pair, kappa) cells (seed-mean dF from +0.150 to +0.150)" in text


# --- bias_variance -------------------------------------------------------------------------------

# per kappa: class-0 probability of the one test point (label 0), lt then kd, for seeds 0 and 1
PREDICTIONS = {0.05: ((0.5, 0.5), (0.8, 0.6)), 1.0: ((0.9, 0.7), (0.6, 0.6))}


def bias_variance_table(root, predictions=PREDICTIONS):
    store = ResultsStore(str(root), "bv")
    rows = []
    for kappa, (lt, kd) in predictions.items():
        for objective, probs in (("lt", lt), ("kd", kd)):
            for seed, p in enumerate(probs):
                rows.append(row(objective, kappa, seed, p))
                store.write_predictions(rows[-1]["trial_id"], np.array([[p, 1 - p]]), np.array([0]))
    return pd.DataFrame(rows), store.uri


def test_bias_variance_section_by_hand(tmp_path):
    table, results_dir = bias_variance_table(tmp_path)
    # kappa 0.5: lt seed 1 has no predictions file, so lt has one seed there and kd one seed with both
    table = pd.concat([table, pd.DataFrame([row(o, 0.5, s, 0.5) for o in ("lt", "kd") for s in (0, 1)])])
    for trial_id in ("lt-0.5-0", "kd4-0.5-0", "kd4-0.5-1"):
        ResultsStore(str(tmp_path), "bv").write_predictions(trial_id, np.array([[0.6, 0.4]]), np.array([0]))
    section = bias_variance.section(table, results_dir, tmp_path, n_boot=500)
    assert section.name == "bias_variance"
    terms = section.tables["terms"].set_index(["arm", "kappa"])
    # kappa 0.05: lt (0.5, 0.5) twice: bias^2 0.25 + 0.25, variance 0; kd pbar (0.7, 0.3): bias^2 0.18,
    # variance mean(0.1^2 + 0.1^2) = 0.02. kappa 1: lt pbar (0.8, 0.2): bias^2 0.08, variance 0.02;
    # kd (0.6, 0.4) twice: bias^2 0.32, variance 0
    assert terms.loc[("lt", 0.05), "bias2"] == pytest.approx(0.5) and terms.loc[("lt", 0.05), "variance"] == 0
    assert terms.loc[("kd tau=4", 0.05), "bias2"] == pytest.approx(0.18)
    assert terms.loc[("kd tau=4", 0.05), "variance"] == pytest.approx(0.02)
    assert terms.loc[("lt", 1.0), "bias2"] == pytest.approx(0.08) and terms.loc[("lt", 1.0), "variance"] == pytest.approx(0.02)
    assert terms.loc[("kd tau=4", 1.0), "bias2"] == pytest.approx(0.32)
    gaps = section.tables["gaps"].set_index("kappa")
    assert list(gaps.index) == [0.05, 1.0]   # kappa 0.5 has one seed with both predictions
    assert gaps.loc[0.05, "d_bias2"] == pytest.approx(-0.32) and gaps.loc[0.05, "d_variance"] == pytest.approx(0.02)
    assert gaps.loc[1.0, "d_bias2"] == pytest.approx(0.24) and gaps.loc[1.0, "d_variance"] == pytest.approx(-0.02)
    assert gaps.loc[1.0, "d_expected_loss"] == pytest.approx(0.22)
    # kd replicates: a draw of one seed twice ({0,0}, {1,1}) carries no variance and is drawn again, so
    # every replicate is {0,1} (centring factor 2 (1 - 1/2) / 1 = 1): the point estimates, and intervals
    # of zero width (2 seeds cannot give a 95% interval; the section's note says so)
    assert (gaps.loc[0.05, "d_bias2_low"], gaps.loc[0.05, "d_bias2_high"]) == (pytest.approx(-0.32), pytest.approx(-0.32))
    assert section.tables["regimes"].iloc[0].to_dict() == {
        "small_kappa": 0.1, "large_kappa": 1.0, "small": 1, "variance_lower": 0, "variance_lower_ci": 0,
        "large": 1, "bias_higher": 1, "bias_higher_ci": 1}

    text = render(section)
    lines = table_lines(section)
    assert lines[0].startswith("| pair | kd arm | kappa | bias^2 lt | bias^2 kd | d bias^2 [95% CI] |")
    assert lines[2] == (f"| {PAIR} | kd tau=4 | 0.05 | 0.5000 | 0.1800 | -0.3200 [-0.3200, -0.3200] | 0.0000 | "
                        "0.0200 | +0.0200 [+0.0200, +0.0200] | 0.00 | 0.5000 | 0.2000 | -0.3000 [-0.3000, -0.3000] |")
    assert "bootstrap interval over 2 seeds (500 paired replicates;" in text
    assert ("Small kappa (<= 0.1): kd's variance is below lt's in 0 of 1 cells, with the 95% interval below 0 in 0. "
            "Large kappa (>= 1): kd's bias^2 is above lt's in 1 of 1 cells, with the interval above 0 in 1.") in text
    assert "- 1 ok trial(s) have no predictions file" in text
    assert f"- {PAIR} lt kappa=0.5: 1 seed(s) with predictions, needs 2" in text
    assert f"- {PAIR} kd tau=4 kappa=0.5: 1 seed(s) with both predictions, needs 2" in text
    assert [p.name for p in section.figures] == ["bias_variance_decomposition.png"] and section.figures[0].exists()


def test_bias_variance_section_without_two_seeds(tmp_path):
    table, results_dir = bias_variance_table(tmp_path, {0.05: ((0.5,), (0.8,))})
    section = bias_variance.section(table, results_dir, tmp_path, n_boot=10)
    assert section.tables["gaps"].empty and section.figures == [] and "regimes" not in section.tables
    assert render(section) == (
        "## Bias and variance over seeds\n\nNo kappa has two seeds with predictions of both objectives.\n"
        f"- {PAIR} kd tau=4 kappa=0.05: 1 seed(s) with predictions, needs 2\n"
        f"- {PAIR} lt kappa=0.05: 1 seed(s) with predictions, needs 2\n"
        f"- {PAIR} kd tau=4 kappa=0.05: 1 seed(s) with both predictions, needs 2\n")


# --- linear_probe --------------------------------------------------------------------------------

def probe_table(taus=(4.0, 10.0)):
    """lt and kd (each tau alike) at kappa 0.1 and 1, seeds 0 and 1: (test_acc, probe_acc)."""
    cells = {("lt", 0.1): ((0.50, 0.60), (0.60, 0.62)), ("kd", 0.1): ((0.70, 0.70), (0.70, 0.70)),
             ("lt", 1.0): ((0.80, 0.85), (0.85, 0.86)), ("kd", 1.0): ((0.90, 0.86), (0.80, 0.85))}
    rows = []
    for (objective, kappa), seeds in cells.items():
        for tau in (taus if objective == "kd" else (None,)):
            for seed, (acc, probe) in enumerate(seeds):
                rows.append(row(objective, kappa, seed, acc, tau=tau or 0.0, probe_acc=probe))
    return pd.DataFrame(rows)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_linear_probe_section_by_hand(tmp_path):
    section = linear_probe.section(probe_table(), str(tmp_path), tmp_path)
    assert section.name == "linear_probe"
    shares = section.tables["shares"]
    # tau 10 after tau 4 (by value, not as text)
    assert list(zip(shares["arm"], shares["kappa"])) == [("kd tau=4", 0.1), ("kd tau=4", 1.0),
                                                         ("kd tau=10", 0.1), ("kd tau=10", 1.0)]
    small = shares.set_index(["arm", "kappa"]).loc[("kd tau=10", 0.1)]
    # PI acc 0.2, 0.1 (mean 0.15, se 0.05: clearly > 0); PI probe 0.10, 0.08 (mean 0.09): share 0.6
    assert small["test_acc_gain_mean"] == pytest.approx(0.15) and small["probe_acc_gain_mean"] == pytest.approx(0.09)
    assert small["share"] == pytest.approx(0.6) and small["clear"]
    assert (small["share_min"], small["share_max"]) == (pytest.approx(0.5), pytest.approx(0.8))
    assert not shares.set_index(["arm", "kappa"]).loc[("kd tau=4", 1.0), "clear"]  # 0.10, -0.05: not clear
    cells = section.tables["cells"].set_index(["arm", "kappa"])
    assert cells.loc[("lt", 0.1), "probe_acc_mean"] == pytest.approx(0.61)
    summary = section.tables["summary"].iloc[0]
    assert (summary["cells"], summary["clear"], summary["probe_positive"]) == (4, 2, 2)
    assert summary["share_min"] == summary["share_max"] == summary["share_median"] == pytest.approx(0.6)

    text = render(section)
    lines = table_lines(section)
    assert lines[0] == "| pair | kd arm | kappa | seeds | acc lt | acc kd | probe lt | probe kd | PI acc | PI probe | share |"
    assert lines[2] == (f"| {PAIR} | kd tau=4 | 0.1 | 2 | 0.550 ± 0.071 | 0.700 ± 0.000 | 0.610 ± 0.014 | "
                        "0.700 ± 0.000 | +0.150 ± 0.071 | +0.090 ± 0.014 | 0.60 [0.50, 0.80] |")
    assert lines[3].endswith("| +0.025 ± 0.106 | +0.000 ± 0.014 | n/a |")
    assert ("Where kd clearly helps (2 of 4 (kappa, tau) cells), the PI of the probe is positive in 2; the share "
            "that remains ranges from 0.60 to 0.60 (median 0.60).") in text
    assert text.endswith(f"- {PAIR}, kd tau=4: share 0.60 at kappa 0.1\n- {PAIR}, kd tau=10: share 0.60 at kappa 0.1\n")
    assert [p.name for p in section.figures] == ["linear_probe_pi.png"] and section.figures[0].exists()


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_linear_probe_section_where_kd_never_clearly_helps(tmp_path):
    table = probe_table(taus=(4.0,))
    section = linear_probe.section(table[table["kappa"] == 1.0], str(tmp_path), tmp_path)
    assert section.tables["summary"].iloc[0]["clear"] == 0
    assert render(section).endswith("kd does not clearly help in any (kappa, tau) cell here, so there is no PI "
                                    "whose survival to test.\n")


# --- budget --------------------------------------------------------------------------------------

def budget_table(budget_label, kd_acc, steps, study):
    """lt 0.5 everywhere; kd_acc[kappa] = (seed 0, seed 1); steps[kappa] the steps taken."""
    rows = []
    for kappa, accs in kd_acc.items():
        for seed, acc in enumerate(accs):
            for objective, value in (("lt", 0.5), ("kd", acc)):
                rows.append(row(objective, kappa, seed, value, study=study, budget=budget_label, batch_size=128,
                                n_teacher=4000, steps=steps[kappa]))
    return pd.DataFrame(rows)


def budget_tables(epochs="epochs=16"):
    steps = budget_table("steps=500", {0.1: (0.6, 0.7), 1.0: (0.7, 0.8)}, {0.1: 500, 1.0: 500}, "b_steps")
    # under epochs=16: 16 * ceil(400 / 128) = 64 steps at kappa 0.1, 16 * ceil(4000 / 128) = 512 at 1
    epochs = budget_table(epochs, {0.1: (0.45, 0.47), 1.0: (0.75, 0.85)}, {0.1: 64, 1.0: 512}, "b_epochs")
    return steps, epochs


def test_budget_section_by_hand(tmp_path):
    steps, epochs = budget_tables()
    section = budget.section(steps, epochs, ("b_steps", "b_epochs"), tmp_path, n_boot=400)
    assert section.name == "budget"
    inc = section.tables["increments"].set_index("kappa")
    # PI steps: 0.1, 0.2 | 0.2, 0.3; PI epochs: -0.05, -0.03 | 0.25, 0.35; dPI -0.15, -0.23 | 0.05, 0.05
    assert list(inc["PI_steps"]) == pytest.approx([0.15, 0.25]) and list(inc["PI_epochs"]) == pytest.approx([-0.04, 0.30])
    assert list(inc["PG_epochs"]) == pytest.approx([0.92, 1.6]) and list(inc["steps_epochs_budget"]) == [64, 512]
    assert inc.loc[0.1, "dPI"] == pytest.approx(-0.19) and inc.loc[0.1, "dPI_sd"] == pytest.approx(math.sqrt(0.0032))
    assert inc.loc[0.1, "dPI_low"] == pytest.approx(-0.19 - 12.7062 * 0.04, abs=1e-4)
    assert inc.loc[1.0, "dPI"] == pytest.approx(0.05) and inc.loc[1.0, "dPI_low"] == pytest.approx(0.05)
    cross = section.tables["crossings"].iloc[0]
    # steps: PG > 1 at both kappas; epochs: mean gain PG - 1 = -0.08 at 0.1 and 0.6 at 1: an upward
    # crossing, which never counts (issue 14): no stable crossing, and every replicate ends above 1,
    # so both intervals lie above the grid and overlap there
    assert cross["status_steps"] == ABOVE and cross["status_epochs"] == UNSTABLE and cross["status_changed"]
    assert math.isnan(cross["kappa_star_epochs"])
    assert cross["ci_low_epochs"] == cross["ci_high_epochs"] == np.inf
    assert cross["ci_overlap"] == 1
    assert section.tables["summary"].iloc[0].to_dict() == {
        "cells": 2, "pi_changed": 1, "pi_lower_under_epochs": 0, "pi_higher_under_epochs": 1, "pairs": 1,
        "status_changed": 1}

    text = render(section)
    assert "`steps=500` at every kappa (study b_steps) and `epochs=16` at every kappa (study b_epochs;" in text
    assert "The epoch budget gives kappa = 1 as many samples as the step budget: E = 500 * 128 / 4000 = 16." in text
    lines = table_lines(section)
    assert lines[2] == (f"| {PAIR} | kd tau=4 | 0.1 | 64 | 0.500 / 0.500 | 0.650 / 0.460 | +0.150 ± 0.071 | "
                        "-0.040 ± 0.014 | -0.190 [-0.698, +0.318] | 1.300 | 0.920 |")
    assert (f"| {PAIR} | kd tau=4 | > 1 (kd helps at every kappa) | no stable crossing (kd helps again at 1) "
            "| yes | yes |") in text
    assert "(with 2 seeds such an interval covers at most about 50%, whatever its nominal 95%)" in text
    assert text.endswith("in 1 of 2 (pair, kappa) cells: lower under epochs in 0, higher in 1. kappa* changes status "
                         "(a stable crossing inside the grid, kd helping or hurting on the whole grid, or no "
                         "stable crossing) for 1 of 1 pairs.\n")
    assert [p.name for p in section.figures] == ["budget_pi_pg.png"] and section.figures[0].exists()


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_budget_section_with_one_seed(tmp_path):
    steps, epochs = budget_tables()
    section = budget.section(steps[steps["seed"] == 0], epochs[epochs["seed"] == 0], ("s", "e"), tmp_path, n_boot=10)
    lines = table_lines(section)
    assert "| -0.150 | " in lines[2] and "| +0.050 | " in lines[3]   # dPI without an interval
    assert "with 1 seeds such an interval covers at most about 0%" in render(section)


def test_budget_epoch_choice_by_hand():
    steps, epochs = budget_tables(epochs="epochs=20")
    assert budget.epoch_choice(steps, epochs) == ("The epoch budget E = 20 was set by hand; the step budget's "
                                                  "samples at kappa = 1 would be E = 500 * 128 / 4000 = 16.")
    steps = steps.assign(budget="steps=1000", batch_size=100, n_teacher=3000)
    epochs = epochs.assign(budget="epochs=33")
    assert budget.epoch_choice(steps, epochs) == ("The epoch budget gives kappa = 1 as many samples as the step "
                                                  "budget: E = 1000 * 100 / 3000 = 33.3333, rounded to 33.")


def test_budget_kappa_star_cell_by_hand():
    base = {"kappa_min": 0.05, "kappa_max": 4.0}

    def cell(status, star, low, high):
        return budget.kappa_star_cell({**base, "status_x": status, "kappa_star_x": star, "ci_low_x": low,
                                       "ci_high_x": high}, "x")
    assert cell(ABOVE, np.nan, np.inf, np.inf) == "> 4 (kd helps at every kappa)"
    assert cell(ABOVE, np.nan, 2.0, np.inf) == "> 4 (kd helps at every kappa; CI [2, >4])"
    assert cell(BELOW, np.nan, 0.0, 0.0) == "< 0.05 (kd hurts at every kappa)"
    assert cell(CROSSING, 1.234, 0.0, 2.5) == "1.23 [<0.05, 2.5]"
    assert cell(UPWARD, 0.5, np.nan, np.nan) == "0.5 no CI (upward: kd starts to help there)"
    assert cell(UNSTABLE, np.nan, np.inf, np.inf) == "no stable crossing (kd helps again at 4)"
