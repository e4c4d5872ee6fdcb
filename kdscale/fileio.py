"""Where kdscale keeps its cache, and atomic writes: a crash never leaves a half-written file."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def cache_dir() -> Path:
    """Cached data and teachers: $KDSCALE_CACHE, else ~/.cache/kdscale. A path that exists and is
    not a directory is one SpecError naming it, before anything is written."""
    from kdscale.errors import SpecError

    given = os.environ.get("KDSCALE_CACHE")
    path = Path(given or Path.home() / ".cache" / "kdscale")
    if path.exists() and not path.is_dir():
        where = "KDSCALE_CACHE" if given else "the default cache"
        raise SpecError(f"{where}={path} is not a directory: point it at a directory (or remove the file)")
    return path


def sha256_file(path: str | Path) -> str:
    """The file's sha256 as 64 hex digits, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename, or, if
    `exclusive`, is linked into place only where `path` does not exist yet (a file another process
    put there first is kept, and the temporary one removed).

    On an exception the temporary file is removed and `path` is left as it was; an OSError (a full
    disk, a directory that cannot be made) becomes one EnvironmentFault naming `path`.
    """
    from kdscale.errors import EnvironmentFault, os_reason

    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield Path(tmp)
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(error, OSError):
            raise EnvironmentFault(f"cache: writing {path} failed: {os_reason(error)}") from error
        raise


def check_weights(weights: str | None, digest: str, untrained: bool) -> str:
    """A teacher's pretrained weights file (TeacherSpec.weights) and its sha256: the digest given, or
    read from the file when left empty; a file that cannot be read, or a digest without a file, or
    weights with an untrained teacher, fail as one SpecError line naming the file."""
    from kdscale.errors import fail as _fail

    if weights is None:
        if digest:
            _fail("teacher", "weights_sha256", digest, "needs teacher.weights, the file it hashes")
        return digest
    if untrained:
        _fail("teacher", "weights", weights, "cannot be given with untrained: pick one")
    if digest:
        return digest
    try:
        return sha256_file(weights)
    except OSError as error:
        _fail("teacher", "weights", weights, f"cannot be read ({error.strerror or error})")
