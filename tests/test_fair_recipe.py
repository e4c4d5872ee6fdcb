"""studies/fair_recipe.py (recipe protocols compared) and its section: the section's numbers on
hand-made tables (PI and its t CI, PG, the recipes, the failed kd trials, kappa*, the answer's
branches), bad input as one line before compute, and the --quick run end to end (marked slow).
The validation split and the search itself: tests/test_search.py."""
import json
import math

import pandas as pd
import pytest

from analysis.sections import fair_recipe, render
from kdscale.search import trained_with
from tests.scripts import assert_refused, call_script, run_script

T_975_2 = 4.302652730  # Student-t 97.5% quantile, 2 degrees of freedom
DEFAULT = (0.02, "steps=1500")


def row(objective, kappa, seed, acc, status="ok", recipe=DEFAULT):
    kd = objective == "kd"
    return {"trial_id": f"{objective}-{kappa}-{seed}-{recipe}", "status": status, "teacher": "cnn1d-16",
            "student": "cnn1d-16", "dataset": "mnist1d", "n_teacher": 4000, "teacher_id": "t0", "kappa": kappa,
            "objective": objective, "seed": seed, "tau": 4.0 if kd else math.nan, "alpha": 0.0 if kd else math.nan,
            "tau_squared": True if kd else None, "epsilon": math.nan,
            "test_acc": acc if status == "ok" else math.nan, "lr": recipe[0], "budget": recipe[1]}


def grid(cells, recipes=None):
    """A table from {kappa: (lt accs by seed, kd accs by seed)}; None in kd means diverged;
    recipes: {(objective, kappa): (lr, budget)}, default the fixed recipe."""
    recipes = recipes or {}
    rows = []
    for kappa, (lt, kd) in cells.items():
        for seed, (a, b) in enumerate(zip(lt, kd)):
            rows.append(row("lt", kappa, seed, a, recipe=recipes.get(("lt", kappa), DEFAULT)))
            rows.append(row("kd", kappa, seed, b, "ok" if b is not None else "diverged",
                            recipes.get(("kd", kappa), DEFAULT)))
    return pd.DataFrame(rows)


# --- the numbers, by hand ----------------------------------------------------------------------------


def test_summary_pi_ci_and_pg_by_hand():
    table = grid({0.1: ((0.5, 0.5, 0.8), (0.6, 0.7, 0.9)),  # PI 0.1, 0.2, 0.1; PG 1.2, 1.4, 1.125
                  1.0: ((0.8, 0.8, 0.9), (0.9, None, 0.12))})  # seed 1 diverged: unpaired; 0.12 counts
    summary = fair_recipe.summarize(table).set_index("kappa")
    first = summary.loc[0.1]
    assert first["n"] == 3 and first["pi_mean"] == pytest.approx(0.4 / 3)
    assert first["pi_sd"] == pytest.approx(0.1 / math.sqrt(3))  # deviations -1/30, 2/30, -1/30, ddof 1
    half = T_975_2 * 0.1 / 3  # t * sd / sqrt(3)
    assert (first["pi_low"], first["pi_high"]) == (pytest.approx(0.4 / 3 - half), pytest.approx(0.4 / 3 + half))
    assert first["pg_mean"] == pytest.approx((1.2 + 1.4 + 1.125) / 3)
    assert (first["lt_mean"], first["lt_sd"]) == (pytest.approx(0.6), pytest.approx(math.sqrt(0.03)))
    assert first["kd_mean"] == pytest.approx(2.2 / 3)
    second = summary.loc[1.0]
    assert second["n"] == 2 and second["pi_mean"] == pytest.approx((0.1 - 0.78) / 2)
    assert second["lt_mean"] == pytest.approx(0.85)  # the paired seeds' lt only (0 and 2)


def test_failed_trials_count_diverged_and_below_chance():
    table = grid({0.1: ((0.5, 0.1, 0.5), (0.6, 0.7, 0.8)),
                  1.0: ((0.8, 0.8, 0.8), (None, 0.14, 0.16))})  # 1.5 x chance 0.1 = 0.15
    failed = fair_recipe.failed_trials(table, chance=0.1).set_index("kappa")
    assert failed.loc[0.1].tolist() == [3, 0, 0, 0]
    assert failed.loc[1.0].tolist() == [3, 1, 1, 2]  # trials, diverged, below_chance, failed
    assert fair_recipe.failed_trials(table, chance=0.05).loc[1, "failed"] == 1  # 0.14 > 0.075: only the NaN
    lt = fair_recipe.failed_trials(table, chance=0.1, objective="lt").set_index("kappa")["failed"]
    assert lt.to_dict() == {0.1: 1, 1.0: 0}


def test_recipes_table_reads_the_rows():
    table = grid({0.1: ((0.5, 0.5), (0.6, 0.7)), 1.0: ((0.8, 0.8), (0.9, 0.9))},
                 {("lt", 0.1): (0.16, "steps=2000"), ("kd", 0.1): (0.04, "steps=1000"),
                  ("lt", 1.0): (0.32, "steps=4000")})
    got = fair_recipe.recipes(table)
    assert got.values.tolist() == [["lt", 0.1, 0.16, "steps=2000", 2], ["lt", 1.0, 0.32, "steps=4000", 2],
                                   ["kd tau=4", 0.1, 0.04, "steps=1000", 2], ["kd tau=4", 1.0, 0.02, "steps=1500", 2]]


def test_kappa_star_crossing_above_and_not_computed():
    # PG 1.2 at kappa 0.1 and 0.8 at 1 in both seeds: crossing halfway in log kappa, sqrt(0.1)
    crossing = fair_recipe.kappa_star(grid({0.1: ((0.5, 0.5), (0.6, 0.6)), 1.0: ((0.5, 0.5), (0.4, 0.4))}), 200)
    assert crossing["status"] == "crossing" and crossing["kappa_star"] == pytest.approx(math.sqrt(0.1))
    assert crossing["short"] == "0.316 [0.316, 0.316]"
    above = fair_recipe.kappa_star(grid({0.1: ((0.5, 0.5), (0.6, 0.7)), 1.0: ((0.5, 0.5), (0.6, 0.6))}), 200)
    assert above["status"] == "above" and above["short"] == "> 1 (PG > 1 at every kappa)"
    none = fair_recipe.kappa_star(grid({0.1: ((0.5, 0.5), (None, None))}), 200)
    assert none["short"] == "not computed" and math.isnan(none["kappa_star"])


def test_lt_change_is_paired_by_seed():
    before = grid({1.0: ((0.6, 0.65, 0.7), (0.7, 0.7, 0.7))})
    after = grid({1.0: ((0.9, 0.9, 0.9), (0.8, 0.8, 0.8))})
    change = fair_recipe.lt_change(before, after).iloc[0]  # 0.3, 0.25, 0.2
    assert change["n"] == 3 and change["mean"] == pytest.approx(0.25) and change["sd"] == pytest.approx(0.05)
    assert change["low"] == pytest.approx(0.25 - T_975_2 * 0.05 / math.sqrt(3))  # 0.126: above 0
    assert fair_recipe.sign(change) == "above"
    assert fair_recipe.sign({**change, "low": -0.1}) == "unclear"
    assert fair_recipe.sign({**change, "n": 1}) == "unclear"  # one seed: no interval


# --- the section and its answer ---------------------------------------------------------------------


SEARCHED = {("lt", 0.1): (0.04, "steps=1000"), ("kd", 0.1): (0.04, "steps=1000"),
            ("lt", 1.0): (0.32, "steps=2000"), ("kd", 1.0): (0.32, "steps=2000")}


def protocols(lt_breaks_kd=True, fair_lt=(0.9, 0.92), small_lt=(0.5, 0.5)):
    """fixed: kd ahead everywhere; lt: lt's recipe for both (kd at chance at kappa 1 if lt_breaks_kd);
    fair: kd's own recipe at kappa 1 (lr 0.04), lt as under lt (fair_lt at kappa 1)."""
    fixed = grid({0.1: ((0.4, 0.42), (0.6, 0.62)), 1.0: ((0.6, 0.62), (0.8, 0.8))})
    kd_lt = (0.1, 0.1) if lt_breaks_kd else (0.85, 0.85)
    lt = grid({0.1: (small_lt, (0.7, 0.7)), 1.0: (fair_lt, kd_lt)}, SEARCHED)
    fair = grid({0.1: (small_lt, (0.7, 0.7)), 1.0: (fair_lt, (0.85, 0.85))},
                SEARCHED | {("kd", 1.0): (0.04, "steps=4000")})
    return {"fixed": fixed, "lt": lt, "fair": fair}


def answer_of(section):
    return next(line for line in render(section).splitlines() if line.startswith("**Answer.**"))


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_section_tables_figures_and_the_answer_where_kd_breaks_under_lt(tmp_path):
    section = fair_recipe.section(protocols(), tmp_path, n_boot=200)
    assert set(section.tables) == {"summary", "recipes", "kappa_star", "kd_failed", "lt_failed", "lt_change"}
    assert section.tables["summary"]["protocol"].tolist() == ["fixed", "fixed", "lt", "lt", "fair", "fair"]
    assert section.tables["kd_failed"].set_index(["protocol", "kappa"])["failed"].to_dict() == {
        ("fixed", 0.1): 0, ("fixed", 1.0): 0, ("lt", 0.1): 0, ("lt", 1.0): 2, ("fair", 0.1): 0, ("fair", 1.0): 0}
    recipes = section.tables["recipes"].set_index(["protocol", "arm", "kappa"])
    assert recipes.loc[("fair", "kd tau=4", 1.0), "lr"] == 0.04 and recipes.loc[("lt", "kd tau=4", 1.0), "lr"] == 0.32
    assert [p.name for p in section.figures] == list(fair_recipe.FIGURES) and all(p.exists() for p in section.figures)
    text = answer_of(section)
    # PG: fixed 1.5/1.3 (never crosses); lt 1.4 then 0.1/0.91; fair 1.4 then 0.85/0.91
    assert text.startswith("**Answer.** kappa* is > 1 (PG > 1 at every kappa) under fixed, ")
    assert "PI is +0.200 (fixed), +0.200 (lt), +0.200 (fair) at the smallest kappa (0.1)" in text
    assert "+0.190 (fixed), -0.810 (lt), -0.060 (fair) at the largest (1)" in text
    assert ("Under lt's recipe kd failed at kappa = 1 (2 of 2 kd trials there diverged or ended below 1.5 x "
            "chance), at lr 0.32, where kd's own search chose lr 0.04") in text
    # lt: 0.61 (fixed) -> 0.91 (fair), +0.30 in each seed
    assert "raises acc(lt) at the largest kappa (1): 0.610 (fixed) to 0.910 (fair), +0.300 [+0.300, +0.300]" in text
    assert "over the grid the change is +0.090 to +0.300" in text
    assert "| 1 | 0.610 ± 0.014 | 0.800 ± 0.000 | 0.910 ± 0.014 | 0.100 ± 0.000 (2 failed) |" in render(section)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
@pytest.mark.parametrize("fair_lt, verb", [((0.5, 0.52), "lowers"), ((0.5, 0.8), "does not measurably change")])
def test_answer_where_kd_trains_under_lt_and_lt_does_not_gain(tmp_path, fair_lt, verb):
    text = answer_of(fair_recipe.section(protocols(lt_breaks_kd=False, fair_lt=fair_lt), tmp_path, n_boot=200))
    assert "Under lt's recipe kd trained at every kappa (no kd trial diverged or ended below 1.5 x chance)." in text
    assert f"Searching lt's recipe {verb} acc(lt) at the largest kappa (1)" in text and "lt itself" not in text


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_answer_where_the_searched_recipe_breaks_lt_itself(tmp_path):
    section = fair_recipe.section(protocols(small_lt=(0.1, 0.5)), tmp_path, n_boot=200)
    text = answer_of(section)  # one sentence for lt and fair, whose lt trials are the same
    assert text.count("lt itself failed") == 1
    assert ("lt itself failed under lt and fair at kappa = 0.1 (1 of 2 lt trials there diverged or ended below 1.5 x "
            "chance), at lr 0.04: PI there is inflated by a broken lt.") in text
    assert "| 0.1 | 0.410 ± 0.014 | 0.610 ± 0.014 | 0.300 ± 0.283 (1 failed) | 0.700 ± 0.000 |" in render(section)


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_answer_without_the_fair_protocol(tmp_path):
    tables = protocols()
    text = answer_of(fair_recipe.section({"fixed": tables["fixed"], "lt": tables["lt"]}, tmp_path, n_boot=200))
    assert "under fixed, " in text and "under fair" not in text and "Searching lt's recipe" not in text
    assert "at lr 0.32: PI there (and kappa* under lt) measures a broken kd." in text  # no kd search to cite


# --- the script ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds 0 is invalid: must be an integer >= 1"),
    (["--tau", "0"], "tau=0"),
    (["--kappas", "0.001"], "kappa=0.001 is invalid"),  # M = 4: no validation split for the searches
    (["--search-seeds", "0"], "search.seeds=0 is invalid"),
    (["--recipe", "lt"], "unrecognized arguments: --recipe"),  # the script runs all three protocols
])
def test_bad_input_is_one_line_before_compute(tmp_path, argv, message):
    assert_refused(call_script("fair_recipe", tmp_path, "--quick", *argv), message, tmp_path)


PROTOCOLS = ("fixed", "lt", "fair")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, ray_address):
    root = tmp_path_factory.mktemp("fair_recipe")
    return root, run_script("fair_recipe", root, "--quick", address=ray_address, timeout=900)


@pytest.mark.slow
def test_quick_runs_three_protocols_sharing_lt_and_reruns_nothing(quick, ray_address):
    from kdscale.tracking import search_runs

    root, done = quick
    assert done.returncode == 0, done.stderr[-3000:]
    results = root / "results"
    tables = {p: pd.read_parquet(results / f"fair_recipe_quick_{p}" / "results.parquet") for p in PROTOCOLS}
    for table in tables.values():
        assert len(table) == 8 and set(table["status"]) <= {"ok", "diverged"}
        assert sorted(table["objective"]) == ["kd"] * 4 + ["lt"] * 4
        assert set(table["kappa"]) == {0.05, 1.0} and set(table["seed"]) == {0, 1}
    assert set(zip(tables["fixed"]["lr"], tables["fixed"]["budget"])) == {(0.02, "steps=500")}
    lt = tables["lt"].set_index(["objective", "kappa", "seed"])[["lr", "budget"]]
    assert lt.loc["kd"].equals(lt.loc["lt"])  # lt's recipe for both arms
    # fair's lt trials are lt's (the same ids, trained once), its kd trials have kd's own search's recipe
    lt_rows = {p: tables[p][tables[p]["objective"] == "lt"].set_index("trial_id")["test_acc"] for p in ("lt", "fair")}
    assert lt_rows["fair"].sort_index().equals(lt_rows["lt"].sort_index())
    searches = [json.loads(path.read_text()) for path in (results / "_searches").glob("*.json")]
    assert sorted(s["spec"]["objective"]["name"] for s in searches) == ["kd", "kd", "lt", "lt"]
    chosen = {(s["spec"]["objective"]["name"], s["spec"]["kappa"]): (trained_with(s)[0], f"steps={trained_with(s)[1]}")
              for s in searches}  # the recipe a cell trains with (kdscale.search.trained_with), not the winner
    assert {(r.objective, r.kappa): (r.lr, r.budget) for r in tables["fair"].itertuples()} == chosen
    tracking = f"sqlite:///{root / 'mlflow.db'}"
    assert len(search_runs(tracking)) == 4  # lt's two searches ran once, for lt, and fair read them
    assert "fair_recipe_quick_fair: recipes by search (fair): 4 searches, 2 stored, 2 to run" in done.stderr
    analysis = results / "fair_recipe_quick_fair" / "analysis"
    assert "**Answer.**" in done.stdout and "## Recipe protocols" in (analysis / "report.md").read_text()
    assert all((analysis / name).exists() for name in fair_recipe.FIGURES)
    summary = pd.read_csv(analysis / "fair_recipe_summary.csv")
    assert summary[["protocol", "kappa"]].values.tolist() == [[p, k] for p in PROTOCOLS for k in (0.05, 1.0)]
    for name in ("recipes", "kappa_star", "kd_failed", "lt_change"):
        assert (analysis / f"fair_recipe_{name}.csv").exists()
    assert all((results / f"fair_recipe_quick_{p}" / "analysis" / "report.md").exists() for p in PROTOCOLS)

    again = run_script("fair_recipe", root, "--quick", "--no-analysis", address=ray_address, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    for p in PROTOCOLS:
        assert f"fair_recipe_quick_{p}: 8 trials, 8 already finished, 0 to train" in again.stderr
    assert "0 searches run (0 s), 0 trials trained (0 s)" in again.stderr and "recipe searches:" not in again.stderr
    assert len(search_runs(tracking)) == 4 and len(list((results / "_searches").glob("*.json"))) == 4
