"""Every shipped study runs end to end at its --quick size (a fresh process, real Ray and MLflow)."""
import subprocess
import sys

import pandas as pd
import pytest

from analysis.sections import model_size, render
from kdscale.store import ResultsStore
from kdscale.tracking import study_runs
from tests.scripts import assert_refused, call_script, run_script


@pytest.mark.slow
def test_model_size_quick_end_to_end(tmp_path, ray_address):
    done = run_script("model_size", tmp_path, "--quick")  # the README's way: the script starts its own Ray
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cnn1d-64>cnn1d-4, kd tau=4:" in done.stdout and "kappa* (PG" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "model_size_quick").table()
    assert len(table) == 48 and set(table["status"]) == {"ok"}
    gains = model_size.section(table)  # printed first, as fixed-width text: 3 pairs x 4 kappas
    assert done.stdout.startswith(render(gains)) and len(gains.tables["gains"]) == 12
    assert len(gains.tables["equivalence"]) == 12 and "data lt needs for kd's accuracy" in done.stdout
    report = tmp_path / "results" / "model_size_quick" / "analysis" / "report.md"
    assert report.read_text().splitlines()[0].startswith("# ") and "| pair |" in report.read_text()
    assert "## Gains and data equivalence per pair" in report.read_text()
    assert (report.parent / "model_size_equivalence.csv").exists()
    runs = study_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "model_size_quick")
    assert len(runs) == 48 and {r["status"] for r in runs} == {"FINISHED"} and len({r["parent"] for r in runs}) == 1
    # offline analysis of the same results through the kdscale command
    analyzed = subprocess.run([sys.executable, "-m", "kdscale.cli", "analyze", str(tmp_path / "results" / "model_size_quick"),
                               "--out", str(tmp_path / "offline"), "--n-boot", "200", "--no-figures"],
                              capture_output=True, text=True, timeout=120)
    assert analyzed.returncode == 0, analyzed.stderr
    assert (tmp_path / "offline" / "report.md").exists()
    # the whole study again: nothing is trained twice
    again = run_script("model_size", tmp_path, "--quick", "--no-analysis", address=ray_address)
    assert again.returncode == 0 and "48 already finished, 0 to train" in again.stderr


@pytest.mark.slow
def test_a_vit_student_of_a_cnn_teacher_on_digits_end_to_end(tmp_path, ray_address):
    pair = "cnn2d:width=4>vit:width=8,depth=1,heads=2,patch=2"
    done = run_script("model_size", tmp_path, "--quick", "--dataset", "digits", "--pairs", pair, "--kappas", "0.5", "1",
                      "--recipe", "fixed", "--student-steps", "100", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    table = ResultsStore(str(tmp_path / "results"), "model_size_quick_fixed").table()
    assert len(table) == 8 and set(table["status"]) == {"ok"} and set(table["student"]) == {"vit-8-depth=1-heads=2-patch=2"}
    assert table["student_params"].nunique() == 1 and (table["pack_size"] > 1).any()  # ViT students train packed
    assert "cnn2d-4>vit-8-depth=1-heads=2-patch=2, kd tau=4: data lt needs for kd's accuracy" in done.stdout
    analysis_dir = tmp_path / "results" / "model_size_quick_fixed" / "analysis"
    assert "## Gains and data equivalence per pair" in (analysis_dir / "report.md").read_text()
    assert (analysis_dir / "data_equivalence.png").exists() and (analysis_dir / "model_size_equivalence.csv").exists()


def test_vit_flag_swaps_the_pairs_and_leaves_the_default_grid_alone():
    from tests.scripts import load_script

    script = load_script("model_size")
    vit = script.build_spec(script.build_parser().parse_args(["--dataset", "digits", "--vit", "--grid"]))
    assert vit.name == "model_size_vit" and {str(s) for _, s in vit.pairs} == {
        "vit:width=16,depth=2,patch=2", "vit:width=64,depth=4,patch=2"}
    assert {str(t) for t, _ in vit.pairs} == {"cnn2d:width=16"}  # the digits default pairs' teacher: shared
    from kdscale.search import ADAM_LRS, LRS

    assert (vit.recipe.optimizer, vit.search.lrs, vit.teacher_recipe.optimizer) == ("adamw", ADAM_LRS, "sgd")
    sgd = script.build_spec(script.build_parser().parse_args(["--dataset", "digits", "--vit", "--grid",
                                                              "--student-recipe", "digits-student"]))
    assert (sgd.recipe.optimizer, sgd.search.lrs) == ("sgd", LRS)  # the earlier ViT study's recipe
    plain = script.build_spec(script.build_parser().parse_args(["--dataset", "digits", "--grid"]))
    assert plain.name == "model_size" and [f"{t}>{s}" for t, s in plain.pairs] == list(script.DIGITS_PAIRS)


def test_teacher_per_seed_gives_each_seed_its_own_trained_teacher_and_searches_on_the_first():
    from tests.scripts import load_script

    script = load_script("model_size")
    spec = script.build_spec(script.build_parser().parse_args(["--teacher-per-seed", "--seeds", "3", "--grid"]))
    assert spec.name == "model_size_teachers" and spec.recipe_policy == "fair"
    chosen = {search.id: spec.recipe for search in spec.searches()}  # as if every search had chosen the base
    kd = [t for t in spec.trials(chosen) if t.objective.name == "kd"]
    by_seed = {}
    for trial in kd:
        by_seed.setdefault((trial.teacher.model, trial.seed), set()).add(trial.teacher.id)
        assert trial.teacher.seed == 1000 + trial.seed and not trial.teacher.untrained
    assert all(len(ids) == 1 for ids in by_seed.values())  # one teacher per (model, seed) ...
    assert len({t.teacher.id for t in kd if t.seed == 0} & {t.teacher.id for t in kd if t.seed == 1}) == 0  # ... each its own
    searched = {s.teacher.id for s in spec.searches() if s.teacher is not None}
    assert searched == {spec.teacher(model, 0).id for model, _ in spec.pairs} and all(
        spec.teacher(model, 0).seed == 1000 for model, _ in spec.pairs)  # the first seed's teacher
    assert {t.id for t in spec.teachers()} >= {t.teacher.id for t in kd}
    plain = script.build_spec(script.build_parser().parse_args(["--grid"]))
    trials = plain.trials({search.id: plain.recipe for search in plain.searches()})
    assert plain.name == "model_size" and {t.teacher.seed for t in trials} == {0}


@pytest.mark.parametrize("argv, message", [
    (["--kappas", "0.1", "-1"], "trial.kappa=-1.0 is invalid"),
    (["--taus", "4", "0"], "tau=0.0 is invalid"),
    (["--seeds", "0"], "--seeds 0 is invalid: must be an integer >= 1"),
    (["--pairs", "cnn1d:width=8"], "write TEACHER>STUDENT"),
    (["--dataset", "digits", "--kappas", "3"], "maximum kappa"),
    (["--adaptive", "--grid"], "--adaptive and --grid are exclusive"),
    (["--adaptive", "--quick"], "--adaptive and --quick are exclusive"),
])
def test_model_size_bad_input_is_one_line_before_compute(tmp_path, argv, message):
    assert_refused(call_script("model_size", tmp_path, *argv), message, tmp_path)


def test_model_size_unknown_flag_in_a_fresh_process(tmp_path):
    done = run_script("model_size", tmp_path, "--kapas", "0.1", timeout=60)
    assert done.returncode == 2 and "unrecognized arguments: --kapas" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("model_size.py: error: ")


@pytest.mark.slow
def test_feature_alignment_quick_end_to_end(tmp_path, ray_address):
    done = run_script("feature_alignment", tmp_path, "--quick", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Feature alignment to the teacher" in done.stdout and "Correlation of the CKA gain" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "feature_alignment_quick").table()
    assert len(table) == 8 and table["cka_teacher"].between(0, 1).all() and table["probe_acc"].notna().all()
    analysis_dir = tmp_path / "results" / "feature_alignment_quick" / "analysis"
    assert (analysis_dir / "cka_pairwise.png").exists()
    assert "## Feature alignment to the teacher" in (analysis_dir / "report.md").read_text()
    per_kappa = pd.read_csv(analysis_dir / "feature_alignment_per_kappa.csv")  # the section's numbers, as CSV
    assert len(per_kappa) == 4 and per_kappa["cka_teacher_mean"].between(0, 1).all() and (per_kappa["n"] == 2).all()


def test_grid_flags_say_their_defaults_and_resolve_quick_and_given_values():
    from kdscale.studyargs import Grid, StudyParser

    grid = Grid("demo", kappas=(0.02, 0.5, 4.0), quick=dict(pairs=("a>b",), kappas=(0.5,), seeds=2, samples=3),
                pairs=("a>b", "c>d"))
    parser = StudyParser(prog="demo")
    grid.add_flags(parser)
    text = " ".join(parser.format_help().split())
    assert "smoke size: 1 pair, 1 kappa, 2 seeds, 3 samples, short runs" in text
    assert "(default demo, or demo_quick)" in text and "(default a>b c>d)" in text
    assert "(default 0.02 0.5 4)" in text and "number of seeds (default 3)" in text
    default, quick = parser.parse_args([]), parser.parse_args(["--quick"])
    assert (grid.study_name(default), grid.kappa_values(default), grid.seed_values(default),
            grid.pair_values(default)) == ("demo", (0.02, 0.5, 4.0), (0, 1, 2), ("a>b", "c>d"))
    assert (grid.study_name(quick), grid.kappa_values(quick), grid.seed_values(quick), grid.pair_values(quick),
            grid.get(quick, "samples", 16), grid.get(default, "samples", 16)) == (
        "demo_quick", (0.5,), (0, 1), ("a>b",), 3, 16)
    given = parser.parse_args(["--quick", "--name", "x", "--kappas", "1", "2", "--seeds", "4", "--pairs", "e>f"])
    assert (grid.study_name(given), grid.kappa_values(given), grid.seed_values(given), grid.pair_values(given)) == (
        "x", (1.0, 2.0), (0, 1, 2, 3), ("e>f",))
    one = Grid("solo", kappas=(1.0,), pair="t>s")
    parser = StudyParser(prog="solo")
    one.add_flags(parser)
    assert one.pair_values(parser.parse_args(["--pair", "u>v"])) == ("u>v",) and "--pairs" not in parser.format_help()
