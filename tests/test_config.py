import subprocess
import sys

import pytest

from kdscale.config import (DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec,
                            from_dict, spec_id, to_dict)
from kdscale.errors import SpecError


def make_trial(**changes):
    teacher = TeacherSpec(DataSpec(), ModelSpec.parse("cnn1d:width=32"), RecipeSpec(epochs=10, steps=None))
    fields = dict(teacher=teacher, student=ModelSpec.parse("mlp:width=64"), kappa=0.1,
                  objective=ObjectiveSpec("kd", tau=4.0), recipe=RecipeSpec(), seed=0)
    fields.update(changes)
    return TrialSpec(**fields)


def test_id_is_stable_across_processes():
    code = ("from tests.test_config import make_trial; print(make_trial().id)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=".")
    assert other.stdout.strip() == make_trial().id
    assert len(make_trial().id) == 16


def test_same_fields_same_id_and_any_field_changes_it():
    assert make_trial().id == make_trial().id
    assert make_trial(kappa=4).id == make_trial(kappa=4.0).id  # 4 and 4.0 are one value
    ids = {make_trial().id, make_trial(seed=1).id, make_trial(kappa=0.2).id,
           make_trial(objective=ObjectiveSpec("kd", tau=2.0)).id,
           make_trial(objective=ObjectiveSpec("kd", tau=4.0, tau_squared=False)).id,
           make_trial(recipe=RecipeSpec(lr=0.02)).id, make_trial(student=ModelSpec.parse("mlp:width=32")).id}
    assert len(ids) == 7


def test_location_is_not_content():
    a = DataSpec(name="digits", n_teacher=500, root="/data/a")
    b = DataSpec(name="digits", n_teacher=500, root="/mnt/b")
    assert spec_id(a) == spec_id(b)


def test_objective_ignores_fields_it_does_not_read():
    assert ObjectiveSpec("lt", tau=8.0, alpha=0.3) == ObjectiveSpec("lt")
    assert make_trial(objective=ObjectiveSpec("lt", tau=8.0)).id == make_trial(objective=ObjectiveSpec("lt")).id
    assert ObjectiveSpec("ls", epsilon=0.2, tau=3.0).tau == ObjectiveSpec().tau
    assert ObjectiveSpec("kd", tau=2.0, epsilon=0.3).epsilon == ObjectiveSpec().epsilon


def test_round_trip_through_dict():
    trial = make_trial(student=ModelSpec.parse("cnn2d:width=20,batch_norm=true"))
    again = from_dict(TrialSpec, to_dict(trial))
    assert again == trial and again.id == trial.id


def test_model_spec_parse_and_label():
    spec = ModelSpec.parse("cnn2d:width=20,batch_norm=true")
    assert spec.family == "cnn2d" and spec.width == 20 and dict(spec.options) == {"batch_norm": True}
    assert ModelSpec.parse(str(spec)) == spec
    assert ModelSpec.parse("mlp:width=64").label == "mlp-64"


def test_label_is_readable():
    assert make_trial().label == "cnn1d-32>mlp-64 kd tau=4 kappa=0.1 seed=0"


def test_m_is_round_kappa_n():
    assert make_trial(kappa=0.1).n_train == 400
    assert make_trial(kappa=0.02).n_train == 80
    assert make_trial(kappa=4).n_train == 16000


@pytest.mark.parametrize("build, field", [
    (lambda: ObjectiveSpec("kd", tau=0.0), "objective.tau"),
    (lambda: ObjectiveSpec("kd", tau=-1.0), "objective.tau"),
    (lambda: ObjectiveSpec("kd", alpha=1.5), "objective.alpha"),
    (lambda: ObjectiveSpec("kd", alpha=-0.1), "objective.alpha"),
    (lambda: ObjectiveSpec("xyz"), "objective.name"),
    (lambda: ObjectiveSpec("ls", epsilon=1.0), "objective.epsilon"),
    (lambda: make_trial(kappa=0.0), "trial.kappa"),
    (lambda: make_trial(kappa=-0.5), "trial.kappa"),
    (lambda: make_trial(kappa=1e-6), "trial.kappa"),
    (lambda: make_trial(seed=-1), "trial.seed"),
    (lambda: RecipeSpec(lr=0.0), "recipe.lr"),
    (lambda: RecipeSpec(epochs=5, steps=100), "recipe.epochs"),
    (lambda: RecipeSpec(epochs=None, steps=None), "recipe.epochs"),
    (lambda: RecipeSpec(optimizer="lbfgs"), "recipe.optimizer"),
    (lambda: RecipeSpec(schedule="linear"), "recipe.schedule"),
    (lambda: RecipeSpec(steps=100, warmup=100), "recipe.warmup"),
    (lambda: RecipeSpec(steps=100, schedule="step", milestones=(60, 30)), "recipe.milestones"),
    (lambda: RecipeSpec(batch_size=0), "recipe.batch_size"),
    (lambda: DataSpec(n_teacher=0), "data.n_teacher"),
    (lambda: ModelSpec.parse("mlp:depth=2"), "width"),
    (lambda: ModelSpec.parse("mlp:width"), "model"),
])
def test_bad_values_name_the_field(build, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        build()


def test_study_variants_and_recipe_policies():
    from kdscale.search import SearchSpace
    from kdscale.study import StudySpec

    teacher_a, teacher_b = ModelSpec.parse("mlp:width=32"), ModelSpec.parse("mlp:width=64")
    student = ModelSpec.parse("mlp:width=16")
    base = dict(name="s", data=DataSpec(name="digits", n_teacher=400), pairs=((teacher_a, student), (teacher_b, student)),
                kappas=(0.25, 0.5), taus=(4.0,), seeds=(0,), search=SearchSpace(lrs=(0.01, 0.1), budgets=(10,)))
    spec = StudySpec(**base, objectives=("lt", "kd"), recipe_policy="fixed",
                     variants=(ObjectiveSpec("kd", tau=4.0, tau_squared=False), ObjectiveSpec("ls", epsilon=0.05),
                               ObjectiveSpec("kd", tau=4.0)))  # the last is already in the grid
    labels = [o.label for o in spec.objective_specs()]
    assert labels == ["lt", "kd tau=4", "kd tau=4 no-tau2", "ls eps=0.05"]
    assert spec.searches() == [] and {t.recipe for t in spec.trials()} == {RecipeSpec()}
    assert len(spec.trials()) == 2 * 2 * 4  # pairs x kappas x arms (each pair its own lt: fidelity to its teacher)

    fair = StudySpec(**base, objectives=("lt", "kd"))  # the default policy: each arm its own search
    searches = fair.searches()
    # lt: one per kappa, shared by both pairs (no teacher); kd: one per (teacher, kappa)
    assert sorted((s.objective.name, s.teacher.model.width if s.teacher else None, s.kappa) for s in searches) == [
        ("kd", 32, 0.25), ("kd", 32, 0.5), ("kd", 64, 0.25), ("kd", 64, 0.5), ("lt", None, 0.25), ("lt", None, 0.5)]
    chosen = {s.id: RecipeSpec(lr=0.1 if s.objective.name == "lt" else 0.01, steps=10 * (1 + (s.kappa > 0.3)))
              for s in searches}
    trials = fair.trials(chosen)
    assert {(t.objective.name, t.recipe.lr) for t in trials} == {("lt", 0.1), ("kd", 0.01)}
    assert {(t.kappa, t.recipe.steps) for t in trials} == {(0.25, 10), (0.5, 20)}
    with pytest.raises(SpecError, match="no recipe yet for"):
        fair.trials({})

    paper = StudySpec(**base, objectives=("lt", "kd"), recipe_policy="lt")  # kd reuses lt's recipe
    assert {s.objective.name for s in paper.searches()} == {"lt"} and len(paper.searches()) == 2
    lt_chosen = {s.id: RecipeSpec(lr=0.2 + s.kappa, steps=10) for s in paper.searches()}
    assert {(t.kappa, t.recipe.lr) for t in paper.trials(lt_chosen)} == {(0.25, 0.45), (0.5, 0.7)}
    with pytest.raises(SpecError, match="recipe_policy='best' is invalid"):
        StudySpec(**base, recipe_policy="best")
    with pytest.raises(SpecError, match="study.objectives is empty"):
        StudySpec(**base, objectives=())
