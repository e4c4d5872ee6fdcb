"""`kdscale tune`, `--recipe tuned-lt` and studies/fair_recipe.py: the validation split, the search
(never the test set), the tuned file's round trip into a study, bad input, the --quick study. The
section's numbers: tests/test_sections_fair_recipe.py."""
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdscale import cli, engine, tuned as tuning
from kdscale.data import subsets
from kdscale.config import DataSpec, ModelSpec, RecipeSpec, to_dict
from kdscale.data import DATASETS, student_indices
from kdscale.data.mnist1d import MNIST1D
from kdscale.errors import SpecError
from kdscale.study import StudySpec
from kdscale.tracking import tuning_runs
from tests.scripts import assert_refused, call_script, run_script


class PoisonedTest:
    """MNIST-1D whose test inputs are NaN and test labels shuffled: a search that read the test set
    would choose differently (or see NaN everywhere)."""
    info = MNIST1D.info

    @staticmethod
    def load(spec, n_pool):
        x_pool, y_pool, x_test, y_test = MNIST1D.load(spec, n_pool)
        return x_pool, y_pool, np.full_like(x_test, np.nan), np.random.default_rng(0).permutation(y_test)


# --- the validation split, by hand ---------------------------------------------------------------


@pytest.mark.parametrize("counts, n_val, expected", [
    ([6, 3, 1], 3, [2, 1, 0]),  # quotas 1.8, 0.9, 0.3: floors 1, 0, 0, then the remainders .9, .8; never a last sample
    ([18, 2], 2, [1, 1]),  # quotas 1.8, 0.2 give 2, 0; the class of 2 gets one from the class of 18
    ([8] * 10, 16, [2] * 6 + [1] * 4),  # 1.6 each: one each, six more to the lower classes (equal remainders)
    ([1, 1, 1, 5], 2, [0, 0, 0, 2]),  # single-sample classes keep their sample for fitting
])
def test_validation_counts_by_hand(counts, n_val, expected):
    assert subsets.validation_counts(counts, n_val).tolist() == expected


def test_validation_counts_refuse_an_impossible_split():
    with pytest.raises(ValueError, match="keep one of each class"):
        subsets.validation_counts([1, 1], 1)


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = np.array([0] * 40 + [1] * 30 + [2] * 20 + [3] * 10)
    fit, val = subsets.validation_split(labels, 0.2, seed=3)
    assert len(val) == 20 and len(fit) == 80 and not set(fit) & set(val) and sorted([*fit, *val]) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [8, 6, 4, 2]  # exactly 20% of each class
    again, other = subsets.validation_split(labels, 0.2, seed=3)[1], subsets.validation_split(labels, 0.2, seed=4)[1]
    assert again.tolist() == val.tolist() and other.tolist() != val.tolist()


@pytest.mark.parametrize("n_train", [80, 400, 6000])  # kappa 0.02, 0.1 and 1.5 of N = 4000
def test_split_is_carved_from_the_students_own_samples(n_train):
    labels = np.random.default_rng(1).integers(0, 10, size=8000)
    fit, val = subsets.split_for(labels, 4000, n_train, seed=2, val_fraction=0.2)
    own = student_indices(labels, 4000, n_train, 2)
    assert set(fit) | set(val) == set(own) and not set(fit) & set(val)
    assert len(val) == round(0.2 * n_train) and set(labels[val]) == set(range(10))  # every class held out


def test_tuned_recipe_and_key():
    base = RecipeSpec(lr=0.02, weight_decay=5e-4, steps=1500, batch_size=128, momentum=0.9)
    recipe = tuning.tuned_recipe(base, {"lr": 0.1, "weight_decay": 1e-5, "steps": 500})
    assert recipe == RecipeSpec(lr=0.1, weight_decay=1e-5, steps=500, batch_size=128, momentum=0.9)
    data, student = DataSpec(), ModelSpec.parse("cnn1d:width=16")
    key = tuning.tuning_key(data, student, base)
    assert key.startswith("mnist1d-N4000-cnn1d-16-")
    assert len({key, tuning.tuning_key(replace(data, n_teacher=2000), student, base),
                tuning.tuning_key(data, ModelSpec.parse("cnn1d:width=4"), base),
                tuning.tuning_key(data, student, replace(base, steps=500))}) == 4


def test_a_hand_written_tuned_file_round_trips_into_recipe_overrides(tmp_path):
    data, student = DataSpec(), ModelSpec.parse("cnn1d:width=16")
    base = tuning.base_recipe("mnist1d")
    at_small = tuning.tuned_recipe(base, {"lr": 0.05, "weight_decay": 1e-4, "steps": 3000})
    document = {"kappas": {"0.1": {"recipe": to_dict(at_small)}}}
    tuning._write_tuned(str(tmp_path), tuning.tuning_key(data, student, base), document)
    overrides = tuning.recipe_overrides(str(tmp_path), data, [student], [0.1], base)
    assert overrides == (("cnn1d-16", 0.1, at_small),)
    study = StudySpec("s", data, ((ModelSpec.parse("cnn1d:width=16"), student),), kappas=(0.1,), taus=(4.0,),
                      seeds=(0,), recipe=base, recipe_overrides=overrides)
    assert {t.recipe for t in study.trials()} == {at_small}  # lt and kd alike
    with pytest.raises(SpecError) as missing:
        tuning.recipe_overrides(str(tmp_path), data, [student], [0.1, 0.5], base, quick=False)
    message = str(missing.value)
    assert "cnn1d-16 at kappa 0.5" in message and "\n" not in message
    assert message.endswith(f"run first: kdscale tune --dataset mnist1d --n-teacher 4000 --student cnn1d:width=16 "
                            f"--kappas 0.5 --storage {tmp_path}")


# --- the search: deterministic, and blind to the test set ---------------------------------------


@pytest.mark.slow
def test_the_search_never_reads_the_test_set(tmp_path, monkeypatch):
    monkeypatch.setitem(DATASETS._entries, "mnist1d-poisoned-test", PoisonedTest)  # this test only
    base = replace(tuning.base_recipe("mnist1d"), steps=60)  # the base (lr 0.02, wd 5e-4, 60 steps) is sample 1
    space = tuning.SearchSpace(steps=(30, 60))
    found = {}
    with engine.ray_session():
        for name in ("mnist1d", "mnist1d-poisoned-test"):
            spec = tuning.TuneSpec(DataSpec(name=name), ModelSpec.parse("cnn1d:width=4"), base, kappas=(0.05,),
                                   samples=3, seeds=2, space=space)
            lines = []
            result = engine.run_tuning(spec, storage=str(tmp_path / "results"),
                                       tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", log=lines.append)
            assert result.searched == [0.05] and sum("] lr " in line for line in lines) == 3  # a line per sample
            found[name] = result.entries[0.05]
    clean, poisoned = found["mnist1d"], found["mnist1d-poisoned-test"]
    assert clean["settings"]["evaluate_base"] and clean["samples"][0]["lr"] == 0.02 and clean["samples"][0]["steps"] == 60
    assert [(s["lr"], s["weight_decay"], s["steps"], s["val_acc"]) for s in clean["samples"]] == \
        [(s["lr"], s["weight_decay"], s["steps"], s["val_acc"]) for s in poisoned["samples"]]
    assert clean["best"] == poisoned["best"] and clean["recipe"] == poisoned["recipe"]
    assert len(clean["samples"]) == 3 and all(0 < s["val_acc"] <= 1 and len(s["val_acc_by_seed"]) == 2
                                              for s in clean["samples"])
    assert (clean["n_train"], clean["n_val"], clean["n_fit"]) == (200, 40, 160)
    # the tuned file holds both, and a rerun reuses them without starting anything
    spec = tuning.TuneSpec(DataSpec(), ModelSpec.parse("cnn1d:width=4"), base, kappas=(0.05,), samples=3, seeds=2,
                           space=space)
    stored = json.loads(Path(tuning.tuned_path(str(tmp_path / "results"), spec.key)).read_text())
    assert stored["kappas"]["0.05"]["samples"] == clean["samples"]
    again = engine.run_tuning(spec, storage=str(tmp_path / "results"), log=lambda line: None)
    assert again.searched == [] and again.reused == [0.05] and again.entries[0.05] == clean
    overrides = tuning.recipe_overrides(str(tmp_path / "results"), DataSpec(), [spec.student], [0.05], base)
    assert overrides[0][2] == tuning.tuned_recipe(base, clean["best"]) == RecipeSpec(**{
        **clean["recipe"], "milestones": tuple(clean["recipe"]["milestones"])})
    runs = tuning_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 2 and {r["kappa"] for r in runs} == {0.05} and len({r["parent"] for r in runs}) == 2


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--student", "transformer:width=8"], "student: model.family: unknown 'transformer'"),
    (["--kappas", "0"], "tune.kappa=0.0 is invalid"),
    (["--kappas", "0.1", "-1"], "tune.kappa=-1.0 is invalid"),
    (["--samples", "0"], "tune.samples=0 is invalid: must be an integer >= 1"),
    (["--seeds", "0"], "tune.seeds=0 is invalid"),
    (["--val-fraction", "1"], "tune.val_fraction=1.0 is invalid"),
    (["--kappas", "0.002"], "tune.kappa=0.002 is invalid: M = round(kappa * N) = 8 samples"),
    (["--steps-choices", "0"], "space.steps=0 is invalid"),
    (["--lr-range", "0.1", "0.01"], "space.lr[1]=0.01 is invalid"),
    (["--dataset", "digits", "--n-teacher", "500", "--kappas", "5"], "maximum kappa is 2.874"),
])
def test_tune_bad_input_is_one_line_before_compute(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(engine.search, "_search", lambda *a, **k: pytest.fail("searched on bad input"))
    defaults = {"--student": "cnn1d:width=16", "--kappas": "0.1"}
    argv = [*argv, *[w for flag, value in defaults.items() if flag not in argv for w in (flag, value)]]
    code = cli.main(["tune", *argv, "--storage", str(tmp_path / "results"),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("kdscale: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results" / "_tuned").exists()


def test_tuned_lt_without_a_tuning_is_one_line_naming_the_command(tmp_path):
    done = call_script("model_size", tmp_path, "--quick", "--recipe", "tuned-lt", "--pairs",
                       "cnn1d:width=16>cnn1d:width=16", "--kappas", "0.05", "1")
    assert_refused(done, "run first: kdscale tune", tmp_path)
    assert done.stderr.strip().endswith(
        "run first: kdscale tune --dataset mnist1d --n-teacher 4000 --student cnn1d:width=16 --kappas 0.05 1 --quick "
        f"--storage {tmp_path / 'results'}")


def test_fair_recipe_bad_input_is_one_line(tmp_path):
    for argv, message in ((["--samples", "0"], "tune.samples=0 is invalid"), (["--seeds", "0"], "study.seeds is empty"),
                          (["--tau", "0"], "tau=0.0 is invalid"), (["--tune-seeds", "0"], "tune.seeds=0 is invalid")):
        assert_refused(call_script("fair_recipe", tmp_path, "--quick", *argv), message, tmp_path)


# --- the study --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One storage for the module's smoke runs, so common trials and tunings are made once."""
    return tmp_path_factory.mktemp("fair")


@pytest.fixture(scope="module")
def quick_run(shared, ray_address):
    return run_script("fair_recipe", shared, "--quick", address=ray_address)


@pytest.mark.slow
def test_fair_recipe_quick_end_to_end(shared, quick_run):
    done = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Fair recipe: kd against an lt baseline tuned per kappa" in done.stdout and "**Answer.**" in done.stdout
    assert "| 0.05 |" in done.stdout and "- both tuned lt recipe: " in done.stdout
    from kdscale.store import ResultsStore

    for name in ("fair_default_quick", "fair_tuned_quick"):
        table = ResultsStore(str(shared / "results"), name).table()
        assert len(table) == 8 and set(table["status"]) <= {"ok", "diverged"}
    tuned = ResultsStore(str(shared / "results"), "fair_tuned_quick").table()
    (path,) = (shared / "results" / "_tuned").glob("*.json")
    document = json.loads(path.read_text())
    assert sorted(document["kappas"]) == ["0.05", "1"] and all(len(e["samples"]) == 3 for e in document["kappas"].values())
    for kappa, entry in document["kappas"].items():  # the tuned study trained with the stored recipes
        rows = tuned[tuned["kappa"] == float(kappa)]
        assert set(rows["lr"]) == {entry["best"]["lr"]} and set(rows["budget"]) == {f"steps={entry['best']['steps']}"}
    analysis = shared / "results" / "fair_tuned_quick" / "analysis"
    assert (analysis / "fair_recipe_pi.png").exists() and (analysis / "fair_recipe_tuned.png").exists()
    summary = pd.read_csv(analysis / "fair_recipe_summary.csv")  # the section's numbers beside its text
    assert sorted(set(summary["comparison"])) == ["default", "fair", "shared"] and set(summary["kappa"]) == {0.05, 1.0}
    assert "## Fair recipe" in (analysis / "report.md").read_text()


@pytest.mark.slow
def test_model_size_tuned_lt_reads_the_same_tuning_into_the_same_trials(shared, quick_run, ray_address):
    assert quick_run.returncode == 0
    done = run_script("model_size", shared, "--quick", "--recipe", "tuned-lt", "--pairs", "cnn1d:width=16>cnn1d:width=16",
                      "--kappas", "0.05", "1", "--no-analysis", address=ray_address)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "study model_size_quick_tuned-lt: 8 trials, 0 already finished, 8 from other studies' results, 0 to train" \
        in done.stderr


@pytest.mark.slow
def test_fair_recipe_rerun_tunes_and_trains_nothing(shared, quick_run, ray_address):
    assert quick_run.returncode == 0
    done = run_script("fair_recipe", shared, "--quick", "--no-analysis", address=ray_address)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("reusing the stored search") == 2
    assert "study fair_default_quick: 8 trials, 8 already finished, 0 to train" in done.stderr
    assert "study fair_tuned_quick: 8 trials, 8 already finished, 0 to train" in done.stderr
