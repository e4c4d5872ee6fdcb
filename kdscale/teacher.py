"""Teachers: trained once with label training on the pool's first N samples, then cached; or, when
the spec says `untrained`, the model at its seed's initialisation (zero steps), or, with `weights`,
a pretrained backbone with its head fitted on the N samples (kdscale/pretrained.py), cached the same way.

A teacher's directory, named by its spec's content hash, holds
  weights.safetensors   the model (safetensors: loading runs no pickled code)
  logits_test.npy       float32 [n_test, C]
  logits_train.npy      float32 [n_covered, C], logits on the first n_covered samples of the stream
  meta.json             spec, test accuracy, parameter count, FLOPs, sha256 of each file above
With no augmentation a teacher's forward pass over a sample happens once, ever: a student reads
the logits, and a later student that needs more of a generated stream extends them by a forward
pass over the new samples only. A file whose checksum does not match is reported and the teacher
retrained, never silently used.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdscale import data as datasets
from kdscale import models
from kdscale.config import ObjectiveSpec, TeacherSpec, to_dict
from kdscale.fileio import atomic_path, cache_dir, sha256_file
from kdscale.models import count_params
from kdscale.train import TrainData, accuracy, forward_flops, initial_model, predict, train

FILES = ("weights.safetensors", "logits_test.npy", "logits_train.npy")


@dataclass
class TeacherOutputs:
    spec: TeacherSpec
    directory: Path
    test_acc: float
    params: int
    forward_flops: float  # one forward pass on one sample
    logits_train: np.ndarray  # [n_covered, C], rows aligned with the stream
    logits_test: np.ndarray
    trained: bool  # trained in this call (False: loaded from the cache)
    forward_samples: int  # samples this call ran the teacher's forward pass on


def teacher_dir(spec: TeacherSpec, root: Path | None = None) -> Path:
    return Path(root or cache_dir()) / "teachers" / spec.id


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def _write_meta(directory: Path, meta: dict) -> None:
    meta["sha256"] = {name: sha256_file(directory / name) for name in FILES}
    with atomic_path(directory / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))


def _read_cached(directory: Path) -> dict | None:
    """meta.json if every file is present and matches its checksum; None if there is no teacher.

    Raises ValueError naming what is wrong when the cache exists but is damaged.
    """
    meta_path = directory / "meta.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["sha256"]
    except (ValueError, KeyError) as error:
        raise ValueError(f"meta.json is unreadable ({error})") from None
    for name in FILES:
        path = directory / name
        if not path.exists():
            raise ValueError(f"{name} is missing")
        if sha256_file(path) != expected.get(name):
            raise ValueError(f"{name} does not match its checksum")
    return meta


def _train_teacher(spec: TeacherSpec, loaded: datasets.LoadedData, n_pool: int, directory: Path,
                   device: torch.device, log, on_report) -> tuple[dict, np.ndarray]:
    """Train (or, for an untrained teacher, initialise), then write weights, test logits and logits
    on the stream's first `n_pool`, from the model in memory; returns meta.json's content and the
    training logits."""
    n = spec.data.n_teacher
    info = loaded.info
    if spec.untrained:  # zero steps: the initialisation a run of this seed starts from
        log(f"initialising untrained teacher {spec.model.label} (seed {spec.seed}, {spec.id})")
        model = initial_model(spec.model, spec.seed, tuple(loaded.x_pool.shape[1:]), info.num_classes,
                              info.vocab_size).to(device)
        metrics = {"wall_s": 0.0, "train_acc": None, "test_acc": None, "student_params": count_params(model)}
    elif spec.weights is not None:  # a pretrained backbone, frozen, and a head fitted on the N samples
        from kdscale.pretrained import fit_teacher

        log(f"fitting the head of pretrained teacher {spec.model.label} ({spec.weights}) on N={n} "
            f"{spec.data.name} samples ({spec.id})")
        model, metrics = fit_teacher(spec, loaded, device)
    else:
        log(f"training teacher {spec.model.label} on N={n} {spec.data.name} samples ({spec.id})")
        tensors = TrainData(*(torch.as_tensor(a).to(device) for a in
                              (loaded.x_pool[:n], loaded.y_pool[:n], loaded.x_test, loaded.y_test)))
        result = train(spec.model, ObjectiveSpec("lt"), spec.recipe, spec.seed, tensors, info.num_classes,
                       on_report=on_report, vocab_size=info.vocab_size)
        if result.status != "ok":
            raise RuntimeError(f"teacher {spec.model.label} ({spec.id}) diverged; lower recipe.lr")
        model, metrics = result.model, result.metrics
    meta, logits_train = _write_teacher(spec, model, loaded, n_pool, directory, device, metrics)
    log(f"teacher {spec.model.label}: test accuracy {meta['test_acc']:.4f} "
        f"({meta['params']:,} parameters, {meta['wall_s']:.1f} s)")
    return meta, logits_train


def _write_teacher(spec: TeacherSpec, model: torch.nn.Module, loaded, n_pool: int, directory: Path,
                   device: torch.device, metrics: dict) -> tuple[dict, np.ndarray]:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / "weights.safetensors") as tmp:
        save_file(state, str(tmp))
    x_test = torch.as_tensor(loaded.x_test).to(device)
    logits_test = predict(model, x_test)
    _save_npy(directory / "logits_test.npy", logits_test.cpu().numpy())
    logits_train = predict(model, torch.as_tensor(loaded.x_pool[:n_pool]).to(device)).cpu().numpy()
    _save_npy(directory / "logits_train.npy", logits_train)
    test_acc, train_acc = metrics["test_acc"], metrics["train_acc"]
    if test_acc is None:  # an untrained or pretrained teacher's (NaN for a projection head: no classes)
        classes = logits_test.shape[-1] == loaded.info.num_classes
        labels = torch.as_tensor(loaded.y_test).to(device)
        test_acc = accuracy(logits_test, labels) if classes else float("nan")
        n = spec.data.n_teacher
        train_acc = accuracy(torch.as_tensor(logits_train[:n]), torch.as_tensor(loaded.y_pool[:n])) if classes \
            else float("nan")
    meta = {"spec": to_dict(spec), "id": spec.id, "test_acc": test_acc, "train_acc": train_acc,
            "params": metrics["student_params"], "forward_flops": forward_flops(model, x_test),
            "wall_s": metrics["wall_s"], **({"head_fit": metrics["head_fit"]} if "head_fit" in metrics else {})}
    _write_meta(directory, meta)
    return meta, logits_train


def get_teacher(spec: TeacherSpec, n_pool: int | None = None, root: Path | None = None,
                device: str | torch.device = "cpu", log=None, on_report=None,
                cached_only: bool = False) -> TeacherOutputs | None:
    """Train the teacher of `spec` or load it from the cache, with logits on the stream's first `n_pool`.

    `n_pool` defaults to N; a larger one (a student with kappa > 1) extends the cached logits.
    `on_report` is passed to the trainer when the teacher is trained (a progress bar, say).
    `cached_only`: read files only, or return None where the teacher would train or extend its
    logits, or where its cache entry is damaged (left as it is, for a later call to report and
    retrain).
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    device = torch.device(device)
    info = datasets.check(spec.data)
    n_pool = max(n_pool or 0, spec.data.n_teacher)
    if info.pool_size is not None:
        n_pool = min(n_pool, info.pool_size)
    directory = teacher_dir(spec, root)
    try:
        meta = _read_cached(directory)
    except ValueError as damage:
        if cached_only:
            return None
        log(f"teacher cache {directory} is corrupt ({damage}): retraining")
        shutil.rmtree(directory)
        meta = None
    trained = meta is None
    if trained and cached_only:
        return None
    if trained:
        meta, logits_train = _train_teacher(spec, datasets.load(spec.data, n_pool), n_pool, directory, device,
                                            log, on_report)
        forward_samples = n_pool
    else:
        logits_train = np.load(directory / "logits_train.npy")
        forward_samples = max(0, n_pool - len(logits_train))
    if forward_samples and cached_only:
        return None
    if len(logits_train) < n_pool:  # a cached teacher, and a student that needs more of the stream
        new = torch.as_tensor(datasets.load(spec.data, n_pool).x_pool[len(logits_train):n_pool]).to(device)
        model = _load_weights(spec, directory, device)
        logits_train = np.concatenate([logits_train, predict(model, new).cpu().numpy()])
        _save_npy(directory / "logits_train.npy", logits_train)
        _write_meta(directory, meta)
    return TeacherOutputs(spec, directory, meta["test_acc"], meta["params"], meta["forward_flops"],
                          logits_train, np.load(directory / "logits_test.npy"), trained, forward_samples)


def _load_weights(spec: TeacherSpec, directory: Path, device: str | torch.device) -> torch.nn.Module:
    from safetensors.torch import load_file

    info = datasets.info(spec.data)
    model = models.build(spec.model, info.input_shape, info.num_classes, info.vocab_size).to(device)
    model.load_state_dict(load_file(str(directory / "weights.safetensors"), device=str(device)))
    return model.eval()


def load_model(outputs: TeacherOutputs, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The cached teacher as a model (weights checked against meta.json when it was loaded)."""
    return _load_weights(outputs.spec, outputs.directory, device)


def teacher_features(outputs: TeacherOutputs, x_test: torch.Tensor) -> torch.Tensor:
    """The teacher's test-set features phi [n_test, D], computed once and cached beside its logits."""
    from kdscale.representations import features_of

    path = outputs.directory / "features_test.npy"
    if path.exists():
        try:
            cached = np.load(path)
            if len(cached) == len(x_test):
                return torch.as_tensor(cached).to(x_test.device)
        except (OSError, ValueError):
            pass  # damaged: computed again below
    features = features_of(load_model(outputs, x_test.device), x_test)
    _save_npy(path, features.float().cpu().numpy())
    return features
