"""What the real image data sets share: where their files must be, decoding, normalisation, caching.

None of them downloads anything. The user points `DataSpec.root` (CLI `--data-root`) at a
directory that holds the files in torchvision's layout; a file that is not there is one SpecError
line naming the path expected and where to get it.

Image files (the transfer sets, `imagefolder`) are decoded once with PIL as torchvision's default
loader does (RGB), resized so the shorter side is SIZE and centre-cropped to SIZE x SIZE (what
`transforms.Resize(SIZE)` then `transforms.CenterCrop(SIZE)` do), and the uint8 result is cached
on disk keyed by the files' paths, sizes and modification times: Food-101's 101,000 JPEGs take
minutes to decode, and every trial loads its data again. Arrays are returned as float32 and
normalised per channel; memory is 4 * 3 * SIZE^2 bytes a sample (49,152 at 64 x 64).
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from kdscale.config import DataSpec
from kdscale.data import fixed_stream
from kdscale.errors import SpecError
from kdscale.fileio import atomic_path, cache_dir

# Side of the square images the image-file data sets are resized and centre-cropped to. The
# DataSpec has no per-data-set options yet (they would come with issue 8's recipes); 64 keeps a
# few thousand images in memory and suits the CIFAR-style 3x3 stems. Changing it changes what
# cached teachers were trained on: bump config.SCHEMA_VERSION with it.
SIZE = 64

# torchvision's ImageNet statistics (the `transforms.Normalize` of its pretrained weights), the
# usual choice for ImageNet-style and transfer data sets.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

NORMALISE_CHUNK = 8192  # samples converted to float32 at a time, to bound the transient memory


def data_root(spec: DataSpec, name: str, layout: str, source: str) -> Path:
    """The directory `spec.root`, or a SpecError saying that this data set needs one."""
    if not spec.root:
        raise SpecError(f"data.root is unset: {name} reads {layout} under a directory given as "
                        f"DataSpec(root=DIR) or --data-root DIR ({source})")
    return Path(spec.root).expanduser()


def require(root: Path, relative: Sequence[str], name: str, layout: str, source: str) -> None:
    """One SpecError line for the first of `relative` (paths under root) that does not exist."""
    for rel in relative:
        path = root / rel
        if not path.exists():
            raise SpecError(f"data.root: {name} expects {layout.format(root=root)} ({source}); "
                            f"missing: {path}")


def no_test_size(spec: DataSpec, name: str, n_test: int) -> None:
    if spec.n_test is not None:
        raise SpecError(f"data.n_test={spec.n_test} is invalid: {name} has a fixed test split of "
                        f"{n_test}; leave it unset")


def normalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float], channels_last: bool,
              out: np.ndarray | None = None) -> np.ndarray:
    """uint8 images [n, H, W, 3] (or [n, 3, H, W]) -> float32 [n, 3, H, W], (x / 255 - mean) / std.

    Converted in chunks so that only the float32 result is ever whole in memory.
    """
    n = len(x)
    shape = (n, x.shape[3], x.shape[1], x.shape[2]) if channels_last else x.shape
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(1, -1, 1, 1)
    shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(1, -1, 1, 1)
    for start in range(0, n, NORMALISE_CHUNK):
        chunk = x[start:start + NORMALISE_CHUNK]
        if channels_last:
            chunk = chunk.transpose(0, 3, 1, 2)
        np.multiply(chunk, scale, out=out[start:start + NORMALISE_CHUNK], casting="unsafe")
        out[start:start + NORMALISE_CHUNK] -= shift
    return out


def decode(path: str | Path, size: int = SIZE) -> np.ndarray:
    """One image file as uint8 [size, size, 3]: torchvision's loader, Resize(size), CenterCrop(size)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as image:
        image = image.convert("RGB")
    image = TF.center_crop(TF.resize(image, size), size)
    return np.asarray(image, dtype=np.uint8)


def decode_all(paths: Sequence[str], size: int = SIZE) -> np.ndarray:
    """uint8 [n, size, size, 3] for the files, decoded on all cores (PIL releases the GIL)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        try:
            out[i] = decode(paths[i], size)
        except OSError as error:  # PIL's UnidentifiedImageError is an OSError
            raise SpecError(f"data.root: cannot read image {paths[i]}: {error}") from None

    with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(paths))))
    return out


def cached_images(name: str, samples: Sequence[tuple[str, int]], size: int = SIZE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [n, size, size, 3], int64 [n]) for (path, label) pairs, decoded once and cached.

    The cache key covers each file's absolute path, label, size and modification time, so an
    edited or replaced file is decoded again.
    """
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    fingerprint = hashlib.sha256()
    fingerprint.update(json.dumps({"name": name, "size": size}).encode())
    for path, label in samples:
        try:
            stat = os.stat(path)
        except OSError:
            raise SpecError(f"data.root: the {name} file list names {path}, which cannot be read") from None
        fingerprint.update(f"{os.path.abspath(path)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    cached = cache_dir() / "images" / name / f"{fingerprint.hexdigest()[:16]}.npz"
    if cached.exists():
        try:
            with np.load(cached) as saved:
                if saved["x"].shape == (len(samples), size, size, 3):
                    return saved["x"], labels
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is decoded again below
    x = decode_all([path for path, _ in samples], size)
    with atomic_path(cached) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x)
    return x, labels


def load_image_files(name: str, pool_samples: Sequence[tuple[str, int]],
                     test_samples: Sequence[tuple[str, int]], seed: int, n_pool: int,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """`load`'s four arrays for a fixed split given as (path, label) pairs.

    The pool is the training files in `fixed_stream`'s seeded, class-stratified order, cut to
    n_pool; the test set keeps the given order.
    """
    x_all, y_all = cached_images(name, pool_samples)
    order, y_pool = fixed_stream(np.arange(len(y_all)), y_all, seed)  # order first: one uint8 gather
    x_pool = normalise(x_all[order[:n_pool]], mean, std, channels_last=True)
    x_test, y_test = cached_images(name, test_samples)
    return x_pool, y_pool[:n_pool], normalise(x_test, mean, std, channels_last=True), y_test
