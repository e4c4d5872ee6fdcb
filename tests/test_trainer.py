import math

import pytest
import torch

from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.train import TrainData, lr_factor, plan_steps, train, train_students


def toy_data(n=256, n_test=128, seed=0):
    """A learnable 3-class problem: the class is the argmax of a fixed projection."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, 1, 8, generator=gen)
    w = torch.randn(8, 3, generator=gen)
    logits = x.flatten(1) @ w
    y = logits.argmax(1)
    return TrainData(x[:n], y[:n], x[n:], y[n:], 3 * logits[:n], 3 * logits[n:])


MLP = ModelSpec.parse("mlp:width=32")
RECIPE = RecipeSpec(lr=0.05, steps=60, batch_size=32)


def test_same_spec_and_seed_give_identical_metrics():
    data = toy_data()
    first = train(MLP, ObjectiveSpec("kd", tau=2.0), RECIPE, 7, data, 3)
    torch.manual_seed(1234)  # global state must not matter
    second = train(MLP, ObjectiveSpec("kd", tau=2.0), RECIPE, 7, data, 3)
    other = train(MLP, ObjectiveSpec("kd", tau=2.0), RECIPE, 8, data, 3)
    for key in ("test_acc", "test_loss", "train_acc", "fidelity_train", "fidelity_test"):
        assert first.metrics[key] == second.metrics[key]
    assert torch.equal(first.test_probs, second.test_probs)
    assert not torch.equal(first.test_probs, other.test_probs)


def test_training_learns_and_reports_metrics():
    result = train(MLP, ObjectiveSpec("lt"), RecipeSpec(lr=0.05, steps=200, batch_size=32), 0, toy_data(), 3)
    m = result.metrics
    assert result.status == "ok" and m["test_acc"] > 0.8 and m["train_acc"] > 0.8
    assert m["steps"] == 200 and m["student_params"] == sum(p.numel() for p in result.model.parameters())
    # flops: 3 forward passes' worth per training sample, mlp forward = 2 * (8*32 + 32*32 + 32*3)
    assert m["flops"] == pytest.approx(3 * 2 * (8 * 32 + 32 * 32 + 32 * 3) * 200 * 32, rel=0.05)
    assert result.test_probs.shape == (128, 3)
    assert torch.allclose(result.test_probs.sum(1), torch.ones(128))


def test_reports_are_thinned_and_end_at_the_last_step():
    reports = []
    train(MLP, ObjectiveSpec("lt"), RecipeSpec(lr=0.05, steps=300, batch_size=256), 0, toy_data(),
          3, on_report=lambda r, state: reports.append(r), max_reports=20)
    assert 10 <= len(reports) <= 20 and reports[-1]["step"] == 300  # 300 epochs of one step each
    assert [r["step"] for r in reports] == sorted(r["step"] for r in reports)


def test_huge_learning_rate_is_reported_as_diverged():
    result = train(MLP, ObjectiveSpec("lt"), RecipeSpec(lr=1e6, steps=50, batch_size=32), 0, toy_data(), 3)
    assert result.status == "diverged" and result.test_probs is None and "test_acc" not in result.metrics


def test_resume_from_a_checkpoint_matches_an_uninterrupted_run():
    data, spec, recipe = toy_data(), ObjectiveSpec("kd", tau=3.0), RecipeSpec(lr=0.05, epochs=12, steps=None,
                                                                              batch_size=64)
    full = train(MLP, spec, recipe, 3, data, 3)
    saved = []

    def stop_after_five(report, state):
        if report["epoch"] == 5:
            saved.append(state())
            raise KeyboardInterrupt  # the worker dies here
    with pytest.raises(KeyboardInterrupt):
        train(MLP, spec, recipe, 3, data, 3, on_report=stop_after_five, max_reports=100)
    resumed = train(MLP, spec, recipe, 3, data, 3, resume=saved[0])
    assert resumed.metrics["steps"] == full.metrics["steps"] == 12 * 4
    assert torch.equal(resumed.test_probs, full.test_probs)


def test_batch_never_exceeds_the_data_and_epochs_become_steps():
    assert plan_steps(RecipeSpec(batch_size=128, steps=1000), 80) == (80, 1, 1000)
    assert plan_steps(RecipeSpec(batch_size=128, epochs=30, steps=None), 4000) == (128, 32, 960)


@pytest.mark.parametrize("recipe, step, expected", [
    (RecipeSpec(steps=100, schedule="constant"), 50, 1.0),
    (RecipeSpec(steps=100, schedule="cosine"), 0, 1.0),
    (RecipeSpec(steps=100, schedule="cosine"), 50, 0.5),
    (RecipeSpec(steps=100, schedule="cosine", warmup=10), 4, 0.5),  # linear warm-up: (4 + 1) / 10
    (RecipeSpec(steps=100, schedule="cosine", warmup=10), 55, 0.5),  # half-way through 90 cosine steps
    (RecipeSpec(steps=100, schedule="step", milestones=(30, 60), gamma=0.2), 29, 1.0),
    (RecipeSpec(steps=100, schedule="step", milestones=(30, 60), gamma=0.2), 30, 0.2),
    (RecipeSpec(steps=100, schedule="step", milestones=(30, 60), gamma=0.2), 75, 0.04),
    # epochs budget with 10 steps per epoch: milestone at epoch 3 = step 30
    (RecipeSpec(epochs=10, steps=None, schedule="step", milestones=(3,), gamma=0.1), 30, 0.1),
])
def test_learning_rate_schedule(recipe, step, expected):
    assert lr_factor(recipe, step, per_epoch=10, total=100) == pytest.approx(expected)
    assert math.isfinite(lr_factor(recipe, step, 10, 100))


def test_bf16_autocast_trains_close_to_fp32():
    data, objective = toy_data(), ObjectiveSpec("kd", tau=2.0)
    fp32 = train(MLP, objective, RecipeSpec(lr=0.05, steps=150, batch_size=32), 0, data, 3)
    bf16 = train(MLP, objective, RecipeSpec(lr=0.05, steps=150, batch_size=32, precision="bf16"), 0, data, 3)
    assert bf16.status == "ok" and abs(bf16.metrics["test_acc"] - fp32.metrics["test_acc"]) < 0.1
    assert not torch.equal(bf16.test_probs, fp32.test_probs)  # the forward really ran in bfloat16
    packed = train_students(MLP, objective, RecipeSpec(lr=0.05, steps=150, batch_size=32, precision="bf16"), [0, 1],
                          [data, data], 3)
    assert packed[0].status == "ok" and abs(packed[0].metrics["test_acc"] - bf16.metrics["test_acc"]) < 0.1
