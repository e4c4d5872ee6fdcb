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

from kdscale.models.base import MODELS, bad_shape
from kdscale.models.resnet import CifarResNet

BLOCKS = (3, 4, 6, 3)  # ResNet-50 (He et al. 2016, table 1)


@MODELS.register("resnet50")
def build_resnet50(width: int, input_shape: tuple[int, ...], num_classes: int) -> CifarResNet:
    from torchvision.models.resnet import Bottleneck  # imported late, as in resnet.py

    if len(input_shape) != 3:
        raise bad_shape("resnet50", input_shape, "(channels, height, width), e.g. (3, 32, 32)")
    return CifarResNet(Bottleneck, BLOCKS, input_shape[0], width, num_classes)
