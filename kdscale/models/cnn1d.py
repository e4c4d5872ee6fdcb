"""cnn1d: the classic MNIST-1D convolutional network, with its channel count as the width knob.

Follows the reference CNN of the MNIST-1D paper (Greydanus & Kobak, "Scaling down deep learning
with MNIST-1D"; `ConvBase` in its repository): three strided convolutions and a linear layer on the
flattened map, about 94% test accuracy at 25 channels with 4000 training samples. We keep its
flatten rather than global pooling: where a pattern sits along the sequence is part of what tells
MNIST-1D's digits apart, and pooling it away costs accuracy.

    features: [B, C, L] -> Conv1d(C, w, k5, s2, p1) -> ReLU -> Conv1d(w, w, k3, s2, p1) -> ReLU
              -> Conv1d(w, w, k3, s2, p1) -> ReLU -> flatten        D = w * L3 (L = 40: L3 = 5)
    head:     Linear(D, num_classes)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape, packed_linear

# (kernel, stride, padding) of each convolution, from the reference model.
LAYERS = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def out_length(length: int) -> int:
    """Sequence length after all convolutions (PyTorch's Conv1d arithmetic)."""
    for kernel, stride, padding in LAYERS:
        length = (length + 2 * padding - kernel) // stride + 1
    return length


class CNN1d(Classifier):
    def __init__(self, in_channels: int, length: int, width: int, num_classes: int):
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        for i, (kernel, stride, padding) in enumerate(LAYERS):
            layers += [nn.Conv1d(in_channels if i == 0 else width, width, kernel, stride, padding),
                       nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = width * out_length(length)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # MNIST-1D comes as [B, 40]; it is a single-channel signal, [B, 1, 40].
        x = x.view(x.shape[0], self.in_channels, x.shape[-1])
        return self.body(x).flatten(1)  # [B, w, L3] -> [B, w * L3]

    def packed_logits(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """S students at once (see Classifier): their channels side by side, one grouped convolution
        per layer, [B, S * C, L] -> [B, S * w, L'], then each student's flatten and head."""
        size, batch = x.shape[:2]
        h = x.reshape(size, batch, self.in_channels, x.shape[-1]).transpose(0, 1).reshape(batch, -1, x.shape[-1])
        for i, (kernel, stride, padding) in enumerate(LAYERS):
            weight, bias = params[f"body.{2 * i}.weight"], params[f"body.{2 * i}.bias"]  # [S, w, C, k], [S, w]
            h = F.conv1d(h, weight.flatten(0, 1), bias.flatten(), stride, padding, groups=size).relu()
        return packed_linear(params, "head", h.reshape(batch, size, -1).transpose(0, 1))  # [S, B, w * L3]


@MODELS.register("cnn1d")
def build_cnn1d(width: int, input_shape: tuple[int, ...], num_classes: int) -> CNN1d:
    if len(input_shape) == 1:
        input_shape = (1, *input_shape)
    if len(input_shape) != 2 or out_length(input_shape[-1]) < 1:
        raise bad_shape("cnn1d", input_shape, "(length,) or (channels, length) with length >= 3, "
                        "e.g. (1, 40)")
    channels, length = input_shape
    return CNN1d(channels, length, width, num_classes)
