"""Issue 17, students started from the teacher's initialisation: the distance the trained student
ends at, the studies' --student-init flags, and the feature_alignment smoke run with them."""
import math

import numpy as np
import pytest
import torch

from kdscale import data as datasets
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec
from kdscale.train import initial_model
from tests.scripts import assert_refused, call_script, load_script, run_script

# An untrained teacher (no teacher training to pay for) whose initialisation students start from.
TEACHER = TeacherSpec(DataSpec(name="digits", n_teacher=400), ModelSpec.parse("mlp:width=8"), RecipeSpec(), seed=3,
                      untrained=True)
RECIPE = RecipeSpec(lr=0.05, steps=20, batch_size=64)


def trial(seed, init="teacher", student="mlp:width=8"):
    return TrialSpec(TEACHER, ModelSpec.parse(student), 0.5, ObjectiveSpec("kd", tau=4.0), RECIPE, seed, init=init)


def test_end_distance_is_the_trained_students_distance_to_the_teachers_initialisation(tmp_path):
    from kdscale.trial import _end_distance, _start, run_pack, run_trial

    info = datasets.info(TEACHER.data)
    teacher_init = initial_model(TEACHER.model, TEACHER.seed, tuple(info.input_shape), info.num_classes)
    quiet = dict(cache_root=tmp_path, log=lambda m: None)
    *packed, independent = run_pack([trial(0), trial(1), trial(0, init="independent")], **quiet)
    alone = run_trial(trial(1), **quiet)
    for outcome in (*packed, alone):  # by hand: every parameter flattened into one vector
        end = torch.cat([p.detach().flatten() for p in outcome.model.parameters()]).double()
        start = torch.cat([p.detach().flatten() for p in teacher_init.parameters()]).double()
        expected = float(torch.linalg.vector_norm(end - start) / torch.linalg.vector_norm(start))
        assert outcome.row["init_distance"] == 0.0 and outcome.row["init"] == "teacher"
        assert outcome.row["end_distance"] == pytest.approx(expected, rel=1e-9) and expected > 1e-4
    assert packed[0].row["end_distance"] != packed[1].row["end_distance"]  # each seed's own batches
    assert packed[1].row["pack_size"] == 3 and alone.row["pack_size"] == 1
    assert packed[1].row["end_distance"] == pytest.approx(alone.row["end_distance"], rel=1e-4)  # packed = alone
    # a student from its own seed's start ends about as far from the teacher's initialisation as
    # two independent draws are (sqrt 2): 20 steps move it little
    assert 1.2 < independent.row["init_distance"] < 1.6
    assert independent.row["end_distance"] == pytest.approx(independent.row["init_distance"], rel=0.05)
    other = _start(trial(0, init="independent", student="mlp:width=4"), info)  # another architecture: NaN
    assert math.isnan(other.distance) and math.isnan(_end_distance(alone, other)) and other.teacher_init is None


@pytest.mark.parametrize("script, argv, name, inits", [
    ("feature_alignment", [], "feature_alignment", (("independent", 0.0),)),
    ("feature_alignment", ["--student-init", "teacher"], "feature_alignment_init-teacher", (("teacher", 0.0),)),
    ("feature_alignment", ["--quick", "--student-init", "near"], "feature_alignment_quick_init-near-0.1",
     (("near", 0.1),)),
    ("feature_alignment", ["--student-init", "near", "--init-scale", "0.5", "--recipe", "fixed"],
     "feature_alignment_fixed_init-near-0.5", (("near", 0.5),)),
    ("feature_alignment", ["--student-init", "teacher", "--name", "mine"], "mine", (("teacher", 0.0),)),
    ("model_size", ["--pairs", "cnn1d:width=16>cnn1d:width=16", "--student-init", "teacher", "--grid"],
     "model_size_init-teacher", (("teacher", 0.0),)),
    ("model_size", ["--pairs", "cnn1d:width=16>cnn1d:width=16", "--student-init", "teacher"],
     "model_size_adaptive_init-teacher", (("teacher", 0.0),)),
])
def test_a_student_init_is_a_study_of_its_own(script, argv, name, inits):
    module = load_script(script)
    spec = module.build_spec(module.build_parser().parse_args(argv))
    assert spec.name == name and spec.inits == inits
    assert {t.init for t in spec._trials(lambda *cell: spec.recipe)} == {inits[0][0]}


@pytest.mark.parametrize("script, argv, message", [
    ("feature_alignment", ["--student-init", "teacher", "--student", "cnn1d:width=16"],
     "trial.init='teacher' is invalid: starts the student from its teacher's weights"),
    ("feature_alignment", ["--student-init", "teacher", "--init-scale", "0.1"],
     "--init-scale 0.1 is invalid with --student-init teacher"),
    ("feature_alignment", ["--student-init", "near", "--init-scale", "-1"], "trial.init_scale=-1.0 is invalid"),
    ("model_size", ["--student-init", "teacher"], "trial.init='teacher' is invalid"),  # the default pairs differ
])
def test_a_start_the_pair_cannot_take_is_refused_in_one_line(tmp_path, script, argv, message):
    done = call_script(script, tmp_path, *argv)
    assert done.stderr.startswith(f"{script}: error: "), done.stderr
    assert_refused(done, message, tmp_path)


@pytest.mark.slow
def test_feature_alignment_quick_from_the_teachers_initialisation(tmp_path, ray_address):
    import pandas as pd

    from kdscale.store import ResultsStore

    done = run_script("feature_alignment", tmp_path, "--quick", "--student-init", "teacher", address=ray_address,
                      timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Where the students started and ended" in done.stdout
    table = ResultsStore(str(tmp_path / "results"), "feature_alignment_quick_init-teacher").table()
    assert len(table) == 8 and set(table["status"]) == {"ok"} and set(table["init"]) == {"teacher"}
    assert (table["init_distance"] == 0).all() and np.isfinite(table["end_distance"]).all()
    assert (table["end_distance"] > 0).all() and table["fa_teacher"].notna().all()
    starts = pd.read_csv(tmp_path / "results" / "feature_alignment_quick_init-teacher" / "analysis" /
                         "feature_alignment_starts.csv")
    assert len(starts) == 4 and set(starts["start"]) == {"teacher"} and (starts["n"] == 2).all()
