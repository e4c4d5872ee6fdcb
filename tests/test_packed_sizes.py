"""Packs of students with data sets of different sizes (one model at several kappas): each walks its
own epochs and short last batches, padded to the step's widest batch, and ends where it would alone."""
import pytest
import torch

from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.objectives import loss, pack_loss
from kdscale.train import TrainData, train, train_students
from kdscale.train.order import Orders
from tests.test_packed import state_at


def sized_data(seed, n, n_test=200):
    gen = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(n, 1, 40, generator=gen)
    w = torch.randn(40, 5, generator=torch.Generator().manual_seed(7))
    x_test = torch.randn(n_test, 1, 40, generator=torch.Generator().manual_seed(8))
    logits, test_logits = 3 * x.flatten(1) @ w, 3 * x_test.flatten(1) @ w
    return TrainData(x, logits.argmax(1), x_test, test_logits.argmax(1), logits, test_logits)


# sizes: 20 (one short batch of 20 every step: min(32, 20)), 45 (32 + 13), 64 (two full), 100 (32 x 3 + 4)
SIZES = [20, 45, 64, 100]


def test_orders_walk_each_students_epochs_as_alone():
    orders = Orders([20, 45, 64], 32, [0, 1, 2], torch.device("cpu"))
    alone = [Orders([n], 32, [seed], torch.device("cpu")) for seed, n in zip([0, 1, 2], [20, 45, 64])]
    for step in range(7):
        idx, lengths = orders.next()
        rows = [a.next()[0][0] for a in alone]
        assert lengths == ([len(r) for r in rows] if len({len(r) for r in rows}) > 1 else None)
        for s, row in enumerate(rows):
            assert torch.equal(idx[s, :len(row)], row)
            assert torch.equal(idx[s, len(row):], row[:1].expand(idx.shape[1] - len(row)))  # padding: its own row
        ended = orders.end_epochs(final=False)
        assert ended == [s for s, a in enumerate(alone) if a.end_epochs(final=False)]
    assert orders.epochs == [7, 3, 3] and orders.seen == [140, 45 * 3 + 32, 7 * 32]


@pytest.mark.parametrize("family, objectives", [
    ("mlp:width=16", [ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=4.0), ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=2.0)]),
    ("cnn1d:width=4", [ObjectiveSpec("kd", tau=4.0)] * 4),
    ("mlp:width=8", [ObjectiveSpec("l2", alpha=0.3), ObjectiveSpec("hard"), ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=1.0)]),
    ("vit:width=8,depth=1,heads=2", [ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=2.0)] * 2)])
def test_a_pack_across_sizes_matches_its_students_trained_alone(family, objectives):
    spec, recipe, seeds = ModelSpec.parse(family), RecipeSpec(lr=0.05, steps=30, batch_size=32), [0, 1, 2, 0]
    datas = [sized_data(seed, n) for seed, n in zip(seeds, SIZES)]
    packed = train_students(spec, objectives, recipe, seeds, datas, 5, max_reports=100)
    for objective, seed, data, result in zip(objectives, seeds, datas, packed):
        alone = train(spec, objective, recipe, seed, data, 5, max_reports=100)
        assert result.status == alone.status == "ok"
        assert torch.allclose(result.test_probs, alone.test_probs, atol=1e-4), (objective, len(data.x_train))
        for key in ("test_acc", "train_acc", "fidelity_train", "steps", "epochs", "samples_seen", "flops"):
            assert result.metrics[key] == pytest.approx(alone.metrics[key], abs=1e-6), key
        assert [(r["epoch"], r["step"]) for r in result.history] == [(r["epoch"], r["step"]) for r in alone.history]
        assert [r["train_loss"] for r in result.history] == pytest.approx([r["train_loss"] for r in alone.history],
                                                                          rel=1e-4)
        assert result.metrics["pack_size"] == 4


def test_padding_rows_carry_no_loss_and_no_gradient():
    """pack_loss with lengths: each student's mean over its real rows; the padding's gradient is 0."""
    logits = torch.randn(2, 6, 5, requires_grad=True)
    labels, teacher = torch.randint(0, 5, (2, 6)), torch.randn(2, 6, 5)
    for spec in (ObjectiveSpec("lt"), ObjectiveSpec("kd", tau=3.0), ObjectiveSpec("kd", tau=2.0, alpha=0.4)):
        values = pack_loss([spec, spec], logits, labels, teacher, lengths=[6, 4])
        expected = [loss(spec, logits[0], labels[0], teacher[0]), loss(spec, logits[1, :4], labels[1, :4], teacher[1, :4])]
        assert torch.allclose(values, torch.stack(expected), atol=1e-6), spec
        grad, = torch.autograd.grad(values.sum(), logits)
        assert torch.equal(grad[1, 4:], torch.zeros(2, 5)) and grad[1, :4].abs().sum() > 0


def test_a_pack_across_sizes_resumes_mid_epoch_as_if_never_stopped():
    spec, recipe, seeds = ModelSpec.parse("mlp:width=16"), RecipeSpec(lr=0.05, steps=24, batch_size=32), [3, 4, 5]
    datas = [sized_data(seed, n) for seed, n in zip(seeds, [45, 100, 20])]
    objective = ObjectiveSpec("kd", tau=2.0)
    full = train_students(spec, objective, recipe, seeds, datas, 5, max_reports=100)
    saved = state_at(lambda reports: reports[0] is not None and reports[0]["epoch"] == 3,  # step 6
                     spec, objective, recipe, seeds, datas, 5, max_reports=100)
    assert saved["orders"]["positions"][1] not in (0, 100)  # the 100-sample student mid-epoch
    resumed = train_students(spec, objective, recipe, seeds, datas, 5, resume=saved, max_reports=100)
    for a, b in zip(full, resumed):
        assert torch.equal(a.test_probs, b.test_probs) and b.metrics["resumed_from_step"] == 6
        assert a.history == b.history


def test_a_checkpoint_written_before_per_student_epochs_still_resumes():
    """Checkpoints of the earlier layout (one epoch count, every student at an epoch's end) load."""
    spec, recipe, seeds = ModelSpec.parse("mlp:width=16"), RecipeSpec(lr=0.05, epochs=6, steps=None, batch_size=32), [3, 4]
    datas = [sized_data(seed, 64) for seed in seeds]
    full = train_students(spec, ObjectiveSpec("lt"), recipe, seeds, datas, 5)
    new = state_at(lambda reports: reports[0]["epoch"] == 2,
                   spec, ObjectiveSpec("lt"), recipe, seeds, datas, 5, max_reports=100)
    old = {key: value for key, value in new.items() if key not in ("orders", "loss_sums", "last_report")}
    old.update(order_rngs=new["orders"]["rngs"], epoch=2, seen=new["orders"]["seen"][0])
    resumed = train_students(spec, ObjectiveSpec("lt"), recipe, seeds, datas, 5, resume=old)
    for a, b in zip(full, resumed):
        assert torch.equal(a.test_probs, b.test_probs)


def test_a_pack_across_sizes_refuses_what_padding_would_change():
    datas = [sized_data(0, 20), sized_data(1, 100)]
    with pytest.raises(ValueError, match="one number of steps"):  # epochs of 1 and 4 steps
        train_students(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("lt"),
                       RecipeSpec(epochs=2, steps=None, batch_size=32),
                       [0, 1], datas, 5)
    images = [TrainData(torch.randn(n, 1, 8, 8), torch.randint(0, 2, (n,)), torch.randn(4, 1, 8, 8),
                        torch.randint(0, 2, (4,))) for n in (20, 45)]
    with pytest.raises(ValueError, match="without batch norm"):
        train_students(ModelSpec.parse("cnn2d:width=4,batch_norm=true"), ObjectiveSpec("lt"), RecipeSpec(steps=2),
                       [0, 1], images, 2)
    with pytest.raises(ValueError, match="without augmentation"):
        train_students(ModelSpec.parse("cnn2d:width=4"), ObjectiveSpec("lt"),
                       RecipeSpec(steps=2, augment="crop-flip-rotate"), [0, 1], images, 2)
