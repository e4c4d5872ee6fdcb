"""analysis.sections.temperature on small hand-made tables whose
PIs, contrasts and verdicts are computed here by hand; each branch of the answers is reached (the
stored --quick results reach only some). tests/test_studies_supervision.py has one more per study."""
import math

import pandas as pd
import pytest

from analysis.sections import render, temperature

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
    assert [p.name for p in section.figures] == list(temperature.FIGURES)
    assert all(p.stat().st_size > 0 for p in section.figures)


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
    assert ("- kappa = 4: with the factor, PI goes from +0.100 at tau = 1 to +0.100 at tau = 1, and is -0.010 at "
            "tau = 10 (train fidelity 0.50).") in text
    assert "against +0.050 [+0.025, +0.075] at kappa = 1: somewhat larger at small kappa, but the 95% CIs overlap" in text
    assert ("kappa = 0.05: +0.100 / -0.010, kappa = 1: +0.050 / -0.020. At 2 of 2 kappas less than half the gain "
            "remains without the factor") in text
    assert "With the factor, tau = 10 give a negative PI at every kappa, with train fidelity 0.30 to 0.50" in text
    assert "Below tau = 1" not in text


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