"""Fast unit tests of the feature_alignment and model_size sections on small hand-made tables."""
import math

import numpy as np
import pandas as pd
import pytest

from analysis.sections import Table, feature_alignment, model_size, render


def fa_row(trial_id, kappa, objective, seed, cka, acc, status="ok"):
    return dict(trial_id=trial_id, status=status, kappa=kappa, objective=objective, seed=seed, cka_teacher=cka,
                fa_teacher=0.5, ntk_teacher=0.4 if objective == "kd" else None, probe_acc=0.6, test_acc=acc)


@pytest.fixture
def fa_study(tmp_path):
    """kappa 0.1: kd and lt, 2 seeds; 0.5: kd only; 1: one seed each; and a failed row (ignored).
    Features (4 test samples, 1 feature): x and 2x (CKA 1), y orthogonal to x (0), x + y (0.5 to both)."""
    table = pd.DataFrame([
        fa_row("a", 0.1, "kd", 0, 0.9, 0.7), fa_row("b", 0.1, "kd", 1, 0.8, 0.6),
        fa_row("c", 0.1, "lt", 0, 0.6, 0.5), fa_row("d", 0.1, "lt", 1, 0.7, 0.5),
        fa_row("e", 0.5, "kd", 0, 0.9, 0.7),
        fa_row("f", 1.0, "kd", 0, 0.95, 0.8), fa_row("g", 1.0, "lt", 0, 0.5, 0.6),
        fa_row("h", 1.0, "lt", 1, 0.0, 0.0, status="failed")])
    x, y = np.array([[1.0], [1.0], [-1.0], [-1.0]]), np.array([[1.0], [-1.0], [1.0], [-1.0]])
    (tmp_path / "study" / "features").mkdir(parents=True)
    for trial_id, features in dict(a=x, b=2 * x, c=y, d=x + y, f=x, g=x + y).items():
        np.save(tmp_path / "study" / "features" / f"{trial_id}.npy", features.astype(np.float32))
    return table, str(tmp_path / "study"), tmp_path / "figures"


def test_feature_alignment_section_numbers_text_and_figures(fa_study):
    table, results_dir, out_dir = fa_study
    section = feature_alignment.section(table, results_dir, out_dir)
    assert section.name == "feature_alignment"
    per = section.tables["per_kappa"].set_index(["kappa", "objective"])
    assert per.loc[(0.1, "kd"), "cka_teacher_mean"] == pytest.approx(0.85)
    assert per.loc[(0.1, "kd"), "cka_teacher_sd"] == pytest.approx(math.sqrt(0.005))
    assert per.loc[(0.1, "lt"), "test_acc_mean"] == pytest.approx(0.5)
    assert per.loc[(1.0, "lt"), "n"] == 1 and math.isnan(per.loc[(1.0, "lt"), "cka_teacher_sd"])
    assert (0.5, "lt") not in per.index and "starts" not in section.tables
    gain = section.tables["cka_gain"].set_index("kappa")
    assert gain.loc[0.1, "mean"] == pytest.approx(0.2) and gain.loc[0.1, "se"] == pytest.approx(0.1)
    assert gain.loc[0.5, "n"] == 0 and gain.loc[1.0, "mean"] == pytest.approx(0.45) and math.isnan(gain.loc[1.0, "se"])
    gains = section.tables["gains"].set_index(["kappa", "seed"])
    assert gains["acc_gain"].to_dict() == pytest.approx({(0.1, 0): 0.2, (0.1, 1): 0.1, (1.0, 0): 0.2})
    corr = section.tables["correlation"].iloc[0]  # r of (0.3, 0.1, 0.45) with (0.2, 0.1, 0.2); n < 4: no CI
    assert corr["r"] == pytest.approx(0.0183333 / math.sqrt(0.0616667 * 0.0066667), abs=1e-5) and corr["n"] == 3
    assert math.isnan(corr["low"]) and math.isnan(corr["high"])
    pairwise = section.tables["pairwise"].set_index("kappa")
    assert pairwise.loc[0.1].to_dict() == pytest.approx({"kd_kd": 1.0, "lt_lt": 0.5, "kd_lt": 0.25})
    assert math.isnan(pairwise.loc[1.0, "kd_kd"]) and pairwise.loc[1.0, "kd_lt"] == pytest.approx(0.5)
    cells = section.tables["pairwise_cka"]
    assert len(cells) == 16 + 4 and list(cells[cells["kappa"] == 0.1]["a"].unique()) == ["kd s0", "kd s1", "lt s0", "lt s1"]

    text = render(section)
    assert [b for b in section.blocks if isinstance(b, Table)] and text.startswith("## Feature alignment to the teacher\n")
    assert ("| 0.1 | 0.850 ± 0.071 | 0.650 ± 0.071 | +0.200 ± 0.100 | 0.500 ± 0.000 | 0.500 ± 0.000 | "
            "0.400 ± 0.000 | - | 0.600 ± 0.000 | 0.600 ± 0.000 | 0.650 ± 0.071 | 0.500 ± 0.000 |") in text
    assert ("| 0.5 | 0.900 ± 0.000 | - | - | 0.500 ± 0.000 | - | 0.400 ± 0.000 | - | 0.600 ± 0.000 | - | "
            "0.700 ± 0.000 | - |") in text
    assert "| 1 | 0.950 ± 0.000 | 0.500 ± 0.000 | +0.450 ± nan |" in text
    assert "r = 0.904, 95% CI [nan, nan] (Fisher z), n = 3." in text
    assert "Pairwise CKA at kappa = 0.1: kd-kd 1.000, lt-lt 0.500, kd-lt 0.250" in text
    assert "Pairwise CKA at kappa = 1: kd-kd nan, lt-lt nan, kd-lt 0.500" in text
    assert [p.name for p in section.figures] == ["cka_vs_kappa.png", "cka_pairwise.png", "cka_gain_vs_pi.png",
                                             "feature_spectrum.png"]
    assert all(p.exists() for p in section.figures)


def test_feature_alignment_section_reports_where_students_started_and_ended(fa_study):
    table, results_dir, out_dir = fa_study
    assert feature_alignment.starts(table) is None  # no init column (an older table): no starts table
    independent = table.assign(init="independent", init_scale=0.0, init_distance=1.4, end_distance=1.5)
    assert feature_alignment.starts(independent) is None
    ends = dict(a=0.2, b=0.4, c=0.5, d=0.7, e=0.3, f=0.6, g=0.8, h=9.9)  # h failed: left out
    started = table.assign(init="teacher", init_scale=0.0, init_distance=0.0, end_distance=table["trial_id"].map(ends))
    section = feature_alignment.section(started, results_dir, out_dir)
    starts = section.tables["starts"].set_index(["kappa", "objective", "start"])
    assert list(starts.index) == [(0.1, "kd", "teacher"), (0.1, "lt", "teacher"), (0.5, "kd", "teacher"),
                                  (1.0, "kd", "teacher"), (1.0, "lt", "teacher")]
    assert starts.loc[(0.1, "kd", "teacher")].to_dict() == pytest.approx(dict(
        n=2, init_distance_mean=0.0, init_distance_sd=0.0, end_distance_mean=0.3, end_distance_sd=math.sqrt(0.02),
        fa_teacher_mean=0.5, fa_teacher_sd=0.0, cka_teacher_mean=0.85, cka_teacher_sd=math.sqrt(0.005)))
    assert starts.loc[(0.1, "lt", "teacher"), "end_distance_mean"] == pytest.approx(0.6)
    assert starts.loc[(1.0, "lt", "teacher"), "n"] == 1 and math.isnan(starts.loc[(1.0, "lt", "teacher"),
                                                                               "end_distance_sd"])
    text = render(section)
    assert "Where the students started and ended" in text
    assert "| kappa | objective | start | n | start distance | end distance | FA | CKA |" in text
    assert "| 0.1 | kd | teacher | 2 | 0.000 ± 0.000 | 0.300 ± 0.141 | 0.500 ± 0.000 | 0.850 ± 0.071 |" in text
    assert "| 1 | lt | teacher | 1 | 0.000 ± 0.000 | 0.800 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.000 |" in text
    near = started.assign(init_scale=0.1, init=["near"] * 7 + ["teacher"])  # the label carries near's scale
    assert set(feature_alignment.starts(near)["start"]) == {"near 0.1"}


def test_feature_alignment_section_names_a_missing_features_file(fa_study, tmp_path):
    table, results_dir, out_dir = fa_study
    (tmp_path / "study" / "features" / "a.npy").unlink()
    with pytest.raises(FileNotFoundError, match="features/a.npy"):
        feature_alignment.section(table, results_dir, out_dir)


def test_linear_cka_matches_the_engine_in_both_forms():
    from kdscale.representations import linear_cka

    g = np.random.default_rng(0)
    for n, dx, dy in ((200, 8, 5), (10, 30, 12)):  # feature form, then the kernel form (n < d)
        x, y = g.standard_normal((n, dx)), g.standard_normal((n, dy))
        assert feature_alignment.linear_cka(x, y) == pytest.approx(linear_cka(x, y), abs=1e-12)
    assert feature_alignment.linear_cka(x, x @ np.linalg.qr(g.standard_normal((dx, dx)))[0]) == pytest.approx(1.0)
    assert math.isnan(feature_alignment.linear_cka(np.ones((5, 2)), x[:5]))


def ms_row(teacher, student, objective, tau, kappa, seed, acc, status="ok"):
    return dict(teacher=teacher, student=student, objective=objective, tau=tau, kappa=kappa, seed=seed,
                test_acc=acc, status=status)


def test_model_size_gain_tables_numbers_and_fixed_width_text():
    table = pd.DataFrame([
        ms_row("t64", "s4", "lt", math.nan, 0.1, 0, 0.5), ms_row("t64", "s4", "lt", math.nan, 0.1, 1, 0.4),
        ms_row("t64", "s4", "kd", 4.0, 0.1, 0, 0.6), ms_row("t64", "s4", "kd", 4.0, 0.1, 1, 0.6),
        ms_row("t64", "s4", "kd", 1.0, 0.1, 0, 0.45), ms_row("t64", "s4", "kd", 1.0, 0.1, 1, 0.9, status="failed"),
        ms_row("t64", "s4", "lt", math.nan, 2.0, 0, 0.8), ms_row("t64", "s4", "kd", 4.0, 2.0, 0, 0.8),
        ms_row("t16", "s16", "lt", math.nan, 0.5, 0, 0.5), ms_row("t16", "s16", "kd", 4.0, 0.5, 1, 0.7),  # no pair
        ms_row("t16", "s64", "lt", math.nan, 0.5, 0, 0.5), ms_row("t16", "s64", "kd", 4.0, 0.5, 0, 0.7)])
    section = model_size.section(table)
    assert section.name == "model_size" and section.figures == []
    gains = section.tables["gains"]
    assert list(gains.columns) == ["teacher", "student", "tau", "kappa", "lt", "kd", "pg", "pg_sd", "seeds"]
    assert gains[["teacher", "student", "tau", "kappa"]].values.tolist() == [
        ["t64", "s4", 1.0, 0.1], ["t64", "s4", 4.0, 0.1], ["t64", "s4", 4.0, 2.0], ["t16", "s64", 4.0, 0.5]]
    row = gains.iloc[1]  # PG 0.6/0.5 = 1.2 and 0.6/0.4 = 1.5
    assert (row["lt"], row["kd"], row["pg"], row["seeds"]) == pytest.approx((0.45, 0.6, 1.35, 2))
    assert row["pg_sd"] == pytest.approx(0.15 * math.sqrt(2))
    assert gains.iloc[0]["pg"] == pytest.approx(0.9) and math.isnan(gains.iloc[0]["pg_sd"])
    assert render(section) == (
        "t64>s4, kd tau=1:\n"
        "   kappa   acc(lt)   acc(kd)       PG   sd(PG)  seeds\n"
        "     0.1    0.5000    0.4500    0.900      nan      1\n"
        "\n"
        "t64>s4, kd tau=4:\n"
        "   kappa   acc(lt)   acc(kd)       PG   sd(PG)  seeds\n"
        "     0.1    0.4500    0.6000    1.350    0.212      2\n"
        "       2    0.8000    0.8000    1.000      nan      1\n"
        "\n"
        "t16>s64, kd tau=4:\n"
        "   kappa   acc(lt)   acc(kd)       PG   sd(PG)  seeds\n"
        "     0.5    0.5000    0.7000    1.400      nan      1\n"
        "\n"  # kd's 0.6 at kappa 0.1 is lt's at 0.1 x 20^(0.15 / 0.35) = 0.361 (log-linear between 0.45 and 0.8)
        "t64>s4, kd tau=4: data lt needs for kd's accuracy (kappa_lt / kappa; bootstrap CI over 2 seeds):\n"
        "  kappa    0.1: lt needs 3.61x the data (CI 2.71x to beyond the grid)\n"
        "  kappa      2: lt needs 1x the data (CI 1x to 1x)\n")


def test_model_size_gain_tables_of_no_finished_trial_are_empty():
    table = pd.DataFrame([ms_row("t", "s", "lt", math.nan, 0.1, 0, 0.5, status="failed")])
    section = model_size.section(table)
    assert render(section) == "\n" and section.tables["gains"].empty
