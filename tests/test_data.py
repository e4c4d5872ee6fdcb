import random
import subprocess
import sys
import time

import numpy as np
import pytest

from kdscale import data
from kdscale.config import DataSpec
from kdscale.data import mnist1d
from kdscale.errors import SpecError


@pytest.fixture(scope="module")
def pool():
    return data.load(DataSpec(n_teacher=4000), 12000)


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_mnist1d_shapes_and_normalisation(pool):
    assert pool.x_pool.shape == (12000, 1, 40) and pool.x_pool.dtype == np.float32
    assert pool.x_test.shape == (2000, 1, 40) and pool.y_test.dtype == np.int64
    assert pool.info.num_classes == 10 and pool.info.pool_size is None
    assert abs(pool.x_pool.mean()) < 0.02 and abs(pool.x_pool.std() - 1) < 0.02
    assert np.bincount(pool.y_pool[:4000]).tolist() == [400] * 10


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_mnist1d_pool_is_a_prefix_of_a_larger_pool_and_cached(pool):
    start = time.perf_counter()
    small = data.load(DataSpec(n_teacher=4000), 4000)
    assert time.perf_counter() - start < 0.5  # chunks come from the disk cache
    np.testing.assert_array_equal(small.x_pool, pool.x_pool[:4000])
    np.testing.assert_array_equal(small.x_test, pool.x_test)


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_mnist1d_train_and_test_do_not_overlap(pool):
    train_rows = {row.tobytes() for row in pool.x_pool}
    assert not any(row.tobytes() in train_rows for row in pool.x_test)


def test_mnist1d_generation_args_are_the_packages_defaults():
    from mnist1d.data import get_dataset_args

    package = get_dataset_args(as_dict=True)
    for own in ("url", "seed", "num_samples", "train_split"):  # kdscale sets these itself
        package.pop(own)
    assert mnist1d._generation_args() == package
    assert mnist1d._generation_args(DataSpec(options=(("templates", "reversed"),))) == package | {
        "templates": "reversed"}


@pytest.mark.slow  # a fresh interpreter and a generated chunk: about 3 s
def test_mnist1d_cached_load_does_not_import_the_generator(tmp_path):
    """A cached pool loads without `mnist1d.data` (scipy, matplotlib: 1-2 s of a worker's start)."""
    code = ("import sys; from kdscale import data; from kdscale.config import DataSpec; "
            "data.load(DataSpec(n_teacher=100), 100); print('mnist1d.data' in sys.modules)")
    env = {"KDSCALE_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
           for _ in range(2)]
    assert [r.stdout.split() for r in run] == [["True"], ["False"]]  # generated, then read from the cache


@pytest.mark.slow  # about a second or more: the fast tier stays near a minute
def test_generation_leaves_global_rngs_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSCALE_CACHE", str(tmp_path))
    np.random.seed(5)
    random.seed(5)
    expected_np, expected_py = np.random.rand(), random.random()
    np.random.seed(5)
    random.seed(5)
    mnist1d._chunk(mnist1d._generation_args(), 3, 0)
    assert np.random.rand() == expected_np and random.random() == expected_py


@pytest.mark.slow  # over 3 s: the fast tier stays under a minute
def test_different_data_seeds_give_different_pools():
    a = data.load(DataSpec(seed=0, n_teacher=100), 100).x_pool
    b = data.load(DataSpec(seed=1, n_teacher=100), 100).x_pool
    assert not np.allclose(a, b)


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_student_subsets_are_nested_stratified_and_inside_the_teacher(pool):
    n = 4000
    previous = np.array([], dtype=int)
    for kappa in (0.02, 0.05, 0.1, 0.5, 1.0, 2.0, 2.5):
        m = int(round(kappa * n))
        idx = data.student_indices(pool.y_pool, n, m, seed=3)
        assert len(idx) == m and len(np.unique(idx)) == m
        np.testing.assert_array_equal(idx[:len(previous)], previous)  # nested across kappa
        counts = np.bincount(pool.y_pool[idx], minlength=10)
        assert counts.max() - counts.min() <= 1 if m <= n else True
        if kappa <= 1:
            assert idx.max() < n  # inside the teacher's samples
        else:
            assert set(range(n)) <= set(idx.tolist()) and idx.max() >= n
        previous = idx
    # at kappa = 0.02 (80 samples) every class is present, 8 each
    assert np.bincount(pool.y_pool[data.student_indices(pool.y_pool, n, 80, seed=0)]).tolist() == [8] * 10


@pytest.mark.slow  # its fixture takes 6-10 s: the fast tier stays near a minute
def test_seeds_draw_different_subsets(pool):
    a = data.student_indices(pool.y_pool, 4000, 400, seed=0)
    b = data.student_indices(pool.y_pool, 4000, 400, seed=1)
    assert len(set(a) & set(b)) < 200


def test_stratified_order_prefixes_keep_class_shares():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    order = data.stratified_order(labels, data.rng_for(0))
    for m in (10, 20, 50):
        counts = np.bincount(labels[order[:m]], minlength=3)
        assert np.all(np.abs(counts - m * np.array([0.7, 0.2, 0.1])) <= 1)


def test_digits_is_real_and_fixed():
    digits = data.load(DataSpec(name="digits", n_teacher=500), 10_000)
    assert digits.x_pool.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert 0.0 <= digits.x_pool.min() and digits.x_pool.max() <= 1.0
    assert data.max_kappa(DataSpec(name="digits", n_teacher=500)) == pytest.approx(1437 / 500)


@pytest.mark.parametrize("spec, kappas, message", [
    (DataSpec(name="digits", n_teacher=500), [3.0], "maximum kappa is 2.874"),
    (DataSpec(name="digits", n_teacher=5000), [], "data.n_teacher=5000"),
    (DataSpec(name="cifar7"), [], "unknown 'cifar7'; known: a5, caltech101, cifar10, cifar100, cifar5m, cifar5m-heldout, copy, digits, dtd, "
     "fgvc_aircraft, flowers102, food101, imagefolder, mnist1d, modsum, modsum-brackets, s3, s5, stanford_cars"),
    (DataSpec(name="digits", n_test=100), [], "data.n_test"),
])
def test_bad_data_requests_are_clear(spec, kappas, message):
    with pytest.raises(SpecError, match=message):
        data.check(spec, kappas)
