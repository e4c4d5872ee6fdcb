"""The shared trainer: one function trains a teacher or a student. Pure PyTorch (no Ray, no MLflow).

The data live as tensors on the training device and are indexed per batch: for a small data set
a DataLoader costs as much per batch as a whole small-model step (DESIGN). The seed is data of the
call, never global state: it seeds the model's initialisation and the batch order through their
own generators, so the same spec and seed on CPU give identical metrics, and several seeds can
later share one process.

A run reports at epoch ends, thinned to at most `max_reports` reports so a step budget on a tiny
subset (one step per epoch) does not evaluate after every step. The running loss is summed on the
device and read at reports only (no per-step host synchronisation); a NaN or infinite loss ends
the run with status "diverged".
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdscale import models, objectives
from kdscale.augment import augment
from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec

EVAL_BATCH = 2048


@dataclass
class TrainData:
    """Tensors of one run. Teacher logits are aligned with the rows of x_train / x_test."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    teacher_train: torch.Tensor | None = None  # float [M, C]
    teacher_test: torch.Tensor | None = None  # float [n_test, C]
    teacher_model: nn.Module | None = None  # needed with augmentation: run on each augmented batch


@dataclass
class TrainResult:
    status: str  # "ok" or "diverged"
    metrics: dict[str, Any]
    model: nn.Module
    test_probs: torch.Tensor | None  # float [n_test, C] on CPU; None when diverged
    history: list[dict[str, Any]] = field(default_factory=list)


def derive_seed(seed: int, purpose: int) -> int:
    """Independent streams for initialisation (1), batch order (2) and augmentation (3) from one seed."""
    return (seed * 1_000_003 + purpose * 7_919) % (2**63 - 1)


def precision_context(recipe: RecipeSpec, device: torch.device):
    """A factory of the training forward pass's autocast context (a no-op for fp32)."""
    import contextlib

    if recipe.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def on_device_layout(data: TrainData, model: nn.Module) -> tuple[TrainData, nn.Module]:
    """On a GPU, images and convolutions in channels_last, the layout its tensor cores want."""
    if data.x_train.device.type != "cuda" or data.x_train.dim() != 4:
        return data, model
    layout = torch.channels_last
    data.x_train = data.x_train.contiguous(memory_format=layout)
    data.x_test = data.x_test.contiguous(memory_format=layout)
    return data, model.to(memory_format=layout)


def plan_steps(recipe: RecipeSpec, n_train: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps). The batch never exceeds the data set."""
    batch = min(recipe.batch_size, n_train)
    per_epoch = math.ceil(n_train / batch)
    total = recipe.epochs * per_epoch if recipe.epochs is not None else recipe.steps
    return batch, per_epoch, total


def lr_factor(recipe: RecipeSpec, step: int, per_epoch: int, total: int) -> float:
    """Learning-rate multiplier at optimizer step `step` (0-based): warm-up, then the schedule."""
    unit = per_epoch if recipe.epochs is not None else 1  # steps per budget unit
    warmup = recipe.warmup * unit
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "cosine":
        progress = (step - warmup) / max(1.0, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    if recipe.schedule == "step":
        return recipe.gamma ** sum(step >= m * unit for m in recipe.milestones)
    return 1.0


def make_optimizer(recipe: RecipeSpec, model: nn.Module | list[torch.Tensor]) -> torch.optim.Optimizer:
    """The recipe's optimizer over a model's parameters (or a list of tensors, e.g. a pack's)."""
    parameters = model.parameters() if isinstance(model, nn.Module) else model
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of `model` on `x`, in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]) if len(x) else \
        torch.empty(0)
    model.train(was_training)
    return out


def agreement(logits: torch.Tensor, other: torch.Tensor) -> float:
    """Top-1 agreement (fidelity when `other` is the teacher's logits)."""
    return (logits.argmax(1) == other.argmax(1)).float().mean().item()


def forward_flops(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOPs of one forward pass on one sample (torch's flop counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample[:1])
    model.train(was_training)
    return float(counter.get_total_flops())


def train(model_spec: ModelSpec, objective: ObjectiveSpec, recipe: RecipeSpec, seed: int, data: TrainData,
          num_classes: int, on_report: Callable[[dict, Callable[[], dict]], None] | None = None,
          resume: dict | None = None, max_reports: int = 20, teacher_forward_flops: float = 0.0) -> TrainResult:
    """Train `model_spec` on `data` and return its final metrics.

    `on_report(metrics, state)` is called at each report; `state()` builds a checkpoint (model,
    optimizer, step, batch-order generator) that `resume` takes back to continue where it was.
    `teacher_forward_flops` is the FLOPs of one teacher forward pass on one sample, counted once
    per training sample (teacher logits are computed once and cached), or per sample seen when
    augmentation makes the teacher run on every batch.
    """
    started = time.perf_counter()
    device = data.x_train.device
    input_shape = tuple(data.x_train.shape[1:])
    n_train = len(data.x_train)
    if objective.uses_teacher and data.teacher_train is None:
        raise ValueError(f"objective {objective.name!r} needs teacher logits for the training samples")
    augmenting = recipe.augment != "none"
    if augmenting and objective.uses_teacher and data.teacher_model is None:
        raise ValueError(f"recipe.augment={recipe.augment!r} with objective {objective.name!r} needs the "
                         "teacher model: cached logits belong to the un-augmented samples")

    with torch.random.fork_rng(devices=[]):  # initialisation from the seed alone, global RNG untouched
        torch.manual_seed(derive_seed(seed, 1))
        model = models.build(model_spec, input_shape, num_classes).to(device)
    data, model = on_device_layout(data, model)
    autocast = precision_context(recipe, device)
    optimizer = make_optimizer(recipe, model)
    order_rng = torch.Generator(device="cpu").manual_seed(derive_seed(seed, 2))
    augment_rng = torch.Generator(device=device).manual_seed(derive_seed(seed, 3))
    batch, per_epoch, total = plan_steps(recipe, n_train)
    total_epochs = math.ceil(total / per_epoch)
    report_every = max(1, math.ceil(total_epochs / max_reports))
    step, epoch, seen, history = 0, 0, 0, []  # seen: training samples processed, for FLOPs
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        order_rng.set_state(resume["order_rng"])
        augment_rng.set_state(resume["augment_rng"])
        step, epoch, seen, history = resume["step"], resume["epoch"], resume["seen"], list(resume["history"])

    def state() -> dict:
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "epoch": epoch, "seen": seen, "order_rng": order_rng.get_state(),
                "augment_rng": augment_rng.get_state(), "history": list(history)}

    status = "ok"
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    model.train()
    while step < total:
        perm = torch.randperm(n_train, generator=order_rng).to(device)
        for start in range(0, n_train, batch):
            if step >= total:
                break
            idx = perm[start:start + batch]
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * lr_factor(recipe, step, per_epoch, total)
            inputs = data.x_train[idx]
            teacher = data.teacher_train[idx] if objective.uses_teacher else None
            if augmenting:
                inputs = augment(inputs, recipe.augment, augment_rng)
                if objective.uses_teacher:  # the teacher sees exactly the student's batch
                    with torch.no_grad():
                        teacher = data.teacher_model(inputs)
            with autocast():
                logits = model(inputs)
                loss = objectives.loss(objective, logits.float(), data.y_train[idx], teacher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            loss_count += 1
            step += 1
            seen += len(idx)
        epoch += 1
        if epoch % report_every == 0 or step >= total:
            train_loss = (loss_sum / max(1, loss_count)).item()
            loss_sum.zero_()
            loss_count = 0
            if not math.isfinite(train_loss):
                status = "diverged"
                break
            test_logits = predict(model, data.x_test)
            report = {"epoch": epoch, "step": step, "train_loss": train_loss,
                      "test_acc": (test_logits.argmax(1) == data.y_test).float().mean().item(),
                      "test_loss": F.cross_entropy(test_logits, data.y_test).item(),
                      "lr": optimizer.param_groups[0]["lr"]}
            history.append(report)
            if on_report is not None:
                on_report(report, state)

    flops_fwd = forward_flops(model, data.x_train)
    # forward + backward is about 3 forward passes per sample
    metrics: dict[str, Any] = {"student_params": models.count_params(model), "steps": step, "epochs": epoch,
                               "resumed_from_step": resume["step"] if resume is not None else 0, "pack_size": 1,
                               "flops": 3.0 * flops_fwd * seen + teacher_forward_flops *
                               (seen if augmenting and objective.uses_teacher else n_train)}
    test_probs = None
    if status == "ok":
        train_logits, test_logits = predict(model, data.x_train), predict(model, data.x_test)
        if not (torch.isfinite(train_logits).all() and torch.isfinite(test_logits).all()):
            status = "diverged"
        else:
            metrics.update(
                test_acc=(test_logits.argmax(1) == data.y_test).float().mean().item(),
                test_loss=F.cross_entropy(test_logits, data.y_test).item(),
                train_acc=(train_logits.argmax(1) == data.y_train).float().mean().item())
            if data.teacher_train is not None:
                metrics["fidelity_train"] = agreement(train_logits, data.teacher_train)
            if data.teacher_test is not None:
                metrics["fidelity_test"] = agreement(test_logits, data.teacher_test)
            test_probs = test_logits.softmax(1).float().cpu()
    metrics["wall_s"] = time.perf_counter() - started
    return TrainResult(status, metrics, model, test_probs, history)
