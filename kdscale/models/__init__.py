"""Model families with a width knob, so one study can sweep sizes over more than 100x in parameters.

    from kdscale.config import ModelSpec
    from kdscale.models import build, count_params
    model = build(ModelSpec("cnn1d", width=32), input_shape=(1, 40), num_classes=10)
    phi = model.features(x)        # [B, D], the penultimate representation
    logits = model.head(phi)       # == model(x)

Families (`python -m kdscale.models` prints their parameter counts at a few widths):
- `mlp`: flattened input, `depth` hidden ReLU layers (default 2) of `width` units.
- `cnn1d`: the MNIST-1D reference CNN, `width` channels.
- `cnn2d`: the paper's vanilla CNN, channels width * (1, 2, 3, 8); option `batch_norm`.
- `resnet18`: CIFAR-style ResNet-18 from torchvision's BasicBlock, stages width * (1, 2, 4, 8).
- `resnet50`: CIFAR-style ResNet-50 from torchvision's Bottleneck, inner channels width * (1, 2, 4, 8).
- `vit`: a plain vision transformer on p x p patches of an image or length-p pieces of a 1-D signal,
  `width` units per token; options `depth`, `heads`, `patch`, `mlp_ratio` (models/vit.py).

Token families (int64 tokens [B, T] in, one prediction per token out; `build` needs the data's
`vocab_size`), in models/rnn.py, options `depth` (layers, default 1):
- `diagrnn`: a diagonal linear RNN, input-dependent, computed as a parallel scan over time.
- `fprnn`: a dense linear RNN computed as the fixed point of the diagonal one; options
  `iterations` (default 64) and `tol` (default 0: no early stop).
- `lstm`: torch's LSTM, the nonlinear baseline.
- `gpt` (models/gpt.py): a decoder-only transformer as nanoGPT's, `width` the embedding; options
  `depth` (blocks, default 2), `heads` (default 4) and `context` (default: the data's length).

Every family takes the option `projection=K` (and `projection_hidden`, default 128): its linear
head is replaced by DINO's projection head in small (arXiv 2302.12091 uses DINO's), Linear(D,
hidden) -> GELU -> Linear(hidden, hidden) -> l2-normalise -> a cosine layer to K outputs (rows of
its weight normalised, no bias), so every output lies in [-1, 1] and a temperature of 0.04 makes
sharp targets. The features phi stay the family's own, so probes and CKA read the same representation.

A new family is one file with a builder `(width, input_shape, num_classes, **options)` decorated
with `@MODELS.register("name")`, and one import line below. The builder's keyword arguments are
its options: `build` checks option names against them, the builder checks their values.

Initialisation draws only from torch's RNG, so `torch.manual_seed(s)` (or a `torch.random.fork_rng`
block) before `build` fixes a model's starting weights.
"""
from __future__ import annotations

import inspect
import numbers

from kdscale.config import ModelSpec
from kdscale.errors import SpecError
from kdscale.models.base import MODELS, Classifier, count_params, int_option
import torch
from torch import nn

# One line per family: importing the module registers its builder.
from kdscale.models import mlp, cnn1d, cnn2d, resnet, resnet50, rnn, gpt, vit  # noqa: F401  (registration)

__all__ = ["MODELS", "Classifier", "build", "count_params", "allowed_options", "reads_tokens"]

_POSITIONAL = ("width", "input_shape", "num_classes", "vocab_size")  # what builders take before options
PROJECTION_OPTIONS = ("projection", "projection_hidden")  # every family's, handled by `build`


def allowed_options(family: str) -> list[str]:
    """Option names a family takes: its builder's keyword arguments after the shared three."""
    parameters = inspect.signature(MODELS.get(family)).parameters
    return [name for name in parameters if name not in _POSITIONAL]


def reads_tokens(family: str) -> bool:
    """Does the family take token inputs (its builder a `vocab_size`)?"""
    return "vocab_size" in inspect.signature(MODELS.get(family)).parameters


def build(spec: ModelSpec | str, input_shape: tuple[int, ...], num_classes: int,
          vocab_size: int | None = None) -> Classifier:
    """The model `spec` describes, for inputs of `input_shape` (without the batch dimension):
    real-valued ones, or int64 tokens in [0, vocab_size) when `vocab_size` is given.

    Every failure is a SpecError naming the field, raised before any weight is allocated.
    """
    if isinstance(spec, str):
        spec = ModelSpec.parse(spec)
    input_shape = tuple(input_shape)
    if not input_shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                  and d >= 1 for d in input_shape):
        raise SpecError(f"model.input_shape={input_shape!r} is invalid: must be a tuple of "
                        "positive integers without the batch dimension, e.g. (1, 40)")
    input_shape = tuple(int(d) for d in input_shape)  # numpy's int64 sizes print and hash as ints
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 2:
        raise SpecError(f"model.num_classes={num_classes!r} is invalid: must be an integer >= 2")
    num_classes = int(num_classes)

    builder = MODELS.get(spec.family)  # unknown family: SpecError listing the known ones
    tokens = {"vocab_size": _check_vocab(spec.family, vocab_size)} if reads_tokens(spec.family) else {}
    if vocab_size is not None and not tokens:
        raise SpecError(f"model.family={spec.family!r} is invalid for token inputs: use one of "
                        f"{', '.join(f for f in MODELS.names() if reads_tokens(f))}")
    options = dict(spec.options)
    # A spec may pin its class count; a teacher and a student trained on different label sets
    # could not be compared, so a mismatch with the data set is an error, not a silent override.
    if "num_classes" in options:
        pinned = options.pop("num_classes")
        if pinned != num_classes:
            raise SpecError(f"model.options.num_classes={pinned!r} is invalid: the data set has "
                            f"{num_classes} classes, and teacher and student must have the same "
                            "class count as the data")
    projection = {name: options.pop(name) for name in PROJECTION_OPTIONS if name in options}
    allowed = allowed_options(spec.family)
    for name in options:
        if name not in allowed:
            raise SpecError(f"model.options: {spec.family} takes no option {name!r}; "
                            f"allowed: {', '.join([*allowed, *PROJECTION_OPTIONS])}")
    if "projection_hidden" in projection and "projection" not in projection:
        raise SpecError("model.options.projection_hidden is invalid without projection=K")
    if projection:
        width = int_option("projection", projection["projection"], 2)
        hidden = int_option("projection_hidden", projection.get("projection_hidden", 128), 1)
    model = builder(spec.width, input_shape, num_classes, **options, **tokens)
    if projection:  # drawn after the body, so a model's body starts the same with or without a head
        model.head = Projection(model.feature_dim, hidden, width)
    return model


class Projection(nn.Module):
    """DINO's projection head, small: MLP -> unit vector -> cosine similarity to K unit rows."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.last = nn.Parameter(torch.randn(out_dim, hidden) / hidden ** 0.5)  # [K, hidden]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = nn.functional.normalize(self.mlp(features), dim=-1)
        return z @ nn.functional.normalize(self.last, dim=-1).T


def _check_vocab(family: str, vocab_size) -> int:
    if vocab_size is None:
        raise SpecError(f"model.family={family!r} is invalid for real-valued inputs: it reads tokens; use one of "
                        f"{', '.join(f for f in MODELS.names() if not reads_tokens(f))}")
    if not isinstance(vocab_size, numbers.Integral) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise SpecError(f"model.vocab_size={vocab_size!r} is invalid: must be an integer >= 1")
    return int(vocab_size)
