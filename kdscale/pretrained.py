"""Pretrained teachers (the paper's Table 1): a backbone read from a file the user points at, frozen,
and a linear head fitted on the target data's first N samples. Nothing is downloaded.

The file (`TeacherSpec.weights`) is a safetensors file (kdscale writes one per teacher,
`<cache>/teachers/<id>/weights.safetensors`) or a PyTorch state_dict (`.pt`, `.pth`, e.g.
torchvision's), read with `torch.load(weights_only=True)` so that no pickled code runs. Its keys
are the model's own (kdscale.models): the head's (`head.*`, or torchvision's `fc.*`) are dropped,
since the head is fitted anew for the target's classes, and every other key must be there with the
model's shape. A missing, damaged or mismatched file is one SpecError naming it (`check`, called by
`study.check_study` before any compute). torchvision's ImageNet ResNets have a 7x7 stem where
kdscale's CIFAR stem is 3x3 (kdscale/models/resnet.py), so their `conv1.weight` is refused by
shape: such a file needs a model with the same stem.

The head: multinomial logistic regression on the frozen features phi = model.features(x) (eval
mode) of the first N samples, each feature standardised by those samples' mean and sd (a constant
feature by sd 1), as scikit-learn's StandardScaler + LogisticRegression(C = 1 / (N wd)) would fit
it: minimise mean CE(W z + b, y) + (wd / 2) ||W||^2 (the bias not penalised) by L-BFGS in float64
to a largest gradient entry of 1e-6 (or 300 iterations; tests/test_pretrained.py checks the
optimum against scikit-learn), then fold the standardisation into the head's W and b. Unscaled
cnn1d-32 features (values up to 27) left L-BFGS at gradients of 1e-3 after 300 iterations.
wd is chosen from WEIGHT_DECAYS on a class-stratified 20% of the N samples (the recipe searches'
split, kdscale/data/subsets.py) by validation accuracy, ties to the larger wd, then the head is
fitted on all N. The backbone's weights are never touched: the teacher's weights file holds the file's
backbone bit for bit and the fitted head.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from kdscale import data as datasets
from kdscale import models
from kdscale.config import TeacherSpec
from kdscale.data.subsets import validation_split
from kdscale.errors import SpecError
from kdscale.fileio import sha256_file
from kdscale.representations import features_of

HEAD_PREFIXES = ("head.", "fc.")  # kdscale's head; torchvision's
# The head's L2 penalty on standardised features (mean-CE scale); 1e-4 took 8 s to fit on cnn1d-32's.
WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1)
VAL_FRACTION = 0.2


def _refuse(path, reason: str) -> SpecError:
    return SpecError(f"teacher.weights={str(path)!r} is invalid: {reason}")


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name: safetensors, else a torch state_dict (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise _refuse(path, "no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors, pickle and zip each raise their own kind
        kind = "safetensors" if path.suffix == ".safetensors" else "a PyTorch state_dict"
        raise _refuse(path, f"cannot be read as {kind} ({type(error).__name__}: {' '.join(str(error).split())[:120]})")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps its state_dict
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _refuse(path, "holds no state_dict (a mapping of names to tensors)")
    return state


def load_backbone(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """`model` with every non-head tensor read from `path` (its head untouched); a SpecError naming
    the file and the keys when the file does not fit the model."""
    own = model.state_dict()
    given = {k: v for k, v in read_state(path).items() if not k.startswith(HEAD_PREFIXES)}
    wanted = {k: v for k, v in own.items() if not k.startswith(HEAD_PREFIXES)}
    missing, extra = sorted(set(wanted) - set(given)), sorted(set(given) - set(wanted))
    shapes = [f"{k} {tuple(given[k].shape)} (the model's {tuple(v.shape)})" for k, v in wanted.items()
              if k in given and given[k].shape != v.shape]
    for what, keys in (("lacks", missing), ("has keys the model does not", extra), ("has other shapes:", shapes)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise _refuse(path, f"does not fit {type(model).__name__}: it {what} {', '.join(keys[:3])}{more}")
    model.load_state_dict({**own, **{k: given[k].to(own[k].dtype) for k in wanted}})
    return model


def build(spec: TeacherSpec) -> torch.nn.Module:
    """The teacher's model with the file's backbone (its head as initialised)."""
    info = datasets.info(spec.data)
    if info.vocab_size:
        raise SpecError(f"teacher.weights is invalid for {spec.data.name}: a head fitted on one feature vector per "
                        "sample needs a classification data set, not tokens")
    model = models.build(spec.model, info.input_shape, info.num_classes, info.vocab_size)
    return load_backbone(model, spec.weights)


def check(spec: TeacherSpec) -> None:
    """Everything about a pretrained teacher's file that can fail, before any compute."""
    if spec.weights is not None:
        build(spec)


def fit_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, weight_decay: float,
             max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) minimising mean CE(features W^T + b, labels) + (weight_decay / 2) ||W||^2, in float64."""
    x, y = features.double(), labels.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def fit_standardised(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_head` on the features standardised per feature, folded back: (W, b) act on raw features."""
    x = features.double()
    mean, sd = x.mean(0), x.std(0)
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
    weight, bias = fit_head((x - mean) / sd, labels, num_classes, weight_decay)
    return weight / sd, bias - (weight / sd) @ mean


def choose_weight_decay(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        seed: int) -> tuple[float, dict[float, float]]:
    """The wd of WEIGHT_DECAYS with the best accuracy on a stratified 20% validation split
    (ties to the larger wd) and every candidate's validation accuracy."""
    fit, val = (torch.as_tensor(i) for i in validation_split(labels.cpu().numpy(), VAL_FRACTION, seed))
    scores = {}
    for wd in WEIGHT_DECAYS:
        weight, bias = fit_standardised(features[fit], labels[fit], num_classes, wd)
        predicted = (features[val].double() @ weight.T + bias).argmax(1)
        scores[wd] = float((predicted == labels[val]).double().mean())
    best = max(WEIGHT_DECAYS, key=lambda wd: (scores[wd], wd))
    return best, scores


def fit_teacher(spec: TeacherSpec, loaded, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The pretrained teacher of `spec` on `loaded` (datasets.load's output): the file's backbone
    and a head fitted on the first N samples. Returns the model and teacher.py's metrics."""
    start = time.perf_counter()
    if sha256_file(spec.weights) != spec.weights_sha256:
        raise _refuse(spec.weights, f"changed since its spec was made (sha256 no longer {spec.weights_sha256[:16]}...)")
    model = build(spec).to(device).eval()
    n, info = spec.data.n_teacher, loaded.info
    x = torch.as_tensor(loaded.x_pool[:n]).to(device)
    y = torch.as_tensor(np.asarray(loaded.y_pool[:n])).to(device)
    phi = features_of(model, x).double()
    wd, scores = choose_weight_decay(phi, y, info.num_classes, spec.seed)
    weight, bias = fit_standardised(phi, y, info.num_classes, wd)
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight.dtype))
        model.head.bias.copy_(bias.to(model.head.bias.dtype))
    head_fit = {"weight_decay": wd, "val_acc": {f"{k:g}": v for k, v in scores.items()},
                "weights_sha256": spec.weights_sha256}
    return model, {"wall_s": time.perf_counter() - start, "train_acc": None, "test_acc": None,
                   "student_params": models.count_params(model), "head_fit": head_fit}
