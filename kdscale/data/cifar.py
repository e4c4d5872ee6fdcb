"""CIFAR-10 and CIFAR-100 from torchvision's on-disk files, the "python version" pickles.

    root/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch     (cifar10)
    root/cifar-100-python/train, test                                     (cifar100, fine labels)

are what https://www.cs.toronto.edu/~kriz/cifar.html distributes and what
`torchvision.datasets.CIFAR10(root, download=True)` (or CIFAR100) leaves under root. Nothing is
downloaded here. Each file is a pickled dict {b'data': uint8 [n, 3072], b'labels': [n ints]}
(b'fine_labels' for CIFAR-100), rows holding the red, green and blue 32x32 planes in turn, so a
row reshapes to [3, 32, 32] as it is. The files are read with a restricted unpickler (a pickle can
name any function to call, so a crafted "batch" could run code as it loads): it builds only what the
format holds, dicts, lists, strings, bytes, numbers and numpy arrays (numpy's array rebuilder,
ndarray, dtype), refuses any other global before calling it, and the result must be a dict of those.
They are read this way, with numpy directly, rather
than through torchvision's classes, which md5 the 170 MB of files on every construction and make
a PIL image per sample where a reshape is free. On this project's 2-core machine all 60,000
CIFAR-10 images load in 0.5-0.7 s once a process has its memory (2-3 s for the first load, most
of it the kernel mapping 750 MB of new memory); through CIFAR10 with ToTensor and Normalize per
image they take 3.7 s.

The training pool is the 50,000 training images in a fixed, class-stratified order seeded by the
data seed (`kdscale.data.fixed_stream`); the test set is the 10,000 test images in file order.
Pixels are normalised per channel by the training set's mean and std: (x / 255 - mean) / std, with
the statistics over all 50,000 x 32 x 32 pixels of each channel in float64 (the widely used
values; `(train.data / 255).mean(axis=(0, 1, 2))`, `.std(...)` on torchvision's array gives them).
float32 costs 12,288 bytes an image: 614 MB for the whole CIFAR-10 training set.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.data import DATASETS, DataInfo, fixed_stream
from kdscale.data.images import data_root, no_test_size, normalise, require

SHAPE = (3, 32, 32)

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.50707516, 0.48654887, 0.44091784)
CIFAR100_STD = (0.26733429, 0.25643846, 0.27615047)


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR release's files are and what they hold (the release's published sizes)."""
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    n_train: int
    n_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str  # for error messages; {root} is the data root
    source: str


LAYOUTS = {
    "cifar10": Layout("cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                      ("test_batch",), "labels", 10, 50_000, 10_000, CIFAR10_MEAN, CIFAR10_STD,
                      "the python-version batches at {root}/cifar-10-batches-py/data_batch_1..5 and test_batch",
                      "from https://www.cs.toronto.edu/~kriz/cifar.html, or "
                      "torchvision.datasets.CIFAR10(root, download=True) on a machine with internet"),
    "cifar100": Layout("cifar100", "cifar-100-python", ("train",), ("test",), "fine_labels", 100, 50_000,
                       10_000, CIFAR100_MEAN, CIFAR100_STD,
                       "the python-version files at {root}/cifar-100-python/train and test",
                       "from https://www.cs.toronto.edu/~kriz/cifar.html, or "
                       "torchvision.datasets.CIFAR100(root, download=True) on a machine with internet"),
}


def checked_root(spec: DataSpec, layout: Layout) -> Path:
    """The data root, after checking that every file of the release is there."""
    root = data_root(spec, layout.name, layout.layout.replace("{root}/", ""), layout.source)
    require(root, [f"{layout.folder}/{f}" for f in layout.train_files + layout.test_files],
            layout.name, layout.layout, layout.source)
    return root


def _array_rebuilder():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy 2
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# The globals a CIFAR batch's pickle names: numpy's array rebuilder (under numpy 1's and numpy 2's
# module names), ndarray and dtype; and the bytes rebuilder of protocol-2 pickles written by Python 3.
ALLOWED_GLOBALS = {("numpy.core.multiarray", "_reconstruct"): _array_rebuilder,
                   ("numpy._core.multiarray", "_reconstruct"): _array_rebuilder,
                   ("numpy", "ndarray"): lambda: np.ndarray, ("numpy", "dtype"): lambda: np.dtype,
                   ("_codecs", "encode"): lambda: __import__("codecs").encode}
PLAIN = (str, bytes, int, float, bool, type(None))


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that admits only what a CIFAR batch holds (see the module doc)."""

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]()
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never does "
                                     "(refused, not called)")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id, which a CIFAR batch never does")


def _plain(value, depth: int = 0) -> bool:
    """Is this what a batch's values are: plain values, arrays of numbers, lists of those?"""
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return isinstance(value, list) and depth < 2 and all(_plain(v, depth + 1) for v in value)


def load_batch(f) -> dict:
    """A CIFAR python-version batch from an open binary file, through BatchUnpickler."""
    # encoding="bytes", as the data set's page shows: the files were pickled by Python 2.
    batch = BatchUnpickler(f, encoding="bytes").load()
    if not isinstance(batch, dict) or not all(isinstance(k, (str, bytes)) and _plain(v) for k, v in batch.items()):
        raise pickle.UnpicklingError(f"it holds a {type(batch).__name__} that is not a dict of arrays, lists, "
                                     "strings and numbers")
    return batch


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch as (uint8 [n, 3, 32, 32], int64 [n])."""
    try:
        with open(path, "rb") as f:
            batch = load_batch(f)
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, AttributeError, ValueError, TypeError) as error:
        raise SpecError(f"data.root: {path} is not a CIFAR python-version batch with 'data' and "
                        f"{label_key!r} ({type(error).__name__}: {error})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise SpecError(f"data.root: {path} holds data {data.dtype} {list(data.shape)} and "
                        f"{len(labels)} labels; a CIFAR batch holds uint8 [n, 3072] and n labels")
    return data.reshape(-1, *SHAPE), labels


def read_split(root: Path, layout: Layout, files: tuple[str, ...], expected: int
               ) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(root / layout.folder / f, layout.label_key) for f in files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if len(x) != expected:
        raise SpecError(f"data.root: {root / layout.folder} holds {len(x)} images in "
                        f"{', '.join(files)}; the {layout.name} release has {expected}")
    if len(y) and (y.min() < 0 or y.max() >= layout.num_classes):
        raise SpecError(f"data.root: {root / layout.folder} has labels outside 0..{layout.num_classes - 1}")
    return x, y


def cifar_test_set(root: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """The normalised test images (float32 [n, 3, 32, 32]) and labels, in file order."""
    x, y = read_split(root, layout, layout.test_files, layout.n_test)
    return normalise(x, layout.mean, layout.std, channels_last=False), y


class _Cifar:
    name: str  # its entry in LAYOUTS, looked up at each call

    @classmethod
    def info(cls, spec: DataSpec) -> DataInfo:
        layout = LAYOUTS[cls.name]
        no_test_size(spec, layout.name, layout.n_test)
        checked_root(spec, layout)  # the sizes are the release's: nothing is read
        return DataInfo(SHAPE, layout.num_classes, layout.n_train, layout.n_test)

    @classmethod
    def load(cls, spec: DataSpec, n_pool: int):
        layout = LAYOUTS[cls.name]
        root = checked_root(spec, layout)
        x, y = read_split(root, layout, layout.train_files, layout.n_train)
        order, y_pool = fixed_stream(np.arange(len(y)), y, spec.seed)  # order first: one uint8 gather
        x_pool = normalise(x[order[:n_pool]], layout.mean, layout.std, channels_last=False)
        x_test, y_test = cifar_test_set(root, layout)
        return x_pool, y_pool[:n_pool], x_test, y_test


@DATASETS.register("cifar10")
class Cifar10(_Cifar):
    name = "cifar10"


@DATASETS.register("cifar100")
class Cifar100(_Cifar):
    name = "cifar100"
