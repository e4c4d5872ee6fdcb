"""The fair-recipe study's section (analysis.sections.fair_recipe) on small hand-made tables and a
hand-written tuning, whose numbers are computed here by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.crossover import ABOVE, CROSSING, UPWARD
from analysis.sections import Table, fair_recipe, render

T95_2 = 4.302653  # t quantile for a 95% CI over 3 seeds (2 degrees of freedom)


def _rows(kappa, objective, accs, statuses=None):
    statuses = statuses or ["ok"] * len(accs)
    return [{"kappa": kappa, "objective": objective, "seed": seed, "test_acc": acc, "status": status}
            for seed, (acc, status) in enumerate(zip(accs, statuses))]


# --- the numbers, by hand (moved from tests/test_tuning.py) ----------------------------------------

HAND = pd.DataFrame(
    _rows(0.1, "lt", [0.4, 0.5, 0.6]) + _rows(0.1, "kd", [0.7, 0.8, 0.9])
    + _rows(1.0, "lt", [0.8, 0.8, 0.8]) + _rows(1.0, "kd", [0.85, 0.8, 0.75])
    + _rows(2.0, "lt", [0.9, 0.9, 0.9]) + _rows(2.0, "kd", [0.95, 0.05, None], ["ok", "ok", "diverged"]))


def test_summarize_by_hand():
    s = fair_recipe.summarize(HAND, chance=0.1)
    assert s.loc[0.1, "n"] == 3 and s.loc[0.1, "pi_mean"] == pytest.approx(0.3)
    assert s.loc[0.1, "pi_sd"] == pytest.approx(0.0, abs=1e-12) and s.loc[0.1, "pi_low"] == pytest.approx(0.3)
    assert s.loc[0.1, "pg_mean"] == pytest.approx((0.7 / 0.4 + 0.8 / 0.5 + 0.9 / 0.6) / 3)
    # kappa 1: PI = 0.05, 0, -0.05: sd 0.05, 95% t CI 0 +- 4.3027 * 0.05 / sqrt(3)
    assert s.loc[1.0, "pi_mean"] == pytest.approx(0.0, abs=1e-12) and s.loc[1.0, "pi_sd"] == pytest.approx(0.05)
    assert s.loc[1.0, "pi_high"] == pytest.approx(4.302653 * 0.05 / 3 ** 0.5, rel=1e-5)
    # kappa 2: seed 2's kd diverged (no pair), seed 1's kd ended at 0.05 < 1.5 x chance: both failed
    assert s.loc[2.0, "n"] == 2 and s.loc[2.0, "kd_diverged"] == 1 and s.loc[2.0, "kd_failed"] == 2
    assert s.loc[2.0, "lt_diverged"] == 0 and s.loc[0.1, "kd_failed"] == 0


def test_verdict_by_hand():
    v = fair_recipe.verdict(fair_recipe.summarize(HAND, chance=0.1))
    # kappa 2 is set apart (kd failed); over 0.1 and 1: PI 0.3 (CI above 0) falls to 0.0,
    # by 0.3 against 2 se = 2 * sqrt(0^2 + (0.05 / sqrt 3)^2) = 0.0577
    assert v["failed"] == [2.0] and v["kappas"] == 2 and v["positive"] == [0.1]
    assert (v["peak_kappa"], v["last_kappa"]) == (0.1, 1.0) and v["drop"] == pytest.approx(0.3)
    assert v["drop_se"] == pytest.approx(0.05 / 3 ** 0.5) and v["falls"] and v["survives"]
    flat = HAND[HAND["kappa"] == 0.1].copy()
    assert not fair_recipe.verdict(fair_recipe.summarize(flat))["falls"]  # one kappa: no fall to see


def test_lt_gain_by_hand():
    tuned = HAND.copy()
    tuned.loc[tuned["objective"] == "lt", "test_acc"] += [0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.05, 0.05, 0.05]
    gain = fair_recipe.lt_gain(HAND, tuned)
    assert gain.loc[0.1, "mean"] == pytest.approx(0.2) and gain.loc[0.1, "sd"] == pytest.approx(0.1)
    assert gain.loc[1.0, "mean"] == pytest.approx(0.0) and gain.loc[2.0, "mean"] == pytest.approx(0.05)
    assert gain["n"].tolist() == [3, 3, 3]


# --- the section, by hand ------------------------------------------------------------------------------


def study(cells: dict) -> pd.DataFrame:
    """A results table: cells maps (kappa, objective) to three seeds' test accuracies (None:
    diverged), on cnn1d-16 > cnn1d-16, mnist1d N = 4000, kd at tau 4 with the factor."""
    rows = []
    for (kappa, objective), accs in cells.items():
        for seed, acc in enumerate(accs):
            rows.append({"trial_id": f"{objective}-{kappa:g}-{seed}", "status": "ok" if acc is not None else "diverged",
                         "teacher": "cnn1d-16", "student": "cnn1d-16", "dataset": "mnist1d", "n_teacher": 4000,
                         "kappa": kappa, "objective": objective, "tau": 4.0 if objective == "kd" else None,
                         "alpha": 0.0, "tau_squared": True if objective == "kd" else None, "seed": seed,
                         "test_acc": math.nan if acc is None else acc})
    return pd.DataFrame(rows)


# default recipe: PI per seed 0, +0.02, -0.02 | +0.01, -0.01, +0.03 | 0.1, 0.1, 0.1
DEFAULT = {(0.1, "lt"): [0.40, 0.50, 0.60], (0.1, "kd"): [0.40, 0.52, 0.58],
           (1.0, "lt"): [0.70, 0.70, 0.70], (1.0, "kd"): [0.71, 0.69, 0.73],
           (2.0, "lt"): [0.80, 0.80, 0.80], (2.0, "kd"): [0.90, 0.90, 0.90]}
# tuned lt recipe: lt gains 0.1 | 0.08 | 0.1, 0.08, 0.12; PI 0.3 | 0.08, 0.03, -0.02 | -0.07, -0.03, -0.05
TUNED = {(0.1, "lt"): [0.50, 0.60, 0.70], (0.1, "kd"): [0.80, 0.90, 1.00],
         (1.0, "lt"): [0.78, 0.78, 0.78], (1.0, "kd"): [0.86, 0.81, 0.76],
         (2.0, "lt"): [0.90, 0.88, 0.92], (2.0, "kd"): [0.83, 0.85, 0.87]}
BASE = {"lr": 0.02, "weight_decay": 5e-4, "steps": 500}


def entries(evaluate_base=True, lrs=(0.05, 0.1, 0.2)):
    settings = {"samples": 4, "seeds": 3, "val_fraction": 0.2, "sampler_seed": 0, "evaluate_base": evaluate_base,
                "space": {"lr": [0.003, 0.3], "weight_decay": [1e-5, 0.01], "steps": [500, 1000]}}
    return {kappa: {"kappa": kappa, "n_train": round(kappa * 4000), "n_val": round(kappa * 800), "settings": settings,
                    "best": {"index": 2, "lr": lr, "weight_decay": 1e-4 * (i + 1), "steps": 1000,
                             "val_acc": 0.6 + i / 10},
                    "samples": [{"index": 0, "lr": 0.02, "weight_decay": 5e-4, "steps": 500, "val_acc": 0.5 + i / 10}]}
            for i, (kappa, lr) in enumerate(zip((0.1, 1.0, 2.0), lrs))}


def lines_of(section, index):
    """The Markdown lines of the section's index-th Table block, as render writes them."""
    table = [block for block in section.blocks if isinstance(block, Table)][index]
    return render(type(section)("t", [table])).splitlines()


def test_section_by_hand(tmp_path):
    section = fair_recipe.section(study(DEFAULT), study(TUNED), entries(), BASE, tmp_path, chance=0.1)
    assert section.name == "fair_recipe"
    assert [p.name for p in section.figures] == ["fair_recipe_pi.png", "fair_recipe_tuned.png"]
    assert all(p.exists() for p in section.figures)

    tuning = section.tables["tuning"].set_index("kappa")
    assert tuning["n_train"].tolist() == [400, 4000, 8000] and tuning["lr"].tolist() == [0.05, 0.1, 0.2]
    assert tuning["val_acc_default"].tolist() == pytest.approx([0.5, 0.6, 0.7])
    s = section.tables["summary"].set_index(["comparison", "kappa"])
    assert s.loc[("default", 0.1), "pi_mean"] == pytest.approx(0.0, abs=1e-12)
    assert s.loc[("default", 0.1), "pi_sd"] == pytest.approx(0.02)
    assert s.loc[("default", 1.0), "pi_mean"] == pytest.approx(0.01) and s.loc[("default", 2.0), "pi_mean"] == \
        pytest.approx(0.1)
    assert s.loc[("default", 2.0), "pi_low"] == pytest.approx(0.1)  # sd 0: the CI is the mean
    assert s.loc[("shared", 0.1), "pi_mean"] == pytest.approx(0.3)
    assert s.loc[("shared", 1.0), "pi_mean"] == pytest.approx(0.03) and s.loc[("shared", 1.0), "pi_sd"] == \
        pytest.approx(0.05)
    assert s.loc[("shared", 1.0), "pi_high"] == pytest.approx(0.03 + T95_2 * 0.05 / 3 ** 0.5, rel=1e-5)
    assert s.loc[("shared", 2.0), "pi_mean"] == pytest.approx(-0.05) and s.loc[("shared", 2.0), "lt_mean"] == \
        pytest.approx(0.9)
    # lt tuned against kd at the default recipe: -0.1, -0.08, -0.12 | -0.07 (x3 +- 0.02) | 0, 0.02, -0.02
    assert s.loc[("fair", 0.1), "pi_mean"] == pytest.approx(-0.1) and s.loc[("fair", 0.1), "pi_sd"] == \
        pytest.approx(0.02)
    assert s.loc[("fair", 1.0), "pi_mean"] == pytest.approx(-0.07)
    assert s.loc[("fair", 2.0), "pi_mean"] == pytest.approx(0.0, abs=1e-12)
    assert s.loc[("fair", 0.1), "pg_mean"] == pytest.approx((0.4 / 0.5 + 0.52 / 0.6 + 0.58 / 0.7) / 3)
    assert (s["n"] == 3).all() and (s["kd_failed"] == 0).all() and (s["lt_diverged"] == 0).all()
    gain = section.tables["lt_gain"].set_index("kappa")
    assert gain["mean"].tolist() == pytest.approx([0.1, 0.08, 0.1]) and gain.loc[2.0, "sd"] == pytest.approx(0.02)

    v = section.tables["verdict"].set_index("comparison")
    # both tuned: CI above 0 at 0.1 only; PI 0.3 falls to -0.05 at 2, by 0.35 against 2 se = 2 x 0.02 / sqrt 3
    assert v.loc["shared", "positive"] == "0.1" and v.loc["shared", "drop"] == pytest.approx(0.35)
    assert v.loc["shared", "drop_se"] == pytest.approx(0.02 / 3 ** 0.5) and v.loc["shared", "survives"]
    # default: CI above 0 at 2 only, where PI peaks: no fall; lt tuned, kd default: above 0 nowhere, peak at 2
    assert v.loc["default", "positive"] == "2" and v.loc["default", "peak_kappa"] == 2.0
    assert not v.loc["default", "falls"] and not v.loc["default", "survives"]
    assert v.loc["fair", "positive"] == "" and v.loc["fair", "peak_kappa"] == 2.0 and not v.loc["fair", "falls"]
    assert v["failed"].tolist() == ["", "", ""] and v["kappas"].tolist() == [3, 3, 3]

    stars = section.tables["kappa_star"].set_index("comparison")
    # both tuned: mean PG 1.0385 at kappa 1 and 0.9446 at 2, linear in log kappa between them
    pg1 = (0.86 + 0.81 + 0.76) / 0.78 / 3
    pg2 = (0.83 / 0.90 + 0.85 / 0.88 + 0.87 / 0.92) / 3
    assert stars.loc["shared", "status"] == CROSSING
    assert stars.loc["shared", "kappa_star"] == pytest.approx(2 ** ((pg1 - 1) / (pg1 - pg2)))
    assert stars.loc["default", "status"] == ABOVE and stars.loc["default", "short"] == \
        "kappa* > 2 (PG > 1 at every kappa)"
    assert stars.loc["fair", "status"] == UPWARD  # PG < 1 until kappa 1, 1.0003 at 2

    text = render(section)
    assert text.startswith("## Fair recipe: kd against an lt baseline tuned per kappa\n\ncnn1d-16 > cnn1d-16 on "
                           "mnist1d (N = 4000), kd at tau = 4 (tau^2 factor, alpha = 0), 3 seeds. The lt recipe was "
                           "tuned per kappa by an Optuna TPE search of 4 samples (lr log-uniform in [0.003, 0.3], "
                           "weight decay log-uniform in [1e-05, 0.01], steps in {500, 1000}; ")
    assert "on 20% of the student's own M samples (mean over 3 tuning seed(s)" in text and text.endswith(".\n\n")
    assert lines_of(section, 0) == [
        "| kappa | M | n_val | lr | weight decay | steps | val acc (tuned) | val acc (default recipe) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        "| 0.1 | 400 | 80 | 0.05 | 0.0001 | 1000 | 0.600 | 0.500 |",
        "| 1 | 4000 | 800 | 0.1 | 0.0002 | 1000 | 0.700 | 0.600 |",
        "| 2 | 8000 | 1600 | 0.2 | 0.0003 | 1000 | 0.800 | 0.700 |"]
    assert lines_of(section, 1)[2:] == [
        # kd default at 0.1: sd sqrt((0.01 + 0.0004 + 0.0064) / 2) = 0.092
        "| 0.1 | 0.500 ± 0.100 | 0.600 ± 0.100 | +0.100 ± 0.000 | 0.500 ± 0.092 | 0.900 ± 0.100 |",
        "| 1 | 0.700 ± 0.000 | 0.780 ± 0.000 | +0.080 ± 0.000 | 0.710 ± 0.020 | 0.810 ± 0.050 |",
        "| 2 | 0.800 ± 0.000 | 0.900 ± 0.020 | +0.100 ± 0.020 | 0.900 ± 0.000 | 0.850 ± 0.020 |"]
    half = T95_2 * 0.02 / 3 ** 0.5  # 0.0497
    assert lines_of(section, 2)[3] == (
        f"| 1 | +0.010 ± 0.020 [{0.01 - half:+.3f}, {0.01 + half:+.3f}] | -0.070 ± 0.020 [{-0.07 - half:+.3f}, "
        f"{-0.07 + half:+.3f}] | +0.030 ± 0.050 [-0.094, +0.154] | 1.01 ± 0.03 | 0.91 ± 0.03 | 1.04 ± 0.06 |")
    answer = text.split("**Answer.** ")[1]
    assert answer.startswith(
        "Both objectives with the tuned lt recipe (the protocol as specified): yes, the PI curve survives; PI's 95% "
        "CI is above 0 at 1 of 3 kappas (0.1); PI peaks at +0.300 (kappa = 0.1) and is -0.050 at kappa = 2 (peak "
        f"minus last +0.350 ± 0.012 se: falls); kappa* = {2 ** ((pg1 - 1) / (pg1 - pg2)):.3g} [")
    assert ("Against the tuned lt baseline with kd at its default recipe (lt gets every advantage): no: kd's gain is "
            "significant nowhere and does not fall with kappa; PI's 95% CI is above 0 at 0 of 3 kappas; PI peaks at "
            "+0.000 (kappa = 2), the largest kappa, so it does not fall with kappa; kappa* = ") in answer
    assert ("With the default recipe for both: PI's 95% CI is above 0 at 1 of 3 kappas (2); PI peaks at +0.100 "
            "(kappa = 2), the largest kappa, so it does not fall with kappa; kappa* > 2 (PG > 1 at every kappa). "
            "Tuning lt's recipe on validation changed acc(lt) by +0.080 to +0.100 (per-kappa means over seeds, "
            "paired).") in answer
    assert "(every kappa, those where kd failed included)" not in text


def test_section_sets_apart_kappas_where_kd_failed(tmp_path):
    """kd with the tuned recipe fails at kappa 2 (one trial at 0.05 < 1.5 x chance, one diverged):
    that kappa is reported apart with its tuned lr; the curve over 0.1 and 1 still survives."""
    tuned = {**TUNED, (2.0, "kd"): [0.05, 0.83, None]}
    section = fair_recipe.section(study(DEFAULT), study(tuned), entries(evaluate_base=False), BASE, tmp_path)
    s = section.tables["summary"].set_index(["comparison", "kappa"])
    assert s.loc[("shared", 2.0), "kd_failed"] == 2 and s.loc[("shared", 2.0), "kd_diverged"] == 1
    assert s.loc[("shared", 2.0), "n"] == 2 and s.loc[("shared", 2.0), "pi_mean"] == pytest.approx((-0.85 - 0.05) / 2)
    v = section.tables["verdict"].set_index("comparison")
    # over 0.1 and 1: PI 0.3 falls to 0.03, by 0.27 against 2 se = 2 x 0.05 / sqrt 3 = 0.0577
    assert v.loc["shared", "failed"] == "2" and v.loc["shared", "kappas"] == 2 and v.loc["shared", "survives"]
    assert v.loc["shared", "drop"] == pytest.approx(0.27)
    assert v.loc["shared", "drop_se"] == pytest.approx(0.05 / 3 ** 0.5)
    assert section.tables["tuning"]["val_acc_default"].isna().all()
    text = render(section)
    assert lines_of(section, 0)[2] == "| 0.1 | 400 | 80 | 0.05 | 0.0001 | 1000 | 0.600 | - |"
    assert lines_of(section, 1)[4].endswith("| 0.440 ± 0.552 (2 failed) |")
    assert "(every kappa, those where kd failed included)\n" in text
    assert ("**Answer.** With one shared tuned recipe (the protocol as specified) kd did not train at 1 of 3 kappas "
            "(2: 2 trials diverged or ended at chance, at tuned learning rates 0.2, where kd with the tau^2 factor "
            "trains at the default 0.02), so PI there (-0.450) measures a broken kd, not distillation; at the other "
            "kappas: yes, the PI curve survives (PI's 95% CI is above 0 at 1 of 2 kappas (0.1); PI peaks at +0.300 "
            "(kappa = 0.1) and is +0.030 at kappa = 1 (peak minus last +0.270 ± 0.029 se: falls)). ") in text


def test_section_when_kd_never_trains_with_the_tuned_recipe(tmp_path):
    """Every kd trial of the tuned study diverged: no curve, no kappa*, and the answer says so."""
    tuned = {key: ([None] * 3 if key[1] == "kd" else accs) for key, accs in TUNED.items()}
    section = fair_recipe.section(study(DEFAULT), study(tuned), entries(), BASE, tmp_path)
    v = section.tables["verdict"].set_index("comparison")
    assert v.loc["shared", "kappas"] == 0 and v.loc["shared", "failed"] == "0.1 1 2"
    assert np.isnan(v.loc["shared", "peak_pi"]) and not v.loc["shared", "survives"]
    stars = section.tables["kappa_star"].set_index("comparison")
    assert stars.loc["shared", "short"] == "not computed" and pd.isna(stars.loc["shared", "status"])
    assert stars.loc["default", "status"] == ABOVE
    text = render(section)
    assert "- both tuned lt recipe: not computed: " in text
    assert ("kd did not train at 3 of 3 kappas (0.1, 1, 2: 9 trials diverged or ended at chance, at tuned learning "
            "rates 0.05, 0.1, 0.2, where kd with the tau^2 factor trains at the default 0.02)") in text
    assert "at the other kappas: cannot tell (kd trained at 0 kappa(s), too few for a curve). Against" in text


def test_head_and_curve_wordings():
    """The verdict's words for each kind of curve."""
    empty = {"kappas": 0, "positive": [], "falls": False, "survives": False}
    assert fair_recipe._curve(empty) == "no kappa where kd trained in every seed"
    assert fair_recipe._head(empty).startswith("cannot tell")
    some = {"kappas": 3, "positive": [0.1], "falls": False, "survives": False}
    assert fair_recipe._head(some).startswith("only in part: kd still beats lt somewhere")
    falls = {"kappas": 3, "positive": [], "falls": True, "survives": False}
    assert fair_recipe._head(falls) == "only in part: PI falls with kappa, but its CI is above 0 nowhere"
    curve = {"kappas": 3, "positive": [], "peak_pi": 0.2, "peak_kappa": 0.1, "last_pi": 0.1, "last_kappa": 4.0,
             "drop": 0.1, "drop_se": 0.08, "falls": False}
    assert fair_recipe._curve(curve).endswith("(peak minus last +0.100 ± 0.080 se: no clear fall)")
