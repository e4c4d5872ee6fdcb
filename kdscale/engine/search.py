"""The recipe search of `kdscale tune`: an Optuna TPE search through Ray Tune, per kappa, of the lt
recipe on a validation split of the student's own samples (the search space, the tuned-recipe
files and the protocol: kdscale.tuned).

A sample trains lt with its config on the fit samples of each tuning seed and reports the
validation accuracy, the mean over seeds (a diverged seed counts 0). The driver loads the data and
ships the trainables only those samples, through `tune.with_parameters`: no worker ever holds the
test set. With `max_concurrent=1` the search is deterministic.
"""
from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
from ray import tune

from kdscale import data as datasets
from kdscale.config import DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, check_float, check_int, from_dict, to_dict
from kdscale.data.subsets import split_for
from kdscale.engine.session import ray_session
from kdscale.errors import SpecError
from kdscale.tuned import (TuneSpec, TuningResult, _pending, check_tune, _stored_entries, _write_tuned, kappa_key, read_tuned,
                           tuned_dir, tuned_path, tuned_recipe)


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
    import optuna
    from ray.tune.search.optuna import OptunaSearch

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


