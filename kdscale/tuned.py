"""Tuned recipes: the search space of `kdscale tune`, its settings, and the tuned-recipe files.

The paper's protocol for its Table 1: before comparing kd with lt at a data size, tune lt's
learning rate, weight decay and budget at that size, on held-out samples of the student's data,
never on the test set; then train both objectives with the tuned lt recipe (`--recipe tuned-lt`
of the studies), so that kd's gain is not a gain over a badly tuned baseline. The search itself
runs through Ray Tune (kdscale.engine.search); the validation split is carved from each seed's own
M samples (kdscale.data.subsets.validation_split). This module imports neither Ray nor Optuna, so
reading tuned recipes is cheap.

Search space (`SearchSpace`; documented in README and docs/studies.md (fair_recipe)):
  lr            log-uniform in [3e-3, 0.3]
  weight_decay  log-uniform in [1e-5, 1e-2]
  steps         one of {500, 1000, 1500, 3000} (--quick: {100, 250, 500})
The other fields (optimizer, momentum, batch size, cosine schedule) are the base recipe's, the
data set's default student recipe; when the base's own (lr, weight decay, steps) lies in the
space it is the first sample, so the tuned recipe is never worse than the default on validation.
The first half of the samples are random (TPE's start-up), the rest follow TPE. The best sample
has the highest validation accuracy; ties go to the lower validation loss, then the earlier one.

Results: `<storage>/_tuned/<key>.json`, one file per (data spec, student, base recipe), with an
entry per kappa holding the search settings, every sample's config and validation accuracy, and
the best recipe. A rerun with the same settings reuses an entry (unless `force`). The studies
read it through `recipe_overrides`; each search is also an MLflow run (experiment `kdscale-tune`).
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from kdscale.config import DataSpec, ModelSpec, RecipeSpec, check_float, check_int, from_dict, spec_id
from kdscale.errors import SpecError
from kdscale import schema
from kdscale.schema import filesystem

TUNED_DIR = "_tuned"  # under the storage; '_' keeps it out of the shared trial cache's scan


@dataclass(frozen=True)
class SearchSpace:
    """Where the search looks: lr and weight decay log-uniform in [low, high], steps a choice."""
    lr: tuple[float, float] = (3e-3, 0.3)
    weight_decay: tuple[float, float] = (1e-5, 1e-2)
    steps: tuple[int, ...] = (500, 1000, 1500, 3000)

    def __post_init__(self):
        for name in ("lr", "weight_decay"):
            low, high = getattr(self, name)
            check_float("space", f"{name}[0]", low, 0.0, low_open=True)
            check_float("space", f"{name}[1]", high, low, low_open=True)
            object.__setattr__(self, name, (float(low), float(high)))
        if not self.steps:
            raise SpecError("space.steps is empty: give at least one step budget")
        for steps in self.steps:
            check_int("space", "steps", steps, 1)
        object.__setattr__(self, "steps", tuple(sorted(set(self.steps))))

    def contains(self, recipe: RecipeSpec) -> bool:
        return (recipe.steps in self.steps and self.lr[0] <= recipe.lr <= self.lr[1]
                and self.weight_decay[0] <= recipe.weight_decay <= self.weight_decay[1])


QUICK_SPACE = SearchSpace(steps=(100, 250, 500))  # --quick: short budgets, a smoke run


@dataclass(frozen=True)
class TuneSpec:
    """One `kdscale tune`: the student and data, the base recipe, the kappas, and the search."""
    data: DataSpec
    student: ModelSpec
    base: RecipeSpec
    kappas: tuple[float, ...]
    samples: int = 16
    seeds: int = 1  # tuning seeds 0..seeds-1; validation accuracy is their mean
    val_fraction: float = 0.2
    sampler_seed: int = 0
    space: SearchSpace = field(default_factory=SearchSpace)

    def __post_init__(self):
        if not self.kappas:
            raise SpecError("tune.kappas is empty: give at least one kappa")
        for kappa in self.kappas:
            check_float("tune", "kappa", kappa, 0.0, low_open=True)
        object.__setattr__(self, "kappas", tuple(dict.fromkeys(float(k) for k in self.kappas)))
        check_int("tune", "samples", self.samples, 1)
        check_int("tune", "seeds", self.seeds, 1)
        check_int("tune", "sampler_seed", self.sampler_seed, 0)
        check_float("tune", "val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True)

    def n_train(self, kappa: float) -> int:
        return schema.n_train(kappa, self.data.n_teacher)

    @property
    def key(self) -> str:
        return tuning_key(self.data, self.student, self.base)

    def settings(self) -> dict[str, Any]:
        """What a stored entry must match to be reused (the kappa aside)."""
        return {"samples": self.samples, "seeds": self.seeds, "val_fraction": self.val_fraction,
                "sampler_seed": self.sampler_seed, "evaluate_base": self.space.contains(self.base),
                "space": {"lr": list(self.space.lr), "weight_decay": list(self.space.weight_decay),
                          "steps": list(self.space.steps)}}


@dataclass
class TuningResult:
    path: str  # the tuned file
    key: str
    entries: dict[float, dict]  # kappa -> stored entry
    searched: list[float]
    reused: list[float]


# --- which recipe, which file -------------------------------------------------------------------


def base_recipe(dataset: str, quick: bool = False, precision: str | None = None) -> RecipeSpec:
    """The recipe a tuning starts from: the data set's default student recipe (with --quick, the
    studies' quick budget, exactly as model_size --quick builds it)."""
    from kdscale.recipes import study_recipes

    return study_recipes(dataset, quick, precision)[1]


def tuned_recipe(base: RecipeSpec, config: dict[str, Any]) -> RecipeSpec:
    """The base recipe with a sample's lr, weight decay and step budget. A budget in steps drops
    an epoch-based base's warm-up and milestones (they were in epochs)."""
    keep = base.epochs is None
    steps = int(config["steps"])
    return replace(base, lr=float(config["lr"]), weight_decay=float(config["weight_decay"]), steps=steps,
                   epochs=None, warmup=base.warmup if keep and base.warmup < steps else 0.0,
                   milestones=tuple(m for m in base.milestones if m < steps) if keep else ())


def tuning_key(data: DataSpec, student: ModelSpec, base: RecipeSpec) -> str:
    """`<dataset>-N<N>-<student>-<hash>`: readable, and the hash covers every field of the three."""
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", student.label)
    return f"{data.name}-N{data.n_teacher}-{label}-{spec_id((data, student, base))}"


def kappa_key(kappa: float) -> str:
    return f"{float(kappa):.10g}"


def tuned_dir(storage: str) -> str:
    """`<storage>/_tuned`, a local path made absolute or the URI as given."""
    base = str(storage).rstrip("/") if "://" in str(storage) else filesystem(storage)[1].rstrip("/")
    return f"{base}/{TUNED_DIR}"


def tuned_path(storage: str, key: str) -> str:
    return f"{tuned_dir(storage)}/{key}.json"


def _tuned_file(storage: str, key: str):
    """(pyarrow filesystem, path in it) of the tuning file of a key."""
    fs, root = filesystem(storage)
    return fs, f"{root.rstrip('/')}/{TUNED_DIR}/{key}.json"


def read_tuned(storage: str, key: str) -> dict | None:
    """The stored tuning file of a key, or None."""
    import pyarrow.fs as pafs

    fs, path = _tuned_file(storage, key)
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def _stored_entries(storage: str, key: str) -> dict[str, dict]:
    """kappa_key -> stored entry of a key's tuning file (none if there is no file)."""
    return (read_tuned(storage, key) or {"kappas": {}})["kappas"]


def _write_tuned(storage: str, key: str, document: dict) -> str:
    """Written whole and moved into place, as the results store writes."""
    from kdscale.store import atomic_write

    atomic_write(*_tuned_file(storage, key), json.dumps(document, indent=1, sort_keys=True).encode())
    return tuned_path(storage, key)


def tune_command(data: DataSpec, student: ModelSpec, kappas, storage: str = "kdscale_results",
                 quick: bool = False, precision: str | None = None) -> str:
    """The exact `kdscale tune` command that writes the tuning these arguments look up."""
    words = ["kdscale", "tune", "--dataset", data.name, "--n-teacher", str(data.n_teacher),
             "--student", str(student), "--kappas", *(f"{float(k):g}" for k in kappas)]
    if data.seed:
        words += ["--data-seed", str(data.seed)]
    if data.root:
        words += ["--data-root", data.root]
    if quick:
        words.append("--quick")
    if precision:
        words += ["--precision", precision]
    if str(storage) != "kdscale_results":
        words += ["--storage", str(storage)]
    return " ".join(shlex.quote(w) for w in words)


def load_tuned(storage: str, data: DataSpec, student: ModelSpec, base: RecipeSpec) -> dict[float, RecipeSpec]:
    """kappa -> tuned recipe, for every kappa tuned for (data, student, base) under `storage`."""
    entries = _stored_entries(storage, tuning_key(data, student, base))
    return {float(k): from_dict(RecipeSpec, entry["recipe"]) for k, entry in entries.items()}


def recipe_overrides(storage: str, data: DataSpec, students, kappas, base: RecipeSpec, quick: bool = False,
                     precision: str | None = None) -> tuple[tuple[str, float, RecipeSpec], ...]:
    """StudySpec.recipe_overrides from the tuned files: one per (student, kappa). A missing tuning
    is one SpecError naming the `kdscale tune` command(s) to run."""
    overrides, commands, missing_text = [], [], []
    for student in dict.fromkeys(students):
        tuned = load_tuned(storage, data, student, base)
        missing = []
        for kappa in kappas:
            found = [recipe for k, recipe in tuned.items() if abs(k - kappa) <= 1e-9 * max(1.0, kappa)]
            if found:
                overrides.append((student.label, float(kappa), found[0]))
            else:
                missing.append(kappa)
        if missing:
            missing_text.append(f"{student.label} at kappa {', '.join(f'{k:g}' for k in missing)}")
            commands.append(tune_command(data, student, missing, storage, quick, precision))
    if commands:
        raise SpecError(f"--recipe tuned-lt: no tuned lt recipe for {'; '.join(missing_text)} "
                        f"({data.name}, N={data.n_teacher}, under {tuned_dir(storage)}); "
                        f"run first: {' && '.join(commands)}")
    return tuple(overrides)


# --- checks and the search ----------------------------------------------------------------------


def check_tune(spec: TuneSpec) -> None:
    """Everything checkable before compute: the data set holds every kappa, the student builds,
    every M leaves room for a validation split with a sample of each class on both sides."""
    from kdscale import data, models

    info = data.check(spec.data, spec.kappas)
    try:
        models.build(spec.student, info.input_shape, info.num_classes)
    except SpecError as error:
        raise SpecError(f"student: {error}") from None
    for kappa in spec.kappas:
        m = spec.n_train(kappa)
        if m < 2 * info.num_classes:
            raise SpecError(f"tune.kappa={kappa:g} is invalid: M = round(kappa * N) = {m} samples; a validation "
                            f"split needs at least 2 x {info.num_classes} classes = {2 * info.num_classes}, "
                            f"kappa >= {2 * info.num_classes / spec.data.n_teacher:.3g}")


def pending_kappas(spec: TuneSpec, storage: str, force: bool = False) -> list[float]:
    """The kappas with no stored entry of the same settings (all of them with `force`)."""
    return _pending(spec, _stored_entries(storage, spec.key), force)


def _pending(spec: TuneSpec, stored: dict[str, dict], force: bool) -> list[float]:
    settings = spec.settings()
    return [k for k in spec.kappas if force or (stored.get(kappa_key(k)) or {}).get("settings") != settings]


def format_table(spec: TuneSpec, result: TuningResult) -> str:
    """The tuned recipe per kappa, with the base recipe's validation accuracy where it was a sample."""
    base = spec.base
    lines = [f"tuned lt recipe: {spec.student.label} on {spec.data.name} N={spec.data.n_teacher}; base lr {base.lr:g}, "
             f"weight decay {base.weight_decay:g}, {base.steps or base.epochs} {base.budget_unit}; "
             f"{spec.samples} samples, {spec.seeds} seed(s), validation {spec.val_fraction:.0%} of M",
             f"file: {result.path}",
             "   kappa      M   n_val         lr   weight_decay   steps   val_acc   val_acc(base)   search"]
    for kappa in spec.kappas:
        entry = result.entries[kappa]
        best = entry["best"]
        base_sample = next((s for s in entry["samples"] if s["index"] == 0 and entry["settings"]["evaluate_base"]),
                           None)
        base_acc = f"{base_sample['val_acc']:.4f}" if base_sample and base_sample["val_acc"] is not None else "-"
        lines.append(f"  {kappa:6g}  {entry['n_train']:5d}  {entry['n_val']:6d}  {best['lr']:9.4g}  "
                     f"{best['weight_decay']:13.3g}  {best['steps']:6d}   {best['val_acc']:.4f}   {base_acc:>13}   "
                     f"{'reused' if kappa in result.reused else 'ran'}")
    return "\n".join(lines)
