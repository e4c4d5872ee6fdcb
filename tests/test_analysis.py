"""The numbers of analysis/, checked against hand computations and independent references."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from analysis import crossover as xo
from analysis.bias_variance import bias_variance, decompose
from analysis.fidelity import fit_power_law
from analysis.increments import count_unpaired, pair_by_seed, summarize
from analysis.scaling import RATIO, RATIO_TEACHER, fit_loglog, size_scaling
from analysis.synthetic import SyntheticPair, synthetic_study
from analysis.table import AnalysisError, pair_info, prepare


def trial(objective, kappa, seed, acc, pair=("cnn1d-32", "mlp-64"), tau=4.0, **extra):
    teacher, student = pair
    return {"trial_id": f"{teacher}/{student}/{objective}/{tau}/{kappa}/{seed}", "status": "ok",
            "teacher": teacher, "student": student, "kappa": kappa, "objective": objective,
            "tau": tau, "alpha": 0.0, "seed": seed, "test_acc": acc, **extra}


# --- increments ---------------------------------------------------------------------------------

def test_increments_pair_by_seed_by_hand():
    rows = [trial("lt", 0.1, 0, 0.50), trial("lt", 0.1, 1, 0.60),
            trial("kd", 0.1, 0, 0.60), trial("kd", 0.1, 1, 0.66),
            trial("kd", 0.1, 2, 0.70)]  # no lt partner: left out and counted
    trials = prepare(pd.DataFrame(rows))
    paired = pair_by_seed(trials)
    assert list(paired["seed"]) == [0, 1]
    assert count_unpaired(trials, paired) == {"kd": 1, "lt": 0}
    row = summarize(paired).iloc[0]
    assert row["n_seeds"] == 2
    # PI per seed: 0.10, 0.06; PG per seed: 1.2, 1.1
    assert row["PI_mean"] == pytest.approx(0.08)
    assert row["PI_sd"] == pytest.approx(math.sqrt(2 * 0.02 ** 2 / 1))
    assert row["PI_se"] == pytest.approx(0.02)
    assert row["PG_mean"] == pytest.approx(1.15)
    assert row["PG_sd"] == pytest.approx(math.sqrt(2 * 0.05 ** 2))
    assert row["PG_se"] == pytest.approx(0.05)
    assert row["R_lt"] == pytest.approx(0.55) and row["R_kd"] == pytest.approx(0.63)


def test_increments_are_paired_per_tau_and_the_lt_row_is_shared():
    rows = [trial("lt", 1.0, 0, 0.5, tau=4.0), trial("kd", 1.0, 0, 0.6, tau=2.0),
            trial("kd", 1.0, 0, 0.4, tau=8.0)]
    summary = summarize(pair_by_seed(prepare(pd.DataFrame(rows)))).set_index("arm")
    assert summary.loc["kd tau=2", "PI_mean"] == pytest.approx(0.1)
    assert summary.loc["kd tau=8", "PG_mean"] == pytest.approx(0.8)


def test_test_error_metric_flips_the_ratio():
    rows = [trial("lt", 1.0, 0, 0.6), trial("kd", 1.0, 0, 0.7)]
    paired = pair_by_seed(prepare(pd.DataFrame(rows), metric="test_error"))
    assert paired["PI"].iloc[0] == pytest.approx(-0.1)       # error 0.3 - 0.4
    assert paired["PG"].iloc[0] == pytest.approx(0.3 / 0.4)


def test_no_kd_lt_pairs_is_a_clear_error():
    only_kd = prepare(pd.DataFrame([trial("kd", 1.0, 0, 0.6)]))
    with pytest.raises(AnalysisError, match="no kd/lt pairs: no usable lt trials"):
        pair_by_seed(only_kd)
    other_seeds = prepare(pd.DataFrame([trial("kd", 1.0, 0, 0.6), trial("lt", 1.0, 1, 0.6)]))
    with pytest.raises(AnalysisError, match="same pair, kappa and seed"):
        pair_by_seed(other_seeds)


# --- crossover ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kappas, pg, higher, status, expected, crossings", [
    # linear in log10 kappa between 1 (PG 1.1) and 10 (PG 0.9): halfway, 10^0.5
    ([0.1, 1, 10], [1.2, 1.1, 0.9], True, "crossing", 10 ** 0.5, 1),
    # the same for a lower-is-better measure (kd helps while PG < 1)
    ([0.1, 1, 10], [0.8, 0.9, 1.1], False, "crossing", 10 ** 0.5, 1),
    # unsorted input is sorted first
    ([10, 0.1, 1], [0.9, 1.2, 1.1], True, "crossing", 10 ** 0.5, 1),
    # exactly 1 at a grid point
    ([0.1, 1, 10], [1.1, 1.0, 0.9], True, "crossing", 1.0, 1),
    # three crossings: the last downward one, after which PG stays below 1: 10 -> 100 at 1/3 of the
    # way in log10 (the dip at 1 does not count)
    ([0.1, 1, 10, 100], [1.1, 0.9, 1.1, 0.8], True, "crossing", 10 ** (1 + 1 / 3), 3),
    ([0.1, 1, 10, 100], [1.3, 1.0 + 1e-9, 1.05, 0.95], True, "crossing", 10 ** 1.5, 1),
    # only upward: upward crossings never count, and PG is above 1 at the largest kappa
    ([1, 100], [0.9, 1.1], True, "unstable", np.nan, 1),
    # a single dip below 1 that comes back: no stable crossing
    ([0.1, 1, 10, 100], [1.2, 0.95, 1.1, 1.05], True, "unstable", np.nan, 2),
    ([0.1, 1, 10], [1.2, 1.1, 1.05], True, "above", np.nan, 0),
    ([0.1, 1, 10], [0.9, 0.8, 0.7], True, "below", np.nan, 0),
    ([1.0], [1.2], True, "above", np.nan, 0),
    # a missing point is skipped: the crossing is between 1 and 100
    ([1, 10, 100], [1.1, np.nan, 0.9], True, "crossing", 10.0, 1),
])
def test_find_crossing_by_hand(kappas, pg, higher, status, expected, crossings):
    result = xo.find_crossing(kappas, xo.gain(pg, higher))
    assert result.status == status
    assert result.n_crossings == crossings
    if np.isnan(expected):
        assert np.isnan(result.kappa_star)
    else:
        assert result.kappa_star == pytest.approx(expected, rel=1e-9)


def test_bootstrap_resamples_the_same_seeds_at_every_kappa():
    # Each seed's PG curve crosses 1 exactly at kappa = 2, with a seed-specific slope. Any resample
    # that keeps a seed's whole curve averages lines through (2, 1), so the CI collapses to 2;
    # resampling each kappa on its own would mix seeds and spread it.
    kappas = np.array([0.1, 0.5, 3.0, 20.0])
    slopes = np.array([0.05, 0.1, 0.2, 0.3, 0.15])
    pg = 1.0 + slopes[:, None] * (np.log(2.0) - np.log(kappas))[None, :]
    result = xo.bootstrap_crossing(kappas, pg, n_boot=300, seed=1)
    assert result["kappa_star"] == pytest.approx(2.0)
    assert result["ci_low"] == pytest.approx(2.0) and result["ci_high"] == pytest.approx(2.0)
    assert result["n_seeds"] == 5 and result["frac_above"] == 0


def test_bootstrap_reports_replicates_beyond_the_grid():
    kappas = [1.0, 10.0]
    pg = np.array([[1.2, 0.95], [1.2, 1.04], [1.2, 0.97], [1.2, 1.03], [1.2, 0.96], [1.2, 0.94]])
    result = xo.bootstrap_crossing(kappas, pg, n_boot=500, seed=0)
    assert result["status"] == "crossing"
    assert 0 < result["frac_above"] < 1 and result["frac_below"] == 0
    assert result["ci_high"] == np.inf            # the upper bound lies beyond the grid
    assert 1.0 < result["ci_low"] < result["kappa_star"]
    text = xo.describe({**result, "n_kappas": 2, "kappa_min": 1.0, "kappa_max": 10.0}, True)
    assert ">10" in text and "do not cross inside the grid" in text


def test_bootstrap_is_reproducible_and_handles_missing_seeds():
    rng = np.random.default_rng(0)
    kappas = np.array([0.1, 1.0, 10.0])
    pg = 1.0 + 0.1 * (0.0 - np.log10(kappas)) + rng.normal(0, 0.03, size=(8, 3))
    pg[2, 1] = np.nan   # seed 2 lacks kappa = 1 (a failed trial)
    first = xo.bootstrap_crossing(kappas, pg, n_boot=200, seed=7)
    again = xo.bootstrap_crossing(kappas, pg, n_boot=200, seed=7)
    assert first == again
    assert first["ci_low"] < first["kappa_star"] < first["ci_high"]
    one_seed = xo.bootstrap_crossing(kappas, pg[:1], n_boot=200)
    assert np.isnan(one_seed["ci_low"]) and one_seed["n_boot"] == 0


def test_bootstrap_replicates_missing_kappas_equal_each_read_on_its_own():
    """Replicates that drew no seed with some kappa are grouped by which kappas they lack; each
    must equal find_crossing on that replicate's own curve, read row by row."""
    rng = np.random.default_rng(3)
    kappas = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    pg = 1.0 + 0.1 * (-0.5 - np.log10(kappas)) + rng.normal(0, 0.05, size=(4, 6))
    pg[0, [1, 4]] = pg[1, 4] = pg[2, 2] = np.nan  # an adaptive search's ragged seeds
    result = xo.bootstrap_crossing(kappas, pg, n_boot=400, seed=5, keep_replicates=True)
    draws = np.random.default_rng(5).integers(0, 4, size=(400, 4))
    expected = []
    with np.errstate(invalid="ignore"):
        means = np.stack([np.nansum(pg[row] - 1.0, axis=0) / np.isfinite(pg[row]).sum(axis=0) for row in draws])
    for curve in means:  # the gain of PG (kd helps where PG > 1); NaN where no drawn seed has the kappa
        keep = np.isfinite(curve)
        found = xo.find_crossing(kappas[keep], curve[keep])
        expected.append(np.log(found.kappa_star) if found.status == xo.CROSSING else
                        {xo.ABOVE: np.inf, xo.UNSTABLE: np.inf, xo.BELOW: -np.inf}.get(found.status, np.nan))
    assert np.isnan(means).any(axis=1).sum() > 20  # the grouped path was taken
    np.testing.assert_allclose(result["replicates"], expected, rtol=1e-12)


def test_crossover_table_from_trials_recovers_kappa_star():
    table, truth = synthetic_study(n_seeds=10, noise_sd=0.005, seed_sd=0.005, predictions=False)
    trials = prepare(table)
    cross = xo.crossover(pair_by_seed(trials), n_boot=300).set_index("pair")
    covered = 0
    for pair, k_star in truth["kappa_star"].items():
        row = cross.loc[pair]
        assert row["status"] == "crossing"
        assert row["ci_low"] < row["kappa_star"] < row["ci_high"]
        assert abs(math.log(row["kappa_star"] / k_star)) < 0.1
        covered += row["ci_low"] <= k_star <= row["ci_high"]
    assert covered >= 3  # 95% intervals; their coverage is tested in test_analysis_coverage.py


# --- size scaling -------------------------------------------------------------------------------

def test_loglog_slope_matches_polyfit_and_linregress():
    rng = np.random.default_rng(3)
    ratio = np.geomspace(0.05, 4, 7)
    k_star = 0.8 * ratio ** 0.45 * np.exp(rng.normal(0, 0.1, size=7))
    fit = fit_loglog(ratio, k_star)
    slope, intercept = np.polyfit(np.log(ratio), np.log(k_star), 1)
    reference = stats.linregress(np.log(ratio), np.log(k_star))
    t_crit = stats.t.ppf(0.975, 5)
    assert fit["slope"] == pytest.approx(slope) and fit["intercept"] == pytest.approx(intercept)
    assert fit["r2"] == pytest.approx(reference.rvalue ** 2)
    assert fit["slope_low"] == pytest.approx(slope - t_crit * reference.stderr)
    assert fit["slope_high"] == pytest.approx(slope + t_crit * reference.stderr)


def test_loglog_with_teacher_error_matches_lstsq():
    rng = np.random.default_rng(4)
    ratio = np.geomspace(0.05, 4, 8)
    error = rng.uniform(0.03, 0.2, size=8)
    k_star = 0.5 * ratio ** 0.4 * error ** 0.3 * np.exp(rng.normal(0, 0.05, size=8))
    fit = fit_loglog(ratio, k_star, teacher_error=error)
    design = np.column_stack([np.ones(8), np.log(ratio), np.log(error)])
    coef, *_ = np.linalg.lstsq(design, np.log(k_star), rcond=None)
    assert fit["model"] == RATIO_TEACHER
    assert fit["slope"] == pytest.approx(coef[1]) and fit["teacher_coef"] == pytest.approx(coef[2])
    assert fit["slope_low"] < 0.4 < fit["slope_high"]


def test_loglog_says_why_it_cannot_fit():
    assert "needs more than 2 pairs" in fit_loglog([0.1, 1.0], [0.3, 1.0])["message"]
    constant = fit_loglog([0.1, 0.5, 1, 2], [0.2, 0.4, 0.6, 1.0], teacher_error=[0.1] * 4)
    assert "same for every pair" in constant["message"]


def test_size_scaling_recovers_the_slope_and_teacher_exponent():
    # kappa* = 2 * ratio^0.6 * teacher_error^0.3, teacher quality not collinear with the ratio.
    pairs = [SyntheticPair(f"mlp-{i}", params, teacher=f"cnn-{i}", teacher_params=10000,
                           teacher_acc=acc)
             for i, (params, acc) in enumerate([(500, 0.9), (1000, 0.95), (3000, 0.85), (8000, 0.93),
                                                (20000, 0.97), (40000, 0.88)])]
    table, truth = synthetic_study(pairs=pairs, kappas=np.geomspace(0.01, 30, 10), prefactor=2.0,
                                   slope=0.6, teacher_exponent=0.3, n_seeds=6, noise_sd=0.002,
                                   seed_sd=0.001, predictions=False)
    trials = prepare(table)
    cross = xo.crossover(pair_by_seed(trials), n_boot=50)
    fits, points = size_scaling(cross, pair_info(trials.frame))
    fits = fits.set_index("model")
    assert points["used"].all()
    assert fits.loc[RATIO_TEACHER, "slope"] == pytest.approx(0.6, abs=0.03)
    assert fits.loc[RATIO_TEACHER, "teacher_coef"] == pytest.approx(0.3, abs=0.03)
    assert fits.loc[RATIO_TEACHER, "r2"] > 0.99


def test_size_scaling_leaves_out_censored_pairs():
    cross = pd.DataFrame({"pair": list("abcd"), "arm": "kd tau=4",
                          "status": ["crossing", "crossing", "crossing", "above"],
                          "kappa_star": [0.2, 0.5, 1.1, np.nan], "ci_low": np.nan, "ci_high": np.nan})
    info = pd.DataFrame({"pair": list("abcd"), "size_ratio": [0.1, 0.5, 2.0, 4.0],
                         "teacher_test_acc": 0.9})
    fits, points = size_scaling(cross, info)
    assert list(points["used"]) == [True, True, True, False]
    assert "kappa* > max kappa" in fits["excluded"].iloc[0]
    slope = np.polyfit(np.log([0.1, 0.5, 2.0]), np.log([0.2, 0.5, 1.1]), 1)[0]
    assert fits.set_index("model").loc[RATIO, "slope"] == pytest.approx(slope)


# --- fidelity gap -------------------------------------------------------------------------------

def test_power_law_exact_recovery():
    kappa = np.repeat([0.05, 0.2, 1.0, 5.0], 3)
    fit = fit_power_law(kappa, 0.2 * kappa ** -0.35)
    assert fit["beta"] == pytest.approx(0.35, rel=1e-6) and fit["omega"] == pytest.approx(0.2, rel=1e-6)
    assert fit["f_p"] < 1e-6                       # beta = 0.5 is rejected outright


def test_power_law_fit_and_f_test_against_references():
    rng = np.random.default_rng(5)
    kappa = np.repeat([0.05, 0.1, 0.3, 1.0, 3.0, 10.0], 4)
    delta = 0.15 * kappa ** -0.5 + rng.normal(0, 0.01, size=kappa.size)
    fit = fit_power_law(kappa, delta)

    def rss(params):
        return float(((delta - params[0] * kappa ** -params[1]) ** 2).sum())
    reference = optimize.minimize(rss, x0=[0.1, 0.3], method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000})
    assert fit["omega"] == pytest.approx(reference.x[0], rel=1e-4)
    assert fit["beta"] == pytest.approx(reference.x[1], rel=1e-4)
    omega_null = np.linalg.lstsq(kappa[:, None] ** -0.5, delta, rcond=None)[0][0]
    rss_null = rss([omega_null, 0.5])
    f_stat = (rss_null - reference.fun) / (reference.fun / (kappa.size - 2))
    assert fit["omega_null"] == pytest.approx(omega_null)
    assert fit["f_stat"] == pytest.approx(f_stat, rel=1e-3)
    assert fit["f_p"] == pytest.approx(stats.f.sf(f_stat, 1, kappa.size - 2), rel=1e-2, abs=1e-4)
    assert fit["beta_low"] < 0.5 < fit["beta_high"]


def test_power_law_handles_negative_gaps_and_says_why_not():
    kappa = np.array([0.1, 0.1, 1, 1, 10, 10])
    fit = fit_power_law(kappa, 0.05 * kappa ** -0.5 + np.array([0, 0.001, 0, -0.001, -0.02, -0.021]))
    assert np.isfinite(fit["beta"])
    assert "needs at least 2 kappas" in fit_power_law([1, 1, 1], [0.1, 0.2, 0.1])["message"]


# --- bias-variance ------------------------------------------------------------------------------

def test_bias_variance_by_hand():
    # One test point of class 0, two seeds predicting [1, 0] and [0, 1]: mean [0.5, 0.5].
    # Loss: (0 + 2) / 2 = 1; bias^2: 0.25 + 0.25 = 0.5; variance: (0.5 + 0.5) / 2 = 0.5.
    result = decompose([[[1.0, 0.0]], [[0.0, 1.0]]], [0])
    assert result["expected_loss"] == pytest.approx(1.0)
    assert result["bias2"] == pytest.approx(0.5) and result["variance"] == pytest.approx(0.5)


@pytest.mark.parametrize("seeds, n_test, classes", [(2, 1, 2), (5, 100, 10), (13, 37, 3)])
def test_bias_variance_identity_on_random_inputs(seeds, n_test, classes):
    rng = np.random.default_rng(seeds * 100 + classes)
    probs = rng.dirichlet(np.ones(classes), size=(seeds, n_test)).astype(np.float32)
    labels = rng.integers(0, classes, size=n_test)
    result = decompose(probs, labels)
    assert result["identity_error"] < 1e-6
    assert abs(result["expected_loss"] - result["bias2"] - result["variance"]) < 1e-6
    # independent loop over test points and seeds
    p = probs.astype(np.float64)
    loss = bias = var = 0.0
    for i in range(n_test):
        y = np.eye(classes)[labels[i]]
        mean = p[:, i].mean(axis=0)
        loss += np.mean([np.sum((p[s, i] - y) ** 2) for s in range(seeds)])
        bias += np.sum((mean - y) ** 2)
        var += np.mean([np.sum((p[s, i] - mean) ** 2) for s in range(seeds)])
    assert result["expected_loss"] == pytest.approx(loss / n_test, abs=1e-12)
    assert result["bias2"] == pytest.approx(bias / n_test, abs=1e-12)
    assert result["variance"] == pytest.approx(var / n_test, abs=1e-12)


def test_bias_variance_from_a_results_directory(tmp_path):
    table, _ = synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 1.0),
                               n_seeds=3)
    (tmp_path / "predictions" / f"{table['trial_id'].iloc[0]}.npz").unlink()
    out, notes = bias_variance(prepare(table, results_dir=tmp_path))
    assert len(out) == 4 and out["identity_holds"].all() and (out["identity_error"] < 1e-6).all()
    assert "1 ok trial(s) have no predictions file" in notes[0]
    row = out[(out["arm"] == "lt") & (out["kappa"] == 1.0)].iloc[0]
    ids = table[(table["objective"] == "lt") & (table["kappa"] == 1.0)]["trial_id"]
    loaded = [np.load(tmp_path / "predictions" / f"{t}.npz") for t in ids]
    p = np.stack([f["probs"] for f in loaded]).astype(np.float64)
    y = np.eye(p.shape[2])[loaded[0]["labels"]]
    assert row["bias2"] == pytest.approx(np.mean(np.sum((p.mean(0) - y) ** 2, axis=1)))
    assert row["n_seeds"] == 3


def test_bias_variance_rejects_mismatched_shapes():
    with pytest.raises(AnalysisError, match="do not match"):
        decompose(np.ones((2, 3, 4)), np.zeros(5, dtype=int))


def test_a_teacher_per_seed_is_one_pair_and_two_teachers_per_seed_are_two():
    """A teacher per seed (model_size --teacher-per-seed, random teachers) is each seed's draw of the
    pair's teacher: one pair, its seeds resampling teachers too. Two teachers within one seed are two
    pairs, told apart by their ids."""
    from analysis.table import prepare

    table, _ = synthetic_study(n_seeds=3, predictions=False)
    pairs = prepare(table).frame["pair"].nunique()
    per_seed = table.assign(teacher_id=table["teacher_id"] + "/" + table["seed"].astype(str))
    assert prepare(per_seed).frame["pair"].nunique() == pairs
    assert not prepare(per_seed).frame["pair"].str.contains("#").any()
    second = table.assign(teacher_id="b" + table["teacher_id"], trial_id=table["trial_id"] + "/b")
    both = prepare(pd.concat([table, second], ignore_index=True)).frame["pair"]
    assert both.nunique() == 2 * pairs and both.str.contains(" #").all()
