"""Losses against values computed by hand from their formulas (math module, not torch)."""
import math

import pytest
import torch
import torch.nn.functional as F

from kdscale.config import OBJECTIVES as CONFIG_OBJECTIVES, ObjectiveSpec
from kdscale import objectives
from kdscale.objectives import OBJECTIVES, distillation_loss, logit_l2, loss, pack_loss, paper_ls_epsilon

S = torch.tensor([[0.0, 0.0]])  # student: p_s = (1/2, 1/2) at any tau
T = torch.tensor([[math.log(3.0), 0.0]])  # teacher: p_t = (3/4, 1/4) at tau = 1
Y = torch.tensor([0])


def kl_by_hand(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_kd_at_tau_1_is_kl_by_hand():
    expected = kl_by_hand([0.75, 0.25], [0.5, 0.5])  # 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812
    assert expected == pytest.approx(0.1308120, abs=1e-6)
    got = distillation_loss(S, T, Y, tau=1.0, alpha=0.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kd_tau_squared_factor_and_alpha():
    # at tau = 2 the teacher's softmax is (sqrt3, 1) / (sqrt3 + 1)
    r3 = math.sqrt(3.0)
    kl = kl_by_hand([r3 / (r3 + 1), 1 / (r3 + 1)], [0.5, 0.5])
    assert kl == pytest.approx(0.03634, abs=1e-5)
    assert distillation_loss(S, T, Y, 2.0, 0.0, tau_squared=True).item() == pytest.approx(4 * kl, rel=1e-6)
    assert distillation_loss(S, T, Y, 2.0, 0.0, tau_squared=False).item() == pytest.approx(kl, rel=1e-6)
    mixed = 0.7 * 4 * kl + 0.3 * math.log(2.0)  # CE(y, p_s) = ln 2
    assert distillation_loss(S, T, Y, 2.0, 0.3, tau_squared=True).item() == pytest.approx(mixed, rel=1e-6)
    assert distillation_loss(S, T, Y, 2.0, 1.0).item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_kd_is_batch_mean():
    s = torch.cat([S, torch.tensor([[1.0, -1.0]])])
    t = torch.cat([T, torch.tensor([[1.0, -1.0]])])  # second row: student equals teacher, KL 0
    expected = kl_by_hand([0.75, 0.25], [0.5, 0.5]) / 2
    assert distillation_loss(s, t, torch.tensor([0, 0]), 1.0, 0.0).item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_by_hand():
    # p_s = (3/4, 1/4); target (1 - 0.1) * (1, 0) + 0.1 / 2 = (0.95, 0.05)
    expected = -(0.95 * math.log(0.75) + 0.05 * math.log(0.25))
    assert loss(ObjectiveSpec("ls", epsilon=0.1), T, Y).item() == pytest.approx(expected, rel=1e-6)


def test_label_training_and_hard_labels():
    assert loss(ObjectiveSpec("lt"), T, Y).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    teacher = torch.tensor([[0.0, 5.0]])  # argmax 1, whatever the label says
    assert loss(ObjectiveSpec("hard"), T, Y, teacher).item() == pytest.approx(-math.log(0.25), rel=1e-6)
    mixed = 0.5 * -math.log(0.25) + 0.5 * -math.log(0.75)
    assert loss(ObjectiveSpec("hard", alpha=0.5), T, Y, teacher).item() == pytest.approx(mixed, rel=1e-6)


def test_l2_by_hand_and_as_the_high_temperature_limit():
    # diff (1, 0), centred (0.5, -0.5): (1 / 2C) * (0.25 + 0.25) = 0.125 with C = 2
    assert logit_l2(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])).item() == pytest.approx(0.125)
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 10, generator=gen, dtype=torch.float64), torch.randn(16, 10, generator=gen, dtype=torch.float64)
    high_tau = distillation_loss(s, t, torch.zeros(16, dtype=torch.long), tau=1000.0, alpha=0.0)
    assert high_tau.item() == pytest.approx(logit_l2(s, t).item(), rel=1e-3)


def test_paper_label_smoothing_epsilon_is_the_same_target():
    eps = paper_ls_epsilon(10)
    assert eps == pytest.approx(0.0855, abs=1e-4)
    one_hot = F.one_hot(torch.arange(10), 10).double()
    paper_target = 0.9 * one_hot + 0.1 * torch.softmax(0.99 * one_hot, dim=1)
    uniform_target = (1 - eps) * one_hot + eps / 10
    assert torch.allclose(paper_target, uniform_target, atol=1e-12)


def test_teacher_objectives_need_teacher_logits():
    with pytest.raises(ValueError, match="teacher logits"):
        loss(ObjectiveSpec("kd"), S, Y)


def test_registry_matches_the_config_choices():
    assert sorted(OBJECTIVES.names()) == sorted(CONFIG_OBJECTIVES)


PACK_SPECS = [ObjectiveSpec("kd", tau=4.0), ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=4.0),
              ObjectiveSpec("ls", epsilon=0.1), ObjectiveSpec("kd", tau=2.0, alpha=0.5), ObjectiveSpec("lt"),
              ObjectiveSpec("hard", alpha=0.3), ObjectiveSpec("l2")]


@pytest.mark.parametrize("specs", [PACK_SPECS, [ObjectiveSpec("lt")] * 3, [ObjectiveSpec("kd", tau=4.0)] * 4,
                                   [ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=4.0)]])
def test_pack_loss_is_each_students_own_loss_and_gradient(specs, monkeypatch):
    """A pack's grouped losses (one vmapped call per spec) against `loss` student by student: the
    same values and the same gradient per student, in the students' order."""
    gen = torch.Generator().manual_seed(1)
    size = len(specs)
    z = torch.randn(size, 32, 10, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (size, 32), generator=gen)
    t = 3 * torch.randn(size, 32, 10, generator=gen, dtype=torch.float64)
    got = []
    for grouped in (True, False):
        monkeypatch.setattr(objectives, "GROUPED_LOSS", grouped)
        logits = z.clone().requires_grad_()
        values = pack_loss(specs, logits, y, t)
        (values * torch.arange(1.0, size + 1, dtype=torch.float64)).sum().backward()  # weights tell students apart
        got.append((values.detach(), logits.grad))
    by_hand = torch.stack([loss(spec, z[s], y[s], t[s] if spec.uses_teacher else None) for s, spec in enumerate(specs)])
    assert torch.allclose(got[0][0], by_hand, rtol=1e-12, atol=0)
    assert torch.allclose(got[0][1], got[1][1], rtol=1e-12, atol=1e-15)
    assert torch.equal(got[1][0], by_hand)


def test_pack_loss_of_token_logits_counts_each_students_labelled_tokens():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(2, 4, 6, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (2, 4, 6), generator=gen)
    y[0, :, 3:] = -100  # the first student's sequences are padded after 3 tokens
    specs = [ObjectiveSpec("lt"), ObjectiveSpec("lt")]
    assert torch.equal(pack_loss(specs, z, y), torch.stack([loss(specs[s], z[s], y[s]) for s in range(2)]))
