"""Multi-head self-attention written as plain matmuls (so a pack of students can vmap it), causal
or not: the `gpt` family's and the `vit` family's."""
from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    """Inputs [..., T, w] -> [..., T, w]; q, k and v from one Linear(w, 3w) (torchvision's and
    nanoGPT's layout: the first w outputs are q, head-major), `heads` heads, an output Linear(w, w).
    `causal`: position t attends to positions <= t only."""

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, width = x.shape[-2], x.shape[-1]
        # [..., T, 3w] -> three [..., heads, T, w / heads]
        q, k, v = (part.unflatten(-1, (self.heads, width // self.heads)).transpose(-3, -2)
                   for part in self.qkv(x).split(width, dim=-1))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(width // self.heads)  # [..., heads, T, T]
        if self.causal:
            mask = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        return self.proj((scores.softmax(-1) @ v).transpose(-3, -2).flatten(-2))  # [..., T, w]
