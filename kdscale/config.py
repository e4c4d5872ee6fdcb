"""Typed, frozen specs of everything a trial depends on, validated at construction.

Each spec has a stable content hash (`spec_id`): the same fields give the same id in any process
on any machine, so ids name cached teachers and finished trials. Fields that say where a thing
lives rather than what it is (a data directory) are left out of the hash.

Names used everywhere: N = teacher samples (`DataSpec.n_teacher`), M = round(kappa * N) student
samples, kappa = M / N.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from kdscale.errors import SpecError, check_choice, check_float, check_int, fail as _fail
from kdscale.fileio import check_weights
from kdscale.schema import arm_label, n_train, pair_label

SCHEMA_VERSION = 1  # bump when a change to training makes old cached results wrong

OBJECTIVES = ("lt", "kd", "ls", "hard", "l2", "embed")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")
AUGMENTATIONS = ("none", "crop-flip", "crop-flip-rotate")  # kdscale/augment.py
PRECISIONS = ("fp32", "bf16")  # bf16: the training forward pass under torch.autocast
# Opt-in measurements at the end of a trial (issue 5): linear CKA and feature alignment to the
# teacher on the test set, a linear probe on the teacher's N samples, the test features themselves.
# Issue 18 adds the teacher's own probe on the same samples ("teacher_probe") and the probes of
# student and teacher on a second task ("transfer": kdscale.representations.transfer).
EXTRAS = ("cka", "fa", "probe", "features", "teacher_probe", "transfer", "ntk")
# How a student starts (TrialSpec.init): its own seed's initialisation, the teacher's
# initialisation, that plus relative Gaussian noise, or an interpolation (kdscale/train/init.py).
INITS = ("independent", "teacher", "near", "interpolate")
INPUTS = ("data", "noise")  # what the student is distilled on: the data set, or Gaussian noise of its shape


def _canonical(value: Any) -> Any:
    """JSON-able form of a spec: nested specs by their hashed fields, numbers as floats."""
    if dataclasses.is_dataclass(value):
        out = {"_type": type(value).__name__}
        for f in dataclasses.fields(value):
            hashed, item = f.metadata.get("hashed", True), getattr(value, f.name)
            # "unless-default": a field added later hashes only when set, so older ids stay valid
            if hashed is True or (hashed == "unless-default" and item != f.default):
                out[f.name] = _canonical(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # 4 and 4.0 must give the same id
    return value


def spec_id(spec: Any) -> str:
    """Stable content hash of a spec: 16 hex digits of sha256 over its canonical JSON."""
    text = json.dumps({"schema": SCHEMA_VERSION, "spec": _canonical(spec)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_dict(spec: Any) -> dict:
    """Plain nested dict of every field (for logging and JSON); `from_dict` inverts it."""
    return dataclasses.asdict(spec)


@dataclass(frozen=True)
class DataSpec:
    """The data set and the teacher's share of it.

    The training pool is a fixed, seeded stream of samples; the teacher trains on its first
    `n_teacher` (N). Generated data sets (mnist1d) extend the stream on demand, so any kappa works;
    fixed ones (digits, CIFAR) hold at most pool_size / N.
    """
    name: str = "mnist1d"
    n_teacher: int = 4000
    n_test: int | None = None  # data sets with a chosen test size (mnist1d, cifar5m-heldout); None = default
    seed: int = 0  # generation and the order of the pool; not the trial seed
    root: str | None = field(default=None, metadata={"hashed": False})  # where real files live
    # A data set's own settings, sorted by name (the sequence tasks' lengths, kdscale/data/sequences.py);
    # checked by the data set's `info`. Left out of the hash when empty: ids from before it stay valid.
    options: tuple[tuple[str, Any], ...] = field(default=(), metadata={"hashed": "unless-default"})

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            _fail("data", "name", self.name, "must be a data set name")
        check_int("data", "n_teacher", self.n_teacher, 1)
        if self.n_test is not None:
            check_int("data", "n_test", self.n_test, 1)
        check_int("data", "seed", self.seed, 0)
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in dict(self.options).items())))


@dataclass(frozen=True)
class ModelSpec:
    """A model family and its size knob, e.g. `cnn1d:width=32` or `cnn2d:width=20,batch_norm=1`."""
    family: str
    width: int
    options: tuple[tuple[str, Any], ...] = ()  # family-specific keyword arguments, sorted by name

    def __post_init__(self):
        if not isinstance(self.family, str) or not self.family:
            _fail("model", "family", self.family, "must be a model family name")
        check_int("model", "width", self.width, 1)
        options = tuple(sorted((str(k), v) for k, v in dict(self.options).items()))
        object.__setattr__(self, "options", options)

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """`family:width=W,key=value,...`; values are read as int, float or bool where they look so."""
        family, _, rest = text.partition(":")
        kwargs: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, raw = item.partition("=")
            if not eq:
                raise SpecError(f"model={text!r} is invalid: expected family:key=value,... (got {item!r})")
            kwargs[key.strip()] = _parse_value(raw.strip())
        if "width" not in kwargs:
            raise SpecError(f"model={text!r} is invalid: needs width=, e.g. {family or 'mlp'}:width=64")
        width = kwargs.pop("width")
        return cls(family=family.strip(), width=width, options=tuple(kwargs.items()))

    @property
    def label(self) -> str:
        """Short readable name: `cnn1d-32`, `cnn2d-20-batch_norm=True`."""
        extra = "".join(f"-{k}={v}" for k, v in self.options)
        return f"{self.family}-{self.width}{extra}"

    def __str__(self) -> str:
        return ",".join([f"{self.family}:width={self.width}"] + [f"{k}={v}" for k, v in self.options])


def parse_pair(text: str) -> tuple[ModelSpec, ModelSpec]:
    """`TEACHER>STUDENT`, each a model spec: `cnn1d:width=64>cnn1d:width=4`."""
    teacher, arrow, student = text.partition(">")
    if not arrow:
        raise SpecError(f"--pairs {text!r} is invalid: write TEACHER>STUDENT, e.g. cnn1d:width=64>cnn1d:width=4")
    return ModelSpec.parse(teacher), ModelSpec.parse(student)


def _parse_value(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


@dataclass(frozen=True)
class RecipeSpec:
    """How to optimise: optimizer, schedule and budget.

    The budget is `epochs` or `steps`, exactly one. `warmup` and `milestones` are in the budget's
    unit (epochs when the budget is epochs, optimizer steps when it is steps). The learning rate
    warms up linearly from 0 over `warmup`, then follows `schedule`: cosine to 0 at the end of the
    budget, x`gamma` at each milestone, or constant.
    """
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = 1000
    schedule: str = "cosine"
    warmup: float = 0.0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    augment: str = "none"  # batched on the device; the teacher then runs on each augmented batch
    precision: str = "fp32"  # "bf16": forward passes under bfloat16 autocast (a GPU's tensor cores)

    def __post_init__(self):
        check_choice("recipe", "optimizer", self.optimizer, OPTIMIZERS)
        check_choice("recipe", "augment", self.augment, AUGMENTATIONS)
        check_choice("recipe", "precision", self.precision, PRECISIONS)
        check_float("recipe", "lr", self.lr, 0.0, low_open=True)
        check_float("recipe", "momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_float("recipe", "weight_decay", self.weight_decay, 0.0)
        check_int("recipe", "batch_size", self.batch_size, 1)
        if (self.epochs is None) == (self.steps is None):
            raise SpecError(f"recipe.epochs={self.epochs!r}, recipe.steps={self.steps!r} is invalid: "
                            "give exactly one budget, epochs or steps")
        if self.epochs is not None:
            check_int("recipe", "epochs", self.epochs, 1)
        if self.steps is not None:
            check_int("recipe", "steps", self.steps, 1)
        check_choice("recipe", "schedule", self.schedule, SCHEDULES)
        budget = self.epochs if self.epochs is not None else self.steps
        check_float("recipe", "warmup", self.warmup, 0.0, budget, high_open=True)
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        for m in self.milestones:
            check_float("recipe", "milestones", m, 0.0, budget, low_open=True)
        if list(self.milestones) != sorted(self.milestones):
            _fail("recipe", "milestones", self.milestones, "must be increasing")
        check_float("recipe", "gamma", self.gamma, 0.0, 1.0, low_open=True)

    def with_budget(self, steps: int | None = None, epochs: int | None = None) -> "RecipeSpec":
        """This recipe with another budget, in steps or epochs. Warm-up and milestones are reset:
        they were counted in the old budget's unit and length."""
        return dataclasses.replace(self, steps=steps, epochs=epochs, warmup=0.0, milestones=())

    @property
    def budget_unit(self) -> str:
        return "epochs" if self.epochs is not None else "steps"

    @property
    def budget(self) -> str:
        """`epochs=E` or `steps=S`: the results table's `budget` column and the MLflow param."""
        return f"epochs={self.epochs}" if self.epochs is not None else f"steps={self.steps}"


@dataclass(frozen=True)
class ObjectiveSpec:
    """What the student is trained to match.

    - `lt`: cross-entropy with the one-hot labels.
    - `kd`: eq. 1 of the paper, (1 - alpha) * c * KL(p_t^tau || p_s^tau) + alpha * CE(y, p_s),
      with c = tau^2 when `tau_squared` (Hinton et al.; keeps the gradient's scale independent of
      tau) and c = 1 for eq. 1 as printed.
    - `ls`: cross-entropy with uniformly smoothed labels, (1 - epsilon) * one-hot + epsilon / C.
    - `hard`: (1 - alpha) * CE(argmax teacher) + alpha * CE(y).
    - `l2`: (1 - alpha) * mean squared error between student and teacher logits (the tau -> infinity
      limit of kd) + alpha * CE(y).
    - `embed`: label free, in embedding space (Sarnthein et al., arXiv 2302.12091, after DINO):
      CE(softmax(t / tau_teacher), softmax(s / tau)) between the outputs of teacher and student
      projection heads (model option `projection`); tau is the student's temperature.

    Fields an objective does not read are reset to their defaults, so `lt` at tau 4 is the same
    trial, with the same id, as `lt` at tau 1.
    """
    name: str = "kd"
    tau: float = 4.0
    alpha: float = 0.0
    tau_squared: bool = True
    epsilon: float = 0.1
    tau_teacher: float = field(default=0.04, metadata={"hashed": "unless-default"})  # embed only

    def __post_init__(self):
        check_choice("objective", "name", self.name, OBJECTIVES)
        check_float("objective", "tau_teacher", self.tau_teacher, 0.0, low_open=True)
        check_float("objective", "tau", self.tau, 0.0, low_open=True)
        check_float("objective", "alpha", self.alpha, 0.0, 1.0)
        check_float("objective", "epsilon", self.epsilon, 0.0, 1.0, high_open=True)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        used = {"lt": (), "kd": ("tau", "alpha", "tau_squared"), "ls": ("epsilon",),
                "hard": ("alpha",), "l2": ("alpha",), "embed": ("tau", "tau_teacher")}[self.name]
        for name in ("tau", "alpha", "tau_squared", "epsilon", "tau_teacher"):
            if name not in used:
                object.__setattr__(self, name, defaults[name])
        object.__setattr__(self, "tau", float(self.tau))
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "epsilon", float(self.epsilon))
        object.__setattr__(self, "tau_teacher", float(self.tau_teacher))

    @property
    def uses_teacher(self) -> bool:
        return self.name in ("kd", "hard", "l2", "embed")

    @property
    def label(self) -> str:
        """`lt`, `kd tau=4`, `ls eps=0.1`, ...: the arm's name in tables and figures (schema.arm_label)."""
        return arm_label(self.name, self.tau, self.alpha, self.tau_squared, self.epsilon, self.tau_teacher)


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher: a model trained with label training on the first N samples of the pool, or, when
    `untrained`, the model at its initialisation (zero steps; arXiv 2302.12091's random teacher),
    or, with `weights`, a pretrained backbone read from that file, frozen, with its linear head
    alone fitted on the first N samples (kdscale/pretrained.py; the paper's Table 1).

    A teacher of seed s starts from the initialisation a student of seed s would have (the
    trainer's `initial_model`), so an untrained teacher IS that initialisation. The recipe of an
    untrained or pretrained teacher is never read and is reset to the default, so each has one id.
    A weights file enters the id by its content (`weights_sha256`, read once when left empty),
    never by its path: a changed file is another teacher, a moved one the same.
    """
    data: DataSpec
    model: ModelSpec
    recipe: RecipeSpec
    seed: int = 0
    untrained: bool = field(default=False, metadata={"hashed": "unless-default"})
    weights: str | None = field(default=None, metadata={"hashed": False})  # where the file is
    weights_sha256: str = field(default="", metadata={"hashed": "unless-default"})  # what it is

    def __post_init__(self):
        check_int("teacher", "seed", self.seed, 0)
        if self.untrained not in (True, False):
            _fail("teacher", "untrained", self.untrained, "must be true or false")
        object.__setattr__(self, "weights_sha256", check_weights(self.weights, self.weights_sha256, self.untrained))
        if self.untrained or self.weights is not None:
            object.__setattr__(self, "recipe", RecipeSpec())

    @property
    def id(self) -> str:
        return spec_id(self)


@dataclass(frozen=True)
class TrialSpec:
    """One student: its teacher (and so its data), model, share kappa of N, objective, recipe, seed.

    The seed chooses the student's subset, its initialisation and its batch order; it is data of
    the spec, never global state, so several seeds can later be packed into one process.
    """
    teacher: TeacherSpec
    student: ModelSpec
    kappa: float
    objective: ObjectiveSpec
    recipe: RecipeSpec
    seed: int = 0
    # what to measure at the end; not hashed: it changes what is logged, not what is trained
    extras: tuple[str, ...] = field(default=(), metadata={"hashed": False})
    # How the student starts (INITS; kdscale/train/init.py) and what it is distilled on (INPUTS).
    # `init_scale`: the noise's scale relative to each weight tensor's RMS for `near`, the weight t
    # of the independent initialisation for `interpolate`; reset to 0 for the others.
    init: str = field(default="independent", metadata={"hashed": "unless-default"})
    init_scale: float = field(default=0.0, metadata={"hashed": "unless-default"})
    inputs: str = field(default="data", metadata={"hashed": "unless-default"})

    def __post_init__(self):
        check_choice("trial", "init", self.init, INITS)
        check_choice("trial", "inputs", self.inputs, INPUTS)
        if self.init in ("near", "interpolate"):
            high = 1.0 if self.init == "interpolate" else math.inf
            check_float("trial", "init_scale", self.init_scale, 0.0, high)
            object.__setattr__(self, "init_scale", float(self.init_scale))
        else:
            object.__setattr__(self, "init_scale", 0.0)
        if self.init != "independent" and self.student != self.teacher.model:
            _fail("trial", "init", self.init, f"starts the student from its teacher's weights, so the student "
                  f"must be the teacher's model ({self.teacher.model}), not {self.student}")
        if self.inputs == "noise" and not self.objective.uses_teacher:
            _fail("trial", "inputs", self.inputs, f"has no labels: objective {self.objective.name!r} reads "
                  "labels only; use one that reads the teacher (kd, hard, l2, embed)")
        if self.objective.name == "embed":
            heads = [dict(m.options).get("projection") for m in (self.teacher.model, self.student)]
            if heads[0] is None or heads[0] != heads[1]:
                _fail("trial", "objective", "embed", "needs teacher and student with one projection head "
                      f"width (model option projection=K), got teacher {heads[0]}, student {heads[1]}")
        object.__setattr__(self, "extras", tuple(sorted(set(self.extras))))
        for extra in self.extras:
            check_choice("trial", "extras", extra, EXTRAS)
        check_float("trial", "kappa", self.kappa, 0.0, low_open=True)
        object.__setattr__(self, "kappa", float(self.kappa))
        check_int("trial", "seed", self.seed, 0)
        m = self.n_train
        if m < 1:
            _fail("trial", "kappa", self.kappa,
                  f"gives M = round(kappa * N) = {m} student samples with N = {self.data.n_teacher}; "
                  f"needs kappa >= {0.5 / self.data.n_teacher:.3g}")

    @property
    def data(self) -> DataSpec:
        return self.teacher.data

    @property
    def n_train(self) -> int:
        """M = round(kappa * N) (schema.n_train)."""
        return n_train(self.kappa, self.data.n_teacher)

    @property
    def id(self) -> str:
        return spec_id(self)

    @property
    def label(self) -> str:
        """Readable name, e.g. `cnn1d-32>mlp-64 kd tau=4 kappa=0.1 seed=0`."""
        return (f"{pair_label(self.teacher.model.label, self.student.label)} {self.objective.label} "
                f"kappa={self.kappa:g} seed={self.seed}")


def _build(cls, value: dict):
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(cls)}
    nested = {"data": DataSpec, "model": ModelSpec, "student": ModelSpec, "recipe": RecipeSpec,
              "objective": ObjectiveSpec, "teacher": TeacherSpec}
    for name, raw in value.items():
        if name not in hints:
            raise SpecError(f"{cls.__name__}: unknown field {name!r}; known: {', '.join(hints)}")
        if name in nested and isinstance(raw, dict):
            raw = _build(nested[name], raw)
        elif name == "options":
            raw = tuple(tuple(item) for item in raw)
        elif name in ("milestones", "extras"):
            raw = tuple(raw)
        kwargs[name] = raw
    return cls(**kwargs)


def from_dict(cls, value: dict):
    """Rebuild a spec from `to_dict`'s output (e.g. a spec shipped to a Ray worker as JSON)."""
    return _build(cls, value)
