"""The report and the command line: what a user runs after a study, on good and bad tables."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.cli import main
from analysis.report import write_report
from analysis.synthetic import SyntheticPair, synthetic_study

ROOT = Path(__file__).resolve().parents[1]
N_BOOT = 200  # enough for the checks here; the default is 2000


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A four-pair study with 2 failed and 1 diverged trials, and its report."""
    results_dir = tmp_path_factory.mktemp("study")
    _, truth = synthetic_study(results_dir, n_seeds=8, noise_sd=0.01, seed_sd=0.01,
                               statuses={"failed": 2, "diverged": 1})
    return results_dir, truth, write_report(results_dir, n_boot=N_BOOT)


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_report_opens_with_a_paper_table_and_recovers_the_truth(study):
    results_dir, truth, result = study
    assert result.markdown_path == results_dir / "analysis" / "report.md"
    text = result.markdown_path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# ")
    summary = lines.index("## Summary")
    assert all(not line.startswith("## ") for line in lines[1:summary])  # the table comes first
    header = lines[summary + 2]
    for column in ("pair", "P_s / P_t", "teacher acc", "PI at min kappa", "kappa* [95% CI]", "beta"):
        assert column in header
    crossover = result.tables["crossover"].set_index("pair")
    for pair, k_star in truth["kappa_star"].items():
        assert abs(np.log(crossover.loc[pair, "kappa_star"] / k_star)) < 0.15
        assert pair in result.headline
    scaling = result.tables["size_scaling"].set_index("model").loc["ratio"]
    assert scaling["slope_low"] < truth["slope"] < scaling["slope_high"]
    fits = result.tables["fidelity_fits"]
    assert (abs(fits["beta"] - truth["beta"]) < 0.03).all()
    assert result.tables["bias_variance"]["identity_holds"].all()


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_failed_and_diverged_trials_are_excluded_and_counted(study):
    _, _, result = study
    text = result.markdown_path.read_text()
    assert "Excluded: failed: 2, diverged: 1." in text
    assert "RuntimeError: worker died" in text
    assert "excluded: failed: 2, diverged: 1" in result.headline
    assert result.tables["paired_by_seed"]["R_kd"].notna().all()


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_figures_and_tables_are_written_next_to_the_report(study):
    results_dir, _, result = study
    names = {path.name for path in result.figure_paths}
    assert names == {"error_vs_kappa.png", "gain_vs_kappa.png", "gain_vs_ratio.png", "kappa_star_vs_ratio.png",
                     "fidelity_gap.png", "bias_variance.png"}
    for path in result.figure_paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({path.name})" in result.markdown_path.read_text()
    assert (results_dir / "analysis" / "crossover.csv").exists()


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_headline_names_each_relation(study):
    _, _, result = study
    headline = result.headline
    assert "kappa* (PG = R(kd)/R(lt) crosses 1" in headline
    assert "over the students' seeds, one teacher per pair: another teacher draw" in headline  # one teacher each
    assert "size scaling" in headline and "b = " in headline
    assert "test of beta = 0.5" in headline
    assert "identity E||p-y||^2 = bias^2 + variance holds" in headline


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_a_small_study_reports_what_it_cannot_compute(tmp_path):
    # 1 pair, 2 kappas, 2 seeds: kappa* exists, the size scaling cannot.
    synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 1.0), n_seeds=2)
    result = write_report(tmp_path, out_dir=tmp_path / "elsewhere", n_boot=N_BOOT)
    assert result.markdown_path == tmp_path / "elsewhere" / "report.md"
    text = result.markdown_path.read_text()
    assert "needs kappa* inside the grid for at least 3 pairs" in text
    assert "warning: kappa* intervals rest on as few as 2 seeds" in result.headline
    table = pd.read_parquet(tmp_path / "results.parquet")
    table.loc[table["seed"] == 1, "teacher_id"] = "another teacher"  # a teacher per seed: not one teacher
    again = tmp_path / "per_seed"
    again.mkdir()
    table.to_parquet(again / "results.parquet")
    assert "bootstrap CI over seeds):" in write_report(again, out_dir=again / "out", n_boot=N_BOOT).headline
    assert "only 2 seeds: a bootstrap CI covers at most about 50%" in text  # in the crossover table


def test_one_seed_warns_and_gives_no_interval(tmp_path):
    synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), n_seeds=1)
    result = write_report(tmp_path, n_boot=N_BOOT, figures=False)
    assert "warning: one seed per configuration" in result.headline
    assert "one seed: no CI" in result.headline
    assert "bias-variance: not computed: no configuration has predictions for 2 or more seeds" in result.headline


def test_kd_helping_everywhere_is_said_not_extrapolated(tmp_path):
    synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 0.3, 1.0),
                    prefactor=50.0, predictions=False)
    result = write_report(tmp_path, n_boot=N_BOOT, figures=False)
    assert "kd helps across the whole grid (PG > 1 at every kappa): kappa* > max kappa = 1" in result.headline
    assert result.figure_paths == []


def test_test_error_metric_is_explicit(tmp_path):
    synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), predictions=False)
    accuracy = write_report(tmp_path, n_boot=N_BOOT, figures=False).tables["crossover"]
    error = write_report(tmp_path, metric="test_error", n_boot=N_BOOT, figures=False)
    assert "R = test error (1 - test accuracy) (lower is better)" in error.headline
    # kd stops helping at about the same kappa whichever way R is measured
    ratio = error.tables["crossover"]["kappa_star"].iloc[0] / accuracy["kappa_star"].iloc[0]
    assert 0.7 < ratio < 1.4


def bad_tables():
    table, _ = synthetic_study(pairs=(SyntheticPair("mlp-8", 1000),), n_seeds=2, predictions=False)
    return {
        "missing columns": (table.drop(columns=["kappa", "seed"]), "lacks column(s) kappa, seed"),
        "all failed": (table.assign(status="failed", error="RuntimeError: CUDA out of memory"),
                       "no trial ended ok: all 24 failed or diverged (failed: 24); first error: RuntimeError"),
        "empty": (table.iloc[:0], "has no rows"),
        "duplicates": (pd.concat([table, table.assign(trial_id=table["trial_id"] + "x", budget=5)]),
                       "they differ in budget"),
    }


@pytest.mark.parametrize("case", list(bad_tables()))
def test_bad_tables_give_one_line_and_exit_2(case, tmp_path, capsys):
    table, message = bad_tables()[case]
    table.to_parquet(tmp_path / "results.parquet")
    assert main([str(tmp_path), "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("analysis: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_no_lt_trials_is_a_report_with_a_reason(tmp_path):
    table, _ = synthetic_study(tmp_path, pairs=(SyntheticPair("mlp-8", 1000),), n_seeds=2)
    table[table["objective"] != "lt"].to_parquet(tmp_path / "results.parquet")
    result = write_report(tmp_path, n_boot=N_BOOT, figures=False)
    assert "kappa*: not computed: no kd/lt pairs: no usable lt trials (objectives present: kd)" in result.headline
    assert "increments: not computed" in result.markdown_path.read_text()


def test_missing_or_corrupt_results_are_clear(tmp_path, capsys):
    with pytest.raises(analysis.AnalysisError, match="no results table at .*results.parquet"):
        analysis.load_results(tmp_path / "nowhere")
    (tmp_path / "results.parquet").write_text("not parquet")
    with pytest.raises(analysis.AnalysisError, match="cannot read"):
        analysis.load_results(tmp_path)
    assert main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("analysis: error: no results table")


@pytest.mark.slow  # over 3 s: the fast tier stays under a minute
def test_python_m_analysis_end_to_end_without_torch_ray_or_mlflow(tmp_path):
    results_dir = tmp_path / "results"
    synthetic_study(results_dir, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 1.0), n_seeds=2)
    # One fresh interpreter (they cost seconds): the package's lazy attributes, `python -m analysis`
    # on a good and a missing directory, and which heavy modules got imported on the way.
    script = f"""
import runpy, sys
import analysis
assert callable(analysis.report.write_report) and callable(analysis.main)

def run(*argv):
    sys.argv = ["analysis", *argv]
    try:
        runpy.run_module("analysis", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        return exit.code
    return None

print("good rc:", run({str(results_dir)!r}, "--out", {str(tmp_path)!r}, "--n-boot", "50"))
print("bad rc:", run({str(tmp_path / "none")!r}))
print("heavy modules:", sorted({{"torch", "ray", "mlflow"}} & set(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert "good rc: 0" in done.stdout and "bad rc: 2" in done.stdout, done.stdout + done.stderr
    assert "heavy modules: []" in done.stdout
    assert "kappa* (PG = R(kd)/R(lt) crosses 1" in done.stdout
    assert done.stderr.startswith("analysis: error: no results table") and done.stderr.count("\n") == 1
    assert (tmp_path / "report.md").exists() and (tmp_path / "gain_vs_kappa.png").exists()


def test_results_on_a_uri_are_read_through_pyarrow(tmp_path, monkeypatch):
    # The study's storage may be s3://...; file:// takes the same code path without a network.
    results_dir = tmp_path / "mystudy"
    synthetic_study(results_dir, pairs=(SyntheticPair("mlp-8", 1000),), kappas=(0.1, 1.0), n_seeds=2)
    monkeypatch.chdir(tmp_path)
    result = write_report(f"file://{results_dir}", n_boot=N_BOOT, figures=False)
    assert result.markdown_path == tmp_path / "mystudy-analysis" / "report.md"  # written locally
    assert len(result.tables["bias_variance"]) == 4                           # predictions read too
    with pytest.raises(analysis.AnalysisError, match="no results table at file://"):
        analysis.load_results(f"file://{tmp_path}/nothing")
