"""Data sets: a registry of loaders, the training stream and the subsets of DESIGN.

`data.load(spec, n_pool)` returns the first `n_pool` samples of the training stream and the fixed
test set as numpy arrays; `data.check(spec, kappas)` validates a grid before any compute.
A new data set is one file with a class that has `info` and `load`, and one registry line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdscale import schema
from kdscale.config import DataSpec
from kdscale.errors import SpecError, check_float
from kdscale.registry import Registry
from kdscale.data.subsets import stratified_order, stream_length_for, student_indices, rng_for

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # one sample, channels first; tokens: (T,), the training length
    num_classes: int
    pool_size: int | None  # samples in the training stream; None = generated without limit
    n_test: int
    vocab_size: int | None = None  # None: real-valued inputs; V: int64 tokens in [0, V), one label per token
    next_token: bool = False  # a language model's data: labels are the next tokens, so a row has test_ppl

    def example(self, n: int = 1):
        """A zero input batch of n samples of the right shape and dtype (to build or time a model)."""
        import torch

        return torch.zeros(n, *self.input_shape, dtype=torch.int64 if self.vocab_size else torch.float32)


@dataclass
class LoadedData:
    info: DataInfo
    x_pool: np.ndarray  # float32 [n_pool, *input_shape], the stream's first n_pool samples; tokens int64 [n_pool, T]
    y_pool: np.ndarray  # int64 [n_pool]; tokens [n_pool, T], schema.IGNORE_LABEL where a token has none
    x_test: np.ndarray  # tokens: [n_test, T_test], test sequences may be longer than training ones
    y_test: np.ndarray


def _dataset(spec: DataSpec):
    return DATASETS.get(spec.name)


def info(spec: DataSpec) -> DataInfo:
    """Shape, classes and capacity of a data set, without loading it."""
    return _dataset(spec).info(spec)


def max_kappa(spec: DataSpec) -> float:
    pool = info(spec).pool_size
    return math.inf if pool is None else pool / spec.n_teacher


# A generated data set makes any number of samples, but not without bound: a kappa that needs more
# than this many would first spend minutes generating them (and memory holding them).
MAX_GENERATED_SAMPLES = 1_000_000
# N, the teacher's samples, when none is given: what the studies use (the paper's 60,000 on
# CIFAR-5m; what digits' 1,257-sample training split can give with room for kappa > 1).
DEFAULT_N = {"digits": 700, "cifar5m": 60_000, "cifar5m-heldout": 60_000}


def default_n_teacher(name: str) -> int:
    return DEFAULT_N.get(name, 4000)


def check(spec: DataSpec, kappas=(), role: str = "trial") -> DataInfo:
    """Fail with a one-line SpecError if the data set cannot serve N and every kappa (`role` names
    whose kappa it is in the message: trial, tune)."""
    for kappa in kappas:
        check_float(role, "kappa", kappa, 0.0, low_open=True)
    data_info = info(spec)
    pool = data_info.pool_size
    if pool is not None and spec.n_teacher > pool:
        raise SpecError(f"data.n_teacher={spec.n_teacher} is invalid: {spec.name} holds {pool} "
                        f"training samples")
    for kappa in kappas:
        n_train = schema.n_train(kappa, spec.n_teacher)
        if pool is not None and n_train > pool:
            raise SpecError(f"kappa={kappa:g} is invalid: it needs M={n_train} student samples but "
                            f"{spec.name} holds {pool}; with N={spec.n_teacher} the maximum kappa "
                            f"is {pool / spec.n_teacher:.4g}")
        if pool is None and n_train > MAX_GENERATED_SAMPLES:
            raise SpecError(f"kappa={kappa:g} is invalid: it needs M={n_train:,} generated {spec.name} samples; "
                            f"at most {MAX_GENERATED_SAMPLES:,} are made, so with N={spec.n_teacher} the maximum "
                            f"kappa is {MAX_GENERATED_SAMPLES / spec.n_teacher:g}")
    return data_info


def load(spec: DataSpec, n_pool: int) -> LoadedData:
    """The first `n_pool` samples of the training stream, and the test set."""
    data_info = check(spec)
    if data_info.pool_size is not None:
        n_pool = min(n_pool, data_info.pool_size)
    x_pool, y_pool, x_test, y_test = _dataset(spec).load(spec, max(n_pool, spec.n_teacher))
    return LoadedData(data_info, x_pool, y_pool, x_test, y_test)


def fixed_stream(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Order a fixed training split as a stream: stratified by class, seeded by the data seed."""
    order = stratified_order(y, rng_for(seed, 1_000_003))
    return x[order], y[order]


# The registry lines: importing a data set's module registers it.
from kdscale.data import mnist1d, digits, cifar, cifar5m, imagefolder, transfer, sequences, text  # noqa: E402,F401

__all__ = ["DATASETS", "DataInfo", "LoadedData", "info", "check", "load", "max_kappa", "default_n_teacher",
           "fixed_stream", "student_indices", "stream_length_for", "stratified_order", "rng_for"]
