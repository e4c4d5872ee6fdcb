"""The adaptive kappa* search's decisions: from the table of finished trials, where to train next.

Per pair: a coarse pass (a few kappas spanning the range, a few seeds), then rounds that place
trials where they decide kappa*, until its interval is narrower than a target or the pair's trial
budget is spent. kappa* and its interval are the report's own (analysis.crossover: the stable
crossing of the seed-mean PG curve, its expanded percentile bootstrap over seeds), computed on the
same table, so the search stops on exactly the interval the report will print.

A round, per pair and kd arm, from the bootstrap of kappa*:
- done when the interval lies within the target (ci_high / ci_low <= target^2, default +-25%), or
  lies wholly beyond one end of the range (kd helps at every kappa, or at none: never extrapolated);
- the deciding kappas are those from the last one at or below ci_low to the first one at or above
  ci_high (a bound beyond the range reaches its end): every replicate's crossing lies between two
  of them, so they alone move the interval; one more kappa each side keeps half their seeds (all of
  them up to min_seeds), so that a replicate whose crossing moves one bracket out still has data
  there rather than dropping that kappa and running off the range;
- bisection: a gap between deciding kappas wider than `bracket` (x2.5) is split in log kappa (two
  new kappas at its thirds when it is wider than bracket^2, else one at its middle),
  rounded to 2 significant digits, so that the crossing is interpolated over a stretch where a
  straight line in log kappa is close to a smooth curve. Not narrower: the location's noise does not
  shrink with the bracket (about sd(PG) / slope either way), but a narrower one spreads the
  replicates' crossings over more kappas, each of which then needs the seeds;
- seeds: every deciding kappa (and each new one) gets the same seeds 0..n-1, so that a seed's
  shared luck cancels between neighbours; n grows toward the count at which the interval's width
  in log kappa, shrinking as 1/sqrt(n), would meet the target: at least +1, at most x2 a round.
  An interval is trusted only with min_seeds (6) at every deciding kappa: over n seeds a bootstrap
  interval covers at most about 1 - 2^(1-n) (analysis.crossover; 97% at 6, 94% at 5), and the
  coarse pass has 2. On planted truth (docs/studies.md) 6 covered 95.5% against 96.0% for 8, for
  62.6 trials a pair against 76.9;
- the budget (trials per pair, every objective counted) caps each round: n shrinks to fit, and a
  pair that cannot afford one more cell is done.

Pure: no training, no Ray; `kdscale.adaptive` runs the rounds through the engine, and the tests
drive it with planted PG curves (`analysis.synthetic.PlantedBackend`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kdscale import schema

from analysis import crossover as xo
from analysis.increments import pair_by_seed
from analysis.table import AnalysisError, prepare

# The coarse pass: every other kappa of the main job's grid and its end (on 2 of its 3 seeds), so that
# these cells are the fixed grid's own trials, shared with it through the trial cache.
COARSE_KAPPAS = (0.02, 0.1, 0.5, 4.0)


@dataclass(frozen=True)
class SearchSettings:
    """What the search aims at and what it may spend; validated at construction."""
    coarse: tuple[float, ...] = COARSE_KAPPAS
    coarse_seeds: int = 2
    min_seeds: int = 6          # seeds at every deciding kappa before the interval is trusted (module doc)
    target: float = 1.25        # done when the CI is within kappa* x/ target: ci_high / ci_low <= target^2
    budget: int = 80            # trials per pair, every objective counted (the fixed grid's is 48)
    max_seeds: int = 32
    bracket: float = 2.5        # gaps between deciding kappas wider than this are split (module doc)
    trials_per_cell: int = 2    # objectives trained per (kappa, seed): lt and kd
    n_boot: int = 2000
    ci: float = 0.95
    seed: int = 0               # the bootstrap's, as the report's

    def __post_init__(self):
        if len(self.coarse) < 2 or any(not k > 0 for k in self.coarse) or len(set(self.coarse)) != len(self.coarse):
            _fail(f"coarse={self.coarse!r} is invalid: needs 2 or more distinct kappas > 0")
        if not 2 <= self.coarse_seeds <= self.min_seeds <= self.max_seeds:
            _fail(f"coarse_seeds={self.coarse_seeds!r}, min_seeds={self.min_seeds!r}, max_seeds={self.max_seeds!r} "
                  "are invalid: a bootstrap over seeds needs 2 <= coarse_seeds <= min_seeds <= max_seeds")
        if not self.bracket > 1:
            _fail(f"bracket={self.bracket!r} is invalid: must be > 1 (a ratio of neighbouring kappas)")
        if not self.target > 1:
            _fail(f"target={self.target!r} is invalid: must be > 1 (1.25 = an interval of +-25% in kappa)")
        if self.trials_per_cell < 2:
            _fail(f"trials_per_cell={self.trials_per_cell!r} is invalid: a cell trains lt and at least one kd arm")
        first = len(self.coarse) * self.coarse_seeds * self.trials_per_cell
        if self.budget < first:
            _fail(f"budget={self.budget!r} trials per pair is invalid: the coarse pass alone takes {first} "
                  f"({len(self.coarse)} kappas x {self.coarse_seeds} seeds x {self.trials_per_cell} objectives)")
        if not 0 < self.ci < 1 or self.n_boot < 100:
            _fail(f"ci={self.ci!r}, n_boot={self.n_boot!r} are invalid: ci in (0, 1), n_boot >= 100")

    @property
    def max_width(self) -> float:
        """The widest interval that counts as done, as ci_high / ci_low."""
        return self.target ** 2


def _fail(message: str):
    raise AnalysisError(f"kappa* search: {message}")


@dataclass
class Step:
    """One pair's state after a round: its estimate, and the cells it asks for next."""
    pair: str
    arm: str = ""
    status: str = "new"
    kappa_star: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    kappa_min: float = math.nan
    kappa_max: float = math.nan
    done: bool = False
    reason: str = ""
    cells: dict = field(default_factory=dict)   # {kappa: seeds} wanted after this round, old cells included
    new_kappas: tuple = ()
    spent: int = 0                               # trials asked for so far

    @property
    def width(self) -> float:
        return self.ci_high / self.ci_low if self.ci_low > 0 else math.inf

    def line(self, before: dict, show_arm: bool = False) -> str:
        """`cnn1d-64>cnn1d-4 kappa* 0.41 [0.33, 0.52], +2 kappas, +3 seeds` (vs the cells before)."""
        result = {"ci_low": self.ci_low, "ci_high": self.ci_high, "kappa_min": self.kappa_min,
                  "kappa_max": self.kappa_max}
        if self.status == xo.CROSSING:
            where = f"kappa* {xo.format_kappa(self.kappa_star)} {xo.format_interval(result)}"
        elif self.status == "new":
            where = "coarse pass"
        else:
            where = f"{self.status} (no stable crossing inside the range), CI {xo.format_interval(result)}"
        name = self.pair + (f" {self.arm}" if show_arm else "")
        if self.done:
            return f"{name} {where}: done, {self.reason} ({self.spent} trials)"
        added = sum(max(0, n - before.get(k, 0)) for k, n in self.cells.items())
        grown = {n - before.get(k, 0) for k, n in self.cells.items() if k in before and n > before[k]}
        seeds = f"+{max(grown)} seeds" if grown else "+0 seeds"
        return (f"{name} {where}, +{len(self.new_kappas)} kappas, {seeds} ({added} cells, "
                f"{self.spent} trials)")


def estimates(table: pd.DataFrame, settings: SearchSettings, metric: str = "test_acc") -> pd.DataFrame:
    """kappa* per (pair, kd arm) of the table, as the report computes it (crossover's columns)."""
    trials = prepare(table, metric)
    return xo.crossover(pair_by_seed(trials), trials.metric.higher_is_better, n_boot=settings.n_boot,
                        ci=settings.ci, seed=settings.seed)


def plan(table: pd.DataFrame | None, design: dict[str, dict[float, int]], settings: SearchSettings,
         metric: str = "test_acc") -> dict[str, list[Step]]:
    """The next round: per pair label of `design` ({pair: {kappa: seeds asked so far}}, empty for a
    pair not started), one Step per kd arm; a pair's next cells are the union of its arms'."""
    cross = None
    if table is not None and len(table) and any(design.values()):
        try:
            cross = estimates(table, settings, metric)
        except AnalysisError:  # no trial ended ok yet: nothing to decide on
            cross = None
    steps = {}
    for pair, cells in design.items():
        spent = sum(cells.values()) * settings.trials_per_cell
        if not cells:
            coarse = {float(k): settings.coarse_seeds for k in settings.coarse}
            steps[pair] = [Step(pair, cells=coarse, new_kappas=tuple(coarse),
                                spent=sum(coarse.values()) * settings.trials_per_cell)]
            continue
        rows = [] if cross is None else cross[cross["pair"] == pair].to_dict("records")
        if not rows:
            steps[pair] = [Step(pair, status=xo.EMPTY, done=True, cells=dict(cells), spent=spent,
                                reason="no kd trial with an lt partner finished ok")]
            continue
        steps[pair] = [next_cells(pair, row, cells, settings) for row in rows]
        for step in steps[pair]:
            step.spent = sum(_union(steps[pair]).values()) * settings.trials_per_cell
    return steps


def next_cells(pair: str, row: dict, cells: dict[float, int], settings: SearchSettings) -> Step:
    """One arm's decision from its crossover row (module doc)."""
    step = Step(pair, row["arm"], row["status"], row["kappa_star"], row["ci_low"], row["ci_high"],
                row["kappa_min"], row["kappa_max"], cells=dict(cells))
    kappas = np.array(sorted(cells))
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) or low == np.inf) or np.isnan(high):
        low, high = 0.0, np.inf  # no interval yet (too few seeds ended ok): every kappa decides
    censored = low == np.inf or high == 0
    if censored:  # the interval lies wholly beyond one end: only that end's kappa can move it
        deciding, margin = [float(kappas[-1] if low == np.inf else kappas[0])], []
    else:
        below, above = kappas[kappas <= low], kappas[kappas >= high]
        first = below[-1] if len(below) else kappas[0]
        last = above[0] if len(above) else kappas[-1]
        deciding = [float(k) for k in kappas if first <= k <= last]
        # one kappa of margin each side, on half the seeds: a replicate whose crossing moves one
        # bracket out still finds seeds there (else it drops that kappa and runs off the range)
        margin = [float(k) for k in [*below[-2:-1], *above[1:2]]]
    trusted = min(cells[k] for k in deciding) >= settings.min_seeds
    if censored and trusted:
        step.done, step.reason = True, ("kd helps at every kappa of the range: kappa* > "
                                        f"{xo.format_kappa(kappas[-1])}" if low == np.inf else
                                        f"kd helps at no kappa of the range: kappa* < {xo.format_kappa(kappas[0])}")
        return step
    if step.status == xo.CROSSING and step.width <= settings.max_width and trusted:
        step.done, step.reason = True, f"interval within x/{settings.target:g}"
        return step
    new = []  # gaps between deciding kappas wider than settings.bracket are split
    for left, right in zip(deciding, deciding[1:]):
        new += split(left, right, settings.bracket, kappas)
    n_now = max(cells[k] for k in deciding)
    width = step.width if step.status == xo.CROSSING else math.inf
    wanted = n_now * (math.log(width) / math.log(settings.max_width)) ** 2 if np.isfinite(width) else 2 * n_now
    wanted = max(wanted, settings.min_seeds, n_now + 1)
    n_next = int(min(settings.max_seeds, 2 * n_now, math.ceil(wanted)))
    if censored:  # min_seeds at the end kappa settles it: more could only confirm it
        n_next = min(n_next, settings.min_seeds)
    # Bisection first (new kappas on the deciding kappas' seeds), more seeds once the bracket is short;
    # each option shrinks until it fits the budget.
    options = [(new, n, n_now) for n in range(n_now, 1, -1)] if new else []
    options += [((), n_now, n) for n in range(n_next, min(cells[k] for k in deciding), -1)]
    budget_cells = settings.budget // settings.trials_per_cell
    for new_kappas, n_new, n_deciding in options:
        proposal = dict(cells)
        for kappa in deciding:
            proposal[kappa] = max(proposal[kappa], n_deciding)
        for kappa in margin:
            proposal[kappa] = max(proposal[kappa], math.ceil(n_deciding / 2), min(n_deciding, settings.min_seeds))
        for kappa in new_kappas:
            proposal[kappa] = n_new
        if sum(proposal.values()) <= budget_cells:
            step.cells, step.new_kappas = proposal, tuple(new_kappas)
            return step
    step.done = True
    step.reason = (f"max_seeds={settings.max_seeds} reached" if n_now >= settings.max_seeds and not new
                   else "trial budget spent")
    return step


def split(low: float, high: float, bracket: float, existing) -> list[float]:
    """New kappas inside (low, high): two at its thirds in log kappa when high / low is wider than
    bracket^2, one at its middle when wider than bracket, none otherwise; 2 significant digits
    (3, 4 where 2 would land on a kappa already there)."""
    ratio = high / low
    if ratio <= bracket:
        return []
    fractions = (1 / 3, 2 / 3) if ratio > bracket ** 2 else (1 / 2,)
    taken = {float(k) for k in existing}
    out = []
    for fraction in fractions:
        exact = low * ratio ** fraction
        for digits in (2, 3, 4):
            kappa = float(f"{exact:.{digits}g}")
            if low < kappa < high and kappa not in taken:
                out.append(kappa)
                taken.add(kappa)
                break
    return out


@dataclass
class SearchResult:
    design: dict          # {pair: {kappa: seeds}} trained
    table: pd.DataFrame | None
    steps: dict           # the last round's {pair: [Step]}
    rounds: int
    complete: bool        # every round's trials finished (False: fetch stopped, e.g. interrupted)


def search(fetch, pairs, settings: SearchSettings, max_rounds: int = 20, log=None,
           metric: str = "test_acc") -> SearchResult:
    """Run the rounds: `fetch(design)` trains (or finds) every cell of a design and returns the
    table of its trials, or None when it could not finish them (then the search stops there; the
    same call again continues, since `plan` decides from the table alone). `log` gets one line per
    pair and round."""
    design = {pair: {} for pair in pairs}
    table, steps = None, {}
    for round_number in range(1, max_rounds + 1):
        # a pair that is done stays done (its cells, and so its rows, do not change): not recomputed
        done = {pair for pair, pair_steps in steps.items() if all(step.done for step in pair_steps)}
        open_design = {pair: cells for pair, cells in design.items() if pair not in done}
        open_table = None if table is None else table[~_pair_of(table).isin(done)]
        steps = {**{pair: steps[pair] for pair in done}, **plan(open_table, open_design, settings, metric)}
        steps = {pair: steps[pair] for pair in design}
        if log is not None:
            for pair, pair_steps in steps.items():
                for step in pair_steps:
                    log(f"round {round_number}: {step.line(design[pair], show_arm=len(pair_steps) > 1)}")
        wanted = {pair: _union(pair_steps) for pair, pair_steps in steps.items()}
        if wanted == design:
            return SearchResult(design, table, steps, round_number - 1, True)
        design = wanted
        table = fetch(design)
        if table is None:
            return SearchResult(design, None, steps, round_number, False)
    steps = plan(table, design, settings, metric)
    if log is not None:
        log(f"kappa* search: stopped after max_rounds={max_rounds}")
    return SearchResult(design, table, steps, max_rounds, True)


def _union(steps: list[Step]) -> dict:
    cells = {}
    for step in steps:
        for kappa, n in step.cells.items():
            cells[kappa] = max(cells.get(kappa, 0), n)
    return dict(sorted(cells.items()))


def _pair_of(table: pd.DataFrame) -> pd.Series:
    """Each row's pair label, as analysis.table names it for a one-dataset, one-N table."""
    return pd.Series([schema.pair_label(t, s) for t, s in zip(table["teacher"].astype(str),
                                                              table["student"].astype(str))], index=table.index)
