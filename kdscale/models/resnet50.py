"""resnet50: torchvision's Bottleneck ResNet-50 with the CIFAR stem, built like `resnet18`.

The same conventions as kdscale.models.resnet: a 3x3 stride-1 stem without max pool (so a 32x32
image is still 4x4 at the last stage), torchvision's own blocks and initialisation, and `width`
the first stage's channel count. ResNet-50 has 3, 4, 6, 3 Bottleneck blocks; a Bottleneck's inner
3x3 convolution has `planes` channels and its output 4 * planes (torchvision's
`Bottleneck.expansion`), with planes = width * (1, 2, 4, 8) over the stages. Width 64 is the
standard ResNet-50: 23,520,842 parameters on 3x32x32 with 10 classes, the count of
torchvision.models.resnet50(num_classes=10) with the stem swapped (tests/test_resnet50.py).

    features: [B, C, H, W] -> conv3x3(C, w) -> BN -> ReLU -> 4 stages of (3, 4, 6, 3) Bottlenecks
              (strides 1, 2, 2, 2) -> global average pool                   D = 32 * width
    head:     Linear(32 * width, num_classes)

For inputs larger than CIFAR (the 64x64 image sets) the stem still keeps full resolution: more
compute per image than torchvision's ImageNet stem, the price of one stem for every size.
"""
from __future__ import annotations

import torch
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape

MULTIPLIERS = (1, 2, 4, 8)  # planes of the four stages, in units of width
STRIDES = (1, 2, 2, 2)
BLOCKS = (3, 4, 6, 3)  # ResNet-50 (He et al. 2016, table 1)
EXPANSION = 4  # a Bottleneck's output channels per plane


def make_stage(in_channels: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """torchvision's `ResNet._make_layer` for Bottleneck, without its ImageNet-only state."""
    # Imported here, as in resnet.py: torchvision costs about a second to import.
    from torchvision.models.resnet import Bottleneck, conv1x1

    downsample = None
    if stride != 1 or in_channels != planes * EXPANSION:
        downsample = nn.Sequential(conv1x1(in_channels, planes * EXPANSION, stride),
                                   nn.BatchNorm2d(planes * EXPANSION))
    layers = [Bottleneck(in_channels, planes, stride, downsample)]
    layers += [Bottleneck(planes * EXPANSION, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet50(Classifier):
    def __init__(self, in_channels: int, width: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, channels = [], width
        for multiplier, stride, blocks in zip(MULTIPLIERS, STRIDES, BLOCKS):
            stages.append(make_stage(channels, width * multiplier, blocks, stride))
            channels = width * multiplier * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages  # torchvision's names
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = channels
        self.head = nn.Linear(self.feature_dim, num_classes)

        # torchvision's initialisation (zero_init_residual=False, its default).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)  # [B, 32 * width, h, w] -> [B, 32 * width]


@MODELS.register("resnet50")
def build_resnet50(width: int, input_shape: tuple[int, ...], num_classes: int) -> ResNet50:
    if len(input_shape) != 3:
        raise bad_shape("resnet50", input_shape, "(channels, height, width), e.g. (3, 32, 32)")
    return ResNet50(input_shape[0], width, num_classes)
