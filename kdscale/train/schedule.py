"""How a recipe becomes steps, learning rates and an optimizer; the seeds of a run's random streams."""
from __future__ import annotations

import contextlib
import math
from dataclasses import replace

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


def shared_recipe(recipes: list[RecipeSpec]) -> RecipeSpec:
    """The recipe of a pack whose students may differ in learning rate and weight decay only: the
    first, checked against the others."""
    first = recipes[0]
    for other in recipes[1:]:
        if replace(other, lr=first.lr, weight_decay=first.weight_decay) != first:
            raise ValueError(f"a pack's students may differ in lr and weight decay only: {first} vs {other}")
    return first


def make_optimizer(recipe: RecipeSpec, model: nn.Module | list[torch.Tensor]) -> torch.optim.Optimizer:
    """The recipe's optimizer over a model's parameters (or a list of tensors, e.g. a pack's)."""
    parameters = model.parameters() if isinstance(model, nn.Module) else model
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    return cls(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)


class _Stacked:
    """An optimizer over a pack's stacked parameters [S, ...] with a learning rate and a weight decay
    per student: the candidates of a recipe search train in one pack; every pack uses one (torch.optim's
    update rules; packs match students trained alone with torch.optim, tests/test_packed.py).
    `set_lr(factor)` sets every student's rate to its base rate times the schedule's factor."""

    def __init__(self, params: list[torch.Tensor], lrs, weight_decays):
        self.params = params
        self.base_lr = torch.tensor(lrs, dtype=params[0].dtype, device=params[0].device)
        self.lr = self.base_lr.clone()
        self.weight_decay = torch.tensor(weight_decays, dtype=params[0].dtype, device=params[0].device)
        self.param_groups = [{"lr": float(self.lr[0])}]  # what the loop reports as the lr

    def set_lr(self, factor: float) -> None:
        self.lr = self.base_lr * factor
        self.param_groups[0]["lr"] = float(self.lr[0])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @staticmethod
    def per_student(values: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """One value per student, broadcast over its slice of a stacked tensor."""
        return values.view((-1,) + (1,) * (p.dim() - 1))


class StackedSGD(_Stacked):
    """SGD (momentum, weight decay, Nesterov as torch.optim.SGD computes them), per-student lr and decay."""

    def __init__(self, params: list[torch.Tensor], lrs, weight_decays, momentum: float, nesterov: bool):
        super().__init__(params, lrs, weight_decays)
        self.momentum, self.nesterov = momentum, nesterov
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            grad = torch.addcmul(p.grad, p, self.per_student(self.weight_decay, p))
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = grad.clone()
                else:
                    self.buffers[i].mul_(self.momentum).add_(grad)
                grad = grad.add(self.buffers[i], alpha=self.momentum) if self.nesterov else self.buffers[i]
            p.addcmul_(grad, self.per_student(self.lr, p), value=-1.0)

    def state_dict(self) -> dict:
        return {"buffers": [None if b is None else b.clone() for b in self.buffers], "lr": self.lr.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "state" in state:  # torch.optim.SGD's, from a checkpoint of a pack of one learning rate before 2026-12
            state = {"buffers": [state["state"].get(i, {}).get("momentum_buffer") for i in range(len(self.params))],
                     "lr": torch.full_like(self.base_lr, state["param_groups"][0]["lr"])}
        self.buffers = [None if b is None else b.clone() for b in state["buffers"]]
        self.lr = state["lr"].clone()


class StackedAdam(_Stacked):
    """Adam, or AdamW with `decoupled` weight decay, as torch.optim computes them (betas 0.9 and 0.999,
    eps 1e-8, the recipe's defaults), per-student lr and decay: an AdamW recipe's learning rate is
    searched in one pack as SGD's is."""
    BETAS, EPS = (0.9, 0.999), 1e-8

    def __init__(self, params: list[torch.Tensor], lrs, weight_decays, decoupled: bool):
        super().__init__(params, lrs, weight_decays)
        self.decoupled = decoupled
        self.steps = [0] * len(params)
        self.moments: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(params)

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.BETAS
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            lr, decay = self.per_student(self.lr, p), self.per_student(self.weight_decay, p)
            grad = p.grad
            if self.decoupled:
                p.mul_(1 - lr * decay)
            else:
                grad = torch.addcmul(grad, p, decay)
            if self.moments[i] is None:
                self.moments[i] = (torch.zeros_like(p), torch.zeros_like(p))
            exp_avg, exp_avg_sq = self.moments[i]
            self.steps[i] += 1
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** self.steps[i])).add_(self.EPS)
            p.addcdiv_(exp_avg * (lr / (1 - beta1 ** self.steps[i])), denom, value=-1.0)

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "lr": self.lr.clone(),
                "moments": [None if m is None else (m[0].clone(), m[1].clone()) for m in self.moments]}

    def load_state_dict(self, state: dict) -> None:
        if "state" in state:  # torch.optim.Adam(W)'s, from a checkpoint of a pack of one learning rate before 2026-12
            own = [state["state"].get(i) for i in range(len(self.params))]
            state = {"steps": [0 if o is None else int(o["step"]) for o in own],
                     "moments": [None if o is None else (o["exp_avg"], o["exp_avg_sq"]) for o in own],
                     "lr": torch.full_like(self.base_lr, state["param_groups"][0]["lr"])}
        self.steps = list(state["steps"])
        self.moments = [None if m is None else (m[0].clone(), m[1].clone()) for m in state["moments"]]
        self.lr = state["lr"].clone()


def stacked_optimizer(recipes: list[RecipeSpec], params: list[torch.Tensor]) -> _Stacked:
    """The optimizer of a pack, each student at its own learning rate and weight decay."""
    lrs, decays, first = [r.lr for r in recipes], [r.weight_decay for r in recipes], recipes[0]
    if first.optimizer == "sgd":
        return StackedSGD(params, lrs, decays, first.momentum, first.nesterov)
    return StackedAdam(params, lrs, decays, decoupled=first.optimizer == "adamw")
