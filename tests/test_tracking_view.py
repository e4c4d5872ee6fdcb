"""What a researcher sees in MLflow: the runs table opens on a study's runs, the parent run carries
the grid and the headline results, a trial's run is named by what tells it apart, holds its
settings as params (only those its objective reads) and only results as metrics, its data set as an
input, and the start and end of its own training."""
from dataclasses import replace

import pytest

from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec, to_dict
from kdscale.tracking import run_name, trial_params

TEACHER = TeacherSpec(DataSpec(), ModelSpec.parse("cnn1d:width=64"), RecipeSpec(epochs=60, steps=None, lr=0.05))


def spec(objective, **recipe):
    return to_dict(TrialSpec(TEACHER, ModelSpec.parse("cnn1d:width=4"), 0.1, objective,
                             RecipeSpec(**{"lr": 0.16, "steps": 2000, **recipe}), 1))


@pytest.mark.parametrize("objective, reads, ignores", [
    (ObjectiveSpec("lt"), (), ("objective.tau", "objective.alpha", "objective.tau_squared", "objective.epsilon")),
    (ObjectiveSpec("kd", tau=4.0), ("objective.tau", "objective.alpha", "objective.tau_squared"), ("objective.epsilon",)),
    (ObjectiveSpec("ls", epsilon=0.05), ("objective.epsilon",), ("objective.tau", "objective.alpha")),
])
def test_a_trials_params_are_its_settings_and_only_what_its_objective_reads(objective, reads, ignores):
    params = trial_params(spec(objective))
    assert all(key in params for key in reads) and not any(key in params for key in ignores)
    assert params["budget"] == "steps=2000" and params["recipe.lr"] == "0.16" and params["kappa"] == "0.1"
    assert not any(value in ("None", "()", "[]") for value in params.values())  # no Python reprs
    assert "recipe.warmup" not in params and "recipe.augment" not in params  # defaults that change nothing
    assert trial_params(spec(objective, warmup=50))["recipe.warmup"] == "50"


def test_run_names_put_objective_kappa_and_seed_first():
    assert run_name(spec(ObjectiveSpec("kd", tau=4.0))) == "kd tau=4 kappa=0.1 seed=1 cnn1d-64>cnn1d-4"
    assert run_name(spec(ObjectiveSpec("lt"))) == "lt kappa=0.1 seed=1 cnn1d-64>cnn1d-4"


@pytest.mark.slow
def test_mlflow_reads_like_the_results(tmp_path):
    import mlflow

    from kdscale.engine import run_study
    from kdscale.study import Resources, StudySpec
    from kdscale.studyargs import analyse
    from kdscale.tracking import KIND, KIND_TAG

    study = StudySpec(name="view", data=DataSpec(name="digits", n_teacher=400),
                      pairs=((ModelSpec.parse("mlp:width=32"), ModelSpec.parse("mlp:width=16")),),
                      kappas=(0.25, 1.0), taus=(4.0,), seeds=(0, 1), recipe=RecipeSpec(lr=0.05, steps=60, batch_size=64),
                      teacher_recipe=RecipeSpec(lr=0.05, steps=150, batch_size=64),
                      resources=Resources(cpus_per_trial=1, metrics_every_s=0), recipe_policy="fixed")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_study(study, storage=str(tmp_path / "results"), tracking_uri=uri, cache=str(tmp_path / "cache"),
                       progress=False, log=lambda m: None)
    assert result.complete and analyse(result, print_headline=False) is not None
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("view")
    assert experiment.tags[KIND_TAG] == KIND  # the UI opens on the runs table, not the GenAI overview
    parent = client.get_run(result.parent_run_id)
    assert parent.data.params["kappas"] == "[0.25, 1.0]" and parent.data.params["seeds"] == "[0, 1]"
    headline = parent.data.metrics
    assert {"PI/mlp-32 to mlp-16 kd tau:4", "PG/mlp-32 to mlp-16 kd tau:4"} <= set(headline), sorted(headline)
    pi = client.get_metric_history(parent.info.run_id, "PI/mlp-32 to mlp-16 kd tau:4")
    assert sorted(m.step for m in pi) == [250, 1000]  # one point per kappa, at step = kappa x 1000
    trials = client.search_runs([experiment.experiment_id], "tags.`kdscale.role` = 'trial'")
    assert len(trials) == 8
    table = result.table.set_index("trial_id")
    for run in trials:
        name, params, metrics = run.info.run_name, run.data.params, run.data.metrics
        assert name.split(" ")[0] in ("lt", "kd") and " kappa=" in name and " seed=" in name
        if params["objective"] == "lt":
            assert not any(k.startswith("objective.") for k in params)
        else:
            assert params["objective.tau"] == "4.0"
        assert {"lr", "batch_size", "n_teacher", "steps", "seed", "kappa"}.isdisjoint(metrics)  # settings aren't results
        assert {"test_acc", "fidelity_test", "wall_s"} <= set(metrics)
        row = table.loc[run.data.tags["kdscale.trial_id"]]
        assert (run.info.end_time - run.info.start_time) / 1000 >= 0.5 * row["wall_s"]  # the trial's own time
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["digits"]
    # the same study with another recipe in the same storage: its report is of its own 8 trials, not of
    # those and the 8 the first recipe left in the study's table (which the analysis would refuse)
    longer = replace(study, recipe=replace(study.recipe, steps=80))
    again = run_study(longer, storage=str(tmp_path / "results"), tracking_uri=uri, cache=str(tmp_path / "cache"),
                      progress=False, log=lambda m: None)
    assert len(again.store.table()) == 16 and len(again.table) == 8
    report = analyse(again, print_headline=False)
    assert report is not None and "8 of 8 trials used" in report.headline
