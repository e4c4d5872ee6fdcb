"""The token models (kdscale/models/rnn.py) against step-by-step recurrences, and the token path
through the objectives, the metrics and the trainer (packs included)."""
import math

import pytest
import torch
import torch.nn.functional as F

from kdscale import models, objectives
from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.errors import SpecError
from kdscale.models.rnn import diagonal_scan, fixed_point
from kdscale.train import TrainData, accuracy, packable, sequence_accuracy, train, train_students

IGNORE = -100


def sequential(transition, b):
    """h_t = transition_t h_{t-1} + b_t step by step: transition [B, T, D] (diagonal) or [B, T, D, D]."""
    h, out = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        step = transition[:, t]
        h = (step * h if step.dim() == 2 else (step @ h[..., None])[..., 0]) + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def random_system(T=13, D=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(3, T, D, generator=gen, dtype=torch.float64) * 2 - 1
    b = torch.randn(3, T, D, generator=gen, dtype=torch.float64)
    off = 0.4 * torch.randn(3, T, D, D, generator=gen, dtype=torch.float64)
    return a, b, off - torch.diag_embed(off.diagonal(dim1=-2, dim2=-1))


def test_diagonal_scan_is_the_sequential_recurrence():
    a, b, _ = random_system(T=13)  # not a power of two
    assert torch.allclose(diagonal_scan(a, b), sequential(a, b), atol=1e-12)


def test_fixed_point_converges_to_the_dense_recurrence():
    a, b, off = random_system(T=13)
    dense = sequential(torch.diag_embed(a) + off, b)
    h, used = fixed_point(a, off, b, iterations=100)
    assert used == 12 and torch.allclose(h, dense, atol=1e-12)  # exact after T - 1 iterations
    for k in (0, 3, 7):  # iterate k is exact on the first k + 1 positions, not beyond
        h, used = fixed_point(a, off, b, iterations=k)
        assert used == k and torch.allclose(h[:, :k + 1], dense[:, :k + 1], atol=1e-12)
        assert not torch.allclose(h, dense, atol=1e-6)
    early, used = fixed_point(a, 0.1 * off, b, iterations=100, tol=1e-9)  # a small O converges sooner
    assert used < 12 and torch.allclose(early, sequential(torch.diag_embed(a) + 0.1 * off, b), atol=1e-8)


def build(text, vocab=7, classes=4, seed=0):
    torch.manual_seed(seed)
    return models.build(ModelSpec.parse(text), (6,), classes, vocab).double()


def test_the_dense_rnn_with_its_fixed_point_off_is_the_diagonal_one():
    x = torch.randint(0, 7, (3, 9), generator=torch.Generator().manual_seed(1))
    diagonal = build("diagrnn:width=6")
    layer = diagonal.layers[0]
    u = diagonal.embed(x)
    plain = sequential(torch.tanh(layer.gate(u)), layer.inp(u))  # the recurrence, one step at a time
    assert torch.allclose(diagonal(x), diagonal.head(diagonal.norm(u + layer.out(layer.norm(plain)))), atol=1e-12)
    # iterations 0: the scan of A's diagonal alone
    dense = build("fprnn:width=6,iterations=0")
    layer, u = dense.layers[0], dense.embed(x)
    A = torch.diag_embed(torch.tanh(layer.gate(u))) + layer.mix(u).unflatten(-1, (6, 6))
    A = A / A.abs().sum(-1).amax(-1).clamp(min=1)[..., None, None]
    plain = sequential(A.diagonal(dim1=-2, dim2=-1), layer.inp(u))
    assert torch.allclose(dense(x), dense.head(dense.norm(u + layer.out(layer.norm(plain)))), atol=1e-12)
    # A diagonal (no mixing weights): any number of iterations gives the diagonal RNN of the same weights
    dense = build("fprnn:width=6,iterations=5")
    torch.nn.init.zeros_(dense.layers[0].mix.weight)
    torch.nn.init.zeros_(dense.layers[0].mix.bias)
    state = {k: v for k, v in dense.state_dict().items() if ".mix." not in k}
    diagonal.load_state_dict(state)
    assert torch.allclose(dense(x), diagonal(x), atol=1e-12)


def test_iterations_used_packability_and_bad_models():
    x = torch.randint(0, 7, (4, 20), generator=torch.Generator().manual_seed(2))
    assert build("fprnn:width=6").fixed_point_iterations(x) == 19  # min(64, T - 1)
    early = build("fprnn:width=6,tol=0.001")
    assert early.fixed_point_iterations(x) < 19 and not packable(early)
    assert packable(build("fprnn:width=6")) and packable(build("diagrnn:width=6"))
    assert not packable(build("lstm:width=6")) and build("lstm:width=6").fixed_point_iterations(x) is None
    with pytest.raises(SpecError, match="'mlp' is invalid for token inputs"):
        models.build(ModelSpec.parse("mlp:width=4"), (6,), 4, 7)
    with pytest.raises(SpecError, match="'fprnn' is invalid for real-valued inputs"):
        models.build(ModelSpec.parse("fprnn:width=4"), (1, 40), 4)
    with pytest.raises(SpecError, match="model.options.tol=-1 is invalid"):
        build("fprnn:width=6,tol=-1")


def test_the_token_loss_is_the_mean_over_labelled_tokens_by_hand():
    gen = torch.Generator().manual_seed(3)
    logits, teacher = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 4, generator=gen)
    labels = torch.tensor([[1, IGNORE, 3], [0, 2, IGNORE]])
    tokens = [(0, 0), (0, 2), (1, 0), (1, 1)]  # the labelled ones
    lt = sum(-logits[i, t].log_softmax(0)[labels[i, t]] for i, t in tokens) / 4
    assert objectives.loss(ObjectiveSpec("lt"), logits, labels) == pytest.approx(lt.item(), rel=1e-6)
    tau = 2.0
    kl = sum((F.softmax(teacher[i, t] / tau, 0) * (F.log_softmax(teacher[i, t] / tau, 0)
                                                 - F.log_softmax(logits[i, t] / tau, 0))).sum() for i, t in tokens)
    kd = objectives.loss(ObjectiveSpec("kd", tau=tau), logits, labels, teacher)
    assert kd.item() == pytest.approx(tau * tau * kl.item() / 4, rel=1e-6)


def test_token_metrics_by_hand():
    labels = torch.tensor([[1, IGNORE, 3], [0, 2, IGNORE]])
    logits = F.one_hot(torch.tensor([[1, 0, 3], [0, 1, 2]]), 4).float()  # sequence 1 right, sequence 2 one miss
    assert accuracy(logits, labels) == pytest.approx(3 / 4) and sequence_accuracy(logits, labels) == 0.5


def token_data(seed, n=24, n_test=10, T=6):
    """Running sums mod 4, a test set twice as long (one for all students, as in a study)."""
    x = torch.randint(1, 7, (n, T), generator=torch.Generator().manual_seed(seed))
    x_test = torch.randint(1, 7, (n_test, 2 * T), generator=torch.Generator().manual_seed(99))
    y, y_test = torch.cumsum(x, 1) % 4, torch.cumsum(x_test, 1) % 4
    y_test[:, -2:] = IGNORE  # padding
    teacher, teacher_test = 3 * F.one_hot(y, 4).float(), 3 * F.one_hot(y_test.clamp(min=0), 4).float()
    return TrainData(x, y, x_test, y_test, teacher, teacher_test)


@pytest.mark.parametrize("family", ["diagrnn:width=8", "fprnn:width=6,iterations=3"])
def test_a_pack_of_two_rnn_students_matches_them_alone(family):
    spec, recipe = ModelSpec.parse(family), RecipeSpec(lr=0.1, steps=12, batch_size=8)
    objectives_, seeds, datas = [ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=2.0)], [0, 1], [token_data(0), token_data(1)]
    packed = train_students(spec, objectives_, recipe, seeds, datas, 4, vocab_size=7)
    for objective, seed, data, result in zip(objectives_, seeds, datas, packed):
        alone = train(spec, objective, recipe, seed, data, 4, vocab_size=7)
        assert result.status == alone.status == "ok" and result.test_probs.shape == (10, 12, 4)
        assert torch.allclose(result.test_probs, alone.test_probs, atol=1e-4)
        for key in ("test_acc", "test_seq_acc", "train_acc", "fidelity_train", "fidelity_test"):
            assert result.metrics[key] == pytest.approx(alone.metrics[key], abs=1e-6), key
        assert 0 <= result.metrics["test_seq_acc"] <= result.metrics["test_acc"] <= 1
        assert math.isfinite(result.history[-1]["test_seq_acc"])
