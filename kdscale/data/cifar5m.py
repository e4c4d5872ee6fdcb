"""CIFAR-5m (Nakkiran et al. 2021, "The Deep Bootstrap"): six million synthetic CIFAR-10-like images.

The paper's source of kappa > 1 on CIFAR: N = 60,000 teacher samples and students up to kappa = 20
(1.2M samples). As released (github.com/preetum/cifar5m: six files `gs://gresearch/cifar5m/part{i}.npz`,
i = 0..5; DDPM samples labelled by a fine-tuned BiT-M-R152x2), each part is an npz with two arrays:
'X', uint8 [n, 32, 32, 3] (channels last), and 'Y', the integer CIFAR-10 class [n]; code that uses
the release reads `f['X']`, `f['Y']` and counts 1,000,448 images a part. Here counts are read
from each array's npy header, never assumed. Under `root` a part is `cifar5m_part{i}.npz` (the
name most code uses) or `part{i}.npz` (the release's own name); the pool uses parts 0, 1, ... up
to the first one missing, so only the parts a grid needs have to be on disk.

The test set is chosen by the data set's name:
- `cifar5m`: pool = parts 0..5; test = CIFAR-10's 10,000 test images, expected at
  root/cifar-10-batches-py/test_batch (the paper evaluates on CIFAR-10's test set).
- `cifar5m-heldout`: pool = parts 0..4; test = the first `n_test` (default 10,000) images of
  part 5, for a test set from CIFAR-5m's own distribution.
Not by which files happen to be under root: the root is not part of a spec's hash, so a choice
made by the files present would let one cached teacher stand for two different test sets.

The stream is the parts in order, each cut into blocks of BLOCK images (a part's last block is
shorter), each block in a class-stratified order seeded by (data seed, part, block). Loading
n_pool samples reads only the blocks it needs: each npz member is read as a stream up to that
point (stored or deflated alike), one block at a time, so N = 60,000 at kappa = 20 reads part 0
and the first 200,000 images of part 1, and a pool is a prefix of any larger one.

Memory: the returned pool is float32, 12,288 bytes an image: 737 MB for N = 60,000 and 14.7 GB
at kappa = 20; reading adds one uint8 block (150 MB). A trial then gathers its student subset
into a second array of the same size per sample, so kappa = 20 needs about 30 GB of host memory.
Pixels are normalised by CIFAR-10's training statistics (kdscale.data.cifar), the distribution
CIFAR-5m imitates and is tested on.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.data import DATASETS, DataInfo
from kdscale.data.cifar import CIFAR10_MEAN, CIFAR10_STD, LAYOUTS, cifar_test_set
from kdscale.data.images import data_root, no_test_size, normalise
from kdscale.data.subsets import rng_for, stratified_order

N_PARTS = 6
PART_NAMES = ("cifar5m_part{i}.npz", "part{i}.npz")
BLOCK = 50_000  # images ordered together; the size of CIFAR-10's training set
DEFAULT_N_TEST = 10_000  # cifar5m-heldout
STREAM_KEY = 1_000_003  # the key fixed_stream uses, extended by (part, block)
SOURCE = ("the release's part{0..5}.npz from https://github.com/preetum/cifar5m "
          "(gs://gresearch/cifar5m/part0.npz ...)")


def part_path(root: Path, index: int) -> Path | None:
    for name in PART_NAMES:
        path = root / name.format(i=index)
        if path.exists():
            return path
    return None


class NpzMember:
    """One array of an npz file read as a stream: shape and dtype from its npy header, then rows
    in order, without reading the rest of the file."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key
        self._zip = self._fp = None
        try:
            self._zip = zipfile.ZipFile(path)
            self._fp = self._zip.open(f"{key}.npy")
            version = np.lib.format.read_magic(self._fp)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[version]
            shape, fortran_order, dtype = read_header(self._fp)
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as error:
            self.close()
            raise SpecError(f"data.root: {path} is not a CIFAR-5m part with an array {key!r} "
                            f"({type(error).__name__}: {error})") from None
        if fortran_order and len(shape) > 1:
            self.close()
            raise SpecError(f"data.root: {path}: array {key!r} is stored in Fortran order; "
                            "CIFAR-5m parts are C order")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = self.dtype.itemsize * math.prod(self.shape[1:])

    def read(self, rows: int) -> np.ndarray:
        data = self._fp.read(rows * self._row_bytes)
        if len(data) != rows * self._row_bytes:
            raise SpecError(f"data.root: {self.path} is truncated (array {self.key!r})")
        return np.frombuffer(data, dtype=self.dtype).reshape(rows, *self.shape[1:])

    def close(self) -> None:
        for handle in (self._fp, self._zip):
            if handle is not None:
                handle.close()

    def __enter__(self) -> "NpzMember":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def part_size(path: Path) -> int:
    """Images in a part, from the npy headers alone; checks the arrays are CIFAR-5m's."""
    with NpzMember(path, "X") as x, NpzMember(path, "Y") as y:
        if x.dtype != np.uint8 or len(x.shape) != 4 or x.shape[1:] != (32, 32, 3):
            raise SpecError(f"data.root: {path} holds X {x.dtype} {list(x.shape)}; a CIFAR-5m part "
                            "holds uint8 [n, 32, 32, 3]")
        if y.dtype.kind not in "iu" or y.shape != x.shape[:1]:
            raise SpecError(f"data.root: {path} holds Y {y.dtype} {list(y.shape)}; a CIFAR-5m part "
                            f"holds {x.shape[0]} integer labels")
        return x.shape[0]


def pool_parts(root: Path, name: str, last: int) -> list[tuple[Path, int]]:
    """(path, images) of parts 0, 1, ... up to `last` or the first missing one."""
    parts = []
    for index in range(last + 1):
        path = part_path(root, index)
        if path is None:
            break
        parts.append((path, part_size(path)))
    if not parts:
        raise SpecError(f"data.root: {name} expects CIFAR-5m's parts at {root}/cifar5m_part0.npz "
                        f"(or part0.npz), part1, ... ({SOURCE}); missing: {root / PART_NAMES[0].format(i=0)}")
    return parts


def read_stream(parts: list[tuple[Path, int]], seed: int, n_pool: int) -> tuple[np.ndarray, np.ndarray]:
    """The stream's first n_pool images (float32 [n_pool, 3, 32, 32], normalised) and labels."""
    x_out = np.empty((n_pool, 3, 32, 32), dtype=np.float32)
    y_out = np.empty(n_pool, dtype=np.int64)
    filled = 0
    for part, (path, size) in enumerate(parts):
        if filled >= n_pool:
            break
        with NpzMember(path, "X") as x_member, NpzMember(path, "Y") as y_member:
            for block, start in enumerate(range(0, size, BLOCK)):
                if filled >= n_pool:
                    break
                rows = min(BLOCK, size - start)
                x_block, y_block = x_member.read(rows), y_member.read(rows).astype(np.int64)
                if y_block.min() < 0 or y_block.max() > 9:
                    raise SpecError(f"data.root: {path} has labels outside 0..9")
                # The whole block is ordered even when only its head is needed, so a pool is a
                # prefix of any larger one.
                keep = stratified_order(y_block, rng_for(seed, STREAM_KEY, part, block))[:n_pool - filled]
                normalise(x_block[keep], CIFAR10_MEAN, CIFAR10_STD, channels_last=True,
                          out=x_out[filled:filled + len(keep)])
                y_out[filled:filled + len(keep)] = y_block[keep]
                filled += len(keep)
    return x_out[:filled], y_out[:filled]


def cifar10_test_root(spec: DataSpec) -> Path:
    root = data_root(spec, "cifar5m", "CIFAR-5m's parts and cifar-10-batches-py/test_batch", SOURCE)
    layout = LAYOUTS["cifar10"]
    test_file = root / layout.folder / layout.test_files[0]
    if not test_file.exists():
        raise SpecError(f"data.root: cifar5m tests on CIFAR-10's test set and expects it at {test_file} "
                        f"({layout.source}); or name the data set cifar5m-heldout to test on part 5")
    return root


@DATASETS.register("cifar5m")
class Cifar5m:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        no_test_size(spec, "cifar5m", LAYOUTS["cifar10"].n_test)
        root = cifar10_test_root(spec)
        pool = sum(size for _, size in pool_parts(root, "cifar5m", N_PARTS - 1))
        return DataInfo((3, 32, 32), 10, pool, LAYOUTS["cifar10"].n_test)

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        root = cifar10_test_root(spec)
        x_pool, y_pool = read_stream(pool_parts(root, "cifar5m", N_PARTS - 1), spec.seed, n_pool)
        x_test, y_test = cifar_test_set(root, LAYOUTS["cifar10"])
        return x_pool, y_pool, x_test, y_test


def heldout_part(spec: DataSpec) -> tuple[Path, Path, int]:
    """(root, part 5's path, n_test), checked."""
    root = data_root(spec, "cifar5m-heldout", "CIFAR-5m's parts", SOURCE)
    path = part_path(root, N_PARTS - 1)
    if path is None:
        raise SpecError(f"data.root: cifar5m-heldout tests on CIFAR-5m's part 5 and expects it at "
                        f"{root}/cifar5m_part5.npz (or part5.npz) ({SOURCE}); missing: "
                        f"{root / PART_NAMES[0].format(i=N_PARTS - 1)}")
    n_test = spec.n_test or DEFAULT_N_TEST
    size = part_size(path)
    if n_test > size:
        raise SpecError(f"data.n_test={n_test} is invalid: cifar5m-heldout's test images come from "
                        f"{path}, which holds {size}")
    return root, path, n_test


@DATASETS.register("cifar5m-heldout")
class Cifar5mHeldout:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        root, _, n_test = heldout_part(spec)
        pool = sum(size for _, size in pool_parts(root, "cifar5m-heldout", N_PARTS - 2))
        return DataInfo((3, 32, 32), 10, pool, n_test)

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        root, test_path, n_test = heldout_part(spec)
        x_pool, y_pool = read_stream(pool_parts(root, "cifar5m-heldout", N_PARTS - 2), spec.seed, n_pool)
        with NpzMember(test_path, "X") as x_member, NpzMember(test_path, "Y") as y_member:
            x_test = normalise(x_member.read(n_test), CIFAR10_MEAN, CIFAR10_STD, channels_last=True)
            y_test = y_member.read(n_test).astype(np.int64)
        return x_pool, y_pool, x_test, y_test
