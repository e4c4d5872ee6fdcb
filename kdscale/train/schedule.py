"""How a recipe becomes steps, learning rates and an optimizer; the seeds of a run's random streams."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from kdscale.config import RecipeSpec


def derive_seed(seed: int, purpose: int) -> int:
    """Independent streams for initialisation (1), batch order (2) and augmentation (3) from one seed."""
    return (seed * 1_000_003 + purpose * 7_919) % (2**63 - 1)


def precision_context(recipe: RecipeSpec, device: torch.device):
    """A factory of the training forward pass's autocast context (a no-op for fp32)."""
    if recipe.precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


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
