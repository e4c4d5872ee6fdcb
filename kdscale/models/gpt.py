"""`gpt`: a decoder-only transformer in the style of nanoGPT's model.py (Karpathy), GPT-2's layout.

    features(x): int64 tokens [B, T] -> [B, T, width];  head: one linear map to every token's logits

Token and learned position embeddings, `depth` pre-norm blocks (LayerNorm, causal multi-head
self-attention with `heads` heads, residual; LayerNorm, MLP width -> 4 width -> width with GELU,
residual), a final LayerNorm. Token t attends to tokens 1..t only, so its logits do not depend on
any later token (tests/test_gpt.py checks it). Options: `depth` (blocks, default 2), `heads`
(default 4; must divide width), `context` (positions the model has, default 0: the data's training
length T; a test sequence may be no longer).

Departures from nanoGPT, for kdscale's features/head split: the head is its own linear layer with
a bias (no weight tying with the token embedding), and its classes are the data's, which need not
be the vocabulary (a state-tracking task's labels). No dropout: the studies regularise with data.
Initialisation as nanoGPT's: weights N(0, 0.02), biases 0, each residual projection N(0, 0.02 /
sqrt(2 depth)).

Parameters, for vocabulary V, context P, classes C and width w:
    V w + P w + depth (12 w^2 + 13 w) + 2 w + (w C + C)
(per block: two LayerNorms 4w, attention's qkv 3w^2 + 3w and projection w^2 + w, MLP 8w^2 + 5w).

Attention is computed by hand (two matmuls and a softmax under a causal mask), as nanoGPT does
without flash attention: it runs under torch.vmap, so a GPT student packs (kdscale.train.Pack), and
torch's FLOP counter counts it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from kdscale.errors import SpecError
from kdscale.models.attention import SelfAttention
from kdscale.models.base import MODELS, Classifier, bad_shape, int_option


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(width), SelfAttention(width, heads, causal=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(Classifier):
    def __init__(self, vocab_size: int, context: int, width: int, depth: int, heads: int, num_classes: int):
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:  # GPT-2's scaled residual projections
            for projection in (block.attention.proj, block.mlp[2]):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * depth))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        if length > self.context:
            raise ValueError(f"gpt: a sequence of {length} tokens is longer than the model's context "
                             f"({self.context}); build it with the option context={length}")
        positions = torch.arange(length, device=x.device)
        u = self.token_embedding(x) + self.position_embedding(positions)  # [B, T, w]
        for block in self.blocks:
            u = block(u)
        return self.norm(u)


@MODELS.register("gpt")
def build_gpt(width: int, input_shape: tuple[int, ...], num_classes: int, vocab_size: int, depth: int = 2,
              heads: int = 4, context: int = 0) -> GPT:
    if len(input_shape) != 1:
        raise bad_shape("gpt", input_shape, "(T,): a sequence of tokens")
    depth, heads = int_option("depth", depth, 1), int_option("heads", heads, 1)
    context = int_option("context", context, 0) or input_shape[0]
    if width % heads:
        raise SpecError(f"model.options.heads={heads} is invalid for gpt of width {width}: must divide the width")
    if context < input_shape[0]:
        raise SpecError(f"model.options.context={context} is invalid: the data's sequences have "
                        f"{input_shape[0]} tokens")
    return GPT(vocab_size, context, width, depth, heads, num_classes)
