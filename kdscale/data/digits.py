"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), a real data set.

A fixed, class-stratified split seeded by the data seed: 360 test images, the other 1,437 form the
training stream. Pixels (0..16) are scaled to [0, 1].
"""
from __future__ import annotations

import numpy as np

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.data import DATASETS, DataInfo, fixed_stream
from kdscale.data.subsets import rng_for, stratified_order

N_TEST = 360
N_TOTAL = 1797


@DATASETS.register("digits")
class Digits:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        if spec.n_test is not None:
            raise SpecError(f"data.n_test={spec.n_test} is invalid: digits has a fixed test split "
                            f"of {N_TEST}; leave it unset")
        return DataInfo((1, 8, 8), 10, N_TOTAL - N_TEST, N_TEST)

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = (bunch.images.astype(np.float32) / 16.0)[:, None]
        y = bunch.target.astype(np.int64)
        order = stratified_order(y, rng_for(spec.seed, 7))  # a stratified prefix is the test set
        test, train = order[:N_TEST], order[N_TEST:]
        x_pool, y_pool = fixed_stream(x[train], y[train], spec.seed)
        return x_pool[:n_pool], y_pool[:n_pool], x[test], y[test]
