"""mlp: a fully connected ReLU network on the flattened input.

The smallest models of a size sweep: at width 8 on MNIST-1D it has 490 parameters, at width 256
about 79k, so one family alone spans more than two orders of magnitude.

    features: flatten -> [Linear(in, width) -> ReLU] -> [Linear(width, width) -> ReLU] x (depth - 1)
    head:     Linear(width, num_classes)
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape, int_option, packed_linear


class MLP(Classifier):
    def __init__(self, in_features: int, width: int, depth: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(in_features if i == 0 else width, width), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))  # [B, ...] -> [B, in_features] -> [B, width]

    def packed_logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """S students at once (see Classifier): one batched matrix product per layer."""
        h = x.flatten(2)  # [S, B, in_features]
        for i in range(0, len(self.body), 2):
            h = packed_linear(params, f"body.{i}", h).relu()
        return packed_linear(params, "head", h)


@MODELS.register("mlp")
def build_mlp(width: int, input_shape: tuple[int, ...], num_classes: int, depth: int = 2) -> MLP:
    """`depth` = number of hidden layers, each `width` units wide."""
    if len(input_shape) < 1:
        raise bad_shape("mlp", input_shape, "at least one dimension, e.g. (40,) or (1, 8, 8)")
    depth = int_option("depth", depth, 1)  # depth 0 would ignore width: not a size knob
    return MLP(math.prod(input_shape), width, depth, num_classes)
