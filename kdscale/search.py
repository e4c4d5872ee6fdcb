"""Fair recipes: every arm trains with its own best learning rate and budget, chosen on validation data.

A comparison of kd with lt is only as good as its weaker arm's training: with one fixed recipe,
label training plateaus while distillation keeps improving (DESIGN, "Fair comparisons"). So each
cell of a grid, a (data set, student, objective, kappa) and for kd also its teacher, gets its
own recipe search (`SearchSpec`): the base recipe's optimizer, momentum, weight decay, batch and
schedule, with the learning rate and the step budget searched.

The search holds out a class-stratified share of the student's own M samples
(`data.subsets.split_for`: the samples the study's trial of that seed trains on; the test set
never enters), trains on the rest and scores each candidate by its validation accuracy on each
tuning seed's split (two by default; a diverged run scores 0): the worse seed's accuracy ranks
first, then the mean, the validation loss and the smaller budget. It is successive halving over the
budgets: every learning rate trains at the smallest budget, the best 1/eta of them at the next, and
so on (`SearchSpace`); where two rungs follow it, the first scores on one seed only, a screen whose
scores pick the next rung's candidates but never the recipe; once one learning rate has passed a
rung alone on all seeds, the longer rungs, which only choose its budget, score on one seed (and
where that rate collapses, the next rung trains it halved: `carried`); and a search skips its last rung
where that rung cannot change the recipe its cell trains with (`last_rung_decided`). The candidates of one
rung share the model and the data, so they train as one pack with a learning rate each
(kdscale.train.schedule.stacked_optimizer: SGD, Adam or AdamW); so do the searches of one
(student, kappa), lt and kd alike (kdscale.searchjob.run_job). The winner is the best (learning rate, budget) seen
at any rung; the cell trains with the longest budget within the noise of the winner's score, at
half its learning rate and twice its steps (`trained_with`, LR_MARGIN: the winner's learning rate
sits at the edge of stability).

A finished search is stored by content hash, `<storage>/_searches/<id>.json`, and every study
under the same storage reuses it, as it reuses trials. This module decides; kdscale.searchjob
trains a job's candidates (on Ray workers for the engine, kdscale.engine.searches; `kdscale tune`
runs them for one student).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

from kdscale import schema
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, from_dict, spec_id, to_dict
from kdscale.errors import SpecError, check_float, check_int

SEARCH_DIR = "_searches"  # under the storage; '_' keeps it out of the shared trial cache's scan
# Part of every search's id, bumped when a change makes stored searches wrong or chosen otherwise: 2 fixed
# packs that scored every seed on the first seed's validation inputs; 3 made the first rung a one-seed
# screen and skips a last rung that cannot change the recipe; 4 took the budgets to 16,000 steps and 2000
# epochs (from 4000 and 500: under 3, lt underfit in 3 of bench/underfit_check.py's 16 cells); 5 stops
# the stability margin at the cell's own largest budget, which decides which last rungs are skipped; 6
# (tried, not kept: see SearchSpace.eta) is skipped; 7 scores the rungs that only choose a budget on one
# seed (SearchSpace.extend_seeds); 8 halves a lone rate that collapses (`carried`).
SEARCH_VERSION = 8
POLICIES = ("fair", "lt", "fixed")  # each arm its own search / every arm lt's (the paper's protocol) / none
LRS = tuple(0.01 * 2 ** k for k in range(6))  # 0.01 to 0.32, a factor of 2 apart
# From a search's winner to the recipe a cell trains with (`trained_with`), two guards that the
# validation split alone cannot give:
# - Noise goes against underfitting: among the candidates whose worse-seed validation accuracy is
#   within one binomial standard error of the winner's, the longest budget is taken. On a split of
#   160 samples, cnn1d-16 lt at kappa 0.2 scored 0.619, 0.613 and 0.613 at 500, 1000 and 2000
#   steps; the 500-step winner underfit (test 0.674 where 2000 steps reached 0.748).
# - The stability margin: the winner's learning rate sits at the edge of stability, where training
#   now and then collapses to chance (train accuracy 0.1) on a seed the search did not score: lt
#   at the chosen lr collapsed on 4 of 24 fresh seeds (cnn1d-4 kappa 0.02 and 0.5 at 0.16,
#   cnn1d-16 kappa 0.02 at 0.32), at half of it on 0 of 24. So the cell trains at the lr divided
#   by LR_MARGIN (never below the smallest searched) for LR_MARGIN times the steps (lr x steps kept;
#   at most the largest budget the cell's search reaches, `SearchSpace.top`): halving the lr alone
#   at 500 steps underfit (cnn1d-16 lt at kappa 0.2: 0.577), and past what the validation split saw
#   it overfit (the same cell, lr 0.16: 0.767 at 8000 steps, its largest rung; 0.703 at 16,000).
# Both are applied when a stored search is read (`chosen_recipe`), so stored searches stay valid.
LR_MARGIN = 2
# A rung's one learning rate has collapsed where it diverged or scored at most this many times chance
# accuracy on a seed, having scored above that at a shorter budget: past its edge of stability at
# this budget, so the next rung trains it halved (`carried`). A rate that has not yet learned is not
# collapsed. Version 7's main job carried cnn1d-16 lt at kappa 1 at 0.32, which scored 0.936 and
# 0.905 at 2000 steps and 0.1 at 4000, 8000 and 16,000; the cell trained from the 2000-step score, 0.16
# for 4000 steps (test 0.942, where version 5 trained 0.16 for 16,000: 0.955). Version 8 carried 0.16
# from 8000 steps and trains 0.08 for 16,000 (test 0.939; four times the budget, 0.933: no underfit,
# though not version 5's score). Version 5's 287 stored searches held 12 such collapses, 5 of them on
# the 16-40-sample validation splits of kappa <= 0.05.
COLLAPSE = 1.5


@dataclass(frozen=True)
class SearchSpace:
    """Where a search looks: learning rates, step budgets (the successive-halving rungs, smallest
    first), how many candidates a rung keeps (1/eta), and on how many seeds and what share of M
    candidates are scored."""
    lrs: tuple[float, ...] = LRS
    # To 16,000 steps: at version 3's 4000, cnn1d-4 lt at kappa 4 reached 0.615 +- 0.131, at four
    # times that 0.771 +- 0.039.
    budgets: tuple[int, ...] = (500, 1000, 2000, 4000, 8000, 16000)
    # One rate passes each rung after the second. Tried on 2026-12-01 (main job, bare cache, second
    # machine): each rung also training the previous best's rate halved fixed cnn1d-4 lt at kappa 0.2
    # (test 0.505 -> 0.577), but lowered cnn1d-16 lt at kappa 0.1, 0.2 and 1 (0.579 -> 0.491, 0.738 ->
    # 0.675, 0.955 -> 0.939: the halved rate, scored at the longer budget, fell within the winner's
    # noise and the margin halved it again), cost cnn1d-4 its kappa*, and doubled the searches (514 ->
    # 1082 s: a last rung with two rates is never skipped).
    eta: int = 3
    # Two seeds: a learning rate at the edge of stability (lt at 0.32 on cnn1d-16) trained well on one
    # seed's split and collapsed to chance on others; ranked by its worse seed, it is not chosen.
    seeds: int = 2
    val_fraction: float = 0.2
    # Budgets beyond this many epochs of the fit split are not tried (the smallest always is), which keeps
    # small M cheap. At 500 (version 3) kappa 0.2 (640 fit samples) stopped at 2000 steps, and four times
    # the budget gained +0.034 and +0.061 test accuracy for cnn1d-16 and cnn1d-4; at 2000 epochs it goes
    # to 8000 steps, kappa 0.02 to 2000 and kappa >= 0.5 to the largest budget.
    max_epochs: int | None = 2000
    # Seeds the first rung scores on where two rungs follow it (None: all `seeds`): a screen that picks
    # the next rung's candidates, on all seeds, and never the recipe itself. It halves the first rung.
    screen_seeds: int | None = field(default=1, metadata={"hashed": "unless-default"})
    # Seeds a rung scores on once its one learning rate has passed a rung alone on all seeds (None: all
    # `seeds`): the rate's stability has been checked on every seed, and what is left is to choose its
    # budget. Replayed on version 5's 163 stored main-job searches, one seed from there changed 8 recipes,
    # each to a longer budget (one seed's score sits above the two-seed minimum it is compared with: the
    # bias goes against underfitting), and cut the searches' student-steps to 0.65.
    extend_seeds: int | None = field(default=1, metadata={"hashed": "unless-default"})

    def __post_init__(self):
        if not self.lrs:
            raise SpecError("search.lrs is empty: give at least one learning rate")
        for lr in self.lrs:
            check_float("search", "lrs", lr, 0.0, low_open=True)
        if not self.budgets:
            raise SpecError("search.budgets is empty: give at least one step budget")
        for budget in self.budgets:
            check_int("search", "budgets", budget, 1)
        object.__setattr__(self, "lrs", tuple(sorted(set(float(lr) for lr in self.lrs))))
        object.__setattr__(self, "budgets", tuple(sorted(set(self.budgets))))
        check_int("search", "eta", self.eta, 2)
        check_int("search", "seeds", self.seeds, 1)
        check_float("search", "val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True)
        if self.max_epochs is not None:
            check_int("search", "max_epochs", self.max_epochs, 1)
        if self.screen_seeds is not None:
            check_int("search", "screen_seeds", self.screen_seeds, 1)
        if self.extend_seeds is not None:
            check_int("search", "extend_seeds", self.extend_seeds, 1)

    def rung_sizes(self) -> list[int]:
        """Candidates per rung (per search): all learning rates, then 1/eta of the previous rung."""
        sizes = [len(self.lrs)]
        for _ in self.budgets[1:]:
            sizes.append(max(1, math.ceil(sizes[-1] / self.eta)))
        return sizes

    def rungs(self, n_fit: int, batch_size: int) -> list[tuple[int, int]]:
        """(budget, candidates kept) of every rung a fit split of n_fit samples gets: the budgets up
        to max_epochs epochs (the smallest always)."""
        per_epoch = math.ceil(n_fit / min(batch_size, n_fit))
        cap = math.inf if self.max_epochs is None else self.max_epochs * per_epoch
        return [(b, keep) for i, (b, keep) in enumerate(zip(self.budgets, self.rung_sizes())) if i == 0 or b <= cap]

    def top(self, n_fit: int, batch_size: int) -> int:
        """The largest budget a fit split of n_fit samples reaches: no cell trains longer."""
        return self.rungs(n_fit, batch_size)[-1][0]

    def rung_seeds(self, rungs: int) -> list[int]:
        """How many seeds each of `rungs` rungs scores on: all, but the screen's (see screen_seeds) and
        those after a rung where one learning rate scored alone on all seeds (see extend_seeds)."""
        seeds = [self.seeds] * rungs
        if rungs >= 3 and self.screen_seeds is not None:
            seeds[0] = min(self.screen_seeds, self.seeds)
        if self.extend_seeds is not None:
            sizes = self.rung_sizes()
            alone = [i for i in range(rungs) if sizes[i] == 1 and seeds[i] == self.seeds]
            for i in range(alone[0] + 1 if alone else rungs, rungs):
                seeds[i] = min(self.extend_seeds, self.seeds)
        return seeds

    def is_screen(self, rungs: int, rung: int) -> bool:
        """Whether rung `rung` of `rungs` is the screen: its scores pick candidates, never the recipe."""
        return rung == 0 and self.rung_seeds(rungs)[0] < self.seeds


QUICK_SPACE = SearchSpace(lrs=(0.01, 0.04, 0.16), budgets=(250, 500), seeds=1)  # --quick: a smoke run (3 + 1 runs)
# Adam and AdamW take steps of about lr in every weight whatever the gradient's scale, so their rates sit
# some 30x below SGD's: 1.25e-4 to 1.6e-2, x2 apart (the sequence and text recipes' 2e-3 and 3e-3 inside).
# It was 2.5e-4 to 8e-3 until 2026-12-01, when the digits ViT students' first searches (version 8) chose
# 8e-3, the largest, for kd at kappa 1 and 2 (validation 0.964 and 0.961) and 2.5e-4, the smallest, for
# vit-64's lt at kappa 0.2; version 3 had chosen an edge in 7 of 24: one rate more at each end.
ADAM_LRS = tuple(1.25e-4 * 2 ** k for k in range(8))
QUICK_ADAM_LRS = (5e-4, 2e-3, 8e-3)


def default_space(optimizer: str = "sgd", quick: bool = False) -> SearchSpace:
    """The search space of a base recipe's optimizer: SGD's learning rates, or Adam(W)'s."""
    space = QUICK_SPACE if quick else SearchSpace()
    return space if optimizer == "sgd" else replace(space, lrs=QUICK_ADAM_LRS if quick else ADAM_LRS)


@dataclass(frozen=True)
class SearchSpec:
    """One cell's search: which student learns what from which data at which kappa."""
    data: DataSpec
    student: ModelSpec
    objective: ObjectiveSpec
    kappa: float
    base: RecipeSpec  # everything but the learning rate and the budget
    space: SearchSpace = field(default_factory=SearchSpace)
    teacher: TeacherSpec | None = None  # for objectives that read a teacher; None for lt and ls

    def __post_init__(self):
        check_float("search", "kappa", self.kappa, 0.0, low_open=True)
        object.__setattr__(self, "kappa", float(self.kappa))
        if self.objective.uses_teacher != (self.teacher is not None):
            raise SpecError(f"search: objective {self.objective.name!r} "
                            f"{'needs' if self.objective.uses_teacher else 'takes no'} teacher")
        if self.teacher is not None and self.teacher.data != self.data:
            raise SpecError("search: the teacher's data must be the search's data")
        if self.base.augment != "none":
            raise SpecError("search: augmented recipes are not searched yet; use --recipe fixed")
        m = self.n_train
        if m < 4:
            raise SpecError(f"search.kappa={self.kappa:g} is invalid: M = {m} samples leave no validation split")

    @property
    def n_train(self) -> int:
        return schema.n_train(self.kappa, self.data.n_teacher)

    @property
    def id(self) -> str:
        return spec_id((self, SEARCH_VERSION))

    @property
    def job_key(self) -> tuple:
        """Searches with one job key share their data split and model: they train in one pack."""
        return (spec_id(self.data), str(self.student), self.kappa, spec_id(replace(self.base, lr=1.0)),
                spec_id(self.space))

    @property
    def label(self) -> str:
        teacher = f"{self.teacher.model.label}>" if self.teacher is not None else ""
        return f"{teacher}{self.student.label} {self.objective.label} kappa={self.kappa:g}"

    def recipe(self, lr: float, steps: int) -> RecipeSpec:
        return replace(self.base.with_budget(steps=steps), lr=float(lr))


def trained_with(result: dict) -> tuple[float, int]:
    """The (learning rate, steps) a cell trains with, from its search's result (see LR_MARGIN):
    the longest budget within one standard error of the winner, at half its lr and twice its steps."""
    spec = result["spec"]
    top = from_dict(SearchSpace, spec["space"]).top(result["n_fit"], spec["base"]["batch_size"])
    return _trained(result["candidates"], result["n_val"], spec["space"], result["best"], top)


def _trained(candidates: list[dict], n_val: int, space: dict, best: dict, top: int) -> tuple[float, int]:
    """trained_with from the candidates; `best` stands when every candidate diverged."""
    finite = choosable([c for c in candidates if not c["diverged"]])
    if finite:
        best = min(finite, key=rank_key)  # the stored best, but for a result that kept a screen's
        p = min(max(best["val_acc_min"], 0.5 / n_val), 1 - 0.5 / n_val)
        band = best["val_acc_min"] - math.sqrt(p * (1 - p) / n_val)
        near = [c for c in finite if c["val_acc_min"] >= band]
        longest = max(c["steps"] for c in near)
        best = min((c for c in near if c["steps"] == longest), key=rank_key)
    return _with_margin(float(best["lr"]), best["steps"], space, top)


def _with_margin(lr: float, steps: int, space: dict, top: int) -> tuple[float, int]:
    """The recipe a candidate (lr, steps) gives its cell: lr / LR_MARGIN (never below the smallest
    searched) for lr x steps kept, at most `top`, the largest budget the cell's search reaches."""
    trained = max(lr / LR_MARGIN, min(space["lrs"]))
    longer = round(steps * lr / trained)
    return trained, int(max(steps, min(longer, top)))


def last_rung_decided(spec: "SearchSpec", candidates: list[dict], carried: list[float], budget: int,
                      n_val: int) -> bool:
    """Whether the last rung, `carried` (one learning rate) at `budget` steps, cannot change the recipe.

    The new candidate has the longest budget of the search. If it is the winner or within the noise
    of it, `trained_with` trains from it; if it is not (or diverges), the choice stays. So when the
    recipe chosen so far equals the one the new candidate would give, no score changes it. (Dropping
    the 4000-step rung outright changed 4 of the main job's 56 recipes to shorter ones, each where
    the 2000-step candidate fell outside the winner's noise: those searches still run it.)"""
    if len(carried) != 1 or all(c["diverged"] for c in candidates):
        return False
    space = to_dict(spec.space)  # `budget` is the cell's last rung, so its top
    return _trained(candidates, n_val, space, {}, budget) == _with_margin(carried[0], budget, space, budget)


def carried(space: SearchSpace, candidates: list[dict], rung: int, num_classes: int) -> list[float]:
    """The learning rates rung `rung` + 1 may train (best first; it keeps its share), from a search's
    candidates so far: rung `rung`'s that did not diverge, by `rank_key`; but where that rung trained one
    rate and it collapsed (COLLAPSE), that rate halved, or none below the smallest searched."""
    tried = [c for c in candidates if c["rung"] == rung]
    floor = COLLAPSE / num_classes
    if len(tried) == 1 and (tried[0]["diverged"] or tried[0]["val_acc_min"] <= floor) and any(
            c["lr"] == tried[0]["lr"] and c["rung"] < rung and c["val_acc"] > floor for c in candidates):
        half = tried[0]["lr"] / 2
        return [half] if half >= min(space.lrs) * (1 - 1e-9) else []
    return [c["lr"] for c in sorted((c for c in tried if not c["diverged"]), key=rank_key)]


def choosable(candidates: list[dict]) -> list[dict]:
    """The candidates that may be chosen: those scored on every seed (not a screen's), if any."""
    full = [c for c in candidates if not c.get("screen")]
    return full or candidates


def chosen_recipe(result: dict) -> RecipeSpec:
    """The recipe of a stored search: its base with the learning rate and budget of `trained_with`."""
    lr, steps = trained_with(result)
    return replace(from_dict(RecipeSpec, result["spec"]["base"]).with_budget(steps=steps), lr=lr)


# --- the stored searches ------------------------------------------------------------------------


def search_path(storage: str, search_id: str) -> str:
    root = schema.filesystem(storage)[1] if not schema.is_uri(storage) else str(storage)
    return f"{root.rstrip('/')}/{SEARCH_DIR}/{search_id}.json"


def read_search(storage: str, search_id: str) -> dict | None:
    """A finished search of this id under `storage`, or None."""
    fs, _ = schema.filesystem(storage)
    payload = schema.read_bytes(fs, search_path(storage, search_id))
    return None if payload is None else json.loads(payload)


def write_search(storage: str, result: dict) -> str:
    """Written whole and moved into place, as the results store writes."""
    from kdscale.store import atomic_write

    fs, _ = schema.filesystem(storage)
    path = search_path(storage, result["id"])
    atomic_write(fs, path, json.dumps(result, indent=1, sort_keys=True).encode())
    return path


def rank_key(entry: dict) -> tuple:
    """Best first: the higher validation accuracy of its worse seed (a learning rate at the edge of
    stability, which collapsed to chance on some seeds' splits, is not chosen), then the higher
    mean, the lower validation loss, the smaller budget and the smaller learning rate."""
    loss = entry["val_loss"] if math.isfinite(entry["val_loss"]) else math.inf
    return (-entry["val_acc_min"], -entry["val_acc"], loss, entry["steps"], entry["lr"])


def describe(result: dict) -> str:
    """One line: the chosen recipe, its validation score, how many candidates, any warning."""
    best = result["best"]
    lr, steps = trained_with(result)
    text = (f"{result['label']}: lr {best['lr']:g}, {best['steps']} steps (trains at {lr:g}, {steps} steps), "
            f"val_acc {best['val_acc']:.3f} "
            f"({len(result['candidates'])} candidates on {result['n_fit']} fit / {result['n_val']} val samples)")
    if result["all_diverged"]:
        text += " [every candidate diverged]"
    return text + "".join(f" [{w}]" for w in result["warnings"])
