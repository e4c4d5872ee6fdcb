"""cnn2d: the paper's vanilla 2-D CNN, four conv blocks whose channels scale with one width.

Channels are width * (1, 2, 3, 8): width 20 gives the paper's 20/40/60/160. Each block is a 3x3
convolution, optional batch norm, ReLU and a 2x2 max pool. The same model runs on 8x8 digits and
32x32 CIFAR: a block pools only along a side that is still >= 2 long (8x8 ends at 1x1 after three
pools instead of failing at the fourth), and global average pooling makes the feature width 8 *
width whatever the image size.

    features: [B, C, H, W] -> 4 x (Conv2d 3x3 -> [BatchNorm2d] -> ReLU -> MaxPool2d) -> mean over H, W
    head:     Linear(8 * width, num_classes)
"""
from __future__ import annotations

import torch
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape, bool_option

MULTIPLIERS = (1, 2, 3, 8)  # channels of the four blocks, in units of width


class CNN2d(Classifier):
    def __init__(self, input_shape: tuple[int, int, int], width: int, num_classes: int,
                 batch_norm: bool):
        super().__init__()
        in_channels, rows, cols = input_shape  # `width` is the channel knob
        blocks: list[nn.Module] = []
        for multiplier in MULTIPLIERS:
            channels = width * multiplier
            # Batch norm's own shift makes a conv bias redundant.
            blocks.append(nn.Conv2d(in_channels, channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                blocks.append(nn.BatchNorm2d(channels))
            blocks.append(nn.ReLU())
            pool = (2 if rows >= 2 else 1, 2 if cols >= 2 else 1)
            if pool != (1, 1):
                blocks.append(nn.MaxPool2d(pool))
                rows, cols = rows // pool[0], cols // pool[1]
            in_channels = channels
        self.body = nn.Sequential(*blocks)
        self.feature_dim = in_channels
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # [B, 8 * width, rows, cols] -> [B, 8 * width]


@MODELS.register("cnn2d")
def build_cnn2d(width: int, input_shape: tuple[int, ...], num_classes: int,
                batch_norm: bool = False) -> CNN2d:
    if len(input_shape) != 3:
        raise bad_shape("cnn2d", input_shape, "(channels, height, width), e.g. (1, 8, 8) or (3, 32, 32)")
    return CNN2d(tuple(input_shape), width, num_classes, bool_option("batch_norm", batch_norm))
