"""What every model family shares: the registry, the features/head split and input-shape checks.

Distillation studies look inside a model as well as at its output (feature-kernel CKA to the
teacher, linear probes), so every model splits into `features(x) -> [B, D]`, the penultimate
representation phi, and one linear `head: D -> num_classes`, with `forward(x) = head(features(x))`.
Token models (kdscale/models/rnn.py) take int64 tokens [B, T] and give features [B, T, D] and
logits [B, T, num_classes], one per token; their builders take the data's `vocab_size`.
"""
from __future__ import annotations

import torch
from torch import nn

from kdscale.errors import SpecError
from kdscale.registry import Registry

# Builders take (width, input_shape, num_classes, **options) and return a Classifier. The kind is
# the spec field a failed lookup is about, so its message reads "model.family: unknown 'x'; ...".
MODELS: Registry = Registry("model.family")


class Classifier(nn.Module):
    """A model as phi (`features`) followed by a linear head. Subclasses set `self.head` and
    `self.feature_dim` and define `features`."""

    head: nn.Linear
    feature_dim: int  # D, the width of phi
    packable = True  # False: cannot train in a vmapped pack (kdscale.train.packable)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # A family may also define `packed_logits(params, x)`: the logits [S, B, C] of S students whose
    # stacked parameters are `params` (name -> [S, ...]) on their own batches x [S, B, ...], without
    # vmap. A pack (kdscale.train.students) then calls it instead of vmapping `forward`: the same
    # arithmetic (grouped convolutions and batched matrix products are what vmap's rules run) less
    # vmap's per-op overhead, measured in docs/benchmarks.md ("Packed forward"). It computes the
    # family's own linear head; a model whose head `projection=K` replaced is packed through vmap.

    @property
    def num_params(self) -> int:
        return count_params(self)


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights and biases; batch-norm running statistics are buffers, not
    counted). This is the model size the scaling fits use."""
    return sum(p.numel() for p in model.parameters())


def packed_linear(params: dict[str, torch.Tensor], name: str, h: torch.Tensor) -> torch.Tensor:
    """nn.Linear `name` of S stacked students on their own inputs h [S, B, in] -> [S, B, out]."""
    return torch.baddbmm(params[f"{name}.bias"][:, None], h, params[f"{name}.weight"].transpose(1, 2))


def bad_shape(family: str, input_shape: tuple[int, ...], needs: str) -> SpecError:
    return SpecError(f"model.input_shape={tuple(input_shape)!r} is invalid for {family}: needs {needs}")


def int_option(name: str, value, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"model.options.{name}={value!r} is invalid: must be an integer >= {minimum}")
    return value


def bool_option(name: str, value) -> bool:
    # `ModelSpec.parse("cnn2d:width=20,batch_norm=1")` reads 1 as an int, so 0 and 1 count as flags.
    if value not in (True, False) or (isinstance(value, float)):
        raise SpecError(f"model.options.{name}={value!r} is invalid: must be true or false (or 1 or 0)")
    return bool(value)


def float_option(name: str, value, minimum: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= minimum or value == float("inf"):
        raise SpecError(f"model.options.{name}={value!r} is invalid: must be a finite number >= {minimum:g}")
    return float(value)
