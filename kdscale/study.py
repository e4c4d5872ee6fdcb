"""A study: a grid of kappa x tau x objective x seed x teacher-student pair, expanded into trials.

Expansion is deterministic and de-duplicated by trial id: `lt` does not read tau, so the lt
trials of a grid with three taus are one set, and two studies that share cells share their ids
(and so their results, in a store both write to).

Each cell's recipe follows the study's `recipe_policy` (kdscale.search): `fair` (the default)
gives every arm of a (pair, kappa) its own learning rate and budget, chosen on a validation split
of the student's own samples; `lt` gives every arm the recipe chosen for lt (the paper's protocol:
tune lt, reuse its recipe for kd); `fixed` trains every cell with `recipe` as it is. With a
search policy the trials are known once the searches are (`trials(chosen)`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from kdscale.config import (DataSpec, ModelSpec, ObjectiveSpec, RecipeSpec, TeacherSpec, TrialSpec,
                            OBJECTIVES)
from kdscale.errors import SpecError
from kdscale.schema import n_train
from kdscale.search import POLICIES, SearchSpace, SearchSpec


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for. torch's thread count follows `cpus_per_trial`."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractions share a GPU between trials
    max_concurrent: int | None = None  # None: as many as the cluster holds
    max_failures: int = 2  # restarts of a trial whose worker died, from its last checkpoint
    checkpoint_every_s: float = 20.0  # a trial checkpoints at its first report after this long
    metrics_every_s: float = 20.0  # per-epoch metrics reach MLflow in batches this far apart
    pack_size: int | None = None  # seeds trained together in one trial; None = auto, 1 = off

    def __post_init__(self):
        if not self.cpus_per_trial > 0:
            raise SpecError(f"resources.cpus_per_trial={self.cpus_per_trial!r} is invalid: must be > 0")
        if not 0 <= self.gpus_per_trial:
            raise SpecError(f"resources.gpus_per_trial={self.gpus_per_trial!r} is invalid: must be >= 0")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise SpecError(f"resources.max_concurrent={self.max_concurrent!r} is invalid: must be >= 1")
        for name in ("checkpoint_every_s", "metrics_every_s"):
            if not getattr(self, name) >= 0:
                raise SpecError(f"resources.{name}={getattr(self, name)!r} is invalid: must be >= 0")
        if self.pack_size is not None and self.pack_size < 1:
            raise SpecError(f"resources.pack_size={self.pack_size!r} is invalid: must be >= 1 (1 = no packing)")
        if self.max_failures < 0:
            raise SpecError(f"resources.max_failures={self.max_failures!r} is invalid: must be >= 0")


@dataclass(frozen=True)
class StudySpec:
    name: str
    data: DataSpec
    pairs: tuple[tuple[ModelSpec, ModelSpec], ...]  # (teacher, student)
    kappas: tuple[float, ...]
    taus: tuple[float, ...]
    objectives: tuple[str, ...] = ("lt", "kd")
    seeds: tuple[int, ...] = (0, 1, 2)
    recipe: RecipeSpec = field(default_factory=RecipeSpec)  # the students' (with a search: all but lr and budget)
    teacher_recipe: RecipeSpec = field(default_factory=lambda: RecipeSpec(epochs=60, steps=None, lr=0.05))
    teacher_seed: int = 0
    alpha: float = 0.0
    tau_squared: bool = True
    epsilon: float = 0.1
    resources: Resources = field(default_factory=Resources)
    extras: tuple[str, ...] = ()  # opt-in end-of-trial measurements: cka, fa, probe, features
    # Objective settings beyond objectives x taus (e.g. ls at two epsilons, kd without tau^2).
    variants: tuple[ObjectiveSpec, ...] = ()
    recipe_policy: str = "fair"  # fair, lt or fixed: see the module doc
    search: SearchSpace = field(default_factory=SearchSpace)
    # An adaptive design (kdscale.adaptive) instead of the full grid: (pair index, kappa, n) per cell
    # visited, training seeds[:n] there; each kappa one of `kappas`. Empty: pairs x kappas x seeds.
    plan: tuple[tuple[int, float, int], ...] = ()
    # Random teachers (issue 18, arXiv 2302.12091): untrained teachers, and the axes of where a student
    # starts ((init, init_scale) pairs, TrialSpec.init) and what it is distilled on (TrialSpec.inputs).
    # teacher_per_seed: a teacher per seed (seed teacher_seed + s; with teacher_seed >= the number of
    # seeds, never a student's own initialisation), trained or not, so that an interval over seeds
    # resamples teacher and student together; a recipe search scores the first seed's teacher.
    teacher_untrained: bool = False
    teacher_per_seed: bool = False
    inits: tuple[tuple[str, float], ...] = (("independent", 0.0),)
    inputs: tuple[str, ...] = ("data",)
    # Pretrained teachers (issue 17, the paper's Table 1; kdscale/pretrained.py): every pair's teacher
    # is the backbone in this file, frozen, with a head fitted on N; its sha256 is read once, here.
    teacher_weights: str | None = None
    teacher_weights_sha256: str = ""

    def __post_init__(self):
        if self.teacher_weights is not None and not self.teacher_weights_sha256:
            object.__setattr__(self, "teacher_weights_sha256", self.teacher(self.pairs[0][0]).weights_sha256
                               if self.pairs else "")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name or ""):
            raise SpecError(f"study.name={self.name!r} is invalid: letters, digits, '_', '.', '-'")
        for name, values in (("pairs", self.pairs), ("kappas", self.kappas), ("seeds", self.seeds)):
            if not values:
                raise SpecError(f"study.{name} is empty: the grid has no trial")
        if not self.objectives and not self.variants:
            raise SpecError("study.objectives is empty: the grid has no trial")
        for objective in self.objectives:
            if objective not in OBJECTIVES:
                raise SpecError(f"study.objectives: {objective!r} is invalid; must be one of {', '.join(OBJECTIVES)}")
        if "kd" in self.objectives and not self.taus:
            raise SpecError("study.taus is empty: kd needs at least one temperature")
        for tau in self.taus:
            if not tau > 0:
                raise SpecError(f"study.taus: tau={tau!r} is invalid; every tau must be > 0")
        for pair in self.pairs:
            if len(pair) != 2:
                raise SpecError(f"study.pairs: {pair!r} is invalid; each pair is (teacher, student)")
        for index, kappa, n_seeds in self.plan:
            if not (0 <= index < len(self.pairs) and kappa in self.kappas and 1 <= n_seeds <= len(self.seeds)):
                raise SpecError(f"study.plan: cell ({index}, {kappa!r}, {n_seeds}) is invalid: needs a pair index "
                                f"below {len(self.pairs)}, a kappa of study.kappas and 1 to {len(self.seeds)} seeds")
        if not self.inits or not self.inputs:
            raise SpecError("study.inits and study.inputs must each hold at least one value")
        if self.recipe_policy not in POLICIES:
            raise SpecError(f"study.recipe_policy={self.recipe_policy!r} is invalid: must be one of {', '.join(POLICIES)}")
        # every cell validates now, before any compute: the trials (the base recipe standing in for
        # searched ones), then the searches
        self._trials(lambda *cell: self.recipe)
        self.searches()

    def teacher(self, model: ModelSpec, seed: int = 0) -> TeacherSpec:
        """The teacher of `model` (for trial seed `seed` when each seed has its own)."""
        return TeacherSpec(self.data, model, self.teacher_recipe, seed=self.teacher_seed + (seed if self.teacher_per_seed
                                                                                             else 0),
                           untrained=self.teacher_untrained, weights=self.teacher_weights,
                           weights_sha256=self.teacher_weights_sha256)

    def objective_specs(self) -> list[ObjectiveSpec]:
        specs = []
        for name in self.objectives:
            taus = self.taus if name == "kd" else (1.0,)
            for tau in taus:
                spec = ObjectiveSpec(name, tau=tau, alpha=self.alpha, tau_squared=self.tau_squared,
                                     epsilon=self.epsilon)
                if spec not in specs:
                    specs.append(spec)
        for spec in self.variants:
            if spec not in specs:
                specs.append(spec)
        return specs

    def cells(self):
        """(teacher model, student model, kappa, objective) of every cell, in the grid's order."""
        for teacher_model, student_model, kappa, objective, _ in self._cells():
            yield teacher_model, student_model, kappa, objective

    def _cells(self):
        """cells() with each cell's seeds: the grid's, or with a plan its cells and their seeds."""
        planned = {(index, kappa): self.seeds[:n] for index, kappa, n in self.plan}
        for index, (teacher_model, student_model) in enumerate(self.pairs):
            for kappa in self.kappas:
                seeds = planned.get((index, kappa), ()) if self.plan else self.seeds
                if not seeds:
                    continue
                for objective in self.objective_specs():
                    yield teacher_model, student_model, kappa, objective, seeds

    def search_for(self, teacher_model: ModelSpec, student: ModelSpec, kappa: float,
                   objective: ObjectiveSpec) -> SearchSpec | None:
        """The search that chooses a cell's recipe (None with the fixed policy)."""
        if self.recipe_policy == "fixed":
            return None
        searched = objective if self.recipe_policy == "fair" else ObjectiveSpec("lt")
        # with a teacher per seed, the first seed's: a recipe is chosen once per cell and serves every seed
        teacher = self.teacher(teacher_model, self.seeds[0]) if searched.uses_teacher else None
        return SearchSpec(self.data, student, searched, kappa, self.recipe, self.search, teacher)

    def searches(self) -> list[SearchSpec]:
        """Every search the grid needs, once (lt's is shared by every pair with the same student)."""
        unique: dict[str, SearchSpec] = {}
        for cell in self.cells():
            search = self.search_for(*cell)
            if search is not None:
                unique.setdefault(search.id, search)
        return list(unique.values())

    def trials(self, chosen: dict[str, RecipeSpec] | None = None) -> list[TrialSpec]:
        """Every cell of the grid once per seed, in a stable order: pair, kappa, objective, seed.

        With a search policy, `chosen` maps each search id to the recipe it chose."""
        def recipe_of(*cell) -> RecipeSpec:
            search = self.search_for(*cell)
            if search is None:
                return self.recipe
            if chosen is None or search.id not in chosen:
                raise SpecError(f"study {self.name}: no recipe yet for {search.label}: run its search first")
            return chosen[search.id]
        return self._trials(recipe_of)

    def _trials(self, recipe_of) -> list[TrialSpec]:
        seen, out = set(), []
        for teacher_model, student_model, kappa, objective, seeds in self._cells():
            recipe = recipe_of(teacher_model, student_model, kappa, objective)
            for seed in seeds:
                for init, scale in self.inits:
                    for inputs in self.inputs:
                        trial = TrialSpec(self.teacher(teacher_model, seed), student_model, kappa, objective, recipe,
                                          seed, extras=self.extras, init=init, init_scale=scale, inputs=inputs)
                        if trial.id not in seen:
                            seen.add(trial.id)
                            out.append(trial)
        return out

    def teachers(self) -> list[TeacherSpec]:
        unique: dict[str, TeacherSpec] = {}
        for teacher_model, _ in self.pairs:
            for seed in (self.seeds if self.teacher_per_seed else (0,)):
                spec = self.teacher(teacher_model, seed)
                unique.setdefault(spec.id, spec)
        return list(unique.values())


def check_models(data_spec: DataSpec, pairs, recipes=(), roles=("teacher", "student")) -> None:
    """Build each (teacher, student) once on the CPU: a bad family, option, input shape or class
    count fails here, with the role named, before any training; so does augmentation of data
    that are not images."""
    from kdscale import data, models

    info = data.info(data_spec)
    for recipe in recipes:
        if recipe.augment != "none" and len(info.input_shape) != 3:
            raise SpecError(f"recipe.augment={recipe.augment!r} is invalid for {data_spec.name}: its samples are "
                            f"{info.input_shape}, augmentation needs images (channels, height, width)")
    for teacher_model, student_model in pairs:
        for role, model in zip(roles, (teacher_model, student_model)):
            try:
                models.build(model, info.input_shape, info.num_classes, info.vocab_size)
            except SpecError as error:
                raise SpecError(f"{role}: {error}") from None


def check_study(spec: StudySpec) -> None:
    """Everything that can be checked without training: data capacity, model families and shapes,
    and room for a validation split at every kappa where recipes are searched."""
    from kdscale import data

    info = data.check(spec.data, spec.kappas)
    check_models(spec.data, spec.pairs, (spec.recipe, spec.teacher_recipe))
    if info.vocab_size and spec.extras:
        raise SpecError(f"study.extras={','.join(spec.extras)} is invalid for {spec.data.name}: the representation "
                        "metrics take one feature vector per sample, a token model gives one per token")
    if spec.teacher_weights is not None:  # the file fits every teacher model (kdscale.pretrained)
        from kdscale.pretrained import check

        for teacher in spec.teachers():
            check(teacher)
    if "ntk" in spec.extras:  # before any teacher trains: the trials would each fail after it
        from kdscale.trial import check_ntk

        for teacher, student in spec.pairs:
            check_ntk(spec.data, (teacher, student), info)
    if "transfer" in spec.extras:  # a data set with a second task (kdscale.representations.transfer)
        from kdscale.representations import transfer_data

        transfer_data(spec.data)
    if spec.recipe_policy != "fixed":
        for kappa in spec.kappas:
            m = n_train(kappa, spec.data.n_teacher)
            if m < 2 * info.num_classes:
                raise SpecError(f"kappa={kappa:g} is invalid with --recipe {spec.recipe_policy}: M = {m} samples; a "
                                f"validation split needs at least 2 x {info.num_classes} classes = "
                                f"{2 * info.num_classes}, kappa >= {2 * info.num_classes / spec.data.n_teacher:.3g} "
                                "(or --recipe fixed)")
