"""Sequence tasks of state tracking (Movahedi et al., "Fixed-point RNNs", arXiv 2503.10799), generated
offline: any number of sequences from the data seed, cached as a stream like MNIST-1D (chunks.py).

A sample is a row of int64 tokens x [T] with one label per token y [T] (schema.IGNORE_LABEL where
a token has none). Token 0 is padding everywhere. The tasks (`DataSpec(name, options=...)`):

- `s5`, `a5`, `s3`: the group word problems (groups.py). Tokens 1..|G| are the elements (token =
  index + 1); the label at t is the index of the running product x_1. ... .x_t: |G| = 120, 60 or 6
  classes.
- `modsum`: tokens 1..p are the numbers 0..p-1; the label at t is (n_1 + ... + n_t) mod p. The
  abelian case (the cyclic group Z_p).
- `modsum-brackets`: sums and differences mod p with brackets, read left to right: tokens 1..p the
  numbers, then `+`, `-`, `(`, `)`. The label at every token is the value mod p of what has been
  read, every open bracket closed: `3 - ( 4 + 2` is labelled 3, 3, 3, 3-4, 3-4, 3-4-2 (mod p), so a
  `-` before a bracket flips the sign of every term inside it, to any depth. Generated left to
  right: where an operand is due, `(` with probability 1/4, else a number; after an operand, `)`
  with probability 1/4 while a bracket is open, else `+` or `-`.
- `copy`: a string s_1..s_n over `symbols` symbols (tokens 1..symbols), a delimiter, then n query
  tokens at which the labels are s_1..s_n (classes: the symbols); the rest is padding.

Lengths (option `length`, `test_length`). Training: the group and sum tasks' sequences have T =
`length` tokens and every position is labelled, so every length 1..`length` is trained (a prefix
is a sequence of its own); a copy string has n uniform in 1..`length` (T = 2 `length` + 1, padded).
The test set has n_test sequences split evenly over the lengths `length`, 2 `length`, 4 `length`,
... up to `test_length` (default 4 `length`), each exactly that long (copy: n exactly that),
padded to one T. A test sequence's length is its number of labelled tokens, so accuracy per
length bucket, per token and per sequence, can be read off the labels alone. The models are
causal, so padding after a sequence changes nothing before it; labels there are ignored.
"""
from __future__ import annotations

import numpy as np

from kdscale.config import DataSpec
from kdscale.data import DATASETS, DataInfo, chunks
from kdscale.data import groups
from kdscale.errors import SpecError
from kdscale.schema import IGNORE_LABEL

CHUNK = 4000  # sequences per generated chunk
DEFAULT_N_TEST = 600
TEST_STREAM = 1_000_000  # chunk offset of the test streams (one per test length: i x TEST_STREAM)
PAD = 0
# Each task's options and their defaults: `length` the training length, `test_length` the longest
# test length (0: 4 x length), `p` the modulus, `symbols` the copy alphabet.
OPTIONS = {"s5": {"length": 16, "test_length": 0}, "a5": {"length": 16, "test_length": 0},
           "s3": {"length": 16, "test_length": 0},
           "modsum": {"length": 16, "test_length": 0, "p": 5},
           "modsum-brackets": {"length": 16, "test_length": 0, "p": 5},
           "copy": {"length": 8, "test_length": 0, "symbols": 8}}


def settings(spec: DataSpec) -> dict:
    """The task's options with defaults filled in; a bad name or value is one SpecError line."""
    defaults = OPTIONS[spec.name]
    given = dict(spec.options)
    for name, value in given.items():
        if name not in defaults:
            raise SpecError(f"data.options: {spec.name} takes no option {name!r}; allowed: {', '.join(defaults)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "test_length" else 2):
            raise SpecError(f"data.options.{name}={value!r} is invalid: must be an integer >= "
                            f"{0 if name == 'test_length' else 2}")
    out = defaults | given
    out["test_length"] = out["test_length"] or 4 * out["length"]
    if out["test_length"] < out["length"]:
        raise SpecError(f"data.options.test_length={out['test_length']} is invalid: must be >= length "
                        f"({out['length']})")
    return out


def test_lengths(spec: DataSpec) -> list[int]:
    """The test set's lengths: length, 2 length, 4 length, ... below test_length, and test_length."""
    opts = settings(spec)
    lengths, length = [], opts["length"]
    while length < opts["test_length"]:
        lengths.append(length)
        length *= 2
    return lengths + [opts["test_length"]]


def _array_length(task: str, length: int) -> int:
    return 2 * length + 1 if task == "copy" else length


def _vocab_and_classes(task: str, opts: dict) -> tuple[int, int]:
    if task in groups.GROUPS:
        order = len(groups.elements(task))
        return order + 1, order
    if task == "modsum":
        return opts["p"] + 1, opts["p"]
    if task == "modsum-brackets":
        return opts["p"] + 5, opts["p"]
    return opts["symbols"] + 3, opts["symbols"]


# --- the generators: (rng, n sequences, string lengths lo..hi, options) -> x [n, T], y [n, T] ---------


def _group_words(task, rng, n, lo, hi, opts):
    words = rng.integers(0, len(groups.elements(task)), size=(n, hi))
    return words + 1, groups.running_products(task, words)


def _modsum(task, rng, n, lo, hi, opts):
    numbers = rng.integers(0, opts["p"], size=(n, hi))
    return numbers + 1, np.cumsum(numbers, axis=1) % opts["p"]


def _modsum_brackets(task, rng, n, lo, hi, opts):
    p = opts["p"]
    x = np.zeros((n, hi), np.int64)
    operand_due = np.ones(n, bool)  # at the start, after an operator or `(`
    depth = np.zeros(n, np.int64)
    for t in range(hi):
        u = rng.random(n)
        opens = operand_due & (u < 0.25)
        closes = ~operand_due & (depth > 0) & (u < 0.25)
        operators = ~operand_due & ~closes
        x[:, t] = np.where(opens, p + 3, np.where(closes, p + 4, np.where(
            operators, np.where(rng.random(n) < 0.5, p + 1, p + 2), rng.integers(0, p, size=n) + 1)))
        depth += opens.astype(np.int64) - closes
        operand_due = opens | operators
    return x, bracket_values(x, p)


def bracket_values(x: np.ndarray, p: int) -> np.ndarray:
    """The labels of `modsum-brackets` tokens x [n, T]: at each token the value mod p of what has been
    read, open brackets closed (module doc)."""
    n, length = x.shape
    rows = np.arange(n)
    stack = np.ones((n, length + 1), np.int64)  # the sign of each open bracket's content, outermost first
    depth, value = np.zeros(n, np.int64), np.zeros(n, np.int64)
    sign = np.ones(n, np.int64)  # the sign of the next operand or bracket: its bracket's x its operator's
    y = np.zeros_like(x)
    for t in range(length):
        token = x[:, t]
        number = (token >= 1) & (token <= p)
        value = np.where(number, (value + sign * (token - 1)) % p, value)
        opens, closes = token == p + 3, token == p + 4
        depth = depth + opens - closes
        stack[rows[opens], depth[opens]] = sign[opens]
        inner = stack[rows, depth]
        sign = np.where(token == p + 1, inner, np.where(token == p + 2, -inner, sign))
        y[:, t] = value
    return y


def _copy(task, rng, n, lo, hi, opts):
    width = 2 * hi + 1
    x, y = np.full((n, width), PAD, np.int64), np.full((n, width), IGNORE_LABEL, np.int64)
    lengths = rng.integers(lo, hi + 1, size=n)
    strings = rng.integers(0, opts["symbols"], size=(n, hi))
    delimiter, query = opts["symbols"] + 1, opts["symbols"] + 2
    for i, m in enumerate(lengths):
        x[i, :m], x[i, m], x[i, m + 1:2 * m + 1] = strings[i, :m] + 1, delimiter, query
        y[i, m + 1:2 * m + 1] = strings[i, :m]
    return x, y


GENERATORS = {"s5": _group_words, "a5": _group_words, "s3": _group_words, "modsum": _modsum, "modsum-brackets": _modsum_brackets,
              "copy": _copy}


def generate(task: str, seed: int, n: int, lo: int, hi: int, opts: dict) -> tuple[np.ndarray, np.ndarray]:
    """n sequences of the task from one seed (string lengths lo..hi for copy; length hi otherwise)."""
    x, y = GENERATORS[task](task, np.random.default_rng(seed), n, lo, hi, opts)
    return x.astype(np.int64), y.astype(np.int64)


def _pad(x: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    extra = width - x.shape[1]
    return (np.pad(x, ((0, 0), (0, extra)), constant_values=PAD),
            np.pad(y, ((0, 0), (0, extra)), constant_values=IGNORE_LABEL))


class SequenceTask:
    """One registered task; `info` and `load` as every data set (kdscale.data)."""

    def __init__(self, task: str):
        self.task = task

    def info(self, spec: DataSpec) -> DataInfo:
        opts = settings(spec)
        vocab, classes = _vocab_and_classes(self.task, opts)
        return DataInfo((_array_length(self.task, opts["length"]),), classes, None, spec.n_test or DEFAULT_N_TEST,
                        vocab_size=vocab)

    def load(self, spec: DataSpec, n_pool: int):
        opts = settings(spec)
        args = {"task": self.task, **opts}

        def stream(first_chunk, n, lo, hi):
            return chunks.stream("sequences", args | {"lo": lo, "hi": hi}, spec.seed, first_chunk, n, CHUNK,
                                 lambda seed: generate(self.task, seed, CHUNK, lo, hi, opts))
        x_pool, y_pool = stream(0, n_pool, 1, opts["length"])
        lengths = test_lengths(spec)
        n_test = spec.n_test or DEFAULT_N_TEST
        width = _array_length(self.task, lengths[-1])
        parts = [_pad(*stream(TEST_STREAM * (i + 1), n_test // len(lengths) + (i < n_test % len(lengths)), length,
                              length), width) for i, length in enumerate(lengths)]
        return x_pool, y_pool, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


for _task in OPTIONS:
    DATASETS.register(_task)(SequenceTask(_task))
