"""The paper's named recipes: their fields, each data set's defaults, and the learning-rate factor
`trainer.lr_factor` gives at hand-computed steps."""
from __future__ import annotations

import math

import pytest

from kdscale.recipes import RECIPES, default_recipes
from kdscale.train import lr_factor, plan_steps

# name: (optimizer, lr, momentum, weight decay, batch, epochs, schedule, warmup, milestones, gamma)
PAPER = {
    "paper-cifar10": ("sgd", 0.1, 0.9, 1e-3, 256, 30, "cosine", 5, (), None),
    "paper-cifar100": ("sgd", 0.1, 0.9, 5e-4, 128, 200, "step", 1, (60, 120, 160), 0.2),
    "paper-imagenet": ("sgd", 0.1, 0.9, 1e-4, 64, 90, "step", 0, (30, 60), 0.1),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_recipes_hold_the_issue_values(name):
    optimizer, lr, momentum, wd, batch, epochs, schedule, warmup, milestones, gamma = PAPER[name]
    recipe = RECIPES.get(name)
    assert (recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay) == (optimizer, lr, momentum, wd)
    assert (recipe.batch_size, recipe.epochs, recipe.steps, recipe.schedule) == (batch, epochs, None, schedule)
    assert recipe.warmup == warmup and recipe.milestones == tuple(float(m) for m in milestones)
    if gamma is not None:
        assert recipe.gamma == gamma


# (recipe, steps per epoch, step, expected factor). Steps per epoch are CIFAR's 50,000 samples at
# the recipe's batch (196 at 256, 391 at 128) or a round 100.
CASES = [
    # paper-cifar10 at 100 steps an epoch: 500 warm-up steps, 3000 in all, cosine over 2500.
    ("paper-cifar10", 100, 0, 1 / 500),
    ("paper-cifar10", 100, 249, 0.5),
    ("paper-cifar10", 100, 499, 1.0),
    ("paper-cifar10", 100, 500, 1.0),  # cosine starts at its top
    ("paper-cifar10", 100, 1125, 0.5 + math.sqrt(2) / 4),  # a quarter through: (1 + cos(pi/4)) / 2
    ("paper-cifar10", 100, 1750, 0.5),  # half way
    ("paper-cifar10", 100, 2999, (1 - math.cos(math.pi / 2500)) / 2),  # the last step, about 2e-7
    ("paper-cifar10", 196, 0, 1 / 980),  # 5 epochs of 196 steps
    ("paper-cifar10", 196, 980, 1.0),
    # paper-cifar100 at 391 steps an epoch: 391 warm-up steps, then x0.2 at epochs 60, 120, 160.
    ("paper-cifar100", 391, 0, 1 / 391),
    ("paper-cifar100", 391, 195, 196 / 391),
    ("paper-cifar100", 391, 390, 1.0),
    ("paper-cifar100", 391, 391, 1.0),
    ("paper-cifar100", 391, 59 * 391, 1.0),  # epoch 59, first step
    ("paper-cifar100", 391, 60 * 391 - 1, 1.0),  # epoch 59, last step
    ("paper-cifar100", 391, 60 * 391, 0.2),  # epoch 60
    ("paper-cifar100", 391, 120 * 391 - 1, 0.2),
    ("paper-cifar100", 391, 120 * 391, 0.04),  # epoch 120
    ("paper-cifar100", 391, 160 * 391, 0.008),  # epoch 160
    ("paper-cifar100", 391, 200 * 391 - 1, 0.008),  # the last step
    # paper-imagenet at 100 steps an epoch: no warm-up, x0.1 at epochs 30 and 60.
    ("paper-imagenet", 100, 0, 1.0),
    ("paper-imagenet", 100, 2999, 1.0),
    ("paper-imagenet", 100, 3000, 0.1),
    ("paper-imagenet", 100, 5999, 0.1),
    ("paper-imagenet", 100, 6000, 0.01),
    ("paper-imagenet", 100, 8999, 0.01),
]


@pytest.mark.parametrize("name, per_epoch, step, expected", CASES)
def test_lr_factor_at_hand_computed_steps(name, per_epoch, step, expected):
    recipe = RECIPES.get(name)
    total = recipe.epochs * per_epoch
    assert lr_factor(recipe, step, per_epoch, total) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name, n_train, per_epoch, total", [
    ("paper-cifar10", 50_000, 196, 30 * 196),
    ("paper-cifar100", 50_000, 391, 200 * 391),
    ("paper-imagenet", 2_040, 32, 90 * 32),  # Flowers-102's train + val
])
def test_paper_budgets_in_steps(name, n_train, per_epoch, total):
    assert plan_steps(RECIPES.get(name), n_train) == (RECIPES.get(name).batch_size, per_epoch, total)


@pytest.mark.parametrize("dataset, recipe", [
    ("cifar10", "paper-cifar10"), ("cifar5m", "paper-cifar10"), ("cifar5m-heldout", "paper-cifar10"),
    ("cifar100", "paper-cifar100"), ("imagefolder", "paper-imagenet"), ("flowers102", "paper-imagenet"),
    ("dtd", "paper-imagenet"), ("fgvc_aircraft", "paper-imagenet"), ("caltech101", "paper-imagenet"),
    ("stanford_cars", "paper-imagenet"), ("food101", "paper-imagenet"),
])
def test_default_recipes_train_teacher_and_student_alike(dataset, recipe):
    # The paper trains teacher and student with the same recipe.
    assert default_recipes(dataset) == (RECIPES.get(recipe), RECIPES.get(recipe))


def test_every_registered_data_set_has_a_default_recipe():
    from kdscale.data import DATASETS
    from kdscale.recipes import DEFAULTS

    assert set(DATASETS.names()) <= set(DEFAULTS)
