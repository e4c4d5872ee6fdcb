"""The students a training run moves: one model, or a pack of S models trained as one.

Both forms answer the training loop (kdscale.train.loop) the same way: their parameters for the
optimizer, their logits on one batch per student ([S, B, ...] in, [S, B, C] out), their logits on
one shared input, a checkpoint of their weights, and in the end one nn.Module per student.

`Single` is the plain module: a run of one student pays nothing for packing. `Pack` stacks the
students' parameters along a new leading axis (torch.func.stack_module_state) and runs one vmapped
functional_call on their own batches, so one optimizer step moves S students for about the
dispatch cost of one: small models on a CPU spend most of a step in Python and kernel launches,
not arithmetic (DESIGN: 8 MLPs 1.4-1.9x faster than 8 runs). SGD and Adam act element by element,
so one optimizer over the stacked tensors is S independent optimizers, and the loop's total loss
is the sum of the students' own mean losses, so each student's gradient is its own. Results match
students trained alone to float tolerance (vmapped kernels may sum in another order). Where the
model's family writes its packed forward out (`packed_logits`: cnn1d's grouped convolutions,
mlp's batched products; kdscale.models.base), the pack calls that instead of vmap: the same
arithmetic without vmap's per-op overhead (0.76-0.87 of vmap's step for packs of 8-16 cnn1d-16).

Batch norm updates its running statistics in place, which vmap cannot do. In a pack each batch-
norm layer is swapped for `PackBatchNorm`, a functional form: in training it normalises by the
batch's statistics and hands them out of the vmapped call, and the running statistics of every
student are then updated outside it, exactly as nn.BatchNorm would (momentum, unbiased variance).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

EVAL_BATCH = 2048
FAMILY_FORWARD = True  # False: every pack vmaps `forward` (bench/pack_scaling.py --forward compares the two)
OWN_EVAL_ROWS = 16384  # a pack evaluated on its students' own inputs: rows (students x samples) per pass

_BATCH_STATS: list[tuple[list, list]] = []  # (stats, (layer name, momentum)) of the functional call in progress


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of `model` on `x`, in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]) if len(x) else \
        torch.empty(0)
    model.train(was_training)
    return out


class Single:
    """One student, trained as the plain module it is."""

    def __init__(self, model: nn.Module):
        self.model = model

    def parameters(self):
        return self.model.parameters()

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs[0])[None]

    def predict(self, x: torch.Tensor, members: list[int] | None = None) -> torch.Tensor:
        return predict(self.model, x)[None]

    def state(self) -> dict:
        return {"model": self.model.state_dict()}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])

    def models(self) -> list[nn.Module]:
        return [self.model]


class PackBatchNorm(nn.Module):
    """nn.BatchNorm's forward without its in-place update: batch statistics go to _BATCH_STATS.

    Same parameter and buffer names as nn.BatchNorm, so a student's state dict fits it as it is.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        if bn.momentum is None or not bn.affine or not bn.track_running_stats:
            raise ValueError("packing needs batch norm with a momentum, affine and running statistics")
        self.momentum, self.eps = bn.momentum, bn.eps
        self.name = ""  # its path in the model, set by _functional_copy
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0] + list(range(2, x.dim()))  # every axis but the channels
        stats, names = _BATCH_STATS[-1]
        stats.append((x.mean(dims), x.var(dims, unbiased=True)))
        names.append((self.name, self.momentum))
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


def _functional_copy(model: nn.Module) -> nn.Module:
    """The architecture on the meta device, with PackBatchNorm for every batch-norm layer."""
    base = copy.deepcopy(model).to("meta")
    for name, module in list(base.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, PackBatchNorm(child))
                getattr(module, child_name).name = f"{name}.{child_name}" if name else child_name
    return base


def packs_across_sizes(model: nn.Module) -> bool:
    """Can students of this model with data sets of different sizes share a pack? Their batches are
    then padded to one width (kdscale.train.order), which batch norm's statistics would see."""
    return packable(model) and not any(isinstance(module, nn.modules.batchnorm._BatchNorm)
                                       for module in model.modules())


def packable(model: nn.Module) -> bool:
    """Can this model be trained in a pack? Not one that says it cannot (`packable = False`: an op
    vmap has no rule for, or a loop that stops at a data-dependent point), nor one with a batch
    norm PackBatchNorm cannot take."""
    return getattr(model, "packable", True) and not any(isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.momentum is None or not module.affine or not module.track_running_stats)
        for module in model.modules())


class Pack:
    """S students of one architecture, stacked and vmapped."""

    def __init__(self, models: list[nn.Module]):
        if not packable(models[0]):
            raise ValueError("this model cannot be packed (see kdscale.train.packable)")
        self.students = models
        self.params, self.buffers = stack_module_state(models)
        self.base = _functional_copy(models[0])  # the architecture; its weights come from `params`
        # The family's own packed forward where it has one (kdscale.models.base.Classifier) and the model
        # keeps the family's linear head (`projection=K` replaces it: kdscale.models), else vmap.
        own_head = isinstance(getattr(self.base, "head", None), nn.Linear)
        self.packed_logits = getattr(self.base, "packed_logits", None) if FAMILY_FORWARD and own_head else None

    def parameters(self):
        return list(self.params.values())

    def _logits(self, x: torch.Tensor, shared_input: bool, members: list[int] | None = None) -> torch.Tensor:
        """Logits of every student, or of `members` only: x [S, B, ...] (own batches) or [B, ...] (one
        batch for all).

        In training mode the running statistics of batch-norm layers are updated here, per student.
        """
        params, buffers = self.params, self.buffers
        if members is not None:  # in eval mode only (predictions): nothing is updated
            index = torch.tensor(members, device=next(iter(params.values())).device)
            params = {k: v.index_select(0, index) for k, v in params.items()}
            buffers = {k: v.index_select(0, index) for k, v in buffers.items()}
        if self.packed_logits is not None:
            return self.packed_logits(params, x.expand(len(next(iter(params.values()))), *x.shape)
                                      if shared_input else x)
        names: list[tuple[str, float]] = []  # batch-norm layers (name, momentum) in the order they ran
        x = x.contiguous()  # vmap's batch norm on CUDA refuses channels_last input ("NYI: querying is_contiguous")

        def one(p, b, inputs):
            _BATCH_STATS.append(([], names))
            try:
                logits = functional_call(self.base, (p, b), (inputs,))
                return logits, _BATCH_STATS[-1][0]
            finally:
                _BATCH_STATS.pop()
        logits, stats = torch.vmap(one, in_dims=(0, 0, None if shared_input else 0))(params, buffers, x)
        if stats:
            with torch.no_grad():
                for (name, momentum), (mean, var) in zip(names, stats):  # [S, C] each
                    self.buffers[f"{name}.running_mean"].mul_(1 - momentum).add_(momentum * mean)
                    self.buffers[f"{name}.running_var"].mul_(1 - momentum).add_(momentum * var)
                    self.buffers[f"{name}.num_batches_tracked"].add_(1)
        return logits

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._logits(inputs, False)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, members: list[int] | None = None) -> torch.Tensor:
        """[S, n, C] logits of every student (or [len(members), n, C] of `members`) on one shared
        input, in batches (eval mode)."""
        self.base.eval()
        out = torch.cat([self._logits(x[i:i + EVAL_BATCH], True, members) for i in range(0, len(x), EVAL_BATCH)],
                        dim=1)
        self.base.train()
        return out

    @torch.no_grad()
    def predict_own(self, x: torch.Tensor, members: list[int] | None = None) -> torch.Tensor:
        """[S, n, C] logits of each student (of `members`, when given) on its own inputs x [S, n, ...]
        (eval mode, in batches): S times less work than `predict` on each student's set in turn (a
        search's validation splits)."""
        self.base.eval()
        chunk = max(1, OWN_EVAL_ROWS // x.shape[0])
        out = torch.cat([self._logits(x[:, i:i + chunk], False, members) for i in range(0, x.shape[1], chunk)],
                        dim=1)
        self.base.train()
        return out

    def state(self) -> dict:
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "buffers": {k: v.clone() for k, v in self.buffers.items()}}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            for name, value in state["params"].items():
                self.params[name].copy_(value)
            for name, value in state["buffers"].items():
                self.buffers[name].copy_(value)

    def models(self) -> list[nn.Module]:
        """Each student as a module, its weights copied out of the pack."""
        with torch.no_grad():
            for s, model in enumerate(self.students):
                for name, p in model.named_parameters():
                    p.copy_(self.params[name][s])
                for name, b in model.named_buffers():
                    b.copy_(self.buffers[name][s])
        return self.students
