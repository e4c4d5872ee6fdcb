"""Token models for the state-tracking tasks (kdscale/data/sequences.py): linear RNNs and an LSTM.

Each embeds the tokens (`width` units), runs `depth` recurrent layers (option, default 1: the
paper's "in one layer") and reads every token's output with one linear head:
features(x): int64 [B, T] -> [B, T, width], logits [B, T, num_classes].

- `diagrnn`, a diagonal linear RNN (selective, like Mamba's: the transition depends on the
  input). Per layer, from its input u_t: a_t = tanh(W_a u_t + c) in (-1, 1) (negative values let
  it flip signs, Grazzi et al. 2024), b_t = W_b u_t, h_t = a_t * h_{t-1} + b_t, computed as a
  log-depth parallel scan over time (`diagonal_scan`); the layer's output is u_t + MLP(LN(h_t)).
- `fprnn`, the dense linear RNN h_t = A_t h_{t-1} + b_t, with a dense input-dependent
  A_t = (diag(a_t) + R_t) / s_t, R_t = W_R u_t reshaped to width x width, and
  s_t = max(1, ||diag(a_t) + R_t||_inf), so ||A_t||_inf <= 1: a permutation matrix passes as it
  is, and the state cannot grow geometrically on sequences longer than the training ones. It is
  computed as the fixed point of the diagonal RNN (`fixed_point`): with d_t the diagonal of A_t
  and O_t = A_t - diag(d_t),
      h^(0) = scan(d, b),   h^(k) = scan(d, b + O_t h^(k-1)_{t-1}),
  each iteration one parallel scan. Iterate k is exact at the first k + 1 positions, so the dense
  recurrence is reached after at most T - 1 iterations, and sooner when O is small. Options:
  `iterations` (the most that run, default 64: min(iterations, T - 1) do; 0 gives the diagonal RNN
  of d_t) and `tol` (stop once no state moved by more than tol; default 0: run them all). The
  count a forward pass used is `fixed_point_iterations(x)`: the trial's `fp_iterations`.
- `lstm`: torch's nn.LSTM, `depth` layers of `width` units: the nonlinear RNN baseline.

Packs (kdscale.train.packable): diagrnn packs; fprnn packs with tol = 0 (vmap cannot stop a loop
at a data-dependent point, so with tol > 0 its students train alone); lstm trains alone (aten::lstm
has no vmap rule).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdscale.models.base import MODELS, Classifier, bad_shape, float_option, int_option


def diagonal_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t from h_0 = 0, for a, b [..., T, D], as an inclusive scan of the pairs
    (a_t, b_t) under (a, b) then (a', b') = (a a', a' b + b') (Hillis-Steele): ceil(log2 T) rounds
    of elementwise torch ops, with no division or logarithm, so exact for any a, stable for |a| <= 1."""
    length, shift = a.shape[-2], 1
    while shift < length:
        a_before = torch.cat([torch.ones_like(a[..., :shift, :]), a[..., :-shift, :]], dim=-2)
        b_before = torch.cat([torch.zeros_like(b[..., :shift, :]), b[..., :-shift, :]], dim=-2)
        a, b = a * a_before, b + a * b_before
        shift *= 2
    return b


def fixed_point(d: torch.Tensor, off: torch.Tensor, b: torch.Tensor, iterations: int,
                tol: float = 0.0) -> tuple[torch.Tensor, int]:
    """The dense recurrence h_t = (diag(d_t) + off_t) h_{t-1} + b_t (d, b [..., T, D], off
    [..., T, D, D]) as the fixed point of diagonal scans (module doc); (h, iterations run)."""
    h = diagonal_scan(d, b)
    steps = min(iterations, b.shape[-2] - 1)
    for k in range(steps):
        before = F.pad(h[..., :-1, :], (0, 0, 1, 0))  # h_{t-1}, zero before the first token
        new = diagonal_scan(d, b + (off * before.unsqueeze(-2)).sum(-1))
        if tol > 0 and (new - h).abs().max() <= tol:
            return new, k + 1
        h = new
    return h, steps


class LinearRNNLayer(nn.Module):
    """One diagonal (dense=False) or fixed-point dense linear RNN layer with its MLP readout."""

    def __init__(self, width: int, dense: bool, iterations: int = 0, tol: float = 0.0):
        super().__init__()
        self.width, self.iterations, self.tol = width, iterations, tol
        self.gate = nn.Linear(width, width)
        self.inp = nn.Linear(width, width)
        self.mix = nn.Linear(width, width * width) if dense else None
        if dense:  # start near-diagonal: rows of |R_t| sum to about 0.5, so the iteration converges fast
            nn.init.normal_(self.mix.weight, std=0.5 * width ** -1.5)
            nn.init.zeros_(self.mix.bias)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.used = 0  # fixed-point iterations of the last forward pass

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        a, b = torch.tanh(self.gate(u)), self.inp(u)
        if self.mix is None:
            h = diagonal_scan(a, b)
        else:
            dense = torch.diag_embed(a) + self.mix(u).unflatten(-1, (self.width, self.width))
            dense = dense / dense.abs().sum(-1).amax(-1).clamp(min=1.0)[..., None, None]
            d = dense.diagonal(dim1=-2, dim2=-1)
            h, self.used = fixed_point(d, dense - torch.diag_embed(d), b, self.iterations, self.tol)
        return u + self.out(self.norm(h))


class TokenClassifier(Classifier):
    """Embedding, recurrent layers, LayerNorm: features [B, T, width]; head: one label per token."""

    def __init__(self, vocab_size: int, width: int, num_classes: int, layers: nn.ModuleList | nn.LSTM):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.layers = layers
        self.norm = nn.LayerNorm(width)
        self.feature_dim = width
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        u = self.embed(x)
        if isinstance(self.layers, nn.LSTM):
            u = self.layers(u)[0]
        else:
            for layer in self.layers:
                u = layer(u)
        return self.norm(u)

    @torch.no_grad()
    def fixed_point_iterations(self, x: torch.Tensor, batch: int = 256) -> int | None:
        """The most fixed-point iterations a layer ran on x, in batches (None: no dense layer)."""
        dense = [layer for layer in self.layers if getattr(layer, "mix", None) is not None] \
            if isinstance(self.layers, nn.ModuleList) else []
        if not dense:
            return None
        was_training = self.training
        self.eval()
        used = 0
        for start in range(0, len(x), batch):
            self.features(x[start:start + batch])
            used = max([used] + [layer.used for layer in dense])
        self.train(was_training)
        return used


def _check(family: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 1:
        raise bad_shape(family, input_shape, "(T,): a sequence of tokens")


@MODELS.register("diagrnn")
def build_diagrnn(width: int, input_shape: tuple[int, ...], num_classes: int, vocab_size: int,
                  depth: int = 1) -> TokenClassifier:
    _check("diagrnn", input_shape)
    layers = nn.ModuleList(LinearRNNLayer(width, dense=False) for _ in range(int_option("depth", depth, 1)))
    return TokenClassifier(vocab_size, width, num_classes, layers)


@MODELS.register("fprnn")
def build_fprnn(width: int, input_shape: tuple[int, ...], num_classes: int, vocab_size: int, depth: int = 1,
                iterations: int = 64, tol: float = 0.0) -> TokenClassifier:
    _check("fprnn", input_shape)
    iterations, tol = int_option("iterations", iterations, 0), float_option("tol", tol, 0.0)
    layers = nn.ModuleList(LinearRNNLayer(width, True, iterations, tol) for _ in range(int_option("depth", depth, 1)))
    model = TokenClassifier(vocab_size, width, num_classes, layers)
    model.packable = tol == 0  # a data-dependent stop cannot run under vmap
    return model


@MODELS.register("lstm")
def build_lstm(width: int, input_shape: tuple[int, ...], num_classes: int, vocab_size: int,
               depth: int = 1) -> TokenClassifier:
    _check("lstm", input_shape)
    model = TokenClassifier(vocab_size, width, num_classes,
                            nn.LSTM(width, width, int_option("depth", depth, 1), batch_first=True))
    model.packable = False  # aten::lstm has no vmap rule
    return model
