"""resnet18: the CIFAR-style ResNet-18 used as the large model of the paper's CIFAR studies.

torchvision's ResNet-18 was built for 224x224 ImageNet: a 7x7 stride-2 stem and a max pool shrink
the image 4x before the first block, which leaves a 32x32 CIFAR image 1x1 by the last stage. The
CIFAR variant (He et al. 2016, sec. 4.2; kuangliu/pytorch-cifar) replaces the stem with a 3x3
stride-1 convolution and drops the max pool. The blocks are torchvision's own `BasicBlock`, so
the residual arithmetic is the one everyone benchmarks; only the widths change: `width` is the
first stage's channel count and the four stages have width * (1, 2, 4, 8), so width 64 is the
standard ResNet-18 (11,173,962 parameters on 3x32x32 with 10 classes).

    features: [B, C, H, W] -> conv3x3(C, w) -> BN -> ReLU -> 4 stages of 2 BasicBlocks
              (strides 1, 2, 2, 2) -> global average pool                   D = 8 * width
    head:     Linear(8 * width, num_classes)

On 8x8 digits the stages see 8, 4, 2 and 1 pixels a side; a stride-2 3x3 convolution with
padding 1 maps 1x1 to 1x1, so any image of at least 1x1 works.
"""
from __future__ import annotations

import torch
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape

MULTIPLIERS = (1, 2, 4, 8)  # channels (planes, for Bottleneck) of the four stages, in units of width
STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = (2, 2, 2, 2)  # ResNet-18: BasicBlocks of 2 convolutions, plus stem and head


def make_stage(block, in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's `ResNet._make_layer` for `block` (BasicBlock or Bottleneck), without its
    ImageNet-only state."""
    from torchvision.models.resnet import conv1x1

    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        # The shortcut must match the block's output shape: a strided 1x1 projection.
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    layers = [block(in_channels, planes, stride, downsample)]
    layers += [block(out_channels, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class CifarResNet(Classifier):
    """A torchvision ResNet with the CIFAR stem; `block` and `blocks` pick ResNet-18 or ResNet-50."""

    def __init__(self, block, blocks: tuple[int, ...], in_channels: int, width: int, num_classes: int):
        super().__init__()
        # The CIFAR stem: no stride, no max pool; small images keep their resolution.
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, channels = [], width
        for multiplier, stride, count in zip(MULTIPLIERS, STRIDES, blocks):
            stages.append(make_stage(block, channels, width * multiplier, count, stride))
            channels = width * multiplier * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages  # torchvision's names
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self.head = nn.Linear(self.feature_dim, num_classes)

        # torchvision's initialisation (zero_init_residual=False, its default), so a width-64
        # model starts where torchvision's would.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)  # [B, D, h, w] -> [B, D]


@MODELS.register("resnet18")
def build_resnet18(width: int, input_shape: tuple[int, ...], num_classes: int) -> CifarResNet:
    # Imported here: torchvision takes about a second to import, which every process that only
    # builds an MLP or a small CNN (each Ray worker, each test run) would otherwise pay.
    from torchvision.models.resnet import BasicBlock

    if len(input_shape) != 3:
        raise bad_shape("resnet18", input_shape, "(channels, height, width), e.g. (1, 8, 8) or (3, 32, 32)")
    return CifarResNet(BasicBlock, BLOCKS_PER_STAGE, input_shape[0], width, num_classes)
