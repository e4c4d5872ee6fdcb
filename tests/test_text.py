"""The `text` data set (kdscale/data/text.py): the shipped corpus, a user's text and nanoGPT token
files, their faults in one line, and perplexity in a trial's row."""
import math

import numpy as np
import pytest

from kdscale import data
from kdscale.config import DataSpec
from kdscale.data import text
from kdscale.errors import SpecError


def spec(root=None, n=20, **options):
    """A user's corpus at root."""
    return DataSpec("text", n_teacher=n, root=None if root is None else str(root),
                    options=tuple((options | {"corpus": "file"}).items()))


def test_the_kjv_corpus_ships_offline_as_characters():
    corpus = text.kjv_text()
    assert corpus.startswith("In the beginning God created the heavens and the earth.\nAnd the earth was")
    assert 4_000_000 < len(corpus) < 4_400_000 and "\n\n" in corpus  # a blank line between books
    info = data.info(DataSpec("text", n_teacher=2000, options=(("length", 32),)))
    assert info.vocab_size == info.num_classes == len(set(corpus)) == 73 and info.next_token
    assert info.input_shape == (32,) and info.n_test == 500
    assert info.pool_size == len(corpus) // 33 - len(corpus) // 33 // 10  # nine windows in ten
    loaded = data.load(DataSpec("text", n_teacher=2000, options=(("length", 32),)), 3000)
    alphabet = sorted(set(corpus))
    window = "".join(alphabet[t] for t in loaded.x_pool[0]) + alphabet[loaded.y_pool[0, -1]]
    assert window in corpus and len(window) == 33  # a window of the corpus, labels its next characters
    assert (loaded.x_pool[:, 1:] == loaded.y_pool[:, :-1]).all()


def test_windows_split_order_and_nesting(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefghij" * 40)  # 400 characters: 100 windows of 4 at length 3
    pool, test, vocab = text.splits(spec(path, length=3))
    assert vocab == 10 and len(pool) == 90 and len(test) == 10
    every = text.windows(np.arange(400), 3)
    assert (every[9::10] == np.arange(400).reshape(100, 4)[9::10]).all()
    rows = lambda a: {tuple(r) for r in a}
    # test windows are the corpus's 10th, 20th, ... window (tokens 36..39, ...), in corpus order
    loaded = data.load(spec(path, n=30, length=3), 60)
    assert loaded.x_test.shape == (10, 3) and (loaded.x_test[0] == [6, 7, 8]).all() and loaded.y_test[0, -1] == 9
    assert rows(np.c_[loaded.x_pool, loaded.y_pool[:, -1]]) <= rows(pool)
    again = data.load(spec(path, n=30, length=3), 90)
    assert (again.x_pool[:60] == loaded.x_pool).all()  # a larger pool extends the smaller: same stream
    other = data.load(DataSpec("text", n_teacher=30, seed=1, root=str(path), options=(("length", 3), ("corpus", "file"))),
                      60)
    assert not (other.x_pool == loaded.x_pool).all()  # the data seed orders the pool
    assert data.info(spec(path, length=3)).pool_size == 90 and data.max_kappa(spec(path, n=30, length=3)) == 3


def test_a_user_corpus_as_bytes_and_as_nanogpt_token_files(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("é" * 50 + "ab" * 50)  # 200 UTF-8 bytes
    pool, test, vocab = text.splits(spec(path, length=4, tokens="byte"))
    assert vocab == 256 and len(pool) + len(test) == 40 and set(np.unique(np.r_[pool.ravel(), test.ravel()])) == {
        0xC3, 0xA9, ord("a"), ord("b")}
    assert text.splits(spec(path, length=4))[2] == 3  # characters: é, a, b
    tokens = (np.arange(1000) * 7 % 500).astype(np.uint16)
    tokens.tofile(tmp_path / "tokens.bin")  # nanoGPT's prepare.py: uint16 ids, raw
    pool, test, vocab = text.splits(spec(tmp_path / "tokens.bin", length=9))
    assert vocab == 500 and len(pool) == 90 and (test[0] == tokens[90:100]).all()
    assert text.splits(spec(tmp_path / "tokens.bin", length=9, vocab=50257))[2] == 50257
    split = tmp_path / "split"
    split.mkdir()
    tokens[:600].tofile(split / "train.bin")
    tokens[600:].tofile(split / "val.bin")
    pool, test, vocab = text.splits(spec(split, length=9))
    assert len(pool) == 60 and len(test) == 40 and (test[0] == tokens[600:610]).all()  # val is the test set
    assert data.info(spec(split, length=9)).n_test == 40


@pytest.mark.parametrize("make, options, message", [
    (lambda d: None, {}, "missing or not a file"),
    (lambda d: (d / "c.bin").write_bytes(b"\x01\x00\x02"), {}, "3 bytes is not a whole number of uint16 tokens"),
    (lambda d: (d / "c.bin").write_bytes(np.arange(100, dtype=np.uint16).tobytes()), {"vocab": 50},
     "vocab=50 is invalid: .* holds token 99"),
    (lambda d: (d / "c.bin").write_bytes(b"\xff\xfe" * 100), {"tokens": "char"}, None),  # .bin: tokens, not text
    (lambda d: (d / "c.bin").write_bytes(b"\x01\x00" * 3), {}, "makes 0 training and 0 test windows"),
])
def test_a_missing_or_damaged_token_file_is_one_line(tmp_path, make, options, message):
    make(tmp_path)
    target = spec(tmp_path / "c.bin", length=4, **options)
    if message is None:
        assert text.splits(target)[2] == 0xFEFF + 1
        return
    with pytest.raises(SpecError, match=message) as error:
        text.splits(target)
    assert "\n" not in str(error.value)


def test_text_faults_and_bad_options_are_one_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ".encode("latin-1") * 20)
    cases = [(spec(tmp_path / "latin1.txt", length=4), "not UTF-8 text \\(byte 3\\): use tokens=byte"),
             (spec(None), "data.root is unset"),
             (spec(tmp_path, length=4), "holds neither train.txt and val.txt nor train.bin and val.bin"),
             (DataSpec("text", options=(("corpus", "books"),)), "corpus='books' is invalid: must be one of kjv, file"),
             (DataSpec("text", options=(("tokens", "bpe"),)), "tokens='bpe' is invalid"),
             (DataSpec("text", options=(("length", 0),)), "length=0 is invalid"),
             (DataSpec("text", options=(("size", 3),)), "text takes no option 'size'"),
             (DataSpec("text", n_test=10**6), "n_test=1000000 is invalid: the text corpus has")]
    (tmp_path / "train.txt").write_text("abc" * 30)
    cases.append((spec(tmp_path, length=4), "found train.txt in .* but not val.txt"))
    for target, message in cases[:2] + cases[3:]:
        with pytest.raises(SpecError, match=message):
            data.info(target)
    (tmp_path / "train.txt").unlink()
    with pytest.raises(SpecError, match=cases[2][1]):
        data.info(cases[2][0])
    with pytest.raises(SpecError, match="maximum kappa"):
        data.check(spec(tmp_path / "latin1.txt", n=2, length=4, tokens="byte"), kappas=(100,))


def test_a_rewritten_file_is_read_again(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("ab" * 100)
    assert text.splits(spec(path, length=4))[2] == 2
    path.write_text("abc" * 100)
    assert text.splits(spec(path, length=4))[2] == 3


@pytest.mark.slow
def test_a_trial_row_has_perplexity(tmp_path):
    from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec
    from kdscale.trial import run_trial

    path = tmp_path / "c.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    data_spec = spec(path, n=40, length=8)
    recipe = RecipeSpec(optimizer="adamw", lr=3e-3, steps=20, batch_size=8)
    teacher = TeacherSpec(data_spec, ModelSpec.parse("gpt:width=16,depth=1,heads=2"), recipe)
    trial = TrialSpec(teacher, ModelSpec.parse("gpt:width=8,depth=1,heads=2"), 0.5, ObjectiveSpec("kd", tau=2.0),
                      recipe, seed=0)
    row = run_trial(trial, device="cpu", cache_root=tmp_path / "cache").row
    assert row["status"] == "ok" and row["test_ppl"] == pytest.approx(math.exp(row["test_loss"]))
    assert 1 < row["test_ppl"] < 100 and 1 < row["teacher_test_ppl"] < 100
