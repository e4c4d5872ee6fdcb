"""The supervision-signal studies (label_smoothing, temperature, hard_vs_soft): the pure functions of
analysis.supervision against hand-computed answers, their sections (analysis.sections) on hand-made
tables, and the three --quick runs end to end in one shared storage (the second and third adopt the
trials they share instead of training them; marked slow). More unit tests of the three sections:
tests/test_sections_supervision.py."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.paired import mean_ci
from analysis.sections import hard_vs_soft, label_smoothing, render, temperature
from analysis.supervision import contrast, increments, kappa_dependence, slope_ci, status_counts, summarize
from tests.scripts import assert_refused, call_script, run_script

T_975 = {1: 12.706204736, 2: 4.302652730, 7: 2.364624252}  # Student-t 97.5% quantiles by degrees of freedom


def row(objective, kappa, seed, acc, status="ok", tau=math.nan, tau_squared=None, epsilon=math.nan,
        fidelity=math.nan):
    return {"trial_id": f"{objective}-{tau}-{tau_squared}-{epsilon}-{kappa}-{seed}", "status": status,
            "teacher": "cnn1d-16", "student": "cnn1d-16", "dataset": "mnist1d", "n_teacher": 4000,
            "teacher_id": "t0", "budget": "steps=1500", "kappa": kappa, "objective": objective, "seed": seed,
            "tau": tau, "tau_squared": tau_squared, "epsilon": epsilon,
            "alpha": 0.0 if objective in ("kd", "hard", "l2") else math.nan,
            "test_acc": acc if status == "ok" else math.nan, "fidelity_train": fidelity}


# --- analysis.supervision, by hand -----------------------------------------------------------------

def test_increments_pair_by_seed_and_leave_out_diverged_and_unpaired():
    table = pd.DataFrame([
        row("lt", 0.1, 0, 0.40), row("lt", 0.1, 1, 0.50), row("lt", 1.0, 0, 0.70),
        row("kd", 0.1, 0, 0.70, tau=4.0, tau_squared=True), row("kd", 0.1, 1, 0.75, tau=4.0, tau_squared=True),
        row("kd", 1.0, 0, 0.80, tau=4.0, tau_squared=True),
        row("ls", 0.1, 0, 0.42, epsilon=0.1), row("ls", 0.1, 1, 0.47, epsilon=0.1),
        row("ls", 1.0, 0, math.nan, status="diverged", epsilon=0.1),
        row("ls", 1.0, 1, 0.66, epsilon=0.1),  # no lt at kappa 1, seed 1: unpaired
    ])
    paired = increments(table)
    got = {(r.arm, r.kappa, r.seed): round(r.PI, 10) for r in paired.itertuples()}
    assert got == {("kd tau=4", 0.1, 0): 0.30, ("kd tau=4", 0.1, 1): 0.25, ("kd tau=4", 1.0, 0): 0.10,
                   ("ls eps=0.1", 0.1, 0): 0.02, ("ls eps=0.1", 0.1, 1): -0.03}
    summary = summarize(paired).set_index(["arm", "kappa"])
    kd = summary.loc[("kd tau=4", 0.1)]
    assert kd["n"] == 2 and kd["mean"] == pytest.approx(0.275)
    assert kd["sd"] == pytest.approx(math.sqrt(2 * 0.025 ** 2))  # deviations +-0.025, ddof 1
    assert kd["se"] == pytest.approx(0.025)
    assert summary.loc[("kd tau=4", 1.0), "n"] == 1 and math.isnan(summary.loc[("kd tau=4", 1.0), "sd"])


def test_t_interval_and_contrast_by_hand():
    interval = mean_ci([0.1, 0.2, 0.3, math.nan])
    assert (interval["n"], interval["mean"], interval["sd"]) == (3, pytest.approx(0.2), pytest.approx(0.1))
    assert interval["low"] == pytest.approx(0.2 - T_975[2] * 0.1 / math.sqrt(3))
    assert interval["high"] == pytest.approx(0.2 + T_975[2] * 0.1 / math.sqrt(3))
    per_seed = pd.DataFrame({"pair": "p", "kappa": 0.1, "seed": [0, 1, 2, 0, 1, 2, 3],
                             "arm": ["a"] * 3 + ["b"] * 4, "R": [0.9, 0.8, 0.7, 0.5, 0.6, 0.7, 0.1]})
    c = contrast(per_seed, "a", "b").iloc[0]  # seed 3 has no a: left out; differences 0.4, 0.2, 0.0
    assert c["n"] == 3 and c["mean"] == pytest.approx(0.2) and c["sd"] == pytest.approx(0.2)
    assert c["low"] == pytest.approx(0.2 - T_975[2] * 0.2 / math.sqrt(3))


def test_slope_ci_by_hand():
    # y = 0, 1, 3 at x = 0, 1, 2: slope Sxy / Sxx = 3 / 2; residuals 1/6, -1/3, 1/6, SSE = 1/6
    slope, low, high, n = slope_ci([0, 1, 2], [0, 1, 3])
    se = math.sqrt((1 / 6) / (3 - 2) / 2)
    assert (n, slope) == (3, pytest.approx(1.5))
    assert low == pytest.approx(1.5 - T_975[1] * se) and high == pytest.approx(1.5 + T_975[1] * se)
    assert math.isnan(slope_ci([1, 1, 1], [0, 1, 2])[0])  # no spread in x: no slope


def per_seed_pi(values_by_kappa):
    return pd.DataFrame([{"kappa": k, "seed": s, "PI": v} for k, values in values_by_kappa.items()
                         for s, v in enumerate(values)])


def test_kappa_dependence_flat():
    # the same three PIs at every kappa: slope 0, F = 0, p = 1; SSE = 3 * 2e-4 over 9 - 2 df,
    # Sxx = 3 * (1 + 0 + 1) over log10 kappa = -2, -1, 0
    t = kappa_dependence(per_seed_pi({0.01: [0.01, 0.02, 0.03], 0.1: [0.01, 0.02, 0.03], 1.0: [0.01, 0.02, 0.03]}))
    half = T_975[7] * math.sqrt(6e-4 / 7 / 6)
    assert t["slope"] == pytest.approx(0, abs=1e-12) and t["slope_high"] == pytest.approx(half)
    assert t["f"] == pytest.approx(0, abs=1e-9) and t["p"] == pytest.approx(1)
    assert t["range"] == pytest.approx(0, abs=1e-12) and t["verdict"] == "flat" and t["kappas"] == 3


def test_kappa_dependence_varies():
    # means 0.11, 0.21, 0.31: between SS 3 * (0.1^2 + 0 + 0.1^2) = 0.06 on 2 df, within 6e-4 on 6 df
    t = kappa_dependence(per_seed_pi({0.01: [0.10, 0.11, 0.12], 0.1: [0.20, 0.21, 0.22], 1.0: [0.30, 0.31, 0.32]}))
    assert t["slope"] == pytest.approx(0.1) and t["f"] == pytest.approx(0.03 / 1e-4)
    assert t["range"] == pytest.approx(0.2) and t["verdict"] == "varies"
    # a rise and fall has slope 0 but still varies (the ANOVA sees it)
    t = kappa_dependence(per_seed_pi({0.01: [0.10, 0.11, 0.12], 0.1: [0.30, 0.31, 0.32], 1.0: [0.10, 0.11, 0.12]}))
    assert t["slope"] == pytest.approx(0, abs=1e-12) and t["p"] < 1e-4 and t["verdict"] == "varies"


def test_kappa_dependence_inconclusive_when_noisy():
    # means 0.05 and 0.10, sd 0.0707 each: F = 0.0025 / 0.005 = 0.5; slope 0.05 with a CI far wider than 0.02
    t = kappa_dependence(per_seed_pi({0.1: [0.0, 0.1], 1.0: [0.05, 0.15]}))
    assert t["f"] == pytest.approx(0.5) and t["slope"] == pytest.approx(0.05)
    assert t["slope_low"] < 0 < t["slope_high"] and t["verdict"] == "inconclusive"


def test_status_counts_keep_diverged_trials():
    table = pd.DataFrame([row("kd", 0.1, 0, 0.5, tau=0.1, tau_squared=False),
                          row("kd", 0.1, 1, 0, status="diverged", tau=0.1, tau_squared=False),
                          row("kd", 0.1, 2, 0, status="failed", tau=0.1, tau_squared=False),
                          row("lt", 0.1, 0, 0.3)])
    counts = status_counts(table).set_index(["arm", "kappa"])
    assert counts.loc[("kd tau=0.1 no-tau2", 0.1)].tolist() == [1, 1, 1]
    assert counts.loc[("lt", 0.1)].tolist() == [1, 0, 0]


# --- the sections on hand-made tables --------------------------------------------------------------

def test_label_smoothing_section_says_whether_ls_is_flat_and_kd_not(tmp_path):
    rows = []
    for kappa, kd_pi in ((0.05, 0.30), (0.5, 0.20), (4.0, 0.10)):
        for seed, noise in enumerate((-0.002, 0.0, 0.002)):
            lt = 0.5 + kappa / 10 + seed / 100
            rows += [row("lt", kappa, seed, lt), row("kd", kappa, seed, lt + kd_pi + noise, tau=4.0, tau_squared=True),
                     row("ls", kappa, seed, lt + 0.01 + noise, epsilon=0.1),  # flat
                     row("ls", kappa, seed, lt + kd_pi / 2 + noise, epsilon=0.0855)]  # varies like kd
    result = label_smoothing.section(pd.DataFrame(rows), None, tmp_path)
    section, figures = render(result), result.figures
    assert result.name == "label_smoothing"
    pi = result.tables["pi"].set_index(["arm", "kappa"])
    assert pi.loc[("kd tau=4", 0.05), "n"] == 3 and pi.loc[("kd tau=4", 0.05), "mean"] == pytest.approx(0.30)
    assert pi.loc[("kd tau=4", 0.05), "sd"] == pytest.approx(0.002)
    assert pi.loc[("ls eps=0.0855", 4.0), "mean"] == pytest.approx(0.05)
    assert result.tables["lt"].set_index("kappa").loc[0.05, "mean"] == pytest.approx(0.515)
    tests = result.tables["kappa_dependence"].set_index("arm")
    assert tests["verdict"].to_dict() == {"ls eps=0.0855": "varies", "ls eps=0.1": "flat", "kd tau=4": "varies"}
    assert tests.loc["kd tau=4", "range"] == pytest.approx(0.2) and tests.loc["ls eps=0.1", "range"] == pytest.approx(0)
    conclusions = result.tables["conclusions"].set_index("ls")
    assert conclusions["holds"].to_dict() == {"ls eps=0.0855": False, "ls eps=0.1": True}
    assert conclusions.loc["ls eps=0.0855", "range_ratio"] == pytest.approx(2.0)
    assert math.isnan(conclusions.loc["ls eps=0.1", "range_ratio"])
    assert "| 0.05 | 0.515 ± 0.010 | +0.150 ± 0.002 | +0.010 ± 0.002 | +0.300 ± 0.002 | 3 |" in section
    assert "**ls eps=0.1** against **kd tau=4**: ls is flat" in section
    assert "kd varies with kappa" in section
    verdicts = [line for line in section.splitlines() if line.startswith("- **ls")]
    assert "**holds**" in verdicts[1] and "**does not hold**" in verdicts[0]  # eps=0.0855 first
    assert "kd tau=4 from +0.100 to +0.300 (range 0.200)" in section
    assert "kd's PI moves 2.0 times as much over kappa as ls's" in section  # the flat ls has no ratio
    assert figures == [tmp_path / "label_smoothing_pi_vs_kappa.png"] and figures[0].stat().st_size > 0


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_temperature_section_counts_and_shows_diverged_trials(tmp_path):
    rows = []
    for kappa in (0.05, 1.0):
        for seed in (0, 1):
            lt = 0.3 + kappa / 10
            rows.append(row("lt", kappa, seed, lt, fidelity=0.5))
            for tau in (1.0, 10.0):
                rows.append(row("kd", kappa, seed, lt + 0.1 * tau / 10, tau=tau, tau_squared=True, fidelity=0.8))
                diverged = tau == 10.0 and kappa == 0.05 and seed == 1
                rows.append(row("kd", kappa, seed, lt + (0.1 / tau if tau > 1 else 0.03) - 0.02 * seed,
                                status="diverged" if diverged else "ok", tau=tau, tau_squared=False, fidelity=0.4))
            rows.append(row("l2", kappa, seed, lt + 0.05, fidelity=0.7))
    result = temperature.section(pd.DataFrame(rows), None, tmp_path)
    section, figures = render(result), result.figures
    assert result.name == "temperature"
    status = result.tables["status"].set_index(["arm", "kappa"])
    assert status["diverged"].sum() == 1 and status.loc[("kd tau=10 no-tau2", 0.05)].tolist() == [1, 1, 0]
    pi = result.tables["pi"].set_index(["arm", "kappa"])
    assert pi.loc[("kd tau=10", 0.05), "mean"] == pytest.approx(0.10)
    assert pi.loc[("l2", 0.05), "mean"] == pytest.approx(0.05)
    assert pi.loc[("kd tau=1 no-tau2", 0.05), "mean"] == pytest.approx(0.02)
    assert pi.loc[("kd tau=1 no-tau2", 0.05), "sd"] == pytest.approx(0.02 * math.sqrt(2) / 2)
    assert pi.loc[("kd tau=10 no-tau2", 0.05)][["n", "mean"]].tolist() == [1, pytest.approx(0.01)]
    fidelity = result.tables["fidelity"].set_index(["arm", "kappa"])
    assert fidelity.loc[("kd tau=10", 1.0), "mean"] == pytest.approx(0.8)
    assert fidelity.loc[("kd tau=10 no-tau2", 1.0), "mean"] == pytest.approx(0.4)
    assert "Diverged trials: 1 of 24: kd tau=10 no-tau2 at kappa=0.05 (1 of 2)." in section
    assert "| 0.05 | +0.010 ± 0.000 | +0.100 ± 0.000 | +0.050 ± 0.000 |" in section  # PI with the factor
    assert "| 0.05 | +0.020 ± 0.014 | +0.010 ± - (1 div.) | +0.050 ± 0.000 |" in section  # without; one seed left
    assert "| 1 | 0.500 ± 0.000 | 0.800 / 0.400 | 0.800 / 0.400 | 0.700 |" in section  # train fidelity
    assert [p.name for p in figures] == ["temperature_pi_vs_tau.png", "temperature_fidelity_vs_tau.png"]
    assert all(p.stat().st_size > 0 for p in figures)


def test_hard_vs_soft_section_names_the_kappas_where_soft_targets_matter(tmp_path):
    rows = []
    for kappa, soft_gain in ((0.1, 0.20), (4.0, 0.0)):
        for seed, noise in enumerate((-0.01, 0.0, 0.01)):
            rows += [row("lt", kappa, seed, 0.5), row("hard", kappa, seed, 0.52, fidelity=0.9),
                     row("kd", kappa, seed, 0.52 + soft_gain + noise, tau=4.0, tau_squared=True)]
    result = hard_vs_soft.section(pd.DataFrame(rows), None, tmp_path)
    section = render(result)
    half = T_975[2] * 0.01 / math.sqrt(3)
    assert result.name == "hard_vs_soft"
    soft = result.tables["soft_minus_hard"].set_index("kappa")
    assert soft.loc[0.1, "n"] == 3 and soft.loc[0.1, "mean"] == pytest.approx(0.2)
    assert soft.loc[0.1, "low"] == pytest.approx(0.2 - half) and soft.loc[0.1, "high"] == pytest.approx(0.2 + half)
    assert soft["sign"].to_dict() == {0.1: "above", 4.0: "unclear"}
    pi = result.tables["pi"].set_index(["arm", "kappa"])
    assert pi.loc[("hard", 0.1), "mean"] == pytest.approx(0.02)
    assert pi.loc[("kd tau=4", 0.1), "mean"] == pytest.approx(0.22)
    assert result.tables["fidelity"].set_index(["arm", "kappa"]).loc[("hard", 0.1), "mean"] == pytest.approx(0.9)
    assert result.tables["accuracy"].set_index(["arm", "kappa"]).loc[("kd tau=4", 0.1), "sd"] == pytest.approx(0.01)
    assert f"| 0.1 | 0.500 ± 0.000 | 0.520 ± 0.000 | 0.720 ± 0.010 | +0.020 ± 0.000 | +0.220 ± 0.010 | " \
           f"+0.200 [{0.2 - half:+.3f}, {0.2 + half:+.3f}] | 3 | 0.900 ± 0.000 |" in section
    assert "soft targets beat the teacher's hard labels at kappa = 0.1 (" in section
    assert "no difference can be told at kappa = 4" in section
    assert (tmp_path / "hard_vs_soft_accuracy.png").exists()
    assert result.figures == [tmp_path / "hard_vs_soft_accuracy.png"]


# --- the three --quick runs, sharing one storage -----------------------------------------------------

@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory, ray_address):
    """label_smoothing, then hard_vs_soft, then temperature at --quick size in ONE storage."""
    directory = tmp_path_factory.mktemp("supervision")
    done = {}
    for name in ("label_smoothing", "hard_vs_soft", "temperature"):
        done[name] = run_script(name, directory, "--quick", address=ray_address)
        assert done[name].returncode == 0, done[name].stderr[-3000:]
    return directory, done


def trials_line(stderr: str) -> str:
    """The driver's line that counts a study's trials (after its recipe searches' lines)."""
    return next(line for line in stderr.splitlines() if " trials, " in line and " already finished" in line)


def table_of(directory, study):
    from kdscale.store import ResultsStore

    return ResultsStore(str(directory / "results"), study).table()


@pytest.mark.slow
def test_label_smoothing_quick_trains_its_grid(quick_runs):
    directory, done = quick_runs
    first = trials_line(done["label_smoothing"].stderr)
    assert "label_smoothing_quick: 16 trials, 0 already finished, 16 to train" in first
    stdout = done["label_smoothing"].stdout
    assert "## Label smoothing against distillation (paper Table 2)" in stdout
    assert "| kappa | acc(lt) | PI ls eps=0.0855 | PI ls eps=0.1 | PI kd tau=4 | seeds |" in stdout
    assert stdout.count('the conclusion "ls is flat in kappa, kd is not"') == 2
    table = table_of(directory, "label_smoothing_quick")
    assert len(table) == 16 and set(table["status"]) == {"ok"}
    assert sorted(table.loc[table["objective"] == "ls", "epsilon"].unique()) == [0.0855, 0.1]
    analysis_dir = directory / "results" / "label_smoothing_quick" / "analysis"
    assert (analysis_dir / "label_smoothing_pi_vs_kappa.png").exists()
    tests = pd.read_csv(analysis_dir / "label_smoothing_kappa_dependence.csv")  # the section's numbers, as CSV
    assert sorted(tests["arm"]) == ["kd tau=4", "ls eps=0.0855", "ls eps=0.1"] and (tests["kappas"] == 2).all()
    assert "## Label smoothing against distillation" in (analysis_dir / "report.md").read_text()
    # a rerun trains nothing
    again = run_script("label_smoothing", directory, "--quick", "--no-analysis", timeout=120)
    assert again.returncode == 0 and "16 trials, 16 already finished, 0 to train" in again.stderr


@pytest.mark.slow
def test_hard_vs_soft_quick_adopts_lt_and_kd(quick_runs):
    directory, done = quick_runs
    first = trials_line(done["hard_vs_soft"].stderr)
    assert "hard_vs_soft_quick: 12 trials, 0 already finished, 8 from other studies' results, 4 to train" in first
    assert "## Hard teacher labels against soft targets" in done["hard_vs_soft"].stdout
    assert "**Answer.**" in done["hard_vs_soft"].stdout
    table = table_of(directory, "hard_vs_soft_quick")
    shared = table_of(directory, "label_smoothing_quick")
    assert len(table) == 12 and (table["objective"] == "hard").sum() == 4
    common = table[table["objective"].isin(["lt", "kd"])].set_index("trial_id")["test_acc"]
    assert len(common) == 8 and common.equals(shared.set_index("trial_id")["test_acc"].loc[common.index])
    assert (directory / "results" / "hard_vs_soft_quick" / "analysis" / "hard_vs_soft_accuracy.png").exists()
    soft = pd.read_csv(directory / "results" / "hard_vs_soft_quick" / "analysis" / "hard_vs_soft_soft_minus_hard.csv")
    assert soft["kappa"].tolist() == [0.05, 1.0] and (soft["n"] == 2).all()


@pytest.mark.slow
def test_temperature_quick_adopts_lt_and_the_factor_is_void_at_tau_1(quick_runs):
    directory, done = quick_runs
    first = trials_line(done["temperature"].stderr)
    assert "temperature_quick: 24 trials, 0 already finished, 4 from other studies' results, 20 to train" in first
    stdout = done["temperature"].stdout
    assert "PI, kd with tau^2:" in stdout and "| kappa | tau=1 | tau=10 | l2 (tau→∞) |" in stdout
    assert "Diverged trials:" in stdout and "**Answer.**" in stdout
    table = table_of(directory, "temperature_quick")
    assert len(table) == 24 and set(table["objective"]) == {"lt", "kd", "l2"}
    kd1 = table[(table["objective"] == "kd") & (table["tau"] == 1.0)].pivot(index=["kappa", "seed"],
                                                                            columns="tau_squared", values="test_acc")
    assert len(kd1) == 4 and np.allclose(kd1[True], kd1[False])  # at tau = 1 with and without are one loss
    analysis_dir = directory / "results" / "temperature_quick" / "analysis"
    assert (analysis_dir / "temperature_pi_vs_tau.png").exists()
    assert (analysis_dir / "temperature_fidelity_vs_tau.png").exists()
    assert (analysis_dir / "temperature_curves.png").exists() and "a panel per kappa and tau" in stdout
    late = pd.read_csv(analysis_dir / "temperature_late_gain.csv")  # from the stored histories
    # lt (adopted with its files), l2 and kd at tau 1 and 10 with and without, at 2 kappas, 2 seeds each
    assert len(late) == 12 and set(late["n"]) == {2}
    factor = pd.read_csv(analysis_dir / "temperature_factor.csv")
    assert len(factor) == 4 and np.allclose(factor.loc[factor["tau"] == 1.0, "mean"], 0)


@pytest.mark.parametrize("name, argv, message", [
    ("label_smoothing", ["--seeds", "0"], "--seeds 0 is invalid"),
    ("label_smoothing", ["--tau", "0"], "tau=0"),
    ("label_smoothing", ["--epsilons", "1.5"], "objective.epsilon=1.5 is invalid"),
    ("label_smoothing", ["--epsilon", "0.1"], "unrecognized arguments: --epsilon"),
    ("temperature", ["--taus", "1", "-3"], "tau=-3"),
    ("temperature", ["--seeds", "0"], "--seeds 0 is invalid"),
    ("temperature", ["--tau", "4"], "unrecognized arguments: --tau"),
    ("hard_vs_soft", ["--tau", "-1"], "tau=-1"),
    ("hard_vs_soft", ["--kappas"], "expected at least one argument"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, name, argv, message):
    assert_refused(call_script(name, tmp_path, *argv), message, tmp_path)
