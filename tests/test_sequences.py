"""The sequence tasks (kdscale/data/sequences.py, groups.py) against answers written out by hand."""
import numpy as np
import pytest

from kdscale import data
from kdscale.config import DataSpec
from kdscale.data import groups, sequences
from kdscale.errors import SpecError
from kdscale.schema import IGNORE_LABEL


def compose(p, q):
    """p.q: p first, then q, written out as the module doc defines it."""
    return tuple(q[p[i]] for i in range(len(p)))


def index(group, perm):
    return [tuple(e) for e in groups.elements(group)].index(tuple(perm))


def test_s5_word_by_hand():
    # x1 = (1 2 0 3 4) a 3-cycle, x2 = (0 1 2 4 3) swaps 3 and 4, x3 = (4 3 2 1 0) reverses.
    # x1.x2: 0 -> 1 -> 1, 1 -> 2 -> 2, 2 -> 0 -> 0, 3 -> 3 -> 4, 4 -> 4 -> 3     = (1 2 0 4 3)
    # (x1.x2).x3: 0 -> 1 -> 3, 1 -> 2 -> 2, 2 -> 0 -> 4, 3 -> 4 -> 0, 4 -> 3 -> 1 = (3 2 4 0 1)
    words = [(1, 2, 0, 3, 4), (0, 1, 2, 4, 3), (4, 3, 2, 1, 0)]
    products = [(1, 2, 0, 3, 4), (1, 2, 0, 4, 3), (3, 2, 4, 0, 1)]
    # lexicographic ranks (Lehmer code): 1*4! + 1*3! = 30; 1*1! = 1; 119; 30 + 1 = 31; 3*4! + 2*3! + 2*2! = 88
    assert [index("s5", w) for w in words] == [30, 1, 119] and [index("s5", p) for p in products] == [30, 31, 88]
    assert groups.running_products("s5", np.array([[30, 1, 119]])).tolist() == [[30, 31, 88]]
    assert compose(words[0], words[1]) == products[1]
    assert compose(words[1], words[2]) == (4, 3, 2, 0, 1) != compose(words[2], words[1]) == (3, 4, 2, 1, 0)


def test_a5_word_by_hand():
    # three even permutations: two 3-cycles and a double transposition
    words = [(1, 2, 0, 3, 4), (0, 1, 3, 4, 2), (1, 0, 3, 2, 4)]
    # x1.x2: 0 -> 1 -> 1, 1 -> 2 -> 3, 2 -> 0 -> 0, 3 -> 3 -> 4, 4 -> 4 -> 2      = (1 3 0 4 2)
    # (x1.x2).x3: 0 -> 1 -> 0, 1 -> 3 -> 2, 2 -> 0 -> 1, 3 -> 4 -> 4, 4 -> 2 -> 3  = (0 2 1 4 3)
    products = [(1, 2, 0, 3, 4), (1, 3, 0, 4, 2), (0, 2, 1, 4, 3)]
    assert len(groups.elements("a5")) == 60 and all(groups.parity(p) == 0 for p in groups.elements("a5"))
    assert groups.running_products("a5", np.array([[index("a5", w) for w in words]])).tolist() == \
        [[index("a5", p) for p in products]]
    assert tuple(groups.elements("a5")[0]) == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("group", ["s5", "a5", "s3"])
def test_generated_group_labels_are_the_running_products(group):
    loaded = data.load(DataSpec(group, n_teacher=20, n_test=6), 20)
    perms = groups.elements(group)
    for x, y in zip(loaded.x_pool[:3], loaded.y_pool[:3]):
        state = tuple(range(perms.shape[1]))
        for token, label in zip(x, y):  # token = element index + 1
            state = compose(state, tuple(perms[token - 1]))
            assert tuple(perms[label]) == state
    assert loaded.info.num_classes == len(perms) and loaded.info.vocab_size == len(perms) + 1


def test_modsum_and_brackets_by_hand():
    # p = 5: numbers are tokens 1..5, then + 6, - 7, ( 8, ) 9
    # "3 - ( 4 + 2 ) - 1": 3, 3, 3, 3-4 = 4, 4, 3-4-2 = 2, 2, 2, 2-1 = 1
    tokens = np.array([[4, 7, 8, 5, 6, 3, 9, 7, 2]])
    assert sequences.bracket_values(tokens, 5).tolist() == [[3, 3, 3, 4, 4, 2, 2, 2, 1]]
    # nested: "1 - ( 2 - ( 3 + 4" = 1 - 2 + 3 + 4 = 6 = 1 mod 5
    nested = np.array([[2, 7, 8, 3, 7, 8, 4, 6, 5]])
    assert sequences.bracket_values(nested, 5).tolist() == [[1, 1, 1, 4, 4, 4, 2, 2, 1]]
    loaded = data.load(DataSpec("modsum", n_teacher=10, n_test=3, options=(("p", 7),)), 10)
    assert (loaded.y_pool == np.cumsum(loaded.x_pool - 1, axis=1) % 7).all()
    brackets = data.load(DataSpec("modsum-brackets", n_teacher=50, n_test=3), 50)
    x = brackets.x_pool
    depth = np.cumsum((x == 8).astype(int) - (x == 9), axis=1)
    assert depth.min() >= 0 and (x == 8).any() and (brackets.y_pool == sequences.bracket_values(x, 5)).all()


def test_copy_layout():
    loaded = data.load(DataSpec("copy", n_teacher=30, n_test=9, options=(("length", 4), ("symbols", 3))), 30)
    assert loaded.info.input_shape == (9,) and loaded.info.num_classes == 3 and loaded.info.vocab_size == 6
    for x, y in zip(loaded.x_pool, loaded.y_pool):
        n = int((y != IGNORE_LABEL).sum())  # a string of n symbols, the delimiter 4, n queries 5, padding 0
        assert 1 <= n <= 4 and x[n] == 4 and (x[n + 1:2 * n + 1] == 5).all() and (x[2 * n + 1:] == 0).all()
        assert (y[n + 1:2 * n + 1] == x[:n] - 1).all()


def test_test_set_holds_each_length_and_a_pool_is_a_prefix_of_a_larger_one():
    spec = DataSpec("a5", n_teacher=40, n_test=7, options=(("length", 8), ("test_length", 24)))
    assert sequences.test_lengths(spec) == [8, 16, 24]
    small, large = data.load(spec, 40), data.load(spec, 4100)
    assert (large.x_pool[:40] == small.x_pool).all() and (large.x_test == small.x_test).all()
    lengths = (small.y_test != IGNORE_LABEL).sum(1)
    assert small.x_test.shape == (7, 24) and sorted(lengths.tolist()) == [8, 8, 8, 16, 16, 24, 24]
    assert ((small.x_test == 0) == (small.y_test == IGNORE_LABEL)).all()  # padding and only padding unlabelled


@pytest.mark.parametrize("options, message", [
    ((("depth", 3),), "a5 takes no option 'depth'"),
    ((("length", 1),), "data.options.length=1 is invalid"),
    ((("length", 16), ("test_length", 8)), "test_length=8 is invalid: must be >= length"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(SpecError, match=message) as error:
        data.info(DataSpec("a5", options=options))
    assert "\n" not in str(error.value)


def test_options_hash_only_when_given():
    from kdscale.config import spec_id

    assert spec_id(DataSpec()) == "a1f90cf612d0f397"  # the id MNIST-1D specs had before options existed
    assert spec_id(DataSpec("a5")) != spec_id(DataSpec("a5", options=(("length", 16),)))
