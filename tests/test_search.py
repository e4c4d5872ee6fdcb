"""Fair recipes (kdscale.search): the validation split, the successive-halving search on real training
(never the test set), stored searches, `kdscale tune`, and a study whose recipes are searched."""
from dataclasses import replace

import numpy as np
import pytest

from kdscale import cli
from kdscale import data as datasets
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, from_dict, to_dict
from kdscale.data import student_indices, subsets
from kdscale.errors import SpecError
from kdscale.search import (SearchSpace, SearchSpec, chosen_recipe, last_rung_decided, read_search, search_path,
                            trained_with, write_search)
from kdscale.searchjob import run_job

DIGITS = DataSpec(name="digits", n_teacher=400)
STUDENT = ModelSpec.parse("mlp:width=16")
BASE = RecipeSpec(lr=0.05, steps=40, batch_size=64)
TEACHER = TeacherSpec(DIGITS, ModelSpec.parse("mlp:width=32"), RecipeSpec(lr=0.05, steps=150, batch_size=64))
# 1e6 diverges at once: it is never promoted
SPACE = SearchSpace(lrs=(0.003, 0.03, 0.3, 1e6), budgets=(20, 40), eta=3, seeds=2)


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


# --- specs ----------------------------------------------------------------------------------------


def test_rung_sizes_and_bad_spaces():
    assert SearchSpace().rung_sizes() == [6, 2, 1, 1, 1, 1]  # 0.01 to 0.32 (x2), 500 to 16,000 steps, keep 1/3
    assert SearchSpace(lrs=(0.1, 0.2, 0.3, 0.4), budgets=(1, 2, 3), eta=2).rung_sizes() == [4, 2, 1]
    # at most 2000 epochs of the fit split: 64 samples in batches of 64 stop at 2000 steps; 640 samples
    # (5 steps an epoch, kappa 0.2) at 8000; 12,800 samples (100 steps an epoch) take every rung
    every = [(500, 6), (1000, 2), (2000, 1), (4000, 1), (8000, 1), (16000, 1)]
    assert SearchSpace().rungs(64, 128) == every[:3]
    assert SearchSpace().rungs(640, 128) == every[:5]
    assert SearchSpace().rungs(12_800, 128) == every
    assert SearchSpace(max_epochs=None).rungs(64, 128) == every
    assert SearchSpace(max_epochs=1).rungs(64, 128) == [(500, 6)]  # the smallest budget always
    # the first rung is a one-seed screen only where two rungs follow it
    assert [SearchSpace().rung_seeds(n) for n in (1, 2, 3, 4)] == [[2], [2, 2], [1, 2, 2], [1, 2, 2, 1]]
    assert SearchSpace(screen_seeds=None).rung_seeds(3) == [2, 2, 2] == SearchSpace(screen_seeds=5).rung_seeds(3)
    # once one learning rate has scored alone on every seed (rung 3: 6 -> 2 -> 1), the rungs that only
    # choose its budget score on one seed; a rate alone only in the screen has not been checked yet
    assert SearchSpace().rung_seeds(6) == [1, 2, 2, 1, 1, 1]
    assert SearchSpace(extend_seeds=None).rung_seeds(6) == [1, 2, 2, 2, 2, 2]
    assert SearchSpace(lrs=(0.1,), budgets=(1, 2, 3, 4)).rung_seeds(4) == [1, 2, 1, 1]
    assert SearchSpace(lrs=(0.1,), budgets=(1, 2, 3, 4), screen_seeds=None).rung_seeds(4) == [2, 1, 1, 1]
    assert [SearchSpace().is_screen(6, r) for r in range(6)] == [True] + [False] * 5
    assert not SearchSpace().is_screen(2, 0)
    for changes, message in ((dict(lrs=()), "search.lrs is empty"), (dict(budgets=(0,)), "search.budgets=0"),
                             (dict(eta=1), "search.eta=1"), (dict(val_fraction=1.0), "search.val_fraction=1.0"),
                             (dict(screen_seeds=0), "search.screen_seeds=0"),
                             (dict(extend_seeds=0), "search.extend_seeds=0")):
        with pytest.raises(SpecError, match=message):
            SearchSpace(**changes)


def test_search_specs_name_their_teacher_only_when_they_read_one():
    lt = SearchSpec(DIGITS, STUDENT, ObjectiveSpec("lt"), 0.5, BASE, SPACE)
    kd = SearchSpec(DIGITS, STUDENT, ObjectiveSpec("kd", tau=4.0), 0.5, BASE, SPACE, TEACHER)
    assert lt.job_key == kd.job_key and lt.id != kd.id  # one pack, two searches
    assert replace(lt, base=replace(BASE, lr=0.3, steps=7)).id != lt.id  # the base's other fields count...
    assert replace(lt, base=replace(BASE, lr=0.3)).job_key == lt.job_key  # ...its lr does not pack apart
    assert lt.recipe(0.3, 20) == replace(BASE, lr=0.3, steps=20)
    with pytest.raises(SpecError, match="objective 'kd' needs teacher"):
        SearchSpec(DIGITS, STUDENT, ObjectiveSpec("kd"), 0.5, BASE, SPACE)
    with pytest.raises(SpecError, match="objective 'lt' takes no teacher"):
        SearchSpec(DIGITS, STUDENT, ObjectiveSpec("lt"), 0.5, BASE, SPACE, TEACHER)
    adam = SearchSpec(DIGITS, STUDENT, ObjectiveSpec("lt"), 0.5, replace(BASE, optimizer="adam"), SPACE)
    assert adam.id != lt.id and adam.job_key != lt.job_key  # Adam's lrs are searched too, in a pack of their own


# --- the search, on real training -----------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_job():
    """lt and kd of one student at kappa 0.5 (M = 200): the data, the teacher logits, the two searches."""
    from kdscale.teacher import get_teacher

    loaded = datasets.load(DIGITS, 400)
    teacher = get_teacher(TEACHER, 400, log=lambda message: None)
    specs = [SearchSpec(DIGITS, STUDENT, ObjectiveSpec("lt"), 0.5, BASE, SPACE),
             SearchSpec(DIGITS, STUDENT, ObjectiveSpec("kd", tau=4.0), 0.5, BASE, SPACE, TEACHER)]
    return loaded, {TEACHER.id: teacher.logits_train}, specs


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_an_adam_search_packs_its_learning_rates_and_keeps_the_rest_of_its_recipe(digits_job, optimizer):
    """Adam(W) candidates with a learning rate each train in one pack (StackedAdam, checked against
    torch.optim in tests/test_packed.py); the chosen recipe keeps the base's optimizer and decay."""
    loaded, logits, _ = digits_job
    base = RecipeSpec(optimizer=optimizer, lr=1e-3, weight_decay=0.05, steps=40, batch_size=64)
    spec = SearchSpec(DIGITS, STUDENT, ObjectiveSpec("lt"), 0.5, base,
                      replace(SPACE, lrs=(3e-4, 3e-3, 3e-2), budgets=(60, 120)))
    lines = []
    result, = run_job([spec], loaded, logits, log=lines.append)
    assert "rung 1/2, 60 steps, 6 students in one pack" in lines[0]  # 3 lrs x 2 seeds
    first = [c for c in result["candidates"] if c["rung"] == 0]
    assert [c["lr"] for c in first] == [3e-4, 3e-3, 3e-2] and not any(c["diverged"] for c in first)
    best = max(first, key=lambda c: c["val_acc"])
    assert best["lr"] == 3e-2 and best["val_acc"] > 0.2  # chance is 0.1; 3e-4 has not moved in 60 steps
    chosen = chosen_recipe(result)  # the winner's lr / LR_MARGIN for twice its steps
    assert (chosen.optimizer, chosen.weight_decay, chosen.batch_size) == (optimizer, 0.05, 64)
    assert (chosen.lr, chosen.steps) == (0.015, 120)


def test_the_default_space_follows_the_optimizer():
    from kdscale.search import ADAM_LRS, LRS, QUICK_SPACE, default_space

    assert default_space("sgd") == SearchSpace() and default_space("sgd", quick=True) == QUICK_SPACE
    assert default_space("adamw").lrs == ADAM_LRS and ADAM_LRS[0] == 1.25e-4 and ADAM_LRS[-1] == 1.6e-2 and len(ADAM_LRS) == 8
    assert default_space("adam", quick=True).budgets == QUICK_SPACE.budgets and LRS[0] == 0.01


def test_successive_halving_keeps_the_best_third_and_the_winner_is_the_best_seen(digits_job):
    loaded, logits, specs = digits_job
    lines = []
    results = run_job(specs, loaded, logits, log=lines.append)
    assert len(lines) == 2 and "rung 1/2, 20 steps, 16 students in one pack" in lines[0]  # 2 specs x 4 lrs x 2 seeds
    for spec, result in zip(specs, results):
        assert result["id"] == spec.id and (result["n_fit"], result["n_val"]) == (160, 40)
        first, second = ([c for c in result["candidates"] if c["rung"] == r] for r in (0, 1))
        assert [c["lr"] for c in first] == [0.003, 0.03, 0.3, 1e6] and all(c["steps"] == 20 for c in first)
        diverged = next(c for c in first if c["lr"] == 1e6)
        assert diverged["diverged"] == 2 and diverged["val_acc"] == 0.0  # both seeds
        ranked = sorted((c for c in first if not c["diverged"]),
                        key=lambda c: (-min(c["val_acc_by_seed"]), -c["val_acc"], c["val_loss"]))
        assert [(c["lr"], c["steps"]) for c in second] == [(c["lr"], 40) for c in ranked[:2]]  # ceil(4 / 3) = 2
        winner = max(result["candidates"], key=lambda c: (min(c["val_acc_by_seed"]), c["val_acc"], -c["val_loss"]))
        assert (result["best"]["lr"], result["best"]["steps"]) == (winner["lr"], winner["steps"])
        assert from_dict(RecipeSpec, result["recipe"]) == chosen_recipe(result)  # the stored file says the same
        assert chosen_recipe(result).lr == max(chosen_recipe(result).lr, 0.003)  # never below the smallest searched
        assert all(len(c["val_acc_by_seed"]) == 2 and np.mean(c["val_acc_by_seed"]) == pytest.approx(c["val_acc"])
                   for c in result["candidates"])
        assert "the validation split holds 40 samples: the choice is noisy" in result["warnings"]
    again = run_job(specs, loaded, logits)
    assert [r["candidates"] for r in again] == [r["candidates"] for r in results]  # deterministic
    # every seed's score is that seed's own: the winner trained alone on seed 1's split scores the same
    from kdscale.searchjob import _split_data
    from kdscale.train import train

    spec, result = specs[0], results[0]
    data, _, n_val = _split_data(spec, 1, loaded, None, "cpu")
    alone = train(spec.student, spec.objective, spec.recipe(result["best"]["lr"], result["best"]["steps"]), 1, data,
                  loaded.info.num_classes, max_reports=1)
    best = next(c for c in result["candidates"] if (c["lr"], c["steps"]) == (result["best"]["lr"], result["best"]["steps"]))
    assert abs(alone.metrics["test_acc"] - best["val_acc_by_seed"][1]) <= 1 / n_val


def test_a_screen_scores_the_first_rung_on_one_seed_and_never_chooses_the_recipe(digits_job):
    loaded, logits, specs = digits_job
    three = SearchSpace(lrs=(0.003, 0.03, 0.3, 1e6), budgets=(10, 20, 40), eta=3, seeds=2)
    specs = [replace(spec, space=three) for spec in specs]
    lines = []
    results = run_job(specs, loaded, logits, log=lines.append)
    assert "rung 1/3, 10 steps, 8 students in one pack" in lines[0]  # 2 specs x 4 lrs x 1 seed
    for result in results:
        first, second = ([c for c in result["candidates"] if c["rung"] == r] for r in (0, 1))
        assert all(c["screen"] and len(c["val_acc_by_seed"]) == 1 for c in first)
        assert all("screen" not in c and len(c["val_acc_by_seed"]) == 2 for c in second)
        ranked = sorted((c for c in first if not c["diverged"]), key=lambda c: (-c["val_acc"], c["val_loss"]))
        assert [c["lr"] for c in second] == [c["lr"] for c in ranked[:2]]  # the screen picked rung 2's two
        chosen = [c for c in result["candidates"] if "screen" not in c and not c["diverged"]]
        winner = max(chosen, key=lambda c: (min(c["val_acc_by_seed"]), c["val_acc"], -c["val_loss"]))
        assert (result["best"]["lr"], result["best"]["steps"]) == (winner["lr"], winner["steps"])
        assert result["best"]["steps"] in (20, 40)  # never the screen's, however well it scored


def test_the_rungs_that_only_choose_a_budget_score_on_one_seed_and_may_choose_it(digits_job):
    from kdscale.search import carried

    loaded, logits, specs = digits_job
    four = SearchSpace(lrs=(0.003, 0.03, 0.3), budgets=(10, 20, 40, 80), eta=3, seeds=2)  # 3 -> 1 -> 1 -> 1
    specs = [replace(spec, space=four) for spec in specs]
    lines = []
    results = run_job(specs, loaded, logits, log=lines.append)
    assert "rung 2/4, 20 steps, 4 students in one pack" in lines[1]  # 2 specs x 1 lr x 2 seeds
    assert "rung 3/4, 40 steps, 2 students in one pack" in lines[2]  # 2 specs x 1 lr x 1 seed
    for result in results:
        alone, *longer = [c for c in result["candidates"] if c["rung"] >= 1]
        assert len(alone["val_acc_by_seed"]) == 2 and longer and all(
            len(c["val_acc_by_seed"]) == 1 and "screen" not in c for c in longer)
        for c in longer:  # each rung trains what `carried` passed it: the same rate, or half a collapsed one
            assert [c["lr"]] == carried(four, [d for d in result["candidates"] if d["rung"] < c["rung"]], c["rung"] - 1, 10)
        chosen = [c for c in result["candidates"] if "screen" not in c and not c["diverged"]]
        winner = min(chosen, key=lambda c: (-c["val_acc_min"], -c["val_acc"], c["val_loss"], c["steps"]))
        assert (result["best"]["lr"], result["best"]["steps"]) == (winner["lr"], winner["steps"])


def test_the_search_never_reads_the_test_set(digits_job):
    """NaN test inputs and shuffled test labels: a search that read the test set would choose otherwise."""
    loaded, logits, specs = digits_job
    poisoned = replace(loaded, x_test=np.full_like(loaded.x_test, np.nan),
                       y_test=np.random.default_rng(0).permutation(loaded.y_test))
    clean, dirty = run_job(specs, loaded, logits), run_job(specs, poisoned, logits)
    assert [(r["candidates"], r["best"]) for r in clean] == [(r["candidates"], r["best"]) for r in dirty]


def test_a_stored_search_round_trips(digits_job, tmp_path):
    loaded, logits, specs = digits_job
    result = run_job(specs[:1], loaded, logits)[0]
    assert read_search(str(tmp_path), specs[0].id) is None
    path = write_search(str(tmp_path), result)
    assert path == search_path(str(tmp_path), specs[0].id) and path.endswith(f"_searches/{specs[0].id}.json")
    stored = read_search(str(tmp_path), specs[0].id)
    assert stored["best"] == result["best"] and chosen_recipe(stored) == chosen_recipe(result)


# --- kdscale tune -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--student", "transformer:width=8"], "student: model.family: unknown 'transformer'"),
    (["--kappas", "0"], "tune.kappa=0.0 is invalid"),
    (["--kappas", "0.1", "-1"], "tune.kappa=-1.0 is invalid"),
    (["--search-seeds", "0"], "search.seeds=0 is invalid"),
    (["--val-fraction", "1"], "search.val_fraction=1.0 is invalid"),
    (["--kappas", "0.002"], "tune.kappa=0.002 is invalid: M = 8 samples"),
    (["--budgets", "0"], "search.budgets=0 is invalid"),
    (["--objectives", "kd"], "--objectives kd needs --teacher"),
    (["--dataset", "digits", "--n-teacher", "500", "--kappas", "5"], "maximum kappa is 2.874"),
])
def test_tune_bad_input_is_one_line_before_compute(argv, message, tmp_path, capsys, monkeypatch):
    import kdscale.searchjob

    monkeypatch.setattr(kdscale.searchjob, "run_job", lambda *a, **k: pytest.fail("searched on bad input"))
    defaults = {"--student": "cnn1d:width=16", "--kappas": "0.1"}
    argv = [*argv, *[w for flag, value in defaults.items() if flag not in argv for w in (flag, value)]]
    code = cli.main(["tune", *argv, "--storage", str(tmp_path / "results"),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("kdscale: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results" / "_searches").exists()


@pytest.mark.slow
def test_kdscale_tune_searches_stores_logs_and_reuses(tmp_path, capsys):
    from kdscale.tracking import search_runs

    argv = ["tune", "--dataset", "digits", "--n-teacher", "400", "--student", "mlp:width=16", "--teacher",
            "mlp:width=32", "--objectives", "lt", "kd", "--kappas", "0.5", "--lrs", "0.01", "0.1", "--budgets",
            "20", "40", "--storage", str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--cache", str(tmp_path / "cache")]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    rows = [line for line in out.out.splitlines() if line.strip().startswith("0.5 ")]
    assert len(rows) == 2 and all(row.split()[-1] in ("ran",) or " ran " in row for row in rows)
    runs = search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert len(runs) == 2 and {r["status"] for r in runs} == {"FINISHED"}
    assert cli.main(argv) == 0  # a rerun reads the stored searches and runs nothing
    again = capsys.readouterr()
    assert again.err.count("stored (") == 2 and len(search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")) == 2


def test_tune_takes_its_search_space_from_the_search_defaults_and_the_flags():
    """`kdscale tune` leaves a search setting it is not given to the space it starts from: --quick's
    one seed, not the full search's two (a literal default of 2 once overrode it)."""
    from kdscale.search import QUICK_SPACE

    parser = cli.build_parser()
    base = ["tune", "--dataset", "digits", "--n-teacher", "400", "--student", "mlp:width=16", "--kappas", "0.5"]
    space = lambda *extra: cli.search_specs_from_flags(parser.parse_args([*base, *extra]))[0].space  # noqa: E731
    assert space() == SearchSpace() and space("--quick") == QUICK_SPACE and QUICK_SPACE.seeds == 1
    given = space("--quick", "--search-seeds", "3", "--eta", "2", "--val-fraction", "0.25", "--lrs", "0.1", "0.2")
    assert given == replace(QUICK_SPACE, seeds=3, eta=2, val_fraction=0.25, lrs=(0.1, 0.2))


def _candidate(lr, steps, low, diverged=0):
    return {"lr": lr, "steps": steps, "val_acc_min": low, "val_acc": low + 0.01, "val_loss": 1.0, "diverged": diverged}


TO_4000 = SearchSpace(budgets=(500, 1000, 2000, 4000))  # the figures below, budgets as of search version 3


def test_a_lone_rate_that_collapses_is_carried_halved():
    from kdscale.search import carried

    space = SearchSpace()  # 0.01 to 0.32; 10 classes: collapsed at or below 0.15

    def at(rung, lr, steps, low, diverged=0):
        return {**_candidate(lr, steps, low, diverged), "rung": rung}
    many = [at(1, 0.08, 1000, 0.7), at(1, 0.32, 1000, 0.1), at(1, 0.16, 1000, 0.8), at(1, 0.04, 1000, 0.9, 1)]
    assert carried(space, many, 1, 10) == [0.16, 0.08, 0.32]  # ranked, the diverged dropped: ranking does the rest
    # version 7's cnn1d-16 lt at kappa 1: 0.32 scored 0.905 at 2000 steps and 0.1 alone at 4000
    learned = [at(1, 0.32, 1000, 0.89), at(1, 0.16, 1000, 0.88), at(2, 0.32, 2000, 0.905)]
    assert carried(space, learned, 2, 10) == [0.32]
    assert carried(space, learned + [at(3, 0.32, 4000, 0.1)], 3, 10) == [0.16]
    assert carried(space, learned + [at(3, 0.32, 4000, 0.15)], 3, 10) == [0.16]  # 1.5 x chance
    assert carried(space, learned + [at(3, 0.32, 4000, 0.16)], 3, 10) == [0.32]  # above it: the rate goes on
    assert carried(space, learned + [at(3, 0.32, 4000, 0.7)], 3, 2) == [0.16]  # two classes: chance is 0.5
    assert carried(space, [at(1, 0.32, 1000, 0.6), at(2, 0.32, 2000, 0.7)], 2, 2) == [0.32]  # never above 0.75
    assert carried(space, learned + [at(3, 0.32, 4000, 0.0, 2)], 3, 10) == [0.16]  # diverged: halved too
    # a rate that has not learned yet (at chance before too) is not collapsed: it goes on
    assert carried(space, [at(1, 0.32, 1000, 0.1), at(2, 0.32, 2000, 0.1)], 2, 10) == [0.32]
    assert carried(space, [at(1, 0.02, 1000, 0.5), at(2, 0.02, 2000, 0.1)], 2, 10) == [0.01]
    assert carried(space, [at(1, 0.01, 1000, 0.5), at(2, 0.01, 2000, 0.1)], 2, 10) == []  # never below the smallest


def test_a_cell_trains_at_the_longest_budget_within_noise_at_half_the_lr_and_twice_the_steps():
    spec = SearchSpec(data=DataSpec("digits", n_teacher=200), student=ModelSpec("mlp", width=8),
                      objective=ObjectiveSpec("lt"), kappa=1.0, base=BASE, space=TO_4000)

    def stored(candidates, n_val=100):
        finite = [c for c in candidates if not c["diverged"]]
        best = min(finite, key=lambda c: (-c["val_acc_min"], -c["val_acc"], c["steps"]))
        return {"spec": to_dict(spec), "n_fit": 160, "n_val": n_val, "candidates": candidates, "best": best}

    # one standard error of the winner's 0.60 on 100 samples: sqrt(0.6 * 0.4 / 100) = 0.049, so 0.56
    # is within it and 0.54 is not; the diverged 4000-step run never counts
    found = stored([_candidate(0.32, 500, 0.60), _candidate(0.16, 1000, 0.56), _candidate(0.32, 2000, 0.54),
                    _candidate(0.08, 4000, 0.70, diverged=1)])
    assert trained_with(found) == (0.08, 2000)  # 0.16 / 2 for 1000 x 2 steps
    assert chosen_recipe(found) == replace(BASE, lr=0.08, steps=2000)
    # the steps stop at the largest budget searched (4000); the lr stops at the smallest (0.01)
    assert trained_with(stored([_candidate(0.32, 4000, 0.9)])) == (0.16, 4000)
    # a screen's score never chooses the recipe: the best fully scored candidate does
    screened = stored([{**_candidate(0.32, 500, 0.95), "screen": True}, _candidate(0.16, 1000, 0.7)])
    assert trained_with(screened) == (0.08, 2000)
    assert trained_with(stored([_candidate(0.01, 500, 0.9)])) == (0.01, 500)
    assert trained_with(stored([_candidate(0.02, 500, 0.9)])) == (0.01, 1000)
    # a search stored before these rules (its "recipe" at the winner) trains by them all the same
    old = {**stored([_candidate(0.32, 1000, 0.8)]), "recipe": to_dict(spec.recipe(0.32, 1000))}
    assert chosen_recipe(old) == replace(BASE, lr=0.16, steps=2000)


def test_the_last_rung_is_skipped_only_where_it_cannot_change_the_recipe():
    """Where the recipe chosen so far comes from the one learning rate the last rung would train, and
    already trains its budget, any score that rung could give leaves trained_with's answer as it is."""
    spec = SearchSpec(data=DataSpec("digits", n_teacher=200), student=ModelSpec("mlp", width=8),
                      objective=ObjectiveSpec("lt"), kappa=1.0, base=BASE, space=TO_4000)  # lrs 0.01 to 0.32
    n_val = 100

    def result(candidates):
        return {"spec": to_dict(spec), "n_fit": 160, "n_val": n_val, "candidates": candidates, "best": {}}
    cases = {  # candidates before the last rung, and whether it is decided with 0.08 carried to 4000 steps
        "2000 in the noise": ([_candidate(0.16, 500, 0.5), _candidate(0.08, 1000, 0.60), _candidate(0.08, 2000, 0.58)],
                              True),
        "2000 out of it": ([_candidate(0.08, 1000, 0.60), _candidate(0.08, 2000, 0.50)], False),
        "lr at the floor": ([_candidate(0.01, 1000, 0.50), _candidate(0.01, 2000, 0.60)], False),  # trains 2000
        "another lr wins": ([_candidate(0.16, 1000, 0.70), _candidate(0.08, 2000, 0.60)], False),
    }
    for name, (candidates, decided) in cases.items():
        carried = candidates[-1]["lr"]
        assert last_rung_decided(spec, candidates, [carried], 4000, n_val) == decided, name
        if decided:  # every score the 4000-step rung could give: the same recipe
            before = trained_with(result(candidates))
            for score in np.linspace(0.0, 1.0, 41):
                for diverged in (0, 1):
                    after = trained_with(result(candidates + [_candidate(carried, 4000, score, diverged)]))
                    assert after == before, (name, score, diverged)
        else:  # some score changes it: the rung is worth running
            before = trained_with(result(candidates))
            assert any(trained_with(result(candidates + [_candidate(carried, 4000, score)])) != before
                       for score in np.linspace(0.0, 1.0, 41)), name
    assert not last_rung_decided(spec, cases["2000 in the noise"][0], [0.08, 0.16], 4000, n_val)  # two carried
    # a cell whose search stops below the space's largest budget (700 epochs of 160 samples in batches
    # of 64: 2000 steps) never trains longer than that, margin or not; so a last rung whose carried lr
    # would give the recipe chosen so far is decided there too
    short = replace(spec, space=replace(TO_4000, max_epochs=700))
    assert short.space.top(160, BASE.batch_size) == 2000 and spec.space.top(160, BASE.batch_size) == 4000

    def short_result(candidates):
        return {**result(candidates), "spec": to_dict(short)}
    before = [_candidate(0.16, 500, 0.62), _candidate(0.16, 1000, 0.60)]
    assert trained_with(short_result(before)) == (0.08, 2000)
    assert last_rung_decided(short, before, [0.16], 2000, n_val)
    for score in np.linspace(0.0, 1.0, 41):
        assert trained_with(short_result(before + [_candidate(0.16, 2000, score)])) == (0.08, 2000)
    assert trained_with(result(before + [_candidate(0.16, 2000, 0.61)])) == (0.08, 4000)  # where 4000 is reached


def test_a_search_that_skips_its_last_rung_says_so_and_keeps_its_recipe(digits_job):
    loaded, logits, specs = digits_job
    four = SearchSpace(lrs=(0.003, 0.03, 0.3, 1e6), budgets=(10, 20, 40, 80), eta=3, seeds=2)
    lines = []
    results = run_job([replace(spec, space=four) for spec in specs], loaded, logits, log=lines.append)
    for result in results:
        last = [c for c in result["candidates"] if c["steps"] == 80]
        assert result["skipped_last_rung"] == (not last)
        if result["skipped_last_rung"]:
            assert trained_with(result)[1] >= 80
    assert len(lines) == 4 - all(r["skipped_last_rung"] for r in results)
