"""The fidelity, bias-variance, linear-probe and budget studies: their numbers against hand
computations, and each script end to end at its --quick size under one shared storage."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from analysis.bias_variance import decompose
from analysis.bias_variance_gap import bootstrap_difference, regime_counts
from analysis.budget import compare_crossings, compare_increments, epochs_matching_steps
from analysis.paired import correlations, mean_ci, paired_columns, pearson_ci, per_cell, share_remaining
from analysis.table import prepare
from kdscale.store import ResultsStore
from tests.scripts import assert_refused, call_script, run_script


def trial(objective, kappa, seed, acc, pair=("cnn1d-16", "cnn1d-16"), **extra):
    teacher, student = pair
    return {"trial_id": f"{teacher}/{student}/{objective}/{kappa}/{seed}", "status": "ok", "teacher": teacher,
            "student": student, "kappa": kappa, "objective": objective, "tau": 4.0 if objective == "kd" else None,
            "alpha": 0.0, "seed": seed, "test_acc": acc, **extra}


# --- analysis.paired -----------------------------------------------------------------------------

def test_pearson_ci_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 5.0, 4.0, 5.0]
    # means 3 and 4; sxy = (-2)(-2) + (-1)(0) + 0 + (1)(0) + (2)(1) = 6; sxx = 10; syy = 4 + 0 + 1 + 0 + 1 = 6
    r = 6 / math.sqrt(10 * 6)
    half = 1.959963985 / math.sqrt(5 - 3)
    got = pearson_ci(x, y)
    assert got[0] == pytest.approx(r) and got[3] == 5
    assert got[1] == pytest.approx(math.tanh(math.atanh(r) - half))
    assert got[2] == pytest.approx(math.tanh(math.atanh(r) + half))
    assert all(math.isnan(v) for v in pearson_ci([1, 2, 3], [1, 3, 2])[1:3])  # n < 4: no interval
    assert math.isnan(pearson_ci([1, 1, 1, 1], [1, 2, 3, 4])[0])              # a constant has no r


def test_mean_ci_by_hand():
    got = mean_ci([1.0, 2.0, 3.0, float("nan")])
    # mean 2, sd 1, se 1/sqrt(3), t(0.975, 2 dof) = 4.302653
    assert (got["mean"], got["sd"], got["n"]) == (pytest.approx(2.0), pytest.approx(1.0), 3)
    assert got["low"] == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert got["high"] == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6)
    assert math.isnan(mean_ci([0.5])["sd"])


def probe_table():
    return pd.DataFrame([
        trial("lt", 0.1, 0, 0.50, probe_acc=0.60), trial("kd", 0.1, 0, 0.70, probe_acc=0.70),
        trial("lt", 0.1, 1, 0.60, probe_acc=0.62), trial("kd", 0.1, 1, 0.70, probe_acc=0.70),
        trial("lt", 1.0, 0, 0.80, probe_acc=0.85), trial("kd", 1.0, 0, 0.90, probe_acc=0.86),
        trial("lt", 1.0, 1, 0.85, probe_acc=0.86), trial("kd", 1.0, 1, 0.80, probe_acc=0.85)])


def test_share_of_the_gain_that_survives_the_probe_by_hand():
    paired = paired_columns(prepare(probe_table()).frame, ["test_acc", "probe_acc"])
    assert list(paired["test_acc_gain"]) == pytest.approx([0.2, 0.1, 0.1, -0.05])
    shares = share_remaining(paired, "test_acc", "probe_acc").set_index("kappa")
    small = shares.loc[0.1]
    # PI acc 0.2, 0.1 (mean 0.15, se 0.05: clearly > 0); PI probe 0.10, 0.08 (mean 0.09)
    assert small["test_acc_gain_mean"] == pytest.approx(0.15) and small["probe_acc_gain_mean"] == pytest.approx(0.09)
    assert small["share"] == pytest.approx(0.6) and small["clear"]
    assert (small["share_min"], small["share_max"]) == (pytest.approx(0.5), pytest.approx(0.8))
    large = shares.loc[1.0]
    # PI acc 0.10, -0.05: mean 0.025 with se 0.075 is not clearly positive; PI probe 0.01, -0.01: mean 0;
    # only seed 0 has a positive PI acc, so a per-seed ratio (0.01 / 0.10)
    assert not large["clear"] and large["share"] == pytest.approx(0.0, abs=1e-12)
    assert large["share_min"] == large["share_max"] == pytest.approx(0.1)
    # a steady but tiny gain (0.004 and 0.006: mean 0.005 > 2 se) is below min_gain, so not clear
    tiny = paired.assign(test_acc_gain=[0.004, 0.006, 0.1, -0.05])
    assert not share_remaining(tiny, "test_acc", "probe_acc").set_index("kappa").loc[0.1, "clear"]
    assert share_remaining(tiny, "test_acc", "probe_acc", min_gain=0.001).set_index("kappa").loc[0.1, "clear"]


def test_per_cell_and_correlations_by_hand():
    frame = prepare(probe_table()).frame
    cells = per_cell(frame, ["probe_acc"]).set_index(["arm", "kappa"])
    assert cells.loc[("lt", 0.1), "probe_acc_mean"] == pytest.approx(0.61)
    assert cells.loc[("lt", 0.1), "probe_acc_sd"] == pytest.approx(math.sqrt(2) * 0.01)
    assert cells.loc[("kd tau=4", 1.0), "n_seeds"] == 2
    rows = [trial(o, k, s, a, pair=p) for p in (("a", "b"), ("c", "d")) for o, k, s, a in
            (("lt", 0.1, 0, 0.5), ("kd", 0.1, 0, 0.6), ("lt", 0.1, 1, 0.5), ("kd", 0.1, 1, 0.7),
             ("lt", 1.0, 0, 0.5), ("kd", 1.0, 0, 0.9), ("lt", 1.0, 1, 0.5), ("kd", 1.0, 1, 0.8))]
    paired = paired_columns(prepare(pd.DataFrame(rows)).frame, ["test_acc"])
    paired["twice"] = 2 * paired["test_acc_gain"] + 1   # an exact linear relation: r = 1
    result = correlations(paired, "test_acc_gain", "twice", by="pair").set_index("group")
    assert list(result.index) == ["all", "a>b", "c>d"]
    assert result.loc["all", "r"] == pytest.approx(1.0) and result.loc["all", "n"] == 8
    assert result.loc["a>b", "n"] == 4


# --- analysis.bias_variance_gap ------------------------------------------------------------------

def test_bias_variance_difference_by_hand():
    kd = np.array([[[0.8, 0.2]], [[0.6, 0.4]]])   # 2 seeds, 1 test point, 2 classes
    lt = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    labels = np.array([0])
    got = bootstrap_difference(kd, lt, labels, n_boot=4000, seed=1)
    # kd: pbar = (0.7, 0.3); bias^2 = 0.3^2 + 0.3^2 = 0.18; variance = mean(0.02, 0.02) = 0.02
    # lt: bias^2 = 0.25 + 0.25 = 0.5; variance 0
    assert got["bias2_kd"] == pytest.approx(0.18) and got["variance_kd"] == pytest.approx(0.02)
    assert got["bias2_lt"] == pytest.approx(0.5) and got["variance_lt"] == pytest.approx(0.0)
    assert got["d_bias2"] == pytest.approx(-0.32) and got["d_variance"] == pytest.approx(0.02)
    assert got["d_expected_loss"] == pytest.approx(-0.30)
    # Replicates: a draw of one seed twice ({0,0}, {1,1}) carries no variance and is drawn again, so
    # every replicate is {0,1}: plug-in kd bias^2 0.18, var 0.02, centred with c = 2 (1 - 1/2) / 1 = 1.
    # lt: 0.5 and 0 always. So d bias^2 = -0.32 and d var = 0.02 in every replicate.
    assert got["d_bias2_low"] == pytest.approx(-0.32) and got["d_bias2_high"] == pytest.approx(-0.32)
    assert got["d_variance_low"] == pytest.approx(0.02) and got["d_variance_high"] == pytest.approx(0.02)
    assert got["p_variance_below0"] == 0 and got["p_bias2_below0"] == 1


def test_bootstrap_replicates_are_centred_on_the_point_estimates():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(3, 50))   # 3 seeds, 50 points, 4 classes
    labels = rng.integers(0, 4, 50)
    point = decompose(probs, labels)
    # every one of the 24 equally likely draws of 3 seeds that the bootstrap keeps (of 27, the 3 of a
    # single seed are drawn again), weighted equally: the exact bootstrap mean
    from analysis.bias_variance_gap import _moments, _terms
    kept = [draw for draw in itertools.product(range(3), repeat=3) if len(set(draw)) > 1]
    weights = np.zeros((len(kept), 3))
    for row, draw in enumerate(kept):
        for s in draw:
            weights[row, s] += 1 / 3
    assert len(kept) == 24
    terms = _terms(weights, *_moments(probs, labels), centre=True)
    assert terms["variance"].mean() == pytest.approx(point["variance"])
    assert terms["bias2"].mean() == pytest.approx(point["bias2"])
    plain = _terms(weights, *_moments(probs, labels))
    assert plain["variance"].mean() == pytest.approx(point["variance"] * 2 / 3 * 27 / 24)  # why the centring


def test_regime_counts_by_hand():
    gaps = pd.DataFrame({"kappa": [0.05, 0.1, 0.5, 1.0, 4.0],
                         "d_variance": [-0.2, 0.1, -0.3, 0.0, 0.0], "d_variance_high": [-0.1, 0.2, -0.1, 0.1, 0.1],
                         "d_bias2": [0.0, 0.0, 0.0, 0.05, -0.02], "d_bias2_low": [0.0, 0.0, 0.0, 0.01, -0.05]})
    assert regime_counts(gaps, 0.1, 1.0) == {"small": 2, "variance_lower": 1, "variance_lower_ci": 1,
                                             "large": 2, "bias_higher": 1, "bias_higher_ci": 1}


# --- analysis.budget -----------------------------------------------------------------------------

def paired_frame(pis, kappa=1.0):
    return pd.DataFrame({"pair": "p", "arm": "kd tau=4", "kappa": kappa, "seed": range(len(pis)),
                         "R_lt": 0.5, "R_kd": [0.5 + pi for pi in pis], "PI": pis, "PG": [(0.5 + pi) / 0.5 for pi in pis]})


def test_compare_increments_pairs_seeds_across_budgets():
    row = compare_increments(paired_frame([0.1, 0.2]), paired_frame([0.15, 0.35])).iloc[0]
    # dPI per seed 0.05, 0.15: mean 0.1, sd 0.0707, se 0.05, t(0.975, 1 dof) = 12.7062
    assert row["dPI"] == pytest.approx(0.1) and row["dPI_sd"] == pytest.approx(math.sqrt(0.005))
    assert row["dPI_low"] == pytest.approx(0.1 - 12.7062 * 0.05, abs=1e-4)
    assert row["PI_steps"] == pytest.approx(0.15) and row["PI_epochs"] == pytest.approx(0.25)
    assert row["PG_epochs"] == pytest.approx(1.5) and row["R_kd_steps"] == pytest.approx(0.65)
    assert row["n_seeds"] == 2


def test_compare_crossings_flags_status_and_overlap():
    def cross(status, star, low, high):
        return pd.DataFrame([{"pair": "p", "arm": "kd tau=4", "kappa_star": star, "ci_low": low, "ci_high": high,
                              "status": status, "n_seeds": 3, "kappa_min": 0.02, "kappa_max": 4.0}])
    same = compare_crossings(cross("crossing", 1.0, 0.5, 2.0), cross("crossing", 3.0, 2.5, 3.5)).iloc[0]
    assert not same["status_changed"] and same["ci_overlap"] == 0
    moved = compare_crossings(cross("above", np.nan, np.inf, np.inf), cross("crossing", 3.0, 2.5, np.inf)).iloc[0]
    assert moved["status_changed"] and moved["ci_overlap"] == 1


def test_epoch_budget_matching_the_step_budget_at_kappa_one():
    assert epochs_matching_steps(1500, 128, 4000) == (48, 48.0)
    assert epochs_matching_steps(500, 128, 4000) == (16, 16.0)
    assert epochs_matching_steps(1000, 128, 4000) == (32, 32.0)


# --- the scripts ---------------------------------------------------------------------------------

# Run in this order under one storage: linear_probe trains the quick cells with the probe, and the
# three others (whose trials need no extras) adopt them; budget trains only its epoch budget.
ORDER = ("linear_probe", "fidelity", "bias_variance", "budget")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory, ray_address):
    root = tmp_path_factory.mktemp("scaling")
    return root, {name: run_script(name, root, "--quick", address=ray_address) for name in ORDER}


def counts(done):
    """(trials, already finished, reused, to train) of each `study NAME: ...` line on stderr."""
    import re

    found = []
    for line in done.stderr.splitlines():
        match = re.match(r"study \S+: (\d+) trials, (\d+) already finished, (?:(\d+) from other studies' results, )?"
                         r"(\d+) to train", line)
        if match:
            found.append(tuple(int(g or 0) for g in match.groups()))
    return found


@pytest.mark.slow
def test_linear_probe_quick(quick_runs):
    root, runs = quick_runs
    done = runs["linear_probe"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts(done) == [(16, 0, 0, 16)]  # lt + kd at tau 1, 4, 10; 2 kappas; 2 seeds
    assert "## Linear probe: does the PI survive retraining the head?" in done.stdout
    assert "| cnn1d-16>cnn1d-16 | kd tau=10 | 0.05 | 2 |" in done.stdout
    table = ResultsStore(str(root / "results"), "linear_probe_quick").table()
    assert table["probe_acc"].between(0, 1).all() and set(table["extras"]) == {"probe"}
    analysis_dir = root / "results" / "linear_probe_quick" / "analysis"
    assert (analysis_dir / "linear_probe_pi.png").stat().st_size > 10_000
    shares = pd.read_csv(analysis_dir / "linear_probe_shares.csv")  # the section's numbers beside it
    assert len(shares) == 6 and set(shares["arm"]) == {"kd tau=1", "kd tau=4", "kd tau=10"}
    assert "## Linear probe" in (analysis_dir / "report.md").read_text()


@pytest.mark.slow
def test_fidelity_quick(quick_runs):
    root, runs = quick_runs
    done = runs["fidelity"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts(done) == [(8, 0, 8, 0)]  # every trial adopted from linear_probe_quick
    out = done.stdout
    assert "## Fidelity to the teacher" in out and "all pairs pooled: r = " in out and "n = 4" in out
    assert "cnn1d-16>cnn1d-16, kd tau=4: beta = " in out and "test of beta = 0.5: F-test p = " in out
    analysis_dir = root / "results" / "fidelity_quick" / "analysis"
    for name in ("fidelity_vs_kappa", "fidelity_gain_vs_pi", "fidelity_vs_accuracy", "fidelity_gap_fit"):
        assert (analysis_dir / f"{name}.png").exists()
    assert "Test fidelity F against test accuracy a (paper Fig. 10): 8 of 8 trials lie within" in out
    assert pd.read_csv(analysis_dir / "fidelity_correlations.csv").set_index("group").loc["all", "n"] == 4


@pytest.mark.slow
def test_bias_variance_quick(quick_runs):
    root, runs = quick_runs
    done = runs["bias_variance"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert counts(done) == [(8, 0, 8, 0)]
    out = done.stdout
    assert "## Bias and variance over seeds" in out and "the identity holds to" in out
    assert "Small kappa (<= 0.1): kd's variance is below lt's in" in out and "of 1 cells" in out
    rows = [line for line in out.splitlines() if line.startswith("| cnn1d-16>cnn1d-16 | kd tau=4 |")]
    assert [row.split(" | ")[2] for row in rows] == ["0.05", "1"]
    assert (root / "results" / "bias_variance_quick" / "analysis" / "bias_variance_decomposition.png").exists()
    gaps = pd.read_csv(root / "results" / "bias_variance_quick" / "analysis" / "bias_variance_gaps.csv")
    assert list(gaps["kappa"]) == [0.05, 1.0] and set(gaps["n_seeds"]) == {2}


@pytest.mark.slow
def test_budget_quick_labels_every_result_with_its_budget(quick_runs):
    import mlflow

    root, runs = quick_runs
    done = runs["budget"]
    assert done.returncode == 0, done.stderr[-3000:]
    # budget compares fixed recipes (lr 0.02, 500 steps --quick). A fair cell of another quick study
    # whose search chose 0.04 at 250 steps trains at 0.02 for 500 (kdscale.search.trained_with): the
    # same trial, reused from it; the epoch budget's trials are its own
    steps, epochs = counts(done)
    assert steps[:2] == (8, 0) and steps[2] + steps[3] == 8 and epochs == (8, 0, 0, 8)
    assert "## Budget: fixed steps against fixed epochs" in done.stdout
    assert "`steps=500` at every kappa" in done.stdout and "`epochs=16` at every kappa" in done.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for name, budget, steps in (("budget_quick_steps", "steps=500", {0.05: 500, 1.0: 500}),
                                ("budget_quick_epochs", "epochs=16", {0.05: 16 * 2, 1.0: 16 * 32})):
        table = ResultsStore(str(root / "results"), name).table()
        assert len(table) == 8 and set(table["budget"]) == {budget}
        assert {k: int(v) for k, v in table.groupby("kappa")["steps"].max().items()} == steps
        experiment = client.get_experiment_by_name(name)
        trial_runs = client.search_runs([experiment.experiment_id], "tags.`kdscale.role` = 'trial'")
        assert len(trial_runs) == 8 and {r.data.params["budget"] for r in trial_runs} == {budget}
    # the comparison is attached to both studies' MLflow parent runs
    for name in ("budget_quick_steps", "budget_quick_epochs"):
        experiment = client.get_experiment_by_name(name)
        parent, = client.search_runs([experiment.experiment_id], "tags.`kdscale.role` = 'study'")
        logged = {a.path for a in client.list_artifacts(parent.info.run_id, "analysis")}
        assert {"analysis/budget.md", "analysis/budget_pi_pg.png", "analysis/budget_increments.csv"} <= logged
    section = root / "results" / "budget_quick_epochs" / "analysis" / "budget.md"
    assert "| cnn1d-16>cnn1d-16 | kd tau=4 | 0.05 | 32 |" in section.read_text()
    assert "kappa* steps budget" in section.read_text()


@pytest.mark.parametrize("name", ORDER)
@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds 0 is invalid: must be an integer >= 1"),
    (["--kapas", "0.1"], "unrecognized arguments: --kapas"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, name, argv, message):
    assert_refused(call_script(name, tmp_path, *argv), message, tmp_path)


@pytest.mark.parametrize("name, argv, message", [
    ("fidelity", ["--tau", "0"], "tau=0.0 is invalid"),
    ("bias_variance", ["--tau", "-4"], "tau=-4.0 is invalid"),
    ("linear_probe", ["--taus", "1", "0"], "tau=0.0 is invalid"),
    ("budget", ["--tau", "0"], "tau=0.0 is invalid"),
    ("bias_variance", ["--seeds", "1"], "a variance over seeds needs at least 2"),
    ("budget", ["--epochs", "0"], "--epochs 0 is invalid"),
])
def test_bad_settings_are_one_line_before_compute(tmp_path, name, argv, message):
    assert_refused(call_script(name, tmp_path, *argv), message, tmp_path)
