"""The vit family against torchvision's transformer pieces, by hand-counted parameters, and on 1-D signals."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from kdscale.config import ModelSpec
from kdscale.models import build, count_params


def test_a_block_computes_what_torchvisions_encoder_block_does():
    torch.manual_seed(0)
    model = build(ModelSpec("vit", 12, (("depth", 1), ("heads", 3), ("mlp_ratio", 2))), (3, 8, 8), 10).eval()
    ours = model.blocks[0]
    reference = EncoderBlock(num_heads=3, hidden_dim=12, mlp_dim=24, dropout=0.0, attention_dropout=0.0).eval()
    with torch.no_grad():
        reference.ln_1.load_state_dict(ours.norm1.state_dict())
        reference.ln_2.load_state_dict(ours.norm2.state_dict())
        reference.self_attention.in_proj_weight.copy_(ours.attention.qkv.weight)
        reference.self_attention.in_proj_bias.copy_(ours.attention.qkv.bias)
        reference.self_attention.out_proj.load_state_dict(ours.attention.proj.state_dict())
        reference.mlp[0].load_state_dict(ours.mlp[0].state_dict())
        reference.mlp[3].load_state_dict(ours.mlp[2].state_dict())
    x = torch.randn(5, 4, 12)
    assert torch.allclose(ours(x), reference(x), atol=1e-5)


def test_patch_embedding_is_a_strided_convolution():
    torch.manual_seed(0)
    model = build(ModelSpec("vit", 8, (("patch", 4),)), (3, 8, 12), 10)
    conv = nn.Conv2d(3, 8, kernel_size=4, stride=4)
    with torch.no_grad():
        conv.weight.copy_(model.embed.weight.view(8, 3, 4, 4))
        conv.bias.copy_(model.embed.bias)
    x = torch.randn(2, 3, 8, 12)
    expected = conv(x).flatten(2).transpose(1, 2)  # [B, 8, 2, 3] -> [B, 6 tokens row-major, 8]
    assert torch.allclose(model.embed(model.patches(x)), expected, atol=1e-5)


@pytest.mark.parametrize("width, depth, ratio, shape, values, tokens", [
    (4, 4, 4, (1, 40), 4, 10),          # MNIST-1D, patch 4: 10 pieces of 4 samples
    (16, 2, 4, (3, 32, 32), 48, 64),    # CIFAR, patch 4: 64 squares of 3 * 16 values
    (12, 3, 2, (1, 8, 8), 16, 4),
])
def test_parameter_count_by_hand(width, depth, ratio, shape, values, tokens):
    w = width
    embed = values * w + w + tokens * w
    block = (2 * w) + (3 * w * w + 3 * w) + (w * w + w) + (2 * w) + (w * ratio * w + ratio * w) + (ratio * w * w + w)
    head = 2 * w + w * 10 + 10  # final LayerNorm, then the linear head
    model = build(ModelSpec("vit", width, (("depth", depth), ("mlp_ratio", ratio))), shape, 10)
    assert count_params(model) == embed + depth * block + head
    if ratio == 4:
        assert block == 12 * w * w + 13 * w
    assert count_params(build(ModelSpec("vit", 4), (1, 40), 10)) == 1094  # python -m kdscale.models


def test_a_signal_reads_the_same_with_or_without_its_channel():
    torch.manual_seed(0)
    model = build(ModelSpec("vit", 8), (40,), 10).eval()
    x = torch.randn(5, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_position_matters_and_attention_mixes_tokens():
    torch.manual_seed(0)
    model = build(ModelSpec("vit", 8, (("depth", 1),)), (1, 40), 10).eval()
    x = torch.randn(1, 1, 40)
    swapped = torch.cat([x[..., 4:8], x[..., :4], x[..., 8:]], dim=-1)  # swap the first two patches
    assert not torch.allclose(model(x), model(swapped))
    with torch.no_grad():
        model.position.zero_()  # without positions, mean pooling makes the order of patches irrelevant
    assert torch.allclose(model(x), model(swapped), atol=1e-5)
