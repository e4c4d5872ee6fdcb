"""Generated data sets as a stream of cached chunks: any number of samples, a pool of any size a
prefix of a larger one, the second load a read from disk.

A generator makes one chunk of samples from an integer seed; chunk `index` of a stream is made
with a seed derived from (data seed, index) and cached under
`<cache>/<family>/<key>/chunk_<index>.npz`, the key a hash of the generation arguments and the data
seed. MNIST-1D (kdscale/data/mnist1d.py) and the sequence tasks (kdscale/data/sequences.py) use it.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import numpy as np

from kdscale.fileio import atomic_path, cache_dir

Chunk = tuple[np.ndarray, np.ndarray]


def chunk(family: str, args: dict, data_seed: int, index: int, make: Callable[[int], Chunk]) -> Chunk:
    """Chunk `index` of the stream of (family, args, data seed): from the cache, or `make(seed)`."""
    key = hashlib.sha256(json.dumps({"args": args, "seed": data_seed}, sort_keys=True).encode())
    path = cache_dir() / family / key.hexdigest()[:16] / f"chunk_{index:07d}.npz"
    if path.exists():
        try:
            with np.load(path) as cached:
                return cached["x"], cached["y"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is made again below
    x, y = make((data_seed * 7_919_993 + index) % (2**32))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=x, y=y)
    return x, y


def stream(family: str, args: dict, data_seed: int, first_chunk: int, n: int, size: int,
           make: Callable[[int], Chunk]) -> Chunk:
    """The first n samples of the stream that starts at chunk `first_chunk`, chunks of `size` samples."""
    chunks = [chunk(family, args, data_seed, first_chunk + i, make) for i in range(-(-n // size))]
    return np.concatenate([c[0] for c in chunks])[:n], np.concatenate([c[1] for c in chunks])[:n]
