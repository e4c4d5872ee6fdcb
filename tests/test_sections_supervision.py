"""analysis.sections.temperature, label_smoothing and hard_vs_soft on small hand-made tables whose
PIs, contrasts and verdicts are computed here by hand; each branch of the answers is reached (the
stored --quick results reach only some). tests/test_studies_supervision.py has one more per study."""
import math
import re

import pandas as pd
import pytest

from analysis.sections import hard_vs_soft, label_smoothing, render, temperature

T_975_2 = 4.302652730  # Student-t 97.5% quantile, 2 degrees of freedom (3 seeds)


def row(objective, kappa, seed, acc, tau=math.nan, tau_squared=None, epsilon=math.nan, fidelity=math.nan, **extra):
    return {"trial_id": f"{objective}-{tau}-{tau_squared}-{epsilon}-{kappa}-{seed}", "status": "ok",
            "teacher": "cnn1d-16", "student": "cnn1d-16", "dataset": "mnist1d", "n_teacher": 4000,
            "teacher_id": "t0", "budget": "steps=500", "kappa": kappa, "objective": objective, "seed": seed,
            "tau": tau, "tau_squared": tau_squared, "epsilon": epsilon,
            "alpha": 0.0 if objective in ("kd", "hard", "l2") else math.nan, "test_acc": acc,
            "fidelity_train": fidelity, **extra}


# --- temperature ---------------------------------------------------------------------------------

def temperature_table(pi_with, pi_without, noise=(0.0, 0.0, 0.0), fidelity=lambda tau, factor, kappa: 0.5,
                      **lt_extra):
    """lt at 0.5 + seed / 100; kd at lt + PI, PI given per (tau, kappa) with and without the tau^2
    factor; `noise` per seed (or a dict of them by kappa) is added to the PI of every tau but 1 (so
    tau = 1 is exact), with and without the factor alike."""
    rows = []
    for (tau, kappa), pi in pi_with.items():
        for seed, shift in enumerate(noise[kappa] if isinstance(noise, dict) else noise):
            lt = 0.5 + seed / 100
            if tau == min(t for t, _ in pi_with):  # one lt row per (kappa, seed)
                rows.append(row("lt", kappa, seed, lt, fidelity=0.4, **lt_extra))
            for factor, table in ((True, pi_with), (False, pi_without)):
                rows.append(row("kd", kappa, seed, lt + table[(tau, kappa)] + (0 if tau == 1.0 else shift), tau=tau,
                                tau_squared=factor, fidelity=fidelity(tau, factor, kappa)))
    return pd.DataFrame(rows)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_temperature_larger_gain_at_small_kappa_kept_without_the_factor(tmp_path):
    # best tau 3 at both kappas; its gain over tau 1 is 0.20 (sd 0.005) at kappa 0.05 and 0.02 at
    # kappa 1, CI half-width t * 0.005 / sqrt(3) = 0.0124: the CIs do not overlap
    pi_with = {(0.1, 0.05): 0.0, (1.0, 0.05): 0.10, (3.0, 0.05): 0.30, (10.0, 0.05): 0.20,
               (0.1, 1.0): 0.0, (1.0, 1.0): 0.10, (3.0, 1.0): 0.12, (10.0, 1.0): 0.11}
    pi_without = {(0.1, 0.05): 0.05, (1.0, 0.05): 0.10, (3.0, 0.05): 0.25, (10.0, 0.05): 0.05,
                  (0.1, 1.0): 0.05, (1.0, 1.0): 0.10, (3.0, 1.0): 0.115, (10.0, 1.0): 0.05}
    table = temperature_table(pi_with, pi_without, noise=(-0.005, 0.0, 0.005),
                              fidelity=lambda tau, factor, kappa: 0.8 if factor else 0.6, train_acc=0.9)
    section = temperature.section(table, None, tmp_path)
    text = render(section)
    half = T_975_2 * 0.005 / math.sqrt(3)

    best = section.tables["best_tau"].set_index("kappa")
    assert best["best_tau"].tolist() == [3.0, 3.0] and best["pi_tau1"].tolist() == pytest.approx([0.10, 0.10])
    assert best["pi_best"].tolist() == pytest.approx([0.30, 0.12])
    assert best["gain_mean"].tolist() == pytest.approx([0.20, 0.02]) and best["gain_n"].tolist() == [3, 3]
    assert best.loc[0.05, "gain_low"] == pytest.approx(0.20 - half)
    assert best.loc[1.0, "gain_high"] == pytest.approx(0.02 + half)
    assert best["pi_best_without"].tolist() == pytest.approx([0.25, 0.115])
    assert best["factor_mean"].tolist() == pytest.approx([0.05, 0.005])
    factor = section.tables["factor"].set_index(["tau", "kappa"])
    assert factor.loc[(1.0, 0.05), "mean"] == pytest.approx(0) and factor.loc[(0.1, 1.0), "mean"] == pytest.approx(-0.05)
    assert factor.loc[(10.0, 0.05), ["n", "mean"]].tolist() == [3, pytest.approx(0.15)]
    train_acc = section.tables["train_acc"]
    assert train_acc["arm"].tolist() == ["lt", "lt"] and train_acc["mean"].tolist() == pytest.approx([0.9, 0.9])
    assert section.tables["status"]["diverged"].sum() == 0

    assert "| kappa | tau=0.1 | tau=1 | tau=3 | tau=10 |" in text  # no l2 column without an l2 arm
    assert "| kappa | lt | tau=0.1 | tau=1 | tau=3 | tau=10 |" in text
    assert "| 1 | 0.400 ± 0.000 | 0.800 / 0.600 | 0.800 / 0.600 | 0.800 / 0.600 | 0.800 / 0.600 |" in text
    assert "Train accuracy of lt on its own samples: 0.900 (kappa = 0.05), 0.900 (kappa = 1)." in text
    assert "Diverged trials: 0 of 54." in text
    assert (f"- kappa = 0.05: with the factor, PI goes from +0.100 at tau = 1 to +0.300 at tau = 3 "
            f"(+0.200 [{0.2 - half:+.3f}, {0.2 + half:+.3f}] over tau = 1), and is +0.200 at tau = 10 "
            "(train fidelity 0.80); without the factor tau = 3 gives +0.250, so there the factor is worth "
            "+0.050 [+0.050, +0.050].") in text  # the same noise with and without: the contrast has none
    assert ": larger at small kappa (the 95% CIs do not overlap)." in text
    assert "kappa = 0.05: +0.200 / +0.150, kappa = 1: +0.020 / +0.015. Most of the gain remains" in text
    assert ("Below tau = 1 it turns round: at tau = 0.1 the loss without the factor has a gradient about "
            "1/tau = 10 times larger, and with minus without is -0.050 (kappa = 0.05), -0.050 (kappa = 1).") in text
    assert "give a negative PI at every kappa" not in text
    assert [p.name for p in section.figures] == list(temperature.FIGURES[:2])  # no histories without results_dir
    assert all(p.stat().st_size > 0 for p in section.figures)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_temperature_somewhat_larger_lost_without_the_factor_and_failing_taus(tmp_path):
    # gain of tau 3 over tau 1: 0.10 (sd 0.05) at kappa 0.05, 0.05 (sd 0.01) at kappa 1; none at
    # kappa 4, where tau 1 is best; tau 10 negative at every kappa
    pi_with = {(1.0, 0.05): 0.10, (3.0, 0.05): 0.20, (10.0, 0.05): -0.05,
               (1.0, 1.0): 0.10, (3.0, 1.0): 0.15, (10.0, 1.0): -0.02,
               (1.0, 4.0): 0.10, (3.0, 4.0): 0.05, (10.0, 4.0): -0.01}
    pi_without = {(1.0, 0.05): 0.10, (3.0, 0.05): 0.09, (10.0, 0.05): 0.0,
                  (1.0, 1.0): 0.10, (3.0, 1.0): 0.08, (10.0, 1.0): 0.0,
                  (1.0, 4.0): 0.10, (3.0, 4.0): 0.0, (10.0, 4.0): 0.0}
    noise = {0.05: (-0.05, 0.0, 0.05), 1.0: (-0.01, 0.0, 0.01), 4.0: (0.0, 0.0, 0.0)}
    table = temperature_table(pi_with, pi_without, noise=noise,
                              fidelity=lambda tau, factor, kappa: {0.05: 0.3, 1.0: 0.4, 4.0: 0.5}[kappa])
    section = temperature.section(table, None, tmp_path)
    text = render(section)

    best = section.tables["best_tau"].set_index("kappa")
    assert best["best_tau"].tolist() == [3.0, 3.0, 1.0]
    assert best["gain_mean"].iloc[:2].tolist() == pytest.approx([0.10, 0.05]) and math.isnan(best.loc[4.0, "gain_mean"])
    assert best.loc[0.05, "gain_low"] == pytest.approx(0.10 - T_975_2 * 0.05 / math.sqrt(3))
    assert best.loc[4.0, ["pi_best", "pi_best_without"]].tolist() == pytest.approx([0.10, 0.10])
    assert math.isnan(best.loc[4.0, "factor_mean"]) and best.loc[1.0, "factor_mean"] == pytest.approx(0.07)
    assert ("- kappa = 4: with the factor, PI is highest at tau = 1 (+0.100): no tau helps more, and is -0.010 at "
            "tau = 10 (train fidelity 0.50).") in text
    assert "against +0.050 [+0.025, +0.075] at kappa = 1: somewhat larger at small kappa, but the 95% CIs overlap" in text
    assert ("kappa = 0.05: +0.100 / -0.010, kappa = 1: +0.050 / -0.020. At 2 of 2 kappas less than half the gain "
            "remains without the factor") in text
    assert "With the factor, tau = 10 give a negative PI at every kappa, with train fidelity 0.30 to 0.50" in text
    assert "Below tau = 1" not in text


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_temperature_not_larger_at_small_kappa_and_a_grid_without_tau_1(tmp_path):
    pi_with = {(1.0, 0.05): 0.0, (10.0, 0.05): 0.05, (1.0, 1.0): 0.0, (10.0, 1.0): 0.20}
    pi_without = {key: 0.0 for key in pi_with}
    section = temperature.section(temperature_table(pi_with, pi_without, noise=(-0.01, 0.0, 0.01)), None, tmp_path)
    assert section.tables["best_tau"]["gain_mean"].tolist() == pytest.approx([0.05, 0.20])
    assert ": not larger at small kappa: a higher tau helps at every kappa." in render(section)

    pi_with = {(3.0, 0.05): 0.1, (10.0, 0.05): 0.2}
    section = temperature.section(temperature_table(pi_with, pi_with), None, tmp_path / "no_tau_1")
    assert render(section).endswith("**Answer.**\n\nThe grid needs tau = 1 and another tau to compare them.\n")
    assert section.tables["best_tau"].empty and list(section.tables["best_tau"]) == temperature.BEST_COLUMNS
    assert section.tables["factor"].set_index("tau")["mean"].tolist() == pytest.approx([0.0, 0.0])


# --- label_smoothing ------------------------------------------------------------------------------

def test_label_smoothing_numbers_verdicts_and_p_values(tmp_path):
    # lt = 0.6 + seed / 100; PI of kd 0.30, 0.20, 0.10 (+-0.001 by seed) at kappa 0.01, 0.1, 1: a slope of
    # -0.1 per decade, F = (0.06 / 2) / (6e-6 / 6) = 3e4 on (2, 6) df (p far below 1e-4); ls 0.02 at every kappa (+-0.001)
    rows = []
    for kappa, kd_pi in ((0.01, 0.30), (0.1, 0.20), (1.0, 0.10)):
        for seed, noise in enumerate((-0.001, 0.0, 0.001)):
            lt = 0.6 + seed / 100
            rows += [row("lt", kappa, seed, lt), row("kd", kappa, seed, lt + kd_pi + noise, tau=4.0, tau_squared=True),
                     row("ls", kappa, seed, lt + 0.02 + noise, epsilon=0.1)]
    section = label_smoothing.section(pd.DataFrame(rows), None, tmp_path)
    text = render(section)

    pi = section.tables["pi"].set_index(["arm", "kappa"])
    assert pi.loc[("kd tau=4", 0.1), ["n", "mean", "sd"]].tolist() == [3, pytest.approx(0.20), pytest.approx(0.001)]
    assert pi.loc[("ls eps=0.1", 1.0), "mean"] == pytest.approx(0.02)
    lt = section.tables["lt"].set_index("kappa")
    assert lt["mean"].tolist() == pytest.approx([0.61] * 3) and lt["sd"].tolist() == pytest.approx([0.01] * 3)
    tests = section.tables["kappa_dependence"].set_index("arm")
    assert tests.loc["kd tau=4", "slope"] == pytest.approx(-0.1) and tests.loc["kd tau=4", "f"] == pytest.approx(3e4)
    assert tests.loc["kd tau=4", "p"] < 1e-4 and tests.loc["kd tau=4", "verdict"] == "varies"
    assert tests.loc["ls eps=0.1", "f"] == pytest.approx(0, abs=1e-9) and tests.loc["ls eps=0.1", "verdict"] == "flat"
    assert tests["range"].tolist() == pytest.approx([0.0, 0.2])
    conclusions = section.tables["conclusions"]
    assert conclusions[["kd", "ls", "kd_verdict", "ls_verdict", "holds"]].values.tolist() == [
        ["kd tau=4", "ls eps=0.1", "varies", "flat", True]]

    assert "| kappa | acc(lt) | PI ls eps=0.1 | PI kd tau=4 | seeds |" in text
    assert "| 0.01 | 0.610 ± 0.010 | +0.020 ± 0.001 | +0.300 ± 0.001 | 3 |" in text
    p_text = f"{tests.loc['kd tau=4', 'p']:.1e}"
    assert re.fullmatch(r"\d\.\de-\d+", p_text)
    assert "| kd tau=4 | -0.1000 [" in text and f"F = 30000.00, p = {p_text} | 0.200 | varies |" in text
    assert "- **ls eps=0.1** against **kd tau=4**: ls is flat (range 0.000, slope " in text  # slope +-0.0000
    assert (f"/decade, p = 1), kd varies with kappa (range 0.200, p = {p_text}): the conclusion \"ls is flat in "
            "kappa, kd is not\" **holds** here.") in text
    assert text.endswith("In size: the per-kappa mean PI of ls eps=0.1 from +0.020 to +0.020 (range 0.000); "
                         "kd tau=4 from +0.100 to +0.300 (range 0.200).\n\n")  # no ratio against a flat ls
    assert section.figures == [tmp_path / "label_smoothing_pi_vs_kappa.png"] and section.figures[0].stat().st_size > 0


def test_label_smoothing_one_seed_is_inconclusive_and_ratios_span_two_ls_arms(tmp_path):
    # one seed: no ANOVA, no slope (two kappas), p shown as "-"; kd's range 0.2 over ls ranges 0.1 and 0.05
    rows = []
    for kappa, kd_pi, ls_a, ls_b in ((0.1, 0.3, 0.0, 0.0), (1.0, 0.1, 0.1, 0.05)):
        rows += [row("lt", kappa, 0, 0.5), row("kd", kappa, 0, 0.5 + kd_pi, tau=4.0, tau_squared=True),
                 row("ls", kappa, 0, 0.5 + ls_a, epsilon=0.1), row("ls", kappa, 0, 0.5 + ls_b, epsilon=0.05)]
    section = label_smoothing.section(pd.DataFrame(rows), None, tmp_path)
    text = render(section)
    tests = section.tables["kappa_dependence"].set_index("arm")
    assert tests["verdict"].tolist() == ["inconclusive"] * 3 and tests["p"].isna().all()
    assert tests["range"].tolist() == pytest.approx([0.05, 0.1, 0.2])
    assert section.tables["conclusions"]["range_ratio"].tolist() == pytest.approx([4.0, 2.0])
    assert not section.tables["conclusions"]["holds"].any()
    assert "| 0.1 | 0.500 ± - | +0.000 ± - | +0.000 ± - | +0.300 ± - | 1 |" in text
    assert "F = nan, p = - | 0.200 | inconclusive |" in text
    assert "kd is inconclusive (range 0.200, p = -)" in text
    assert "kd's PI moves 2.0 to 4.0 times as much over kappa as ls's." in text


# --- hard_vs_soft ----------------------------------------------------------------------------------

def test_hard_vs_soft_above_below_and_one_seed(tmp_path):
    # kd - hard: +0.10 (sd 0.01) at kappa 0.1, -0.05 (sd 0.01) at kappa 1; kappa 4 has seed 0 only
    rows = []
    for kappa, gain, noises in ((0.1, 0.10, (-0.01, 0.0, 0.01)), (1.0, -0.05, (-0.01, 0.0, 0.01)), (4.0, 0.3, (0.0,))):
        for seed, noise in enumerate(noises):
            rows += [row("lt", kappa, seed, 0.5), row("hard", kappa, seed, 0.5 + kappa / 100, fidelity=0.8),
                     row("kd", kappa, seed, 0.5 + kappa / 100 + gain + noise, tau=4.0, tau_squared=True)]
    section = hard_vs_soft.section(pd.DataFrame(rows), None, tmp_path)
    text = render(section)
    half = T_975_2 * 0.01 / math.sqrt(3)

    soft = section.tables["soft_minus_hard"].set_index("kappa")
    assert soft["n"].tolist() == [3, 3, 1] and soft["mean"].tolist() == pytest.approx([0.10, -0.05, 0.30])
    assert soft["high"].iloc[1] == pytest.approx(-0.05 + half) and soft["sign"].tolist() == ["above", "below", "unclear"]
    assert set(soft["arm"]) == {"kd tau=4"}
    pi = section.tables["pi"].set_index(["arm", "kappa"])
    assert pi.xs("hard", level="arm")["mean"].tolist() == pytest.approx([0.001, 0.01, 0.04])
    accuracy = section.tables["accuracy"].set_index(["arm", "kappa"])
    assert accuracy.loc[("kd tau=4", 4.0), ["n", "mean"]].tolist() == [1, pytest.approx(0.84)]
    assert "| 4 | 0.500 ± - | 0.540 ± - | 0.840 ± - | +0.040 ± - | +0.340 ± - | +0.300 | 1 | 0.800 ± - |" in text
    assert text.endswith(
        "**Answer.** The soft targets beat the teacher's hard labels at kappa = 0.1 (95% CI of kd tau=4 - hard "
        f"above 0; largest at kappa = 0.1, +0.100 [{0.1 - half:+.3f}, {0.1 + half:+.3f}]); hard labels do better "
        "at kappa = 1; no difference can be told at kappa = 4 (CI across 0, or one seed); relabelling alone "
        "(hard - lt) ranges from +0.001 to +0.040 over kappa.\n\n")
    assert section.figures == [tmp_path / "hard_vs_soft_accuracy.png"]


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
@pytest.mark.filterwarnings("ignore:No artists with labels found")  # the right panel has nothing to draw
def test_hard_vs_soft_without_hard_trials(tmp_path):
    rows = [row("lt", 0.1, s, 0.5) for s in (0, 1)] + \
           [row("kd", 0.1, s, 0.6 + s / 100, tau=4.0, tau_squared=True) for s in (0, 1)]
    section = hard_vs_soft.section(pd.DataFrame(rows), None, tmp_path)
    text = render(section)
    assert section.tables["soft_minus_hard"].empty
    assert section.tables["pi"].set_index("arm").loc["kd tau=4", "mean"] == pytest.approx(0.105)
    assert "| 0.1 | 0.500 ± 0.000 | - | 0.605 ± 0.007 | - | +0.105 ± 0.007 | - | 0 | - |" in text
    assert "**Answer.** No kappa has both a kd and a hard trial." in text
    assert section.figures[0].stat().st_size > 0


def test_budgets_in_words_one_budget_or_each_cells_own():
    from analysis.markdown import budgets

    assert budgets(["steps=1500", "steps=1500"]) == "student budget steps=1500"
    assert budgets(["steps=1000", "steps=4000", "steps=500", None]) == (
        "student budgets steps=500 to steps=4000 (3 distinct: each cell's own, chosen on validation data)")
    assert budgets([]) == "student budget n/a"
