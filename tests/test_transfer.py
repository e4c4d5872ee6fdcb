"""The transfer study (studies/transfer.py): its section on hand-made results, its bad input, its
--quick run end to end (slow)."""
import pandas as pd
import pytest

from analysis.sections import render, transfer
from kdscale.store import ResultsStore
from tests.scripts import assert_refused, call_script, load_script, run_script
from tests.test_pretrained import weights_file

GAIN = {0.1: 0.10, 0.5: 0.04, 1.0: -0.05}  # kd - lt by kappa, every seed


def hand_made(tmp_path) -> pd.DataFrame:
    store, rows = ResultsStore(str(tmp_path), "transfer"), []
    for kappa, gain in GAIN.items():
        for seed in (0, 1, 2):
            lt = 0.5 + 0.2 * kappa + 0.01 * seed
            for objective, acc in (("lt", lt), ("kd", lt + gain + 0.002 * seed)):
                rows.append({"trial_id": f"{objective}-{kappa}-{seed}", "status": "ok", "dataset": "mnist1d",
                             "n_teacher": 1000, "teacher": "cnn1d-32", "teacher_id": "t", "teacher_params": 8010,
                             "teacher_test_acc": 0.77, "student": "cnn1d-16", "student_params": 2000,
                             "kappa": kappa, "objective": objective, "tau": 4.0 if objective == "kd" else None,
                             "tau_squared": True if objective == "kd" else None,
                             "alpha": 0.0 if objective == "kd" else None, "seed": seed, "budget": "steps=10",
                             "test_acc": acc})
    return store.add_rows(rows)


@pytest.mark.slow  # a bootstrap and matplotlib: seconds, the fast tier stays near a minute
def test_the_section_on_hand_made_results(tmp_path):
    section = transfer.section(hand_made(tmp_path), tmp_path / "out", "trained on N = 4000 mnist1d samples",
                               source_acc=0.877, target="mnist1d, templates reversed", n_boot=200)
    gain = section.tables["gain"].set_index("kappa")
    for kappa, value in GAIN.items():
        assert gain.loc[kappa, "PI_mean"] == pytest.approx(value + 0.002)
        lt = [0.5 + 0.2 * kappa + 0.01 * seed for seed in (0, 1, 2)]
        assert gain.loc[kappa, "PG_mean"] == pytest.approx(sum((lt[s] + value + 0.002 * s) / lt[s] for s in (0, 1, 2)) / 3)
    assert gain["sign"].tolist() == ["above", "above", "below"]
    accuracy = section.tables["accuracy"].set_index(["arm", "kappa"])
    assert accuracy.loc[("lt", 1.0), "mean"] == pytest.approx(0.71) and accuracy.loc[("lt", 1.0), "n"] == 3
    star = section.tables["kappa_star"].iloc[0]
    assert 0.5 < star["kappa_star"] < 1.0
    text = render(section)
    assert "test accuracy there 0.8770" in text and "**0.7700** on the target (mnist1d, templates reversed)" in text
    assert "is above lt trained from scratch at the largest kappa (1: 0.710)" in text
    assert "kd tau=4 beats lt (95% CI of PI above 0) at kappa 0.1, 0.5 and loses (below 0) at 1" in text
    assert all(path.exists() for path in section.figures)


def test_the_default_recipe_is_lts_and_names_the_study(tmp_path):
    module = load_script("transfer")
    parse = module.build_parser().parse_args
    assert (parse([]).recipe, module.build_spec(parse([])).name) == ("lt", "transfer")
    fair = module.build_spec(parse(["--recipe", "fair", "--quick"]))
    assert fair.name == "transfer_quick_fair" and fair.recipe_policy == "fair"
    spec = module.build_spec(parse([]), weights_file(tmp_path / "w.safetensors", width=32))
    assert dict(spec.data.options) == {"templates": "reversed"} and spec.teachers()[0].weights_sha256
    assert module.source_teacher(parse([])).data.n_teacher == module.N_SOURCE


@pytest.mark.parametrize("argv, message", [
    (["--teacher-weights", "missing.safetensors"], "teacher.weights='missing.safetensors' is invalid: cannot be read"),
    (["--target-templates", "upside-down"], "data.options.templates='upside-down' is invalid"),
    (["--n-source", "0"], "data.n_teacher=0 is invalid"),
    (["--kappas", "0.01"], "kappa=0.01 is invalid with --recipe lt"),
])
def test_bad_input_is_one_line_before_compute(tmp_path, argv, message):
    assert_refused(call_script("transfer", tmp_path, *argv), message, tmp_path)


def test_a_backbone_that_does_not_fit_is_refused_before_compute(tmp_path):
    path = weights_file(tmp_path / "w8.safetensors", width=8)
    done = call_script("transfer", tmp_path, "--quick", "--teacher-weights", path)
    assert_refused(done, "has other shapes: body.0.weight (8, 1, 5) (the model's (32, 1, 5))", tmp_path)


@pytest.mark.slow
def test_transfer_quick_end_to_end(tmp_path, ray_address):
    done = run_script("transfer", tmp_path, "--quick", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Transfer from a pretrained teacher (paper Table 1)" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "transfer_quick").table()
    assert len(table) == 12 and set(table["status"]) == {"ok"}  # 2 kappas x (lt, kd at tau 1 and 4) x 2 seeds
    assert table["teacher_test_acc"].nunique() == 1 and table["teacher_test_acc"].iloc[0] > 0.5
    analysis_dir = tmp_path / "results" / "transfer_quick" / "analysis"
    assert len(pd.read_csv(analysis_dir / "transfer_gain.csv")) == 4  # 2 kd arms x 2 kappas
    assert (analysis_dir / "transfer_accuracy.png").exists() and (analysis_dir / "report.md").exists()
