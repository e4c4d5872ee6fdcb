"""`python -m kdscale.models [--shape 1,40] [--classes 10]`: parameter counts of every family at a
few widths, to choose the size grid of a study."""
from __future__ import annotations

import argparse

from kdscale.config import ModelSpec
from kdscale.errors import SpecError
from kdscale.models import MODELS, build

WIDTHS = (4, 8, 16, 32, 64, 128, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", default="1,40", help="input shape without batch, e.g. 1,40 or 3,32,32")
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    shape = tuple(int(d) for d in args.shape.split(","))
    print(f"parameters on input {shape}, {args.classes} classes")
    print(f"{'family':>10} " + " ".join(f"{'w=' + str(w):>10}" for w in WIDTHS))
    for family in MODELS.names():
        cells = []
        for width in WIDTHS:
            try:
                cells.append(f"{build(ModelSpec(family, width), shape, args.classes).num_params:>10,}")
            except SpecError:
                cells.append(f"{'-':>10}")
        print(f"{family:>10} " + " ".join(cells))
    print(f"-: the family does not take inputs of shape {shape} (2-D models need channels, height, width: "
          "--shape 3,32,32)")


if __name__ == "__main__":
    main()
