"""`python -m kdscale.models [--shape 1,40] [--classes 10] [--vocab 121]`: parameter counts of every
family at a few widths, to choose the size grid of a study (token families with --vocab tokens)."""
from __future__ import annotations

import argparse

from kdscale.config import ModelSpec
from kdscale.errors import SpecError
from kdscale.models import MODELS, build, reads_tokens

WIDTHS = (4, 8, 16, 32, 64, 128, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="1,40", help="input shape without batch, e.g. 1,40 or 3,32,32")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=121, help="tokens, for token families (default 121: S5's)")
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.shape.split(","))
    print(f"parameters on input {shape}, {args.classes} classes")
    print(f"{'family':>10} " + " ".join(f"{'w=' + str(w):>10}" for w in WIDTHS))
    for family in MODELS.names():
        cells = []
        for width in WIDTHS:
            try:
                tokens = reads_tokens(family)
                model = build(ModelSpec(family, width), (16,) if tokens else shape, args.classes,
                              args.vocab if tokens else None)
                cells.append(f"{model.num_params:>10,}")
            except SpecError:
                cells.append(f"{'-':>10}")
        print(f"{family:>10} " + " ".join(cells))
    print(f"-: the family does not take inputs of shape {shape} (2-D models need channels, height, width: "
          "--shape 3,32,32)")


if __name__ == "__main__":
    main()
