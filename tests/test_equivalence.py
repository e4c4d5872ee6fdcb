"""Data equivalence (analysis.equivalence): how much more data lt needs to match kd, on planted truth."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import equivalence as eq
from analysis.sections import model_size

KAPPAS = np.array([0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0])


def lt_curve(kappa):
    return 0.5 + 0.05 * np.log(kappa)  # linear in log kappa: the interpolation is exact


def test_first_reach_interpolates_in_log_kappa_by_hand():
    log_kappas = np.log([1.0, 2.0, 4.0])
    curves = np.array([[0.5, 0.6, 0.8]] * 5)
    targets = np.array([0.55, 0.7, 0.9, 0.4, 0.5])
    reach = eq.first_reach(log_kappas, curves, targets)
    # 0.55: halfway from 1 to 2 in log kappa, sqrt(2); 0.7: halfway from 2 to 4, sqrt(8);
    # 0.9: never (beyond); 0.4: already at the first point (below); 0.5: exactly the first point.
    assert np.exp(reach[:2]) == pytest.approx([np.sqrt(2), np.sqrt(8)])
    assert reach[2] == np.inf and reach[3] == -np.inf and reach[4] == pytest.approx(0.0)


def test_a_planted_threefold_saving_is_recovered_with_an_interval_that_holds_it():
    rng = np.random.default_rng(1)
    seeds = 8
    lt = lt_curve(KAPPAS) + rng.normal(0, 0.004, (seeds, len(KAPPAS)))
    kd = lt_curve(3 * KAPPAS) + rng.normal(0, 0.004, (seeds, len(KAPPAS)))  # kd at k = lt at 3k
    frame = eq.data_equivalence(KAPPAS, lt, kd, n_boot=1000)
    inside = frame[frame["kappa"] <= 4.0 / 3]
    assert (inside["status"] == eq.INSIDE).all()
    assert inside["ratio"].to_numpy() == pytest.approx(3.0, rel=0.12)
    assert ((inside["ci_low"] < 3.0) & (3.0 < inside["ci_high"])).sum() >= len(inside) - 1
    assert (inside["ci_high"] / inside["ci_low"] < 1.6).all()
    beyond = frame[frame["kappa"] > 4.0 / 3]  # lt would need 6x or 12x: past the grid's 4
    assert (beyond["status"] == eq.BEYOND).all() and (beyond["ratio"] == np.inf).all()
    assert beyond["bound"].tolist() == [2.0, 1.0]
    assert "more than 2x" in eq.describe(next(beyond.itertuples()))
    assert eq.describe(next(inside.itertuples())).startswith("lt needs 3")


def test_without_noise_the_ratio_is_exact_and_the_interval_collapses():
    lt = np.tile(lt_curve(KAPPAS), (3, 1))
    kd = np.tile(lt_curve(2 * KAPPAS), (3, 1))
    frame = eq.data_equivalence(KAPPAS, lt, kd, n_boot=200).set_index("kappa")
    assert frame.loc[0.1, "ratio"] == pytest.approx(2.0)
    assert frame.loc[0.1, "kappa_lt"] == pytest.approx(0.2)
    assert frame.loc[0.1, ["ci_low", "ci_high"]].to_numpy(dtype=float) == pytest.approx([2.0, 2.0])


def test_kd_worse_than_lt_reads_below_one_or_below_the_grid():
    lt = np.tile(lt_curve(KAPPAS), (2, 1))
    kd = np.tile(lt_curve(KAPPAS / 2), (2, 1))  # kd at k = lt at k/2: lt needs half the data
    frame = eq.data_equivalence(KAPPAS, lt, kd, n_boot=0).set_index("kappa")
    assert frame.loc[0.02, "status"] == eq.BELOW and frame.loc[0.02, "bound"] == pytest.approx(1.0)
    assert frame.loc[1.0, "ratio"] == pytest.approx(0.5)
    assert "at most 1x" in eq.describe(next(frame.reset_index().itertuples()))


def test_lower_is_better_measures_flip_the_comparison():
    loss_lt = np.tile(2.0 - lt_curve(KAPPAS), (2, 1))  # a loss falling with kappa
    loss_kd = np.tile(2.0 - lt_curve(4 * KAPPAS), (2, 1))
    frame = eq.data_equivalence(KAPPAS, loss_lt, loss_kd, higher_is_better=False, n_boot=0).set_index("kappa")
    assert frame.loc[0.5, "ratio"] == pytest.approx(4.0)


def test_model_size_section_reports_the_equivalence_per_pair_and_tau(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(4):
        offset = rng.normal(0, 0.003)  # a seed effect shared by both arms, as a shared data draw would be
        for kappa in KAPPAS:
            rows.append(dict(objective="lt", tau=np.nan, kappa=kappa, seed=seed, test_acc=lt_curve(kappa) + offset))
            rows.append(dict(objective="kd", tau=4.0, kappa=kappa, seed=seed, test_acc=lt_curve(3 * kappa) + offset))
    table = pd.DataFrame(rows).assign(status="ok", teacher="cnn1d-64", student="cnn1d-4")
    section = model_size.section(table, n_boot=300, out_dir=tmp_path)
    frame = section.tables["equivalence"]
    assert set(frame["teacher"]) == {"cnn1d-64"} and (frame["tau"] == 4.0).all() and len(frame) == len(KAPPAS)
    assert frame.set_index("kappa").loc[0.1, "ratio"] == pytest.approx(3.0)
    text = "\n".join(section.blocks)
    assert "cnn1d-64>cnn1d-4, kd tau=4: data lt needs for kd's accuracy" in text
    assert "kappa    0.1: lt needs 3x the data (CI 3x to 3x)" in text
    assert "kappa      4: lt does not reach kd's result inside the grid: more than 1x" in text
    assert [p.name for p in section.figures] == ["data_equivalence.png"] and section.figures[0].exists()
