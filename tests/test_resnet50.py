"""resnet50: torchvision's Bottleneck ResNet-50 with the CIFAR stem, like resnet18."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscale.config import ModelSpec
from kdscale.errors import SpecError
from kdscale.models import build, count_params

CIFAR = (3, 32, 32)


def torchvision_cifar_resnet50(num_classes: int) -> nn.Module:
    import torchvision

    reference = torchvision.models.resnet50(num_classes=num_classes)
    reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    return reference


def test_width_64_is_torchvisions_resnet50_with_the_cifar_stem():
    torch.manual_seed(0)
    model = build(ModelSpec("resnet50", 64), CIFAR, 10).eval()
    assert count_params(model) == 23_520_842
    reference = torchvision_cifar_resnet50(10).eval()
    assert count_params(reference) == count_params(model)

    # The same modules under the same names (torchvision's `fc` is our `head`): its weights load
    # into ours and give the same logits.
    state = {name.replace("head.", "fc."): value for name, value in model.state_dict().items()}
    assert set(state) == set(reference.state_dict())
    reference.load_state_dict(state)
    x = torch.randn(2, *CIFAR)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
    assert model.feature_dim == 2048


@pytest.mark.parametrize("width, shape, classes", [(4, CIFAR, 10), (8, (1, 8, 8), 7), (4, (3, 64, 64), 102)])
def test_features_and_head_split_at_any_width(width, shape, classes):
    model = build(ModelSpec("resnet50", width), shape, classes).eval()
    x = torch.randn(3, *shape)
    phi = model.features(x)
    assert phi.shape == (3, 32 * width) and model.head.in_features == 32 * width
    assert torch.equal(model(x), model.head(phi)) and model(x).shape == (3, classes)


def test_every_parameter_gets_a_gradient():
    model = build(ModelSpec("resnet50", 4), CIFAR, 10)
    model(torch.randn(4, *CIFAR)).logsumexp(1).sum().backward()
    assert not [name for name, p in model.named_parameters() if p.grad is None]


def test_width_scales_parameters_about_quadratically():
    counts = [count_params(build(ModelSpec("resnet50", w), CIFAR, 10)) for w in (8, 16, 32)]
    assert 3.5 < counts[1] / counts[0] < 4.1 and 3.8 < counts[2] / counts[1] < 4.1


def test_input_must_be_an_image():
    with pytest.raises(SpecError, match=r"model\.input_shape=\(40,\) is invalid for resnet50"):
        build(ModelSpec("resnet50", 8), (40,), 10)
