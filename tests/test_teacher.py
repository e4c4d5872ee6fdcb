import numpy as np
import pytest

from kdscale import teacher as teacher_module
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec
from kdscale.teacher import get_teacher
from kdscale.trial import run_trial

SMALL = RecipeSpec(lr=0.05, steps=60, batch_size=64)
TEACHER_RECIPE = RecipeSpec(lr=0.05, steps=200, batch_size=64)


def digits_teacher(seed=0):
    return TeacherSpec(DataSpec(name="digits", n_teacher=400), ModelSpec.parse("mlp:width=32"), TEACHER_RECIPE,
                       seed=seed)


def student(teacher, kappa=0.5, seed=0, objective="kd"):
    return TrialSpec(teacher, ModelSpec.parse("mlp:width=16"), kappa, ObjectiveSpec(objective, tau=4.0), SMALL, seed)


def forbid_teacher_compute(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the teacher ran")
    monkeypatch.setattr(teacher_module, "train", refuse)
    monkeypatch.setattr(teacher_module, "predict", refuse)


def test_second_student_of_a_teacher_runs_no_teacher(tmp_path, monkeypatch):
    spec = digits_teacher()
    first = run_trial(student(spec, seed=0), cache_root=tmp_path, log=lambda m: None)
    assert first.row["status"] == "ok" and first.row["teacher_test_acc"] > 0.5
    forbid_teacher_compute(monkeypatch)  # from here on, any teacher training or forward pass fails
    calls = []
    loaded = get_teacher(spec, root=tmp_path, log=calls.append)
    assert not loaded.trained and loaded.forward_samples == 0 and calls == []
    second = run_trial(student(spec, seed=1, objective="hard"), teacher=loaded)
    assert second.row["status"] == "ok" and second.row["teacher_id"] == spec.id


@pytest.mark.slow  # over 3 s: the fast tier stays under a minute
def test_logits_extend_only_over_new_samples(tmp_path):
    spec = TeacherSpec(DataSpec(n_teacher=200), ModelSpec.parse("mlp:width=16"), SMALL)
    first = get_teacher(spec, root=tmp_path, log=lambda m: None)
    assert first.trained and first.forward_samples == 200 and len(first.logits_train) == 200
    extended = get_teacher(spec, n_pool=600, root=tmp_path, log=lambda m: None)
    assert not extended.trained and extended.forward_samples == 400 and len(extended.logits_train) == 600
    np.testing.assert_array_equal(extended.logits_train[:200], first.logits_train)
    again = get_teacher(spec, n_pool=600, root=tmp_path, log=lambda m: None)
    assert again.forward_samples == 0


def test_cached_only_reads_files_or_returns_none(tmp_path, monkeypatch):
    spec = TeacherSpec(DataSpec(n_teacher=200), ModelSpec.parse("mlp:width=16"), SMALL)

    def cached(n_pool=None):
        return get_teacher(spec, n_pool=n_pool, root=tmp_path, log=lambda m: None, cached_only=True)
    assert cached() is None and not teacher_module.teacher_dir(spec, tmp_path).exists()  # nothing trained
    made = get_teacher(spec, root=tmp_path, log=lambda m: None)
    forbid_teacher_compute(monkeypatch)
    assert cached() is not None and cached(200) is not None
    assert cached(600) is None  # its logits stop at 200 of the stream
    read = cached(150)
    assert not read.trained and read.forward_samples == 0
    np.testing.assert_array_equal(read.logits_train, made.logits_train)
    logits = teacher_module.teacher_dir(spec, tmp_path) / "logits_test.npy"
    logits.write_bytes(logits.read_bytes()[:-4] + b"oops")
    assert cached() is None  # damaged: left for get_teacher to report and retrain
    assert logits.exists()


@pytest.mark.slow  # trains a teacher on MNIST-1D
@pytest.mark.parametrize("damage", ["weights.safetensors", "logits_train.npy", "meta.json"])
def test_a_corrupt_cached_teacher_is_reported_and_retrained(tmp_path, damage):
    spec = digits_teacher(seed=1)
    first = get_teacher(spec, root=tmp_path, log=lambda m: None)
    path = first.directory / damage
    path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    messages = []
    again = get_teacher(spec, root=tmp_path, log=messages.append)
    assert again.trained and any("corrupt" in m and damage in m for m in messages)
    assert again.test_acc == first.test_acc  # same spec and seed: the same teacher again
    np.testing.assert_array_equal(again.logits_test, first.logits_test)


@pytest.mark.slow  # trains a teacher on MNIST-1D
def test_trial_row_has_the_results_contract(tmp_path):
    from kdscale.schema import COLUMNS

    outcome = run_trial(student(digits_teacher(), kappa=0.25, objective="lt"), cache_root=tmp_path,
                        log=lambda m: None)
    row = outcome.row
    assert set(row) | {"study"} >= set(COLUMNS) - {"study"}
    assert row["n_train"] == 100 and row["kappa"] == 0.25 and row["objective"] == "lt"
    assert np.isnan(row["tau"]) and row["budget"] == "steps=60"
    assert outcome.test_probs.shape == (360, 10) and outcome.test_labels.shape == (360,)
    assert 0 <= row["fidelity_test"] <= 1 and row["teacher_params"] > 0 and row["flops"] > 0


def test_opt_in_representation_metrics(tmp_path):
    teacher = digits_teacher()
    same_width = TrialSpec(teacher, ModelSpec.parse("mlp:width=32"), 0.5, ObjectiveSpec("kd", tau=4.0), SMALL, 0,
                           extras=("cka", "fa", "probe", "features"))
    assert same_width.id == TrialSpec(teacher, ModelSpec.parse("mlp:width=32"), 0.5, ObjectiveSpec("kd", tau=4.0),
                                      SMALL, 0).id  # measuring more is the same trial
    outcome = run_trial(same_width, cache_root=tmp_path, log=lambda m: None)
    row = outcome.row
    assert 0.0 < row["cka_teacher"] <= 1.0 and -1.0 <= row["fa_teacher"] <= 1.0 and 0.1 < row["probe_acc"] <= 1.0
    assert outcome.test_features.shape == (360, 32)
    cached = (outcome.row["teacher_id"], (tmp_path / "teachers" / teacher.id / "features_test.npy").exists())
    assert cached[1]  # the teacher's features are computed once and cached
    narrower = run_trial(student(teacher), cache_root=tmp_path, log=lambda m: None).row
    assert narrower["cka_teacher"] is None  # not asked for
    other = TrialSpec(teacher, ModelSpec.parse("mlp:width=16"), 0.5, ObjectiveSpec("lt"), SMALL, 0, extras=("fa",))
    assert np.isnan(run_trial(other, cache_root=tmp_path, log=lambda m: None).row["fa_teacher"])  # widths differ


def test_twins_lt_of_two_pairs_train_once_and_keep_their_own_fidelity(tmp_path):
    """lt reads no teacher: the lt trials of two pairs with one student train once; each row keeps the
    columns that compare with its own teacher. kd pays the teacher's FLOPs, lt does not."""
    from kdscale.trial import run_pack, training_key

    other = TeacherSpec(DataSpec(name="digits", n_teacher=400), ModelSpec.parse("mlp:width=8"), TEACHER_RECIPE)
    specs = [student(digits_teacher(), objective="lt"), student(other, objective="lt"), student(other)]
    assert training_key(specs[0]) == training_key(specs[1]) != training_key(specs[2])
    lt_a, lt_b, kd = run_pack(specs, cache_root=tmp_path, log=lambda m: None)
    assert lt_a.row["pack_size"] == lt_b.row["pack_size"] == 2  # two students trained, not three
    assert np.array_equal(lt_a.test_probs, lt_b.test_probs) and lt_a.history == lt_b.history
    assert lt_a.row["test_acc"] == lt_b.row["test_acc"] and lt_a.row["teacher_id"] != lt_b.row["teacher_id"]
    for outcome, teacher in ((lt_a, digits_teacher()), (lt_b, other)):
        logits = get_teacher(teacher, root=tmp_path).logits_test
        assert outcome.row["fidelity_test"] == pytest.approx(float(np.mean(
            outcome.test_probs.argmax(1) == logits.argmax(1))))
    assert lt_a.row["fidelity_test"] != lt_b.row["fidelity_test"]  # a weak and a stronger teacher
    teacher_flops = get_teacher(other, root=tmp_path).forward_flops * specs[2].n_train
    assert kd.row["flops"] == pytest.approx(lt_b.row["flops"] + teacher_flops)  # same student steps


@pytest.mark.slow  # trains a teacher and a student (the fast tier stays under a minute)
def test_ntk_extra_is_the_alignment_of_the_trained_student_and_teacher(tmp_path):
    """extras "ntk": CKA of the trained student's and the teacher's empirical NTKs on the first
    NTK_PROBE test samples, as kdscale.representations computes it for the two models directly."""
    import torch

    from kdscale import data as datasets
    from kdscale.representations import ntk_alignment
    from kdscale.teacher import load_model
    from kdscale.trial import NTK_PROBE

    teacher = digits_teacher()
    spec = TrialSpec(teacher, ModelSpec.parse("mlp:width=16"), 0.5, ObjectiveSpec("kd", tau=4.0), SMALL, 0,
                     extras=("ntk",))
    outcome = run_trial(spec, cache_root=tmp_path, log=lambda m: None)
    loaded = datasets.load(teacher.data, 400)
    teacher_model = load_model(get_teacher(teacher, root=tmp_path, log=lambda m: None))
    expected = ntk_alignment(outcome.model, teacher_model, torch.as_tensor(loaded.x_test[:NTK_PROBE]))
    assert 0.0 < outcome.row["ntk_teacher"] <= 1.0
    assert outcome.row["ntk_teacher"] == pytest.approx(expected, abs=1e-9)
    assert run_trial(student(teacher), cache_root=tmp_path, log=lambda m: None).row["ntk_teacher"] is None


def test_ntk_extra_refuses_tokens_and_oversized_models_before_any_training(tmp_path, monkeypatch):
    from kdscale.errors import SpecError

    forbid_teacher_compute(monkeypatch)
    tokens = TeacherSpec(DataSpec(name="s5", n_teacher=64), ModelSpec.parse("diagrnn:width=8"), TEACHER_RECIPE)
    with pytest.raises(SpecError, match="extras 'ntk' needs real-valued inputs; data set 's5' has tokens"):
        run_trial(TrialSpec(tokens, ModelSpec.parse("diagrnn:width=8"), 0.5, ObjectiveSpec("lt"), SMALL, 0,
                            extras=("ntk",)), cache_root=tmp_path, log=lambda m: None)
    wide = TeacherSpec(DataSpec(name="digits", n_teacher=400), ModelSpec.parse("mlp:width=4096"), TEACHER_RECIPE)
    with pytest.raises(SpecError, match=r"extras 'ntk': the NTK's Jacobian of 100 probes x 10 classes x .* above"):
        run_trial(TrialSpec(wide, ModelSpec.parse("mlp:width=16"), 0.5, ObjectiveSpec("kd"), SMALL, 0,
                            extras=("ntk",)), cache_root=tmp_path, log=lambda m: None)
    assert not (tmp_path / "teachers").exists()  # nothing trained, nothing cached


def test_a_study_with_the_ntk_extra_refuses_an_oversized_pair_before_any_teacher_trains(monkeypatch):
    from kdscale.errors import SpecError
    from kdscale.study import StudySpec, check_study

    forbid_teacher_compute(monkeypatch)
    small, wide = ModelSpec.parse("mlp:width=16"), ModelSpec.parse("mlp:width=4096")
    common = dict(name="ntk_check", data=DataSpec(name="digits", n_teacher=400), kappas=(0.5,), taus=(4.0,), seeds=(0,),
                  recipe=SMALL, teacher_recipe=TEACHER_RECIPE, extras=("ntk",), recipe_policy="fixed")
    check_study(StudySpec(pairs=((small, small),), **common))  # 100 x 10 x ~1k parameters: within the bound
    with pytest.raises(SpecError, match=r"extras 'ntk': the NTK's Jacobian of 100 probes x 10 classes x "
                                        r"[\d,]+ parameters has [\d,]+ elements, above the bound"):
        check_study(StudySpec(pairs=((small, small), (wide, small)), **common))
