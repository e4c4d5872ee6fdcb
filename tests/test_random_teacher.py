"""Issue 18, random teachers (arXiv 2302.12091): the untrained teacher, the embedding-space loss,
where a student starts, noise inputs and the transfer task."""
import math

import pytest
import torch

from kdscale import data as datasets
from kdscale import models
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec, _canonical
from kdscale.errors import SpecError
from kdscale.objectives import embedding_loss, loss
from kdscale.train import initial_model, predict
from kdscale.train.init import initial_state, relative_distance

MODEL = ModelSpec("cnn1d", 4)
SHAPE = (1, 40)


def small_data():
    return DataSpec(n_teacher=200, n_test=100)


@pytest.mark.slow  # generates a data chunk: about 20 s on 2 cores
def test_an_untrained_teacher_is_its_initialisation(tmp_path):
    from kdscale.teacher import get_teacher, load_model

    spec = TeacherSpec(small_data(), MODEL, RecipeSpec(), seed=3, untrained=True)
    out = get_teacher(spec, root=tmp_path, log=lambda m: None)
    loaded = datasets.load(spec.data, 200)
    init = initial_model(MODEL, 3, SHAPE, 10)
    assert torch.equal(torch.as_tensor(out.logits_test), predict(init, torch.as_tensor(loaded.x_test)))
    assert torch.equal(torch.as_tensor(out.logits_train), predict(init, torch.as_tensor(loaded.x_pool)))
    for name, value in load_model(out).state_dict().items():  # the cached weights are the initialisation's
        assert torch.equal(value, init.state_dict()[name])
    assert 0.0 <= out.test_acc <= 0.3  # ten classes, no training
    again = get_teacher(spec, root=tmp_path, log=lambda m: None)
    assert not again.trained and again.directory == out.directory


def test_untrained_teacher_id_ignores_its_recipe_and_old_ids_stay():
    a = TeacherSpec(small_data(), MODEL, RecipeSpec(lr=0.3), seed=1, untrained=True)
    b = TeacherSpec(small_data(), MODEL, RecipeSpec(steps=5), seed=1, untrained=True)
    assert a.id == b.id
    trained = TeacherSpec(small_data(), MODEL, RecipeSpec(), seed=1)
    assert "untrained" not in _canonical(trained) and trained.id != a.id
    trial = TrialSpec(trained, MODEL, 0.5, ObjectiveSpec("kd"), RecipeSpec())
    assert not {"init", "init_scale", "inputs"} & set(_canonical(trial))
    assert "tau_teacher" not in _canonical(ObjectiveSpec("kd"))


def test_embedding_loss_against_a_hand_computed_value():
    # s = [1, 0] at tau_s = 0.5 -> log softmax([2, 0]) = [2 - log(e^2 + 1), -log(e^2 + 1)] = [-0.126928, -2.126928]
    # t = [0, 1] at tau_t = 0.25 -> softmax([0, 4]) = [0.0179862, 0.9820138]
    # CE = 0.0179862 * 0.126928 + 0.9820138 * 2.126928 = 2.0909556
    student, teacher = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert embedding_loss(student, teacher, 0.5, 0.25).item() == pytest.approx(2.0909556, abs=1e-6)
    spec = ObjectiveSpec("embed", tau=0.5, tau_teacher=0.25)
    batch_s = torch.cat([student, torch.zeros(1, 2)])
    batch_t = torch.cat([teacher, torch.zeros(1, 2)])  # second row: two uniforms, CE = log 2
    assert loss(spec, batch_s, torch.zeros(2, dtype=torch.long), batch_t).item() == \
        pytest.approx((2.0909556 + math.log(2)) / 2, abs=1e-6)


def test_near_teacher_at_noise_zero_is_the_teacher_and_the_scales_mean_what_they_say():
    own = initial_model(MODEL, 0, SHAPE, 10).state_dict()
    teacher = initial_model(MODEL, 7, SHAPE, 10).state_dict()
    params = set(own)
    for init, scale in (("near", 0.0), ("teacher", 0.0), ("interpolate", 0.0)):
        start = initial_state(init, scale, own, teacher, seed=0)
        assert all(torch.equal(start[k], teacher[k]) for k in teacher)
        assert relative_distance(start, teacher, params) == 0.0
    assert initial_state("independent", 0.0, own, teacher, 0) is own
    assert all(torch.equal(a, b) for a, b in zip(initial_state("interpolate", 1.0, own, teacher, 0).values(),
                                                  [own[k] for k in sorted(own)]))
    near = relative_distance(initial_state("near", 0.1, own, teacher, 0), teacher, params)
    assert near == pytest.approx(0.1, rel=0.1)  # noise of 0.1 x each tensor's rms: about 0.1 overall
    independent = relative_distance(own, teacher, params)
    assert 1.2 < independent < 1.6  # two independent draws: about sqrt(2)


def test_a_near_student_at_noise_zero_trains_from_the_teacher(tmp_path):
    from kdscale.trial import _start

    teacher = TeacherSpec(small_data(), MODEL, RecipeSpec(), seed=5, untrained=True)
    spec = TrialSpec(teacher, MODEL, 0.5, ObjectiveSpec("kd"), RecipeSpec(steps=1), seed=0, init="near", init_scale=0)
    state, distance, _ = _start(spec, datasets.info(spec.data))
    init = initial_model(MODEL, 5, SHAPE, 10)
    assert distance == 0.0 and all(torch.equal(state[k], v) for k, v in init.state_dict().items())
    _, independent, _ = _start(TrialSpec(teacher, MODEL, 0.5, ObjectiveSpec("kd"), RecipeSpec(), seed=0),
                            datasets.info(spec.data))
    assert independent > 1.0


@pytest.mark.parametrize("change, message", [
    (dict(init="near", init_scale=0.1, student=ModelSpec("cnn1d", 8)), r"trial\.init='near' is invalid: .*teacher's model"),
    (dict(init="interpolate", init_scale=1.5), r"trial\.init_scale=1\.5 is invalid"),
    (dict(init="random"), r"trial\.init='random' is invalid: must be one of independent"),
    (dict(inputs="noise", objective=ObjectiveSpec("lt")), r"trial\.inputs='noise' is invalid: has no labels"),
    (dict(inputs="images"), r"trial\.inputs='images' is invalid"),
    (dict(objective=ObjectiveSpec("embed")), r"trial\.objective='embed' is invalid: needs .*projection"),
])
def test_bad_starts_and_inputs_fail_in_one_line(change, message):
    fields = dict(teacher=TeacherSpec(small_data(), MODEL, RecipeSpec(), untrained=True), student=MODEL, kappa=0.5,
                  objective=ObjectiveSpec("kd"), recipe=RecipeSpec())
    fields.update(change)
    with pytest.raises(SpecError, match=message):
        TrialSpec(**fields)


def test_projection_head_keeps_the_features_and_bounds_the_outputs():
    plain = initial_model(MODEL, 0, SHAPE, 10)
    projected = initial_model(ModelSpec("cnn1d", 4, (("projection", 64),)), 0, SHAPE, 10)
    x = torch.randn(5, 1, 40)
    assert torch.equal(plain.features(x), projected.features(x))  # the body is drawn first, the same
    out = projected(x)
    assert out.shape == (5, 64) and out.abs().max() <= 1.0 + 1e-6
    with pytest.raises(SpecError, match="projection_hidden is invalid without projection"):
        models.build(ModelSpec("cnn1d", 4, (("projection_hidden", 8),)), SHAPE, 10)


def test_noise_inputs_match_the_data_scale_and_nest(tmp_path):
    from kdscale.trial import noise_inputs

    reference = datasets.load(small_data(), 200).x_pool
    big, small = noise_inputs(reference, 300, seed=2), noise_inputs(reference, 100, seed=2)
    assert big.shape == (300, 1, 40) and torch.equal(big[:100], small)
    assert float(big.std()) == pytest.approx(float(reference.std()), rel=0.05)


@pytest.mark.slow  # generates the second task's chunk: about 12 s
def test_the_transfer_task_is_a_different_mnist1d():
    from kdscale.representations import transfer_data

    second = transfer_data(small_data())
    assert dict(second.options) == {"templates": "reversed"} and second.seed == 1
    a, b = datasets.load(small_data(), 200), datasets.load(second, 200)
    assert a.x_pool.shape == b.x_pool.shape and not (a.x_pool == b.x_pool).all()
    with pytest.raises(SpecError, match="data.options.templates='upside' is invalid"):
        datasets.info(DataSpec(options=(("templates", "upside"),)))
    with pytest.raises(SpecError, match="extras transfer is invalid for data digits"):
        transfer_data(DataSpec("digits", n_teacher=100))


# --- the study's section, by hand, and the script at --quick ----------------------------------------

def rows():
    out = []
    for kappa, seed, init, scale, inputs, probe in [
            (0.1, 0, "independent", 0.0, "data", 0.60), (0.1, 1, "independent", 0.0, "data", 0.62),
            (0.1, 0, "near", 0.1, "data", 0.70), (0.1, 1, "near", 0.1, "data", 0.74),
            (1.0, 0, "independent", 0.0, "data", 0.64), (1.0, 1, "independent", 0.0, "data", 0.68)]:
        out.append({"trial_id": f"{kappa}/{seed}/{init}", "status": "ok", "kappa": kappa, "seed": seed, "init": init,
                    "init_scale": scale, "inputs": inputs, "init_distance": 0.1 if init == "near" else 1.4,
                    "probe_acc": probe, "teacher_probe_acc": 0.5 + 0.01 * seed,
                    "transfer_probe_acc": 0.4, "teacher_transfer_probe_acc": 0.4})
    return out


def test_random_teacher_section_by_hand():
    import pandas as pd

    from analysis.sections import random_teacher, render

    tables = random_teacher.numbers(pd.DataFrame(rows()))
    cells = tables["cells"].set_index(["kappa", "start"])
    # gains: independent at 0.1: 0.60 - 0.50 = 0.10, 0.62 - 0.51 = 0.11 -> mean 0.105, t(1) interval 0.105 +- 12.706 * 0.005
    assert cells.loc[(0.1, "independent"), "gain_mean"] == pytest.approx(0.105)
    assert cells.loc[(0.1, "independent"), "gain_high"] == pytest.approx(0.105 + 12.7062 * 0.005, abs=1e-4)
    assert cells.loc[(0.1, "near 0.1"), "gain_mean"] == pytest.approx(0.215)  # 0.20, 0.23
    versus = tables["versus_independent"].iloc[0]
    assert versus["start"] == "near 0.1" and versus["gain_minus_independent_mean"] == pytest.approx(0.11)  # 0.10, 0.12
    by_kappa = tables["versus_kappa"].set_index("start")
    assert by_kappa.loc["independent", "gain_change_mean"] == pytest.approx(0.05)  # 0.04, 0.06
    assert math.isnan(by_kappa.loc["near 0.1", "gain_change_mean"])  # no near start at kappa 1
    text = render(random_teacher.section(pd.DataFrame(rows())))
    assert "| data | 0.1 | near 0.1 | 0.10 | 0.720 | 0.505 | +0.215" in text
    # lows: 0.105 - 0.0635 > 0; 0.215 - 12.706 * 0.015 = 0.024 > 0; kappa 1: 0.155 - 0.191 < 0
    assert "beats its teacher's (interval above 0) in 2 of 3 cells" in text


def test_random_teacher_bad_start_is_one_line(tmp_path):
    from tests.scripts import assert_refused, call_script

    done = call_script("random_teacher", tmp_path, "--quick", "--starts", "near:lots")
    assert_refused(done, "--starts 'near:lots' is invalid", tmp_path)


@pytest.mark.slow
def test_random_teacher_quick(tmp_path, ray_address):
    from kdscale.store import ResultsStore
    from tests.scripts import run_script

    done = run_script("random_teacher", tmp_path, "--quick", address=ray_address)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "random_teacher_quick: 16 trials, 0 already finished, 16 to train" in done.stderr
    assert "## Random teachers" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "random_teacher_quick").table()
    assert (table["status"] == "ok").all() and len(table) == 16
    for column in ("probe_acc", "teacher_probe_acc", "transfer_probe_acc", "teacher_transfer_probe_acc"):
        assert table[column].between(0, 1).all(), column
    near = table[table["init"] == "near"]
    assert near["init_distance"].between(0.08, 0.12).all() and table["test_acc"].isna().all()
    assert set(table["inputs"]) == {"data", "noise"} and table["teacher_id"].nunique() == 2  # one teacher a seed
    assert (tmp_path / "results" / "random_teacher_quick" / "analysis" / "random_teacher_cells.csv").exists()
