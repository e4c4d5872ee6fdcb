"""vit: a plain vision transformer (Dosovitskiy et al. 2021), on images or on 1-D signals.

The input is cut into non-overlapping patches: p x p squares of a [C, H, W] image, or length-p
pieces of a [C, L] signal (MNIST-1D's [40] or [1, 40]), each flattened and embedded linearly into
`width` units, plus a learned position embedding. `depth` pre-norm transformer blocks follow, then
a LayerNorm of the mean over tokens: global average pooling rather than a class token, as in
"Better plain ViT baselines" (Beyer et al. 2022) and big_vision's `pool_type="gap"`, which trains
as well on small data and keeps phi one mean over the tokens.

    tokens:   [B, C, H, W] -> [B, T, C p p] (T = H/p * W/p), or [B, C, L] -> [B, T, C p] (T = L/p)
              -> Linear(C p^2 or C p, width) + position embedding [T, width]
    block:    x + Attention(LN(x)) -> x + MLP(LN(x)),  MLP = Linear(w, r w) -> GELU -> Linear(r w, w)
    features: LN(mean over T of the last block's tokens)      D = width
    head:     Linear(width, num_classes)

Options: `depth` (blocks, default 4), `heads` (attention heads, default 4; must divide width),
`patch` (p, default 4; must divide each spatial side), `mlp_ratio` (r, default 4). Parameters,
with P = C p^2 (or C p) values per patch: P w + w + T w + depth (12 w^2 + 13 w) at r = 4
(in general depth (4 w^2 + 2 r w^2 + 9 w + r w)), + 2 w + (w + 1) classes.

Attention is written out with matmuls and softmax (no dropout, no fused kernel), so a pack of ViT
students trains under torch.func's vmap like the other families (kdscale.train.students).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kdscale.errors import SpecError
from kdscale.models.attention import SelfAttention
from kdscale.models.base import MODELS, Classifier, bad_shape, int_option


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(Classifier):
    def __init__(self, input_shape: tuple[int, ...], width: int, num_classes: int, depth: int, heads: int,
                 patch: int, mlp_ratio: int):
        super().__init__()
        self.input_shape, self.patch = input_shape, patch
        sides = input_shape[1:]  # (H, W) or (L,)
        tokens = math.prod(side // patch for side in sides)
        self.embed = nn.Linear(input_shape[0] * patch ** len(sides), width)
        self.position = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, H/p * W/p, C p p] (row-major patches), or [B, C, L] -> [B, L/p, C p]."""
        p, channels = self.patch, self.input_shape[0]
        if len(self.input_shape) == 2:
            x = x.reshape(x.shape[0], channels, -1, p)                     # [B, C, T, p]
            return x.permute(0, 2, 1, 3).flatten(2)
        rows, cols = self.input_shape[1] // p, self.input_shape[2] // p
        x = x.reshape(x.shape[0], channels, rows, p, cols, p)              # [B, C, H/p, p, W/p, p]
        return x.permute(0, 2, 4, 1, 3, 5).reshape(x.shape[0], rows * cols, channels * p * p)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(self.patches(x)) + self.position               # [B, T, width]
        return self.norm(self.blocks(tokens).mean(dim=1))                  # [B, width]


@MODELS.register("vit")
def build_vit(width: int, input_shape: tuple[int, ...], num_classes: int, depth: int = 4, heads: int = 4,
              patch: int = 4, mlp_ratio: int = 4) -> ViT:
    if len(input_shape) == 1:
        input_shape = (1, *input_shape)  # MNIST-1D's [40] is a one-channel signal
    if len(input_shape) not in (2, 3):
        raise bad_shape("vit", input_shape, "(channels, height, width) or (length,) or (channels, length), "
                        "e.g. (3, 32, 32) or (1, 40)")
    depth, heads = int_option("depth", depth, 1), int_option("heads", heads, 1)
    patch, mlp_ratio = int_option("patch", patch, 1), int_option("mlp_ratio", mlp_ratio, 1)
    if width % heads:
        raise SpecError(f"model.options.heads={heads} is invalid for width {width}: must divide the width")
    sides = input_shape[1:]
    if any(side % patch for side in sides):
        raise SpecError(f"model.options.patch={patch} is invalid for input_shape {tuple(input_shape)}: must divide "
                        f"each of {', '.join(map(str, sides))} (choose one of "
                        f"{', '.join(str(d) for d in range(1, min(sides) + 1) if all(s % d == 0 for s in sides))})")
    return ViT(tuple(input_shape), width, num_classes, depth, heads, patch, mlp_ratio)
