import math

import pytest
import torch
import torch.nn as nn

from kdscale.train import loop as trainer_module
from kdscale.augment import augment, random_crop, random_flip, random_rotation, rotate
from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.train import TrainData, train


def images(n=64, seed=0):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_random_crop_is_a_window_of_the_zero_padded_image():
    x = images()
    out = random_crop(x, torch.Generator().manual_seed(1), pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert matches, f"image {i} is no window of its padded self"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets differ between images


def test_random_flip_flips_about_half():
    x = images(1000)
    out = random_flip(x, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | kept).all()) and 400 < int(flipped.sum()) < 600


def test_rotation_by_zero_is_the_identity_and_by_quarter_turns_matches_rot90():
    x = images(4)
    assert torch.allclose(random_rotation(x, torch.Generator().manual_seed(0), degrees=0.0), x, atol=1e-6)
    square = torch.arange(16.0).reshape(1, 1, 4, 4)
    quarter = rotate(square, torch.tensor([math.pi / 2]))
    assert any(torch.allclose(quarter, torch.rot90(square, k, dims=(2, 3)), atol=1e-4) for k in (1, -1))
    assert torch.allclose(rotate(square, torch.tensor([math.pi])), square.flip(2, 3), atol=1e-4)


def test_same_generator_seed_same_augmentation():
    x = images()
    a = augment(x, "crop-flip-rotate", torch.Generator().manual_seed(5))
    b = augment(x, "crop-flip-rotate", torch.Generator().manual_seed(5))
    c = augment(x, "crop-flip-rotate", torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and torch.equal(augment(x, "none", None), x)


class Recorder(nn.Module):
    """A fixed teacher that remembers every batch it was shown."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 8 * 8, 4)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.proj(x.flatten(1))


def test_with_augmentation_the_teacher_runs_on_the_students_augmented_batch(monkeypatch):
    x, y = images(96), torch.randint(0, 4, (96,), generator=torch.Generator().manual_seed(3))
    teacher = Recorder()
    with torch.no_grad():
        logits = teacher.proj(x.flatten(1))
    teacher.seen.clear()
    student_batches = []
    real_augment = trainer_module.augment

    def spy(batch, name, generator):
        out = real_augment(batch, name, generator)
        student_batches.append(out)
        return out
    monkeypatch.setattr(trainer_module, "augment", spy)
    data = TrainData(x[:64], y[:64], x[64:], y[64:], logits[:64], logits[64:], teacher_model=teacher)
    recipe = RecipeSpec(lr=0.05, steps=6, batch_size=16, augment="crop-flip")
    result = train(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("kd", tau=2.0), recipe, 0, data, 4)
    assert result.status == "ok" and len(student_batches) == 6
    assert all(torch.equal(a, b) for a, b in zip(student_batches, teacher.seen[:6]))
    assert not torch.equal(student_batches[0], x[:64][:16])  # the batch really was augmented


def test_augmented_kd_without_a_teacher_model_is_refused():
    x, y = images(32), torch.zeros(32, dtype=torch.long)
    data = TrainData(x, y, x, y, torch.zeros(32, 4), torch.zeros(32, 4))
    with pytest.raises(ValueError, match="needs the teacher model"):
        train(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("kd"), RecipeSpec(steps=2, augment="crop-flip"), 0, data, 4)


def test_augmented_resume_matches_an_uninterrupted_run():
    x, y = images(96), torch.randint(0, 4, (96,), generator=torch.Generator().manual_seed(3))
    data = TrainData(x[:64], y[:64], x[64:], y[64:])
    recipe = RecipeSpec(lr=0.05, epochs=6, steps=None, batch_size=32, augment="crop-flip-rotate")
    full = train(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("lt"), recipe, 1, data, 4)
    saved = []

    def stop(report, state):
        if report["epoch"] == 3:
            saved.append(state())
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("lt"), recipe, 1, data, 4, on_report=stop, max_reports=100)
    resumed = train(ModelSpec.parse("mlp:width=8"), ObjectiveSpec("lt"), recipe, 1, data, 4, resume=saved[0])
    assert torch.equal(resumed.test_probs, full.test_probs)
