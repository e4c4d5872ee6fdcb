"""The engine on a real local Ray, real MLflow (SQLite) and Parquet on disk."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.errors import SpecError
from kdscale.store import ResultsStore
from kdscale.study import Resources, StudySpec
from kdscale.tracking import study_runs

REPO = Path(__file__).resolve().parents[1]
STUDENT = RecipeSpec(lr=0.05, steps=80, batch_size=64)
TEACHER = RecipeSpec(lr=0.05, steps=150, batch_size=64)


def small_study(name="small", kappas=(0.25, 0.5), seeds=(0, 1), **changes):
    fields = dict(name=name, data=DataSpec(name="digits", n_teacher=400),
                  pairs=((ModelSpec.parse("mlp:width=32"), ModelSpec.parse("mlp:width=16")),),
                  kappas=kappas, taus=(4.0,), seeds=seeds, recipe=STUDENT, teacher_recipe=TEACHER,
                  resources=Resources(cpus_per_trial=1), recipe_policy="fixed")
    fields.update(changes)
    return StudySpec(**fields)


def run(spec, tmp_path, **kwargs):
    from kdscale.engine import run_study

    kwargs.setdefault("log", lambda m: None)
    return run_study(spec, storage=str(tmp_path / "results"), tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                     cache=str(tmp_path / "cache"), progress=False, **kwargs)


def check_exactly_once(tmp_path, spec, chosen=None):
    table = ResultsStore(str(tmp_path / "results"), spec.name).table()
    ids = [t.id for t in spec.trials(chosen)]
    assert sorted(table["trial_id"]) == sorted(ids)  # every trial once in the table
    assert set(table["status"]) == {"ok"}
    runs = study_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", spec.name)
    assert sorted(r["trial_id"] for r in runs) == sorted(ids)  # once in MLflow
    assert {r["status"] for r in runs} == {"FINISHED"}  # none left RUNNING
    return table, runs


@pytest.mark.slow
def test_study_lands_in_store_and_mlflow_and_reruns_train_nothing(tmp_path):
    spec = small_study()
    first = run(spec, tmp_path)
    assert first.complete and first.trained == 8 and first.skipped == 0
    table, runs = check_exactly_once(tmp_path, spec)
    assert {r["parent"] for r in runs} == {first.parent_run_id}  # nested under one parent run
    assert "kd tau=4 kappa=0.25 seed=0 mlp-32>mlp-16" in {r["name"] for r in runs}
    kd = table[table["objective"] == "kd"]
    assert (kd["fidelity_test"] > 0).all() and (table["teacher_test_acc"] > 0.5).all()
    store = ResultsStore(str(tmp_path / "results"), spec.name)
    probs, labels = store.predictions(table["trial_id"].iloc[0])
    assert probs.shape == (360, 10) and labels.shape == (360,)
    assert len(store.history(table["trial_id"].iloc[0])) > 0

    again = run(spec, tmp_path)
    assert again.trained == 0 and again.skipped == 8 and again.complete
    grown = run(small_study(kappas=(0.25, 0.5, 1.0)), tmp_path)  # a new kappa: only its cells train
    assert grown.trained == 4 and grown.skipped == 8 and len(grown.table) == 12
    check_exactly_once(tmp_path, small_study(kappas=(0.25, 0.5, 1.0)))


@pytest.mark.slow
def test_fair_recipes_are_searched_once_stored_shared_and_trained_with(tmp_path, monkeypatch):
    """Each arm its own searched recipe; stored searches are reused by a rerun and by another study."""
    from kdscale.engine import searches
    from kdscale.search import SearchSpace, chosen_recipe, read_search, trained_with
    from kdscale.tracking import search_runs

    space = SearchSpace(lrs=(0.005, 0.05, 0.5), budgets=(20, 40), seeds=1)
    spec = small_study(name="fair", recipe_policy="fair", search=space)
    monkeypatch.setattr(searches, "PROGRESS_S", 0.001)  # no Ray task ends this soon: the progress line shows
    lines = []
    first = run(spec, tmp_path, log=lines.append)
    assert first.complete and first.searched == 4 and first.trained == 8  # lt and kd at two kappas
    assert any(line.startswith("recipe searches: 0 of 4 done, 0 of 2 jobs, ") for line in lines), lines
    assert first.search_s > 0 and first.train_s > 0
    chosen = {s.id: chosen_recipe(read_search(str(tmp_path / "results"), s.id)) for s in spec.searches()}
    table, _ = check_exactly_once(tmp_path, spec, chosen)
    for search in spec.searches():
        stored = read_search(str(tmp_path / "results"), search.id)
        rows = table[(table["kappa"] == search.kappa) & (table["objective"] == search.objective.name)]
        lr, steps = trained_with(stored)  # the longest budget within noise, half the lr for twice the steps
        assert len(rows) == 2 and set(rows["lr"]) == {lr}
        assert set(rows["budget"]) == {f"steps={steps}"}
    assert len(search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")) == 4  # one MLflow run per search
    again = run(spec, tmp_path)
    assert again.searched == 0 and again.trained == 0 and again.complete
    paper = run(small_study(name="paper", recipe_policy="lt", search=space), tmp_path)  # reuses lt's searches
    # its lt trials are fair's, and so is a kd trial wherever lt's recipe is the one fair chose for kd
    recipe = {(r.objective, r.kappa): (r.lr, r.budget) for r in first.table.itertuples()}
    same = sum(recipe["kd", kappa] == recipe["lt", kappa] for kappa in spec.kappas)
    assert paper.searched == 0 and paper.reused == 4 + 2 * same and paper.trained == 4 - 2 * same
    kd = paper.table[paper.table["objective"] == "kd"]
    lt = paper.table[paper.table["objective"] == "lt"]
    assert sorted(zip(kd["kappa"], kd["lr"])) == sorted(zip(lt["kappa"], lt["lr"]))  # kd takes lt's recipe
    assert len(search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")) == 4


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["alone", "pack-of-2"])
def test_a_killed_worker_resumes_its_trial_from_the_checkpoint(tmp_path, seeds):
    spec = small_study(name="worker_kill", kappas=(0.5,), seeds=seeds, objectives=("kd",),  # one pack of the seeds
                       resources=Resources(cpus_per_trial=1, checkpoint_every_s=0, pack_size=len(seeds)))
    marker = tmp_path / "killed.pid"
    result = run(spec, tmp_path, fault={"kill_marker": str(marker), "kill_after_reports": 3})
    assert marker.exists()  # the worker really died (SIGKILL) once
    assert result.complete and set(result.table["status"]) == {"ok"}
    assert (result.table["resumed_from_step"] > 0).all() and (result.table["pack_size"] == len(seeds)).all()
    # resuming from the checkpoint gives the same students as an uninterrupted run
    from kdscale.trial import run_pack

    alone = {o.row["trial_id"]: o.row for o in run_pack(spec.trials(), device="cpu", cache_root=tmp_path / "cache",
                                                         log=lambda m: None)}
    for _, row in result.table.iterrows():
        assert row["test_acc"] == alone[row["trial_id"]]["test_acc"]
        assert row["fidelity_test"] == alone[row["trial_id"]]["fidelity_test"]
    check_exactly_once(tmp_path, spec)


def test_students_of_one_model_are_packed_across_kappas_unless_told_not_to():
    from kdscale.engine import make_packs

    trials = small_study(kappas=(0.25, 0.5), seeds=(0, 1, 2)).trials()  # an MLP: no batch norm
    packs = make_packs(trials, None)
    assert len(packs) == 1 and len(packs[0]) == 12  # (lt, kd) x 3 seeds x 2 kappas: one pack on one slot
    assert len({t.kappa for t in packs[0]}) == 2 and len({t.objective for t in packs[0]}) == 2
    # two slots: two packs of 6 (each kappa's students: the sizes sorted) beat one of 12 and an idle slot
    assert [sorted({t.kappa for t in p}) for p in make_packs(trials, None, slots=2)] == [[0.25], [0.5]]
    assert len(make_packs(trials, 1)) == 12 and sorted(len(p) for p in make_packs(trials, 4)) == [4, 4, 4]
    bn = small_study(pairs=((ModelSpec.parse("cnn2d:width=4"), ModelSpec.parse("cnn2d:width=4,batch_norm=true")),))
    assert all(len(p) == 4 and len({t.kappa for t in p}) == 1 for p in make_packs(bn.trials(), None))  # one size
    augmented = small_study(pairs=bn.pairs[:1], recipe=RecipeSpec(lr=0.05, steps=80, batch_size=64, augment="crop-flip"))
    assert all(len(p) == 4 for p in make_packs(augmented.trials(), None))  # augmented packs share batches by seed
    epochs = small_study(recipe=RecipeSpec(lr=0.05, epochs=3, steps=None, batch_size=64))
    assert all(len({t.kappa for t in p}) == 1 for p in make_packs(epochs.trials(), None))  # steps differ by size
    big = small_study(pairs=((ModelSpec.parse("cnn2d:width=4"), ModelSpec.parse("cnn2d:width=64")),))  # ~5.6 MFLOP
    assert all(len(p) == 1 for p in make_packs(big.trials(), None))  # compute-bound: not packed by default
    assert sorted(len(p) for p in make_packs(big.trials(), 3)) == [2, 3, 3]  # unless asked: 8 students, even packs
    assert [len(p) for p in make_packs(big.trials(), None, gpu=True)] == [8]  # a GPU packs it (PACK_MAX_FLOPS_GPU)
    huge = small_study(pairs=((ModelSpec.parse("cnn2d:width=4"), ModelSpec.parse("cnn2d:width=400")),))  # ~230 MFLOP
    assert all(len(p) == 1 for p in make_packs(huge.trials(), None, gpu=True))
    shared = ModelSpec.parse("mlp:width=16")  # two pairs, one student: their lt trials are twins
    twins = small_study(pairs=((ModelSpec.parse("mlp:width=32"), shared), (ModelSpec.parse("mlp:width=64"), shared)),
                        kappas=(0.5,), seeds=(0, 1, 2))
    assert [len(p) for p in make_packs(twins.trials(), None)] == [12]  # 3 lt units (two twins each) + 6 kd
    packs = make_packs(twins.trials(), 8)  # 9 students > 8: two packs of 4 and 5 students
    assert sorted(len({(t.seed, t.objective, t.teacher.id) for t in p if t.objective.name == "kd"} |
                      {(t.seed, "lt") for t in p if t.objective.name == "lt"}) for p in packs) == [4, 5]
    for pack in packs:  # twins never split across packs
        lt = [t for t in pack if t.objective.name == "lt"]
        assert sorted(t.seed for t in lt) == sorted(2 * list({t.seed for t in lt}))
    assert sorted(len(p) for p in make_packs(twins.trials(), 1)) == [1] * 6 + [2] * 3  # unpacked: twins still once
    # longest first, the order Tune starts them in: more students, more steps, a bigger model
    from dataclasses import replace

    def longer(kappa):  # kappa's trials train 4x the steps
        return [replace(t, recipe=replace(t.recipe, steps=t.recipe.steps * (4 if t.kappa == kappa else 1)))
                for t in trials]
    assert [p[0].kappa for p in make_packs(longer(0.25), None)] == [0.25, 0.5]
    assert [p[0].kappa for p in make_packs(longer(0.5), None)] == [0.5, 0.25]
    assert [len(p) for p in make_packs(twins.trials(), 8)] == [5, 7]  # 5 students (5 kd) before 4 (3 lt twins, 1 kd)


DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_engine import small_study, run
    from pathlib import Path
    spec = small_study(name="driver_kill", kappas=(0.1, 0.25, 0.5, 1.0), seeds=(0, 1, 2),
                       recipe=__import__("kdscale.config").config.RecipeSpec(lr=0.05, steps=400, batch_size=64),
                       resources=__import__("kdscale.study").study.Resources(metrics_every_s=0, pack_size=4))
    run(spec, Path({tmp!r}))
""")


@pytest.mark.slow
def test_a_killed_driver_continues_with_the_same_command(tmp_path):
    # Packs of 4 (6 packs, 3 rounds on 2 slots): between rounds some rows are stored while the next
    # packs' runs are open. Two packs of 12 ended together, leaving no such moment to kill in.
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(REPO / "tests"), tmp=str(tmp_path)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    err = tmp_path / "driver.err"
    with open(err, "wb") as sink:
        driver = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=sink)
    store = ResultsStore(str(tmp_path / "results"), "driver_kill")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def mid_study() -> bool:  # some rows written and some trial's live run open: kill now
        if not store.exists() or len(store.table()) < 3:
            return False
        return any(r["status"] == "RUNNING" for r in study_runs(uri, "driver_kill"))

    deadline = time.time() + 240
    try:
        while time.time() < deadline and not mid_study():
            assert driver.poll() is None, f"the study ended before it could be killed: {err.read_text()[-3000:]}"
            time.sleep(0.5)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, no clean-up
        driver.wait()
    rows_before = len(store.table())
    assert 3 <= rows_before < 24
    runs = study_runs(uri, "driver_kill")
    assert any(r["status"] == "RUNNING" for r in runs)  # the kill left runs open (live metrics) ...

    spec = small_study(name="driver_kill", kappas=(0.1, 0.25, 0.5, 1.0), seeds=(0, 1, 2),
                       recipe=RecipeSpec(lr=0.05, steps=400, batch_size=64),
                       resources=Resources(metrics_every_s=0, pack_size=4))
    result = run(spec, tmp_path)
    assert result.complete and result.skipped >= rows_before  # ... finished rows were kept, not rerun
    check_exactly_once(tmp_path, spec)  # ... and now none is RUNNING or duplicated


@pytest.mark.slow
def test_trials_land_on_several_nodes_of_a_real_cluster(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        spec = small_study(name="cluster", kappas=(0.25, 0.5), seeds=(0, 1, 2))
        result = run(spec, tmp_path)
        assert result.complete
        assert result.table["node_id"].nunique() >= 2
        check_exactly_once(tmp_path, spec)
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.parametrize("changes, message", [
    (dict(kappas=()), "study.kappas is empty"),
    (dict(seeds=()), "study.seeds is empty"),
    (dict(taus=(4.0, -1.0)), "tau=-1.0 is invalid"),
    (dict(objectives=("kd", "distill")), "'distill' is invalid"),
    (dict(name="bad name/with slash"), "study.name"),
])
def test_bad_studies_fail_at_construction(changes, message):
    with pytest.raises(SpecError, match=message):
        small_study(**changes)


def test_bad_grid_fails_before_ray_starts(tmp_path):
    import ray

    spec = small_study(kappas=(0.5, 5.0))  # digits holds 1437 samples: kappa 5 needs 2000
    with pytest.raises(SpecError, match="maximum kappa"):
        run(spec, tmp_path)
    assert not ray.is_initialized() and not (tmp_path / "mlflow.db").exists()


def test_lt_cells_are_shared_across_taus():
    spec = small_study(taus=(1.0, 4.0))
    objectives = [t.objective for t in spec.trials()]
    assert objectives.count(ObjectiveSpec("lt")) == 4 and len(spec.trials()) == 12
    assert len({t.id for t in spec.trials()}) == 12


@pytest.mark.slow
def test_studies_under_one_storage_share_trials_and_train_nothing_twice(tmp_path):
    """The shared trial cache: a second study adopts the cells the first one finished (row, files,
    an MLflow run tagged with their source) and trains only its own; a trial that needs extras the
    first study did not measure is trained again."""
    import mlflow

    first = run(small_study(name="first", objectives=("lt",)), tmp_path)
    assert first.trained == 4
    second_spec = small_study(name="second", objectives=("lt", "hard"))
    second = run(second_spec, tmp_path)
    assert second.reused == 4 and second.trained == 4 and second.complete
    table, runs = check_exactly_once(tmp_path, second_spec)
    lt = table[table["objective"] == "lt"].set_index("trial_id")
    original = first.table.set_index("trial_id")
    assert (lt["test_acc"] == original.loc[lt.index, "test_acc"]).all() and set(lt["study"]) == {"second"}
    store = ResultsStore(str(tmp_path / "results"), "second")
    assert store.predictions(lt.index[0])[0].shape == (360, 10) and store.history(lt.index[0])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tags = {r["trial_id"]: client.get_run(r["run_id"]).data.tags.get("kdscale.reused_from") for r in runs}
    assert {tags[i] for i in lt.index} == {"first"} and tags[table[table["objective"] == "hard"]["trial_id"].iloc[0]] is None
    assert client.get_run(runs[0]["run_id"]).data.params["budget"] == "steps=80"
    # a study asking for an extra the source did not measure gets nothing from it (store level)
    from kdscale.store import shared_trials

    probed = ResultsStore(str(tmp_path / "results"), "probed")
    wanted = {i: ("probe",) for i in lt.index} | {lt.index[0]: ()}
    assert {s: [r["trial_id"] for r in rows] for s, rows in shared_trials(probed, wanted).items()} == {"first": [lt.index[0]]}


def test_cached_teachers_are_read_on_the_driver_without_starting_ray(tmp_path):
    """A teacher whose cache entry holds every logit the study needs is read by the driver: no Ray
    task (none is started here, and Ray stays down); the same outputs a task would return."""
    import ray

    from kdscale import data as datasets
    from kdscale.engine.driver import _train_teachers
    from kdscale.schema import n_train
    from kdscale.teacher import get_teacher

    spec = small_study()
    reach = max(datasets.stream_length_for(400, n_train(k, 400)) for k in spec.kappas)
    made = {t.id: get_teacher(t, reach, root=tmp_path, log=lambda m: None) for t in spec.teachers()}
    assert not ray.is_initialized()
    lines = []
    read = _train_teachers(spec, str(tmp_path), lines.append)
    assert not ray.is_initialized() and set(read) == set(made)
    for tid, out in read.items():
        assert not out.trained and out.forward_samples == 0 and out.test_acc == made[tid].test_acc
        np.testing.assert_array_equal(out.logits_train, made[tid].logits_train)
    assert lines[0] == "teachers: 1 to train or load (1 cached)" and "(cached)" in lines[1]


def test_the_drivers_mlflow_writes_keep_their_order_and_stop_at_a_fault():
    import threading

    from kdscale.engine.writes import Writes
    from kdscale.errors import EnvironmentFault

    done, gate = [], threading.Event()
    writes = Writes()
    writes.submit(lambda: gate.wait(5))  # holds the thread while the rest queue up
    for i in range(5):
        writes.submit(done.append, i)
    assert done == []  # the caller did not wait for them
    gate.set()
    writes.close()
    assert done == [0, 1, 2, 3, 4]

    def fail():
        raise EnvironmentFault("tracking: the MLflow server went away")
    writes, done, gate = Writes(), [], threading.Event()
    writes.submit(gate.wait, 5)
    writes.submit(fail)
    writes.submit(done.append, "after the fault")
    gate.set()
    with pytest.raises(EnvironmentFault, match="went away"):
        writes.close()
    assert done == []  # skipped: one fault is the news, not one a write
    with pytest.raises(EnvironmentFault, match="went away"):  # and the caller's next write hears it
        writes.submit(done.append, "later")

    writes, done, gate = Writes(), [], threading.Event()
    writes.submit(lambda: gate.wait(5))
    writes.submit(done.append, "queued")
    threading.Timer(0.2, gate.set).start()
    writes.close(drain=False)  # a second Ctrl-C: the write under way ends, the queued ones are left
    assert done == []


@pytest.mark.slow
def test_an_mlflow_fault_during_the_trials_ends_the_study_with_its_rows_kept(tmp_path, monkeypatch):
    from kdscale.errors import EnvironmentFault
    from kdscale.tracking import StudyTracker

    def gone(self, row, spec, history=(), tags=None):
        raise EnvironmentFault("tracking: the MLflow server at http://example went away")
    monkeypatch.setattr(StudyTracker, "finish_trial", gone)
    spec = small_study(name="mlflow_gone")
    with pytest.raises(EnvironmentFault, match="went away"):
        run(spec, tmp_path)
    table = ResultsStore(str(tmp_path / "results"), spec.name).table()
    assert len(table) > 0 and set(table["status"]) == {"ok"}  # rows reach the store before MLflow
    runs = study_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", spec.name)
    assert all(r["status"] != "RUNNING" for r in runs)  # the driver closed what it opened
