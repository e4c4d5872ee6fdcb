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
from kdscale.models.base import MODELS, Classifier, count_params

# One line per family: importing the module registers its builder.
from kdscale.models import mlp, cnn1d, cnn2d, resnet, resnet50  # noqa: F401  (registration)

__all__ = ["MODELS", "Classifier", "build", "count_params", "allowed_options"]

_POSITIONAL = ("width", "input_shape", "num_classes")  # what every builder takes before options


def allowed_options(family: str) -> list[str]:
    """Option names a family takes: its builder's keyword arguments after the shared three."""
    parameters = inspect.signature(MODELS.get(family)).parameters
    return [name for name in parameters if name not in _POSITIONAL]


def build(spec: ModelSpec | str, input_shape: tuple[int, ...], num_classes: int) -> Classifier:
    """The model `spec` describes, for inputs of `input_shape` (without the batch dimension).

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
    options = dict(spec.options)
    # A spec may pin its class count; a teacher and a student trained on different label sets
    # could not be compared, so a mismatch with the data set is an error, not a silent override.
    if "num_classes" in options:
        pinned = options.pop("num_classes")
        if pinned != num_classes:
            raise SpecError(f"model.options.num_classes={pinned!r} is invalid: the data set has "
                            f"{num_classes} classes, and teacher and student must have the same "
                            "class count as the data")
    allowed = allowed_options(spec.family)
    for name in options:
        if name not in allowed:
            raise SpecError(f"model.options: {spec.family} takes no option {name!r}; "
                            f"allowed: {', '.join(allowed) or 'none'}")
    return builder(spec.width, input_shape, num_classes, **options)
