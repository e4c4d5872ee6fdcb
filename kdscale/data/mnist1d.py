"""MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package: any number of samples.

The package's own generator (`mnist1d.data.transform` on its templates) makes the samples; its
download is never used. `make_dataset` normalises each call by that call's own mean and std, so
two pool sizes would come from two slightly different distributions; here the stream is made in
chunks of CHUNK raw samples, each seeded by (data seed, chunk), and every sample is normalised by
the mean and std of the first training chunk. A pool of any size is then a prefix of a larger one.
Chunks are cached on disk keyed by the generation arguments (kdscale/data/chunks.py), so a second
load is instant.

Option `templates=reversed` (`DataSpec("mnist1d", options=(("templates", "reversed"),))`) draws
from the same generator with each class's template reversed in time: a second task with the
same input statistics and different class shapes, the transfer task of the random-teacher study
(kdscale.representations.transfer).
"""
from __future__ import annotations

import random

import numpy as np

from kdscale.config import DataSpec
from kdscale.data import DATASETS, DataInfo, chunks

CHUNK = 4000  # samples per generated chunk: 400 per class, shuffled
DEFAULT_N_TEST = 2000
TEST_STREAM = 1_000_000  # chunk offset of the test stream, so test and train seeds never meet


TEMPLATES = ("original", "reversed")
# The generator's arguments: the `mnist1d` package's defaults (`mnist1d.data.get_dataset_args`, the
# paper's data set) less its download URL, seed, size and split, which kdscale sets itself. Kept here
# rather than read from the package: `mnist1d.data` imports scipy and matplotlib (0.9-2 s of every
# worker's start, 2026-12-01) and only a chunk not yet cached needs the generator; and a new package
# version that changed a default would otherwise change the data under the same cache key
# (tests/test_data.py checks they equal the installed package's).
GENERATION_ARGS = {"template_len": 12, "padding": [36, 60], "scale_coeff": 0.4, "max_translation": 48,
                   "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2, "shear_scale": 0.75,
                   "shuffle_seq": False, "final_seq_length": 40}


def _generation_args(spec: DataSpec | None = None) -> dict:
    from kdscale.errors import SpecError

    options = dict(spec.options) if spec is not None else {}
    for name, value in options.items():
        if name != "templates":
            raise SpecError(f"data.options: mnist1d takes no option {name!r}; allowed: templates")
        if value not in TEMPLATES:
            raise SpecError(f"data.options.templates={value!r} is invalid: must be one of {', '.join(TEMPLATES)}")

    args = {name: list(value) if isinstance(value, list) else value for name, value in GENERATION_ARGS.items()}
    if options.get("templates", "original") != "original":  # in the chunk cache's key only when set
        args["templates"] = options["templates"]
    return args


def _make_chunk(args: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CHUNK raw samples from the package's generator, leaving numpy's and python's global RNGs as found."""
    from mnist1d.data import get_templates, transform
    from mnist1d.utils import ObjectView

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        np.random.seed(seed)
        random.seed(seed)
        templates, view = get_templates(), ObjectView(dict(args))
        if args.get("templates") == "reversed":
            templates = dict(templates, x=np.ascontiguousarray(templates["x"][:, ::-1]))
        xs, ys = [], []
        per_class = CHUNK // len(templates["y"])
        for label in range(len(templates["y"])):
            for _ in range(per_class):
                x, _t = transform(templates["x"][label], templates["t"], view)
                xs.append(x)
                ys.append(templates["y"][label])
        order = np.random.permutation(len(ys))
        return np.stack(xs)[order].astype(np.float32), np.asarray(ys, dtype=np.int64)[order]
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _chunk(args: dict, data_seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    return chunks.chunk("mnist1d", args, data_seed, index, lambda seed: _make_chunk(args, seed))


def _stream(args: dict, data_seed: int, first_chunk: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return chunks.stream("mnist1d", args, data_seed, first_chunk, n, CHUNK, lambda seed: _make_chunk(args, seed))


@DATASETS.register("mnist1d")
class MNIST1D:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        _generation_args(spec)  # a bad option fails here, before any compute
        return DataInfo((1, 40), 10, None, spec.n_test or DEFAULT_N_TEST)

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        args = _generation_args(spec)
        x_pool, y_pool = _stream(args, spec.seed, 0, n_pool)
        x_test, y_test = _stream(args, spec.seed, TEST_STREAM, spec.n_test or DEFAULT_N_TEST)
        x_ref = _chunk(args, spec.seed, 0)[0]
        mean, std = float(x_ref.mean()), float(x_ref.std())
        def norm(x):
            return ((x - mean) / std).astype(np.float32)[:, None, :]
        return norm(x_pool), y_pool, norm(x_test), y_test
