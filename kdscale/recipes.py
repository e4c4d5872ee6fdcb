"""Named recipes (optimizer, schedule, budget) and each data set's defaults.

Figures behind the MNIST-1D defaults were measured on this project's 2-core CPU machine
(README, "Results"): SGD with momentum 0.9 at lr 0.01 trains lt and kd (tau = 4, tau^2 factor)
both well; at lr 0.05 kd with the tau^2 factor diverges (DESIGN). Students get a fixed step
budget so that a small kappa is not also a short run (see studies/budget.py for the other choice).
"""
from __future__ import annotations

from kdscale.config import RecipeSpec
from kdscale.registry import Registry

RECIPES: Registry = Registry("recipe")

RECIPES.register("mnist1d-teacher")(RecipeSpec(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                               steps=None, epochs=60, schedule="cosine"))
RECIPES.register("mnist1d-student")(RecipeSpec(lr=0.02, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                               steps=1500, schedule="cosine"))
RECIPES.register("digits-teacher")(RecipeSpec(lr=0.05, momentum=0.9, weight_decay=5e-4, batch_size=64,
                                              steps=None, epochs=60, schedule="cosine"))
RECIPES.register("digits-student")(RecipeSpec(lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=64,
                                              steps=600, schedule="cosine"))

DEFAULTS = {"mnist1d": ("mnist1d-teacher", "mnist1d-student"), "digits": ("digits-teacher", "digits-student")}


def default_recipes(dataset: str) -> tuple[RecipeSpec, RecipeSpec]:
    """(teacher recipe, student recipe) for a data set; the MNIST-1D ones where none is named."""
    teacher, student = DEFAULTS.get(dataset, DEFAULTS["mnist1d"])
    return RECIPES.get(teacher), RECIPES.get(student)
