"""The adaptive kappa* search (analysis.kappa_search, kdscale.adaptive), driven by a trial backend
whose PG curves and noise are planted (analysis.synthetic.PlantedBackend): no training, so its
logic is tested in seconds, and its coverage and cost measured over hundreds of replicates.

Planted truth: PG falls through 1 at kappa* with slope 0.1 per e-fold and levels off at 1 +- 0.5
(a tanh in log kappa), a seed effect of sd 0.01 shared across kappas and noise of sd 0.02 per
trial. The figures in docs/studies.md ("The adaptive kappa* search") are what the slow tests print.
"""
import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from analysis import AnalysisError
from analysis import crossover as xo
from analysis import scaling as sc
from analysis.increments import pair_by_seed
from analysis.kappa_search import COARSE_KAPPAS, SearchSettings, estimates, plan, search, split
from analysis.synthetic import PlantedBackend, SyntheticPair
from analysis.table import pair_info, prepare
from kdscale.errors import SpecError

PAIR = SyntheticPair("cnn1d-4", 100, "cnn1d-64", 10000)
LABEL = "cnn1d-64>cnn1d-4"
GRID = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0)  # the default fixed grid (studyargs.MAIN_KAPPAS)


def planted_star(replicate: int) -> float:
    """A kappa* drawn log-uniformly over 0.05..2.5, inside the range and off its grid points."""
    return float(np.exp(np.random.default_rng(1000 + replicate).uniform(np.log(0.05), np.log(2.5))))


def one_pair_search(replicate: int, settings=SearchSettings()):
    backend = PlantedBackend({PAIR: planted_star(replicate)}, replicate=replicate)
    return backend, search(backend.table, [LABEL], settings)


# --- the pieces ------------------------------------------------------------------------------------

@pytest.mark.parametrize("low, high, bracket, expected", [
    (0.5, 4.0, 2.5, [1.0, 2.0]),   # x8 > 2.5^2: thirds
    (0.1, 0.5, 2.5, [0.22]),       # x5: the middle, 2 significant digits
    (1.0, 2.0, 2.5, []),           # short enough
    (0.2, 0.21, 1.03, [0.205]),    # 2 digits would land on 0.2: 3
])
def test_split_places_kappas_in_log_kappa(low, high, bracket, expected):
    assert split(low, high, bracket, [low, high]) == expected


@pytest.mark.parametrize("field, value, message", [
    ("coarse", (0.1,), "needs 2 or more distinct kappas"),
    ("coarse_seeds", 1, "2 <= coarse_seeds <= min_seeds"),
    ("target", 1.0, "target=1.0 is invalid"),
    ("budget", 10, "the coarse pass alone takes 16"),
    ("bracket", 0.5, "bracket=0.5 is invalid"),
])
def test_bad_settings_fail_in_one_line_naming_the_field(field, value, message):
    with pytest.raises(AnalysisError, match=message):
        SearchSettings(**{field: value})


def test_the_first_round_is_the_coarse_pass_for_every_pair():
    steps = plan(None, {"a>b": {}, "c>d": {}}, SearchSettings())
    assert {pair: s[0].cells for pair, s in steps.items()} == {p: {k: 2 for k in COARSE_KAPPAS} for p in ("a>b", "c>d")}
    assert all(s[0].spent == 16 and not s[0].done for s in steps.values())


def test_a_search_finds_the_planted_kappa_within_target_and_budget():
    lines = []
    backend = PlantedBackend({PAIR: 0.3}, replicate=0)
    found = search(backend.table, [LABEL], SearchSettings(), log=lines.append)
    step = found.steps[LABEL][0]
    assert step.done and step.reason.startswith("interval within")
    assert step.ci_low <= 0.3 <= step.ci_high and step.ci_high / step.ci_low <= 1.25 ** 2
    assert step.spent <= SearchSettings().budget and step.spent == 2 * sum(found.design[LABEL].values())
    # its interval is the report's: the same function on the same table
    again = estimates(found.table, SearchSettings()).iloc[0]
    assert (again["kappa_star"], again["ci_low"], again["ci_high"]) == (step.kappa_star, step.ci_low, step.ci_high)
    assert lines[0] == "round 1: cnn1d-64>cnn1d-4 coarse pass, +4 kappas, +0 seeds (8 cells, 16 trials)"
    assert any(", +1 kappas" in line or ", +2 kappas" in line for line in lines[1:]), lines
    assert lines[-1].startswith(f"round {found.rounds + 1}: cnn1d-64>cnn1d-4 kappa* ") and ": done, " in lines[-1]


def test_a_killed_search_continues_and_a_finished_one_trains_nothing():
    backend = PlantedBackend({PAIR: 0.7}, replicate=4)
    quick = SearchSettings(n_boot=400, target=1.6, min_seeds=4)
    whole = search(backend.table, [LABEL], quick)
    trained: set = set()

    def fetch(design, stop_at=None):
        cells = {(k, s) for k, n in design[LABEL].items() for s in range(n)}
        if stop_at is not None and len(trained) >= stop_at:
            trained.update(sorted(cells - trained)[:3])  # killed: a few of the round's cells finished
            return None
        trained.update(cells)
        return backend.table(design)

    killed = search(lambda d: fetch(d, stop_at=8), [LABEL], quick)
    assert not killed.complete and 8 < len(trained) < sum(whole.design[LABEL].values())
    news = []

    def counting(design):
        before = len(trained)
        table = fetch(design)
        news.append(len(trained) - before)
        return table
    resumed = search(counting, [LABEL], quick)
    assert resumed.design == whole.design and len(trained) == sum(whole.design[LABEL].values())
    news.clear()
    search(counting, [LABEL], quick)
    assert sum(news) == 0  # a finished search again: every round finds its cells trained


@pytest.mark.parametrize("star, reason", [(30.0, "kd helps at every kappa of the range"),
                                          (0.002, "kd helps at no kappa of the range")])
def test_a_kappa_star_beyond_the_range_is_reported_censored_not_chased(star, reason):
    backend = PlantedBackend({PAIR: star}, replicate=1)
    step = search(backend.table, [LABEL], SearchSettings()).steps[LABEL][0]
    assert step.done and step.reason.startswith(reason) and np.isnan(step.kappa_star)
    assert step.spent <= 16 + 2 * (SearchSettings().min_seeds - 2)  # the coarse pass, then the end kappa up to min_seeds


def test_a_pair_whose_trials_all_failed_is_done_with_why():
    steps = plan(pd.DataFrame(), {LABEL: {0.1: 2, 4.0: 2}}, SearchSettings())
    assert steps[LABEL][0].done and "no kd trial" in steps[LABEL][0].reason


# --- the engine side: a plan in the StudySpec, the driver's spec, --grid's ids ---------------------

def test_a_study_plan_trains_exactly_its_cells():
    from kdscale.adaptive import design_spec, pair_labels
    from kdscale.config import DataSpec, RecipeSpec, parse_pair
    from kdscale.study import StudySpec

    base = StudySpec("s", DataSpec("mnist1d", 4000), (parse_pair("cnn1d:width=8>cnn1d:width=4"),
                                                      parse_pair("cnn1d:width=16>cnn1d:width=4")),
                     kappas=(0.1,), taus=(4.0,), recipe_policy="fixed", recipe=RecipeSpec(steps=10))
    labels = pair_labels(base)
    assert labels == ["cnn1d-8>cnn1d-4", "cnn1d-16>cnn1d-4"]
    spec = design_spec(base, {labels[0]: {0.1: 2, 0.5: 5}, labels[1]: {0.1: 3}})
    cells = sorted((t.teacher.model.label, t.kappa, t.objective.name, t.seed) for t in spec.trials())
    want = sorted((t, k, o, s) for t, k, n in (("cnn1d-8", 0.1, 2), ("cnn1d-8", 0.5, 5), ("cnn1d-16", 0.1, 3))
                  for o in ("lt", "kd") for s in range(n))
    assert cells == want
    grid = StudySpec(**{**base.__dict__, "kappas": (0.1, 0.5), "seeds": tuple(range(5)), "plan": ()})
    assert {t.id for t in spec.trials()} <= {t.id for t in grid.trials()}  # a plan's trials are the grid's
    with pytest.raises(SpecError, match=r"study.plan: cell \(0, 0.3, 2\) is invalid"):
        StudySpec(**{**base.__dict__, "plan": ((0, 0.3, 2),)})


def test_grid_keeps_the_default_grids_trial_ids():
    """Golden: the ids (trials with the base recipe, and searches) of the default grid, --recipe
    fixed and --quick: the trials' as the study built them before the adaptive search (commit
    136753e), the searches' as of kdscale.search.SEARCH_VERSION 8."""
    from tests.scripts import load_script

    module = load_script("model_size")
    golden = {(): ("model_size", "6ed2ce61205b674f"), ("--recipe", "fixed"): ("model_size_fixed", "dda3a1a7610968bf"),
              ("--quick",): ("model_size_quick", "90261e8a330d047c")}
    for argv, (name, digest) in golden.items():
        spec = module.build_spec(module.build_parser().parse_args([*argv, "--grid"]))
        ids = [t.id for t in spec._trials(lambda *cell: spec.recipe)] + [s.id for s in spec.searches()]
        assert (spec.name, hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16]) == (name, digest)
    for argv in ([], ["--adaptive"]):  # the search is the default
        adaptive = module.build_spec(module.build_parser().parse_args(argv))
        assert adaptive.name == "model_size_adaptive" and adaptive.kappas == COARSE_KAPPAS and adaptive.seeds == (0, 1)
    from kdscale import adaptive as flags

    assert (flags.BUDGET, flags.TARGET) == (SearchSettings().budget, SearchSettings().target)  # --help says them


# --- coverage and cost over replicates (slow) ------------------------------------------------------

def grid_interval(replicate: int, seeds: int) -> tuple[bool, float]:
    backend = PlantedBackend({PAIR: planted_star(replicate)}, replicate=replicate)
    row = estimates(backend.table({LABEL: {k: seeds for k in GRID}}), SearchSettings()).iloc[0]
    width = row["ci_high"] / row["ci_low"] if row["ci_low"] > 0 else np.inf
    return bool(row["ci_low"] <= planted_star(replicate) <= row["ci_high"]), width


# Replicates of the coverage tests: 50 in the suite (a coverage of 0.96 reads below 0.90 about 0.6% of
# the time); docs/studies.md's figures are KDSCALE_REPLICATES=200 (about 10 minutes each on 2 cores).
REPLICATES = int(os.environ.get("KDSCALE_REPLICATES", "50"))


@pytest.mark.slow
@pytest.mark.parametrize("target", [1.25, 1.12])
def test_search_covers_the_planted_kappa_star_with_fewer_trials_than_a_grid(target):
    """REPLICATES replicates: coverage of the search's interval and its trials, against the fixed grid
    (8 kappas) with as many seeds as it takes to be as narrow (median width)."""
    settings = SearchSettings(target=target, budget=400)
    covered, trials, widths = [], [], []
    for replicate in range(REPLICATES):
        _, found = one_pair_search(replicate, settings)
        step = found.steps[LABEL][0]
        covered.append(step.ci_low <= planted_star(replicate) <= step.ci_high)
        trials.append(step.spent)
        widths.append(step.width)
    coverage, width, cost = np.mean(covered), np.median(widths), np.mean(trials)
    grid = {}
    for seeds in (3, 6, 8, 12, 16, 20):
        results = [grid_interval(r, seeds) for r in range(60)]
        grid[seeds] = (np.mean([c for c, _ in results]), np.median([w for _, w in results]))
        if grid[seeds][1] <= width:
            break
    seeds = min(s for s, (_, w) in grid.items() if w <= width) if any(w <= width for _, w in grid.values()) else None
    print(f"\ntarget x/{target}: coverage {coverage:.3f}, median width {width:.3f}, trials {cost:.1f} "
          f"(max {max(trials)}); grid: " + ", ".join(f"{s} seeds ({16 * s} trials) coverage {c:.2f} width {w:.3f}"
                                                      for s, (c, w) in grid.items()))
    assert coverage >= 0.90
    assert seeds is not None
    if target == 1.12:  # the claim of issue 14 holds at this width; at +-25% the search saves less (docs)
        assert cost <= 0.5 * 16 * seeds


SIZE_PAIRS = tuple(SyntheticPair(f"cnn1d-{p}", p, "cnn1d-64", 10000) for p in (120, 500, 2000, 8000, 29000))
PLANTED_EXPONENT, PLANTED_PREFACTOR = -0.5, 0.2


@pytest.mark.slow
def test_size_law_exponent_interval_covers_the_planted_one():
    """REPLICATES replicates of a 5-pair search (ratios 0.012 to 2.9, kappa* = 0.2 ratio^-0.5, 0.12 to
    1.8): each kappa*'s interval, and the exponent's interval of analysis.scaling fitted on the
    search's table, against the planted values."""
    stars = {p: PLANTED_PREFACTOR * (p.student_params / p.teacher_params) ** PLANTED_EXPONENT for p in SIZE_PAIRS}
    settings = SearchSettings()
    covered_star, covered_exponent, slopes, trials = [], [], [], []
    for replicate in range(REPLICATES):
        backend = PlantedBackend(stars, replicate=replicate)
        found = search(backend.table, list(backend.labels), settings)
        trials.append(sum(s[0].spent for s in found.steps.values()))
        trials_table = prepare(found.table)
        replicates: dict = {}
        cross = xo.crossover(pair_by_seed(trials_table), n_boot=settings.n_boot, seed=settings.seed,
                             replicates=replicates)
        fits, _ = sc.size_scaling(cross, pair_info(trials_table.frame), replicates=replicates)
        fit = fits[fits["model"] == sc.RATIO].iloc[0]
        for row in cross.itertuples():
            covered_star.append(row.ci_low <= stars[backend.labels[row.pair]] <= row.ci_high)
        covered_exponent.append(fit["exponent_low"] <= PLANTED_EXPONENT <= fit["exponent_high"])
        slopes.append(fit["slope"])
    print(f"\nsize law: exponent interval covers {np.mean(covered_exponent):.3f}, slope mean {np.mean(slopes):.3f} "
          f"(sd {np.std(slopes):.3f}); kappa* intervals cover {np.mean(covered_star):.3f} of {len(covered_star)}; "
          f"trials per replicate {np.mean(trials):.0f} (5 pairs; the grid: 240)")
    assert np.mean(covered_exponent) >= 0.90 and np.mean(covered_star) >= 0.90


@pytest.mark.slow
def test_model_size_searches_through_the_engine_and_a_rerun_trains_nothing(tmp_path, ray_address):
    """studies/model_size.py --adaptive on a tiny setting: rounds of run_study on one study."""
    from kdscale.store import ResultsStore
    from tests.scripts import run_script

    argv = ["--dataset", "digits", "--pairs", "mlp:width=32>mlp:width=16", "--kappas", "0.1", "0.5", "1.5",
            "--seeds", "2", "--recipe", "fixed", "--student-steps", "300", "--teacher-epochs", "10", "--budget", "20",
            "--no-analysis", "--adaptive"]
    done = run_script("model_size", tmp_path, *argv, address=ray_address, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round 1: mlp-32>mlp-16 coarse pass, +3 kappas" in done.stderr
    rounds = [line for line in done.stderr.splitlines() if line.startswith("round ")]
    assert len(rounds) >= 2 and (": done, " in rounds[-1]), rounds
    table = ResultsStore(str(tmp_path / "results"), "model_size_adaptive_fixed").table()
    assert 12 <= len(table) <= 20 and set(table["status"]) == {"ok"}
    again = run_script("model_size", tmp_path, *argv, address=ray_address, timeout=600)
    assert again.returncode == 0 and [line for line in again.stderr.splitlines() if line.startswith("round ")] == rounds
    studies = [line for line in again.stderr.splitlines() if line.startswith("study model_size_adaptive_fixed: ")
               and " trials, " in line]
    assert studies and all(" 0 to train; " in line for line in studies), studies
