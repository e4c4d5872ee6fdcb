"""Representation metrics against their definitions: eq. 4 with explicit kernels, HSIC_1 as a
U-statistic, closed-form NTKs of linear models, constructed features with known answers."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from kdscale import models
from kdscale.config import ModelSpec
from kdscale.representations import (empirical_ntk, feature_alignment, feature_spectrum, features_of, hsic, hsic1,
                                     kernel_cka, linear_cka, linear_probe, minibatch_cka, ntk_alignment)


@pytest.fixture(autouse=True)
def one_thread():
    # Small matmuls on a shared 2-core machine: a second torch thread spin-waits more than it helps
    # (a 300-sample probe took 0.005 s on one thread and up to 1.4 s on two under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rng(seed=0):
    return np.random.default_rng(seed)


def eq4_cka(x, y):
    """Eq. 4 of the paper written out: explicit kernels and centring matrix H, in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = x @ x.T, y @ y.T

    def hsic_eq4(a, b):
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic_eq4(k, l) / math.sqrt(hsic_eq4(k, k) * hsic_eq4(l, l)), hsic_eq4(k, l)


def random_orthogonal(d, seed):
    q, r = np.linalg.qr(rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def correlated(n, seed, noise=1.0):
    """x [n, 10] and y [n, 6] that share a linear signal plus independent noise."""
    g = rng(seed)
    x = g.standard_normal((n, 10))
    y = x @ g.standard_normal((10, 6)) + noise * 3.0 * g.standard_normal((n, 6))
    return x, y


# ---- CKA and HSIC -------------------------------------------------------------------------------

@pytest.mark.parametrize("n, dx, dy", [(80, 7, 12), (15, 30, 40)])  # n > d (feature form) and n < d (kernel form)
def test_linear_cka_equals_eq4_with_explicit_kernels(n, dx, dy):
    g = rng(n)
    x = g.standard_normal((n, dx)) + 2.0  # offsets: centring must matter
    y = np.tanh(x[:, :1] + g.standard_normal((n, dy))) * 5.0
    expected, expected_hsic = eq4_cka(x, y)
    assert 0.05 < expected < 0.95
    assert linear_cka(x, y) == pytest.approx(expected, abs=1e-10)
    assert linear_cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(expected, abs=1e-6)
    assert kernel_cka(x @ x.T, y @ y.T) == pytest.approx(expected, abs=1e-10)
    assert hsic(x @ x.T, y @ y.T) == pytest.approx(expected_hsic, rel=1e-10)


def test_linear_cka_invariances():
    x, y = correlated(300, 1)
    base = linear_cka(x, y)
    assert 0.2 < base < 0.9
    assert linear_cka(x @ random_orthogonal(10, 2), y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, y @ random_orthogonal(6, 3)) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, abs=1e-10)  # translation: centred away
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ random_orthogonal(10, 4) * 2.0) == pytest.approx(1.0, abs=1e-12)
    # not invariant to an anisotropic linear map (the invariance checks above are not vacuous)
    assert abs(linear_cka(x * np.arange(1, 11) ** 2, y) - base) > 0.01


def test_linear_cka_of_unrelated_features_is_near_zero():
    # E[CKA] ~ sqrt(d_x d_y) / n = 10 / 2000 = 0.005 for independent Gaussian features
    g = rng(5)
    value = linear_cka(g.standard_normal((2000, 10)), g.standard_normal((2000, 10)))
    assert 0 <= value < 0.02


def test_unit_rows_is_cka_of_row_normalised_features():
    x, y = correlated(50, 6)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    assert linear_cka(x, y, unit_rows=True) == pytest.approx(eq4_cka(xn, yn)[0], abs=1e-10)


def test_cka_of_constant_features_is_nan_and_bad_shapes_fail():
    x = rng(0).standard_normal((20, 3))
    assert math.isnan(linear_cka(x, np.ones((20, 4))))
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:10])
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        linear_cka(x[:, 0], x[:, 0])


def hsic1_as_u_statistic(k, l):
    """HSIC as the U-statistic of Song et al. (2012), Theorem 2: the mean over ordered 4-tuples of
    distinct samples of h = (1/24) sum over their orderings (t, u, v, w) of
    K_tu L_tu + K_tu L_vw - 2 K_tu L_tv."""
    n = len(k)
    total, count = 0.0, 0
    for quad in itertools.combinations(range(n), 4):
        h = sum(k[t, u] * l[t, u] + k[t, u] * l[v, w] - 2 * k[t, u] * l[t, v]
                for t, u, v, w in itertools.permutations(quad)) / 24
        total += h
        count += 1
    return total / count


def test_hsic1_equals_the_u_statistic_definition():
    g = rng(7)
    x, y = g.standard_normal((8, 3)), g.standard_normal((8, 2))
    y[:, 0] += x[:, 0]
    k, l = x @ x.T, y @ y.T
    assert hsic1(k, l) == pytest.approx(hsic1_as_u_statistic(k, l), rel=1e-10)
    with pytest.raises(ValueError, match="at least 4"):
        hsic1(k[:3, :3], l[:3, :3])


def test_hsic1_on_random_batches_averages_to_the_full_data_hsic1():
    # A U-statistic's mean over all size-b subsets equals the full-data U-statistic, so the mean of
    # HSIC_1 over random batches converges to HSIC_1 of all n; the biased eq. 4 HSIC does not.
    x, y = correlated(60, 8)
    k, l = x @ x.T, y @ y.T
    full = hsic1(k, l)
    g = rng(9)
    unbiased, biased = [], []
    for _ in range(2000):
        idx = g.choice(60, size=10, replace=False)
        kb, lb = k[np.ix_(idx, idx)], l[np.ix_(idx, idx)]
        unbiased.append(hsic1(kb, lb))
        biased.append(hsic(kb, lb))
    se = np.std(unbiased) / math.sqrt(len(unbiased))
    assert abs(np.mean(unbiased) - full) < 4 * se
    assert abs(np.mean(biased) - full) > 8 * se  # the bias the minibatch estimator avoids


def test_minibatch_cka_is_close_to_full_cka_on_large_n():
    x, y = correlated(6000, 10)
    full = linear_cka(x, y)
    assert 0.2 < full < 0.9
    assert minibatch_cka(x, y, batch_size=500) == pytest.approx(full, abs=0.02)
    assert minibatch_cka(x, x, batch_size=256, seed=None) == pytest.approx(1.0, abs=1e-12)
    assert minibatch_cka(x, y, 500, seed=1) != minibatch_cka(x, y, 500, seed=2)
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_cka(x, y, batch_size=3)


def test_minibatch_cka_has_no_floor_for_unrelated_features():
    g = rng(11)
    x, y = g.standard_normal((4000, 10)), g.standard_normal((4000, 10))
    assert abs(minibatch_cka(x, y, batch_size=400)) < 0.01


# ---- feature alignment --------------------------------------------------------------------------

def test_feature_alignment_constructed_cases():
    g = rng(12)
    x = g.standard_normal((200, 16))
    assert feature_alignment(x, x) == pytest.approx(1.0, abs=1e-12)
    assert feature_alignment(x, -x) == pytest.approx(-1.0, abs=1e-12)
    assert feature_alignment(x, x * g.uniform(0.1, 10, (200, 1))) == pytest.approx(1.0, abs=1e-12)
    r = g.standard_normal((200, 16))  # y_i: the part of a random vector orthogonal to x_i
    orth = r - (r * x).sum(1, keepdims=True) / (x * x).sum(1, keepdims=True) * x
    assert feature_alignment(x, orth) == pytest.approx(0.0, abs=1e-12)
    half = np.where(np.arange(200)[:, None] < 100, x, orth)  # aligned on half the samples
    assert feature_alignment(x, half) == pytest.approx(0.5, abs=1e-12)
    # the authors' formula tr(F1 F2^T) / sqrt(tr(F1 F1^T) tr(F2 F2^T)) on unit-norm rows is the mean cosine
    y = x + g.standard_normal((200, 16))
    f1 = x / np.linalg.norm(x, axis=1, keepdims=True)
    f2 = y / np.linalg.norm(y, axis=1, keepdims=True)
    authors = np.trace(f1 @ f2.T) / math.sqrt(np.trace(f1 @ f1.T) * np.trace(f2 @ f2.T))
    assert feature_alignment(x, y) == pytest.approx(authors, abs=1e-12)


def test_feature_alignment_centring_and_width_mismatch():
    g = rng(13)
    x = g.standard_normal((300, 8))
    shifted = x + 3.0  # a shared offset per feature: orthogonal-ish rows become aligned without centring
    other = g.standard_normal((300, 8)) + 3.0
    assert feature_alignment(shifted, other) > 0.8
    assert abs(feature_alignment(shifted, other, center=True)) < 0.05
    assert feature_alignment(shifted, x, center=True) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="D_s=8 and D_t=9"):
        feature_alignment(x, g.standard_normal((300, 9)))


# ---- spectrum -----------------------------------------------------------------------------------

def with_covariance(eigenvalues, n, seed):
    """n samples whose sample covariance is exactly R diag(eigenvalues) R^T."""
    d = len(eigenvalues)
    g = rng(seed)
    z = g.standard_normal((n, d))
    q, _ = np.linalg.qr(z - z.mean(0))  # orthonormal, zero-mean columns
    white = q * math.sqrt(n - 1)  # sample covariance exactly I
    return white * np.sqrt(eigenvalues) @ random_orthogonal(d, seed + 1).T + 7.0


def test_spectrum_of_a_known_covariance():
    spectrum = feature_spectrum(with_covariance(np.array([1.0, 4.0, 1.0, 2.0]), 50, 14))
    assert spectrum.eigenvalues.numpy() == pytest.approx([4.0, 2.0, 1.0, 1.0], abs=1e-10)
    # p = (1/2, 1/4, 1/8, 1/8): entropy 1.75 ln 2; participation ratio 8^2 / (16 + 4 + 1 + 1)
    assert spectrum.effective_rank == pytest.approx(2 ** 1.75, rel=1e-10)
    assert spectrum.participation_ratio == pytest.approx(64 / 22, rel=1e-10)


def test_spectrum_of_isotropic_features():
    exact = feature_spectrum(with_covariance(np.ones(16), 100, 15))
    assert exact.effective_rank == pytest.approx(16.0, rel=1e-10)
    assert exact.participation_ratio == pytest.approx(16.0, rel=1e-10)
    sampled = feature_spectrum(rng(16).standard_normal((5000, 16)))
    assert 15.8 < sampled.effective_rank <= 16.0
    rank_one = feature_spectrum(np.outer(rng(17).standard_normal(100), np.arange(1.0, 6.0)))
    assert rank_one.effective_rank == pytest.approx(1.0, abs=1e-6)
    assert rank_one.eigenvalues[1:].abs().max() < 1e-10


# ---- linear probe -------------------------------------------------------------------------------

def test_probe_on_separable_data_is_near_perfect():
    g = rng(18)
    means = 6.0 * g.standard_normal((3, 5))

    def blobs(n):
        labels = g.integers(0, 3, n)
        return means[labels] + g.standard_normal((n, 5)), labels

    (x_train, y_train), (x_test, y_test) = blobs(300), blobs(300)
    probe = linear_probe(x_train, y_train, x_test, y_test)
    assert probe.train_acc >= 0.99 and probe.test_acc >= 0.99
    predicted = probe.logits(x_test).argmax(1).numpy()
    assert probe.test_acc == pytest.approx((predicted == y_test).mean())


def test_probe_on_random_labels_is_at_chance():
    g = rng(19)
    probe = linear_probe(g.standard_normal((2000, 20)), g.integers(0, 10, 2000),
                         g.standard_normal((2000, 20)), g.integers(0, 10, 2000))
    assert probe.test_acc == pytest.approx(0.1, abs=0.04)  # 0.04 is six binomial standard errors
    assert probe.train_acc > probe.test_acc  # it fits noise on the training set only


def test_probe_survives_dead_units_and_rejects_mismatched_labels():
    g = rng(20)
    x = np.maximum(g.standard_normal((100, 6)), 0)
    x[:, 2] = 0.0  # a unit that never fires
    y = (x[:, 0] > x[:, 1]).astype(int)
    with torch.no_grad():  # as evaluation code often calls it
        probe = linear_probe(x, y, x, y)
    assert np.isfinite(probe.weight.numpy()).all() and probe.test_acc > 0.9
    with pytest.raises(ValueError, match="disagree"):
        linear_probe(x, y[:50], x, y)


# ---- NTK ----------------------------------------------------------------------------------------

def test_ntk_of_a_linear_model_is_closed_form():
    # f(x) = W x + b, C = 3: d f_c / d W_c'j = delta_cc' x_j, d f_c / d b_c' = delta_cc', so
    # Theta_cc'(x, x') = delta_cc' (x . x' + 1) and both forms give C (x . x' + 1).
    torch.manual_seed(0)
    model = nn.Linear(5, 3).double()
    x = torch.randn(7, 5, dtype=torch.float64)
    expected = 3 * (x @ x.T + 1)
    for form in ("trace", "sum"):
        assert torch.allclose(empirical_ntk(model, x, form), expected, rtol=0, atol=1e-12)


def test_ntk_of_a_two_layer_linear_model_distinguishes_the_forms():
    # f(x) = V U x: Theta_cc'(x, x') = delta_cc' (Ux).(Ux') + (V V^T)_cc' x.x'
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False)).double()
    u, v = model[0].weight.detach(), model[1].weight.detach()  # [4, 5], [3, 4]
    x = torch.randn(6, 5, dtype=torch.float64)
    hidden, inputs = (x @ u.T) @ (x @ u.T).T, x @ x.T
    vvt = v @ v.T
    trace = 3 * hidden + torch.trace(vvt) * inputs
    summed = 3 * hidden + vvt.sum() * inputs
    assert torch.allclose(empirical_ntk(model, x, "trace"), trace, rtol=0, atol=1e-12)
    assert torch.allclose(empirical_ntk(model, x, "sum"), summed, rtol=0, atol=1e-12)


def test_ntk_alignment_of_a_model_with_itself_is_one():
    spec = ModelSpec.parse("cnn1d:width=4")
    torch.manual_seed(2)
    model, other = models.build(spec, (1, 40), 10), models.build(spec, (1, 40), 10)
    model.train()
    x = torch.randn(12, 40)
    assert ntk_alignment(model, model, x) == pytest.approx(1.0, abs=1e-10)
    assert model.training  # mode restored
    with torch.no_grad():  # torch.func's jacrev ignores an outer no_grad
        assert ntk_alignment(model, model, x) == pytest.approx(1.0, abs=1e-10)
    assert ntk_alignment(model, other, x) < 0.999


def test_ntk_refuses_a_jacobian_above_the_memory_bound():
    model = models.build(ModelSpec.parse("cnn1d:width=4"), (1, 40), 10)
    with pytest.raises(ValueError, match="max_jacobian_elements"):
        empirical_ntk(model, torch.randn(12, 40), max_jacobian_elements=10_000)
    with pytest.raises(ValueError, match="form"):
        empirical_ntk(model, torch.randn(2, 40), form="full")


# ---- features -----------------------------------------------------------------------------------

def test_features_of_is_batched_eval_mode_features():
    torch.manual_seed(3)
    model = models.build(ModelSpec.parse("mlp:width=8"), (40,), 10)
    model.train()
    x = torch.randn(23, 40)
    got = features_of(model, x, batch_size=5)
    model.eval()
    with torch.no_grad():
        expected = model.features(x)
    model.train()
    assert got.shape == (23, model.feature_dim) and not got.requires_grad
    assert torch.allclose(got, expected, atol=1e-6)
    assert model.training
    assert torch.equal(features_of(model, x.numpy(), batch_size=5), got)  # numpy input
