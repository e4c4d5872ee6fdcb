"""Model families: shapes, the features/head split, parameter counts and spec errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kdscale.config import ModelSpec
from kdscale.errors import SpecError
from kdscale.models import MODELS, allowed_options, build, count_params

MNIST1D = (1, 40)
DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)

# (family, width, options, input shape, expected feature width D)
CASES = [
    ("mlp", 16, (), MNIST1D, 16),
    ("mlp", 16, (("depth", 3),), DIGITS, 16),
    ("mlp", 8, (("depth", 1),), CIFAR, 8),
    ("cnn1d", 32, (), MNIST1D, 32 * 5),
    ("cnn1d", 8, (), (40,), 8 * 5),
    ("cnn1d", 4, (), (3, 100), 4 * 13),  # 100 -> 49 -> 25 -> 13
    ("cnn2d", 4, (), DIGITS, 32),
    ("cnn2d", 4, (("batch_norm", True),), CIFAR, 32),
    ("cnn2d", 2, (), (1, 5, 12), 16),
    ("resnet18", 4, (), DIGITS, 32),
    ("resnet18", 4, (), CIFAR, 32),
    ("vit", 8, (), MNIST1D, 8),
    ("vit", 8, (("depth", 2), ("heads", 2), ("patch", 2)), DIGITS, 8),
    ("vit", 12, (("mlp_ratio", 2), ("heads", 3)), CIFAR, 12),
]


@pytest.mark.parametrize("family, width, options, shape, feature_dim", CASES)
def test_shapes_and_head_split(family, width, options, shape, feature_dim):
    torch.manual_seed(0)
    model = build(ModelSpec(family, width, options), shape, num_classes=7).eval()
    x = torch.randn(3, *shape)
    phi = model.features(x)
    logits = model(x)
    assert phi.shape == (3, feature_dim) == (3, model.feature_dim)
    assert logits.shape == (3, 7)
    assert isinstance(model.head, nn.Linear) and model.head.in_features == feature_dim
    assert torch.equal(logits, model.head(phi))
    assert model.num_params == count_params(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family, width, options, shape, feature_dim", CASES)
def test_every_parameter_gets_a_gradient(family, width, options, shape, feature_dim):
    model = build(ModelSpec(family, width, options), shape, num_classes=7)
    model(torch.randn(4, *shape)).logsumexp(1).sum().backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused  # a parameter without a gradient would inflate the model's size


def test_cnn1d_takes_mnist1d_with_or_without_its_channel():
    torch.manual_seed(0)
    model = build(ModelSpec("cnn1d", 8), MNIST1D, 10).eval()
    x = torch.randn(5, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_mlp_parameter_count_by_hand():
    # 40 -> 8 -> 8 -> 10: weights plus biases of each Linear.
    two_layers = (40 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)
    assert two_layers == 490
    assert count_params(build(ModelSpec("mlp", 8), MNIST1D, 10)) == two_layers
    assert count_params(build(ModelSpec("mlp", 8, (("depth", 3),)), MNIST1D, 10)) == two_layers + 8 * 8 + 8


def test_cnn1d_parameter_count_by_hand():
    w = 32
    convs = (1 * w * 5 + w) + 2 * (w * w * 3 + w)
    head = (w * 5) * 10 + 10  # 40 -> 19 -> 10 -> 5 positions, flattened
    assert count_params(build(ModelSpec("cnn1d", w), MNIST1D, 10)) == convs + head == 8010


def test_families_span_more_than_100x_on_mnist1d():
    sizes = {f"{family}-{width}": count_params(build(ModelSpec(family, width), MNIST1D, 10))
             for family in ("mlp", "cnn1d") for width in (8, 32, 256)}
    smallest, largest = min(sizes.values()), max(sizes.values())
    print("parameters on MNIST-1D:", sizes, f"span {largest / smallest:.0f}x")
    assert sizes["mlp-256"] / sizes["mlp-8"] > 100  # one family alone
    assert sizes["cnn1d-256"] / sizes["cnn1d-8"] > 100
    assert largest / smallest > 100


def test_cnn2d_paper_channels_and_batch_norm():
    plain = build(ModelSpec("cnn2d", 20), CIFAR, 10)
    convs = [m.out_channels for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [20, 40, 60, 160] and plain.feature_dim == 160
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())

    normed = build(ModelSpec.parse("cnn2d:width=20,batch_norm=1"), CIFAR, 10)
    norms = [m.num_features for m in normed.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms == [20, 40, 60, 160]


@pytest.mark.parametrize("shape, final_map", [(CIFAR, (2, 2)), (DIGITS, (1, 1)), ((1, 1, 6), (1, 1))])
def test_cnn2d_pools_only_while_it_can(shape, final_map):
    model = build(ModelSpec("cnn2d", 2), shape, 10)
    assert model.body(torch.randn(1, *shape)).shape[2:] == final_map


def test_resnet18_width_64_is_the_standard_cifar_resnet18():
    torch.manual_seed(0)
    model = build(ModelSpec("resnet18", 64), CIFAR, 10)
    assert count_params(model) == 11_173_962

    # The same count as torchvision's own ResNet-18 with the CIFAR stem swapped in.
    import torchvision
    reference = torchvision.models.resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    assert count_params(reference) == count_params(model)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][:1] == [64]
    assert model.feature_dim == 512


def test_initialisation_follows_torch_seed():
    def weights(seed):
        torch.manual_seed(seed)
        return build(ModelSpec("cnn2d", 4, (("batch_norm", True),)), DIGITS, 10).state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_num_classes_option_must_match_the_data():
    model = build(ModelSpec("mlp", 8, (("num_classes", 10),)), MNIST1D, 10)
    assert model.head.out_features == 10
    with pytest.raises(SpecError, match=r"model\.options\.num_classes=3 .*same class count"):
        build(ModelSpec("mlp", 8, (("num_classes", 3),)), MNIST1D, 10)


@pytest.mark.parametrize("spec, shape, num_classes, message", [
    (ModelSpec("transformer", 8), MNIST1D, 10, r"model\.family: unknown 'transformer'; known: cnn1d, cnn2d, diagrnn, fprnn, gpt, lstm, mlp, resnet18"),
    (ModelSpec("cnn1d", 8, (("depth", 3),)), MNIST1D, 10, r"model\.options: cnn1d takes no option 'depth'; allowed: projection, projection_hidden"),
    (ModelSpec("mlp", 8, (("batch_norm", True),)), MNIST1D, 10, r"mlp takes no option 'batch_norm'; allowed: depth"),
    (ModelSpec("mlp", 8, (("depth", 0),)), MNIST1D, 10, r"model\.options\.depth=0 is invalid: must be an integer >= 1"),
    (ModelSpec("cnn2d", 8, (("batch_norm", "yes"),)), DIGITS, 10, r"model\.options\.batch_norm='yes' is invalid"),
    (ModelSpec("cnn2d", 8), MNIST1D, 10, r"model\.input_shape=\(1, 40\) is invalid for cnn2d: needs \(channels, height, width\)"),
    (ModelSpec("resnet18", 8), (40,), 10, r"model\.input_shape=\(40,\) is invalid for resnet18"),
    (ModelSpec("cnn1d", 8), DIGITS, 10, r"model\.input_shape=\(1, 8, 8\) is invalid for cnn1d"),
    (ModelSpec("cnn1d", 8), (1, 2), 10, r"model\.input_shape=\(1, 2\) is invalid for cnn1d"),
    (ModelSpec("mlp", 8), (0, 40), 10, r"model\.input_shape=\(0, 40\) is invalid"),
    (ModelSpec("mlp", 8), MNIST1D, 1, r"model\.num_classes=1 is invalid"),
    (ModelSpec("vit", 6), CIFAR, 10, r"model\.options\.heads=4 is invalid for width 6: must divide the width"),
    (ModelSpec("vit", 8, (("patch", 3),)), DIGITS, 10,
     r"model\.options\.patch=3 is invalid for input_shape \(1, 8, 8\): must divide each of 8, 8 \(choose one of 1, 2, 4, 8\)"),
    (ModelSpec("vit", 8, (("depth", 0),)), CIFAR, 10, r"model\.options\.depth=0 is invalid: must be an integer >= 1"),
    (ModelSpec("vit", 8, (("dropout", 0.1),)), CIFAR, 10, r"vit takes no option 'dropout'; allowed: depth, heads, patch, mlp_ratio"),
    (ModelSpec("vit", 8), (2, 3, 4, 5), 10, r"model\.input_shape=\(2, 3, 4, 5\) is invalid for vit"),
])
def test_spec_errors_name_the_field(spec, shape, num_classes, message):
    with pytest.raises(SpecError, match=message):
        build(spec, shape, num_classes)


def test_a_new_family_is_one_registered_builder(monkeypatch):
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))  # keep the global registry clean

    @MODELS.register("linear")
    def build_linear(width, input_shape, num_classes, bias=True):
        return nn.Linear(input_shape[-1], num_classes, bias=bias)

    assert allowed_options("linear") == ["bias"]
    assert count_params(build(ModelSpec("linear", 1, (("bias", False),)), (40,), 10)) == 400
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("mlp")(build_linear)
