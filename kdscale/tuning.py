"""`kdscale tune`: the lt recipe tuned per kappa on a validation split of the student's own samples.

The paper's protocol for its Table 1: before comparing kd with lt at a data size, tune lt's
learning rate, weight decay and budget at that size, on held-out samples of the student's data,
never on the test set; then train both objectives with the tuned lt recipe (`--recipe tuned-lt`
of the studies), so that kd's gain is not a gain over a badly tuned baseline.

Per kappa, an Optuna TPE search (seeded sampler, `TPESampler(seed=sampler_seed)`) runs through
Ray Tune's `OptunaSearch`. A sample trains lt with its config on the M - n_val "fit" samples of
each tuning seed and reports the validation accuracy, the mean over seeds (a diverged seed counts
0). Seed s uses the M samples the study's trial of seed s trains on (`student_indices`); its
validation split is carved from them, class-stratified and seeded (`validation_split`). The
driver loads the data and ships the trainables only those samples, through
`tune.with_parameters`: no worker ever holds the test set.

Search space (`SearchSpace`; documented in README and docs/studies.md (fair_recipe)):
  lr            log-uniform in [3e-3, 0.3]
  weight_decay  log-uniform in [1e-5, 1e-2]
  steps         one of {500, 1000, 1500, 3000} (--quick: {100, 250, 500})
The other fields (optimizer, momentum, batch size, cosine schedule) are the base recipe's, the
data set's default student recipe; when the base's own (lr, weight decay, steps) lies in the
space it is the first sample, so the tuned recipe is never worse than the default on validation.
The first half of the samples are random (TPE's start-up), the rest follow TPE. The best sample
has the highest validation accuracy; ties go to the lower validation loss, then the earlier one.
With `max_concurrent=1` the search is deterministic.

Results: `<storage>/_tuned/<key>.json`, one file per (data spec, student, base recipe), with an
entry per kappa holding the search settings, every sample's config and validation accuracy, and
the best recipe. A rerun with the same settings reuses an entry (unless `force`). The studies
read it through `recipe_overrides`; each search is also an MLflow run (experiment `kdscale-tune`).
Ray and Optuna are imported inside the functions that search, so reading tuned recipes is cheap.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kdscale.config import DataSpec, ModelSpec, RecipeSpec, check_float, check_int, from_dict, spec_id, to_dict
from kdscale.errors import SpecError

TUNED_DIR = "_tuned"  # under the storage; '_' keeps it out of the shared trial cache's scan
VAL_SPLIT_KEY = 7_777_777  # the validation split's own random stream: rng_for(seed, VAL_SPLIT_KEY, M)


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
        return int(math.floor(kappa * self.data.n_teacher + 0.5))

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
    from kdscale.store import filesystem

    base = str(storage).rstrip("/") if "://" in str(storage) else filesystem(storage)[1].rstrip("/")
    return f"{base}/{TUNED_DIR}"


def tuned_path(storage: str, key: str) -> str:
    return f"{tuned_dir(storage)}/{key}.json"


def _tuned_file(storage: str, key: str):
    """(pyarrow filesystem, path in it) of the tuning file of a key."""
    from kdscale.store import filesystem

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


# --- the validation split -----------------------------------------------------------------------


def validation_counts(class_counts, n_val: int) -> np.ndarray:
    """How many validation samples each class gives: its share of n_val (largest remainder, ties to
    the lower class), never its last sample, and at least one for every class of >= 2 samples as
    long as another class can spare one of two or more."""
    counts = np.asarray(class_counts, dtype=np.int64)
    cap = np.maximum(counts - 1, 0)
    if n_val > cap.sum():
        raise ValueError(f"cannot hold out {n_val} samples and keep one of each class for fitting")
    quota = n_val * counts / counts.sum()
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    for c in sorted(range(len(counts)), key=lambda c: (-(quota[c] - math.floor(quota[c])), c)) * 2:
        if take.sum() >= n_val:
            break
        if take[c] < cap[c]:
            take[c] += 1
    while take.sum() < n_val:  # remainders exhausted by the caps: fill wherever room is left
        take[int(np.argmax(cap - take))] += 1
    for c in range(len(counts)):
        if take[c] == 0 and cap[c] >= 1:
            donors = [d for d in range(len(counts)) if take[d] >= 2]
            if donors:
                donor = max(donors, key=lambda d: (take[d], -d))
                take[donor] -= 1
                take[c] += 1
    return take


def validation_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit positions, validation positions) into `labels` (one student's M samples): n_val =
    round(val_fraction * M), at least 1, class-stratified by `validation_counts`, drawn by seed."""
    from kdscale.data import rng_for

    labels = np.asarray(labels)
    n = len(labels)
    n_val = min(max(1, int(math.floor(val_fraction * n + 0.5))), n - 1)
    classes = np.unique(labels)
    take = validation_counts([int((labels == c).sum()) for c in classes], n_val)
    rng = rng_for(seed, VAL_SPLIT_KEY, n)
    val = []
    for c, k in zip(classes, take):
        where = np.flatnonzero(labels == c)
        val.extend(where[rng.permutation(len(where))[:k]].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    fit = np.setdiff1d(np.arange(n), val)
    return fit, val


def split_for(stream_labels, n_teacher: int, n_train: int, seed: int, val_fraction: float):
    """Stream positions (fit, validation) of the student of `seed` with M = n_train samples."""
    from kdscale.data import student_indices

    indices = student_indices(stream_labels, n_teacher, n_train, seed)
    fit, val = validation_split(np.asarray(stream_labels)[indices], val_fraction, seed)
    return indices[fit], indices[val]


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


@contextlib.contextmanager
def ray_session(address: str | None = None, verbose: bool = False, start: bool = True):
    """Ray for the duration of a block (started quietly as the engine starts it, stopped at the end
    if this block started it), so that a tuning and the studies after it share one start."""
    started = False
    if start:
        from kdscale.engine import _init_ray

        started = _init_ray(address, verbose)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def run_tuning(spec: TuneSpec, storage: str = "kdscale_results", tracking_uri: str | None = None,
               address: str | None = None, max_concurrent: int = 1, cpus_per_sample: float = 1.0,
               gpus_per_sample: float = 0.0, force: bool = False, verbose: bool = False, log=None) -> TuningResult:
    """Tune (or reuse) the lt recipe at every kappa of `spec`; see the module doc."""
    log = log or (lambda message: print(message, file=sys.stderr))
    check_tune(spec)
    check_int("tune", "max_concurrent", max_concurrent, 1)
    check_float("tune", "cpus_per_sample", cpus_per_sample, 0.0, low_open=True)
    check_float("tune", "gpus_per_sample", gpus_per_sample, 0.0)
    key = spec.key
    stored = _stored_entries(storage, key)
    pending = _pending(spec, stored, force)
    path = tuned_path(storage, key)
    for kappa in spec.kappas:
        if kappa not in pending:
            log(f"tune {spec.student.label} kappa={kappa:g}: reusing the stored search ({path}; --force to redo)")
        elif kappa_key(kappa) in stored and not force:
            log(f"tune {spec.student.label} kappa={kappa:g}: the stored search used other settings; searching again")
    if pending:
        from kdscale import data as datasets

        n_stream = max(datasets.stream_length_for(spec.data.n_teacher, spec.n_train(k)) for k in pending)
        loaded = datasets.load(spec.data, n_stream)  # the driver's copy; workers get only pool samples
        with ray_session(address, verbose):
            for kappa in pending:
                entry = _search(spec, kappa, loaded, max_concurrent, cpus_per_sample, gpus_per_sample,
                                f"{tuned_dir(storage)}/_ray", log)
                # read again before writing: another tuning of this key may have added kappas meanwhile
                document = read_tuned(storage, key) or {
                    "key": key, "data": _data_dict(spec.data), "student": str(spec.student),
                    "base_recipe": to_dict(spec.base), "kappas": {}}
                document["kappas"][kappa_key(kappa)] = entry
                path = _write_tuned(storage, key, document)
                from kdscale.tracking import log_tuning

                log_tuning(tracking_uri, key, f"{spec.student.label} on {spec.data.name} N={spec.data.n_teacher}",
                           kappa, entry, [path] if "://" not in path else [], verbose=verbose)
        stored = _stored_entries(storage, key)  # the result is what the file holds (JSON: lists, not tuples)
    entries = {k: stored[kappa_key(k)] for k in spec.kappas}
    return TuningResult(path, key, entries, list(pending), [k for k in spec.kappas if k not in pending])


def _data_dict(data: DataSpec) -> dict:
    return {k: v for k, v in to_dict(data).items() if k != "root"}


def pools_for(spec: TuneSpec, kappa: float, loaded) -> list[dict]:
    """Per tuning seed: its fit and validation samples (numpy), and their stream positions."""
    pools = []
    for seed in range(spec.seeds):
        fit, val = split_for(loaded.y_pool, spec.data.n_teacher, spec.n_train(kappa), seed, spec.val_fraction)
        pools.append({"seed": seed, "x_fit": loaded.x_pool[fit], "y_fit": loaded.y_pool[fit],
                      "x_val": loaded.x_pool[val], "y_val": loaded.y_pool[val], "fit": fit, "val": val})
    return pools


def _search(spec: TuneSpec, kappa: float, loaded, max_concurrent: int, cpus: float, gpus: float, ray_storage: str,
            log) -> dict:
    """One kappa's Optuna search through Ray Tune; returns the entry of the tuned file."""
    import kdscale.engine  # noqa: F401  (sets Tune's console and logger settings before ray is imported)
    import optuna
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from kdscale import data as datasets

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    pools = pools_for(spec, kappa, loaded)
    shipped = [{k: pool[k] for k in ("seed", "x_fit", "y_fit", "x_val", "y_val")} for pool in pools]
    space = {"lr": optuna.distributions.FloatDistribution(*spec.space.lr, log=True),
             "weight_decay": optuna.distributions.FloatDistribution(*spec.space.weight_decay, log=True),
             "steps": optuna.distributions.CategoricalDistribution(spec.space.steps)}
    settings = spec.settings()
    first = ([{"lr": spec.base.lr, "weight_decay": spec.base.weight_decay, "steps": spec.base.steps}]
             if settings["evaluate_base"] else None)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed, n_startup_trials=max(1, spec.samples // 2))
    searcher = OptunaSearch(space, metric="val_acc", mode="max", sampler=sampler, points_to_evaluate=first)
    label = (f"tune {spec.student.label} kappa={kappa:g} (M={spec.n_train(kappa)}: {len(pools[0]['fit'])} fit, "
             f"{len(pools[0]['val'])} val x {spec.seeds} seed{'s' if spec.seeds > 1 else ''})")
    progress = _progress_callback(tune.Callback, label, spec.samples, log)
    constants = {"base": json.dumps(to_dict(spec.base)), "student": str(spec.student),
                 "num_classes": datasets.info(spec.data).num_classes, "cpus": cpus}
    trainable = tune.with_resources(tune.with_parameters(_sample_trainable, pools=shipped), {"cpu": cpus, "gpu": gpus})
    tuner = tune.Tuner(
        trainable, param_space=constants,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=spec.samples, metric="val_acc", mode="max",
                                    max_concurrent_trials=max_concurrent, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{spec.key}-kappa{kappa:g}-{time.strftime('%Y%m%d-%H%M%S')}",
                                  storage_path=ray_storage, verbose=0, callbacks=[progress],
                                  failure_config=tune.FailureConfig(max_failures=0), log_to_file=True))
    tuner.fit()
    samples = progress.samples
    done = [s for s in samples if s["status"] == "ok"]
    if not done:
        raise SpecError(f"tune kappa={kappa:g}: every sample failed; first error: "
                        f"{samples[0].get('error') if samples else 'none ran'}")
    best = max(done, key=lambda s: (s["val_acc"], -_finite(s["val_loss"]), -s["index"]))
    entry = {"kappa": float(kappa), "n_train": spec.n_train(kappa), "n_fit": len(pools[0]["fit"]),
             "n_val": len(pools[0]["val"]), "settings": settings, "max_concurrent": max_concurrent,
             "samples": samples, "best": {k: best[k] for k in ("index", "lr", "weight_decay", "steps", "val_acc",
                                                                "val_loss", "val_acc_by_seed")},
             "recipe": to_dict(tuned_recipe(spec.base, best)), "wall_s": time.perf_counter() - started,
             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    log(f"{label}: best lr {best['lr']:.4g}, weight decay {best['weight_decay']:.3g}, {best['steps']} steps: "
        f"val_acc {best['val_acc']:.4f} (sample {best['index'] + 1}/{len(samples)}, {entry['wall_s']:.0f} s)")
    return entry


def _finite(value) -> float:
    return value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def _progress_callback(base_class, label: str, total: int, log):
    """A Tune callback in the driver: records every finished sample and prints one line for it."""

    class Progress(base_class):
        def __init__(self):
            self.samples: list[dict] = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "val_acc" not in result:
                return
            config = trial.config
            sample = {"index": len(self.samples), "lr": float(config["lr"]),
                      "weight_decay": float(config["weight_decay"]), "steps": int(config["steps"]),
                      "status": "ok", "val_acc": float(result["val_acc"]),
                      "val_loss": _json_float(result["val_loss"]),
                      "val_acc_by_seed": json.loads(result["val_acc_by_seed"]),
                      "diverged": int(result["diverged"]), "wall_s": float(result["train_s"])}
            self.samples.append(sample)
            best = max(s["val_acc"] for s in self.samples if s["status"] == "ok")
            diverged = f" ({sample['diverged']} seed(s) diverged)" if sample["diverged"] else ""
            log(f"{label} [{len(self.samples)}/{total}] lr {sample['lr']:.4g} wd {sample['weight_decay']:.3g} "
                f"steps {sample['steps']}: val_acc {sample['val_acc']:.4f}"
                f"{diverged} "
                f"(best {best:.4f}) [{sample['wall_s']:.1f} s]")

        def on_trial_error(self, iteration, trials, trial, **info):
            config = trial.config
            error = getattr(trial, "error_file", None) or "the sample's worker failed"
            self.samples.append({"index": len(self.samples), "lr": float(config["lr"]),
                                 "weight_decay": float(config["weight_decay"]), "steps": int(config["steps"]),
                                 "status": "failed", "error": str(error), "val_acc": None, "val_loss": None})
            log(f"{label} [{len(self.samples)}/{total}] failed: {error}")

    return Progress()


def _json_float(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _sample_trainable(config: dict, pools: list[dict] | None = None) -> None:
    """One sample: lt with the sample's recipe on each tuning seed's fit samples, scored on its own
    validation samples (the trainer's `x_test` slot holds them; the test set never comes here)."""
    import torch
    from ray import tune

    from kdscale.config import ObjectiveSpec
    from kdscale.train import TrainData, predict, train, train_students
    from kdscale.trial import resolve_device

    started = time.perf_counter()
    torch.set_num_threads(max(1, int(config["cpus"])))
    recipe = tuned_recipe(from_dict(RecipeSpec, json.loads(config["base"])), config)
    student = ModelSpec.parse(config["student"])
    device = resolve_device("auto")
    datas = [TrainData(*(torch.as_tensor(np.ascontiguousarray(pool[k])).to(device)
                         for k in ("x_fit", "y_fit", "x_val", "y_val"))) for pool in pools]
    seeds = [pool["seed"] for pool in pools]
    lt = ObjectiveSpec("lt")
    results = None
    if len(seeds) > 1:
        try:  # the seeds share the recipe: one packed run (kdscale.train), as the engine packs seeds
            results = train_students(student, lt, recipe, seeds, datas, config["num_classes"], max_reports=1)
        except ValueError:  # a model that cannot be packed trains seed by seed
            results = None
    if results is None:
        results = [train(student, lt, recipe, seed, data, config["num_classes"], max_reports=1)
                   for seed, data in zip(seeds, datas)]
    accs, losses = [], []
    for result, data in zip(results, datas):
        logits = predict(result.model, data.x_test) if result.status == "ok" else None
        if logits is None or not torch.isfinite(logits).all():
            accs.append(0.0)  # a diverged seed scores nothing
            losses.append(math.inf)
            continue
        accs.append((logits.argmax(1) == data.y_test).float().mean().item())
        losses.append(torch.nn.functional.cross_entropy(logits, data.y_test).item())
    tune.report({"val_acc": float(np.mean(accs)), "val_loss": float(np.mean(losses)),
                 "val_acc_by_seed": json.dumps(accs), "diverged": sum(not math.isfinite(v) for v in losses),
                 "train_s": time.perf_counter() - started})


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
