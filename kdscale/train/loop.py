"""The training loop: one function trains S >= 1 students (teachers, trials, packs, recipe searches).

Pure PyTorch (no Ray, no MLflow). The data live as tensors on the training device and are indexed
per batch: for a small data set a DataLoader costs as much per batch as a whole small-model step
(DESIGN). The seed is data of the call, never global state: it seeds each student's
initialisation, batch order and augmentation through their own generators, so the same spec and
seed on CPU give identical metrics, and several seeds can share one process.

With one student the loop runs the plain module (`students.Single`); with several it runs them as
one vmapped pack (`students.Pack`), each student on its own subset, batch order and objective (lt,
or kd at its own tau; same model, recipe and step count), with its own optimizer state. The
subsets may differ in size (one model at several kappas): each student then keeps its own epochs
and short last batches, padded to one width at a step (kdscale.train.order), and reports at its
own epoch ends. With augmentation the students of one seed share that seed's augmented batch,
and the teacher runs once on it for all of them.

A run reports at epoch ends, thinned to at most `max_reports` reports so a step budget on a tiny
subset (one step per epoch) does not evaluate after every step. The running losses are summed on
the device and read at reports only (no per-step host synchronisation). A student whose loss turns
NaN or infinite is marked diverged at the next report and its numbers are dropped; the others
train on, unaffected (its gradients never reach theirs); the run ends when none is left.

Samples are vectors or images with one label, or token sequences with one label per token (int64
inputs [M, T], labels [M, T], per-token logits): the objectives count each labelled token as one
sample and the metrics add the per-sequence accuracy (kdscale.objectives, kdscale.train.metrics).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch
import torch.nn as nn

from kdscale import models, objectives
from kdscale.augment import augment
from kdscale.config import ModelSpec, ObjectiveSpec, RecipeSpec
from kdscale.train.metrics import accuracy, agreement, test_metrics
from kdscale.train.schedule import (derive_seed, lr_factor, make_optimizer, plan_steps, precision_context,
                                    shared_recipe, stacked_optimizer)
from kdscale.train.order import Orders
from kdscale.train.students import Pack, Single, packs_across_sizes, predict


@dataclass
class TrainData:
    """Tensors of one student. Teacher logits are aligned with the rows of x_train / x_test.
    Token data (int64 x [M, T]) have labels [M, T] and logits [M, T, C] (kdscale.train.metrics)."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    teacher_train: torch.Tensor | None = None  # float [M, C]; tokens [M, T, C]
    teacher_test: torch.Tensor | None = None  # float [n_test, C]; tokens [n_test, T_test, C]
    teacher_model: nn.Module | None = None  # needed with augmentation: run on each augmented batch


@dataclass
class TrainResult:
    status: str  # "ok" or "diverged"
    metrics: dict[str, Any]
    model: nn.Module
    test_probs: torch.Tensor | None  # float [n_test, C] (tokens [n_test, T, C]) on CPU; None when diverged
    history: list[dict[str, Any]] = field(default_factory=list)


def forward_flops(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOPs of one forward pass on one sample (torch's flop counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(sample[:1])
    model.train(was_training)
    return float(counter.get_total_flops())


CHANNELS_LAST_DEVICES = ("cuda",)  # where a student alone trains in channels_last


def _channels_last(datas: list[TrainData], model: nn.Module) -> tuple[list[TrainData], nn.Module]:
    """On a GPU, one student's images and convolutions in channels_last, the layout tensor cores want.

    The images are copies: the caller's TrainData stays as it was, since a pack that later takes the
    same tensors cannot (vmap's batch norm on CUDA refuses channels_last input, seen on an H200)."""
    data = datas[0]
    if data.x_train.device.type not in CHANNELS_LAST_DEVICES or data.x_train.dim() != 4:
        return datas, model
    return [_in_channels_last(data)], model.to(memory_format=torch.channels_last)


def _in_channels_last(data: TrainData) -> TrainData:
    """A copy of `data` whose images are in channels_last (the other fields shared)."""
    return replace(data, x_train=data.x_train.contiguous(memory_format=torch.channels_last),
                   x_test=data.x_test.contiguous(memory_format=torch.channels_last))


def initial_model(model_spec: ModelSpec, seed: int, input_shape: tuple[int, ...], num_classes: int,
                  vocab_size: int | None = None) -> nn.Module:
    """The model of `model_spec` as a run of `seed` starts it: drawn from the seed alone, the global
    RNG untouched. A teacher of seed s and a student of seed s start from the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, 1))
        return models.build(model_spec, input_shape, num_classes, vocab_size)


def train(model_spec: ModelSpec, objective: ObjectiveSpec, recipe: RecipeSpec, seed: int, data: TrainData,
          num_classes: int, on_report: Callable[[dict, Callable[[], dict]], None] | None = None,
          resume: dict | None = None, max_reports: int = 20, vocab_size: int | None = None) -> TrainResult:
    """Train one student: `train_students` with S = 1; `on_report(report, state)` gets its report."""
    report = None if on_report is None else (lambda reports, state: on_report(reports[0], state))
    return train_students(model_spec, [objective], recipe, [seed], [data], num_classes, report, resume,
                          max_reports, vocab_size)[0]


def train_students(model_spec: ModelSpec, objective: ObjectiveSpec | list[ObjectiveSpec],
                   recipe: RecipeSpec | list[RecipeSpec], seeds: list[int], datas: list[TrainData], num_classes: int,
                   on_report: Callable[[list[dict | None], Callable[[], dict]], None] | None = None,
                   resume: dict | None = None, max_reports: int = 20, vocab_size: int | None = None,
                   init_states: list[dict | None] | None = None, forward_flops: float | None = None
                   ) -> list[TrainResult]:
    """Train one student per seed on its own `datas[i]` (of any sizes that give one step count), each
    with `objective`, or with its own objective when given a list, and return their results.

    `recipe` is one for all, or one per student: students may then differ in learning rate and
    weight decay (the candidates of a recipe search), and nothing else.

    `on_report(reports, state)` is called at each report with one report per student (None for a
    diverged one, or one whose epoch did not end at this step); `state()` builds a checkpoint
    (weights, optimizer, step, batch orders, generators) that `resume` takes back to continue
    where it was. A result's `flops` counts the student's own
    forward and backward passes; what a teacher adds is its caller's to count (kdscale.trial).
    `vocab_size` is the data's token count for token inputs (kdscale.data.DataInfo), else None;
    `forward_flops` a sample's forward FLOPs when the caller has them (else counted here, with torch's
    flop counter).
    `init_states[i]`, when given and not None, is student i's starting state dict instead of its
    seed's initialisation (the seed still drives its batch order and augmentation).
    """
    started = time.perf_counter()
    size = len(seeds)
    objective_of = list(objective) if isinstance(objective, (list, tuple)) else [objective] * size
    recipes = list(recipe) if isinstance(recipe, (list, tuple)) else [recipe] * size
    recipe = shared_recipe(recipes)
    if len(datas) != size or len(objective_of) != size or len(recipes) != size:
        raise ValueError("training needs one data set (and objective, recipe) per seed")
    sizes = [len(d.x_train) for d in datas]
    plans = [plan_steps(recipe, n) for n in sizes]  # (batch, steps per epoch, total steps) of each student
    if len({plan[2] for plan in plans}) > 1:
        raise ValueError(f"a pack's students train one number of steps: {sorted({plan[2] for plan in plans})} "
                         f"for data sets of {sorted(set(sizes))} samples")
    uses_teacher = any(o.uses_teacher for o in objective_of)
    augmenting = recipe.augment != "none"
    for o, d in zip(objective_of, datas):
        if o.uses_teacher and d.teacher_train is None:
            raise ValueError(f"objective {o.name!r} needs teacher logits for the training samples")
        if augmenting and o.uses_teacher and d.teacher_model is None:
            raise ValueError(f"recipe.augment={recipe.augment!r} with objective {o.name!r} needs the teacher "
                             "model: cached logits belong to the un-augmented samples")
    device = datas[0].x_train.device
    input_shape = tuple(datas[0].x_train.shape[1:])
    built = [initial_model(model_spec, seed, input_shape, num_classes, vocab_size).to(device) for seed in seeds]
    if len(set(sizes)) > 1 and (augmenting or not packs_across_sizes(built[0])):
        raise ValueError("students of different data sizes pack only without augmentation (a seed's students "
                         "share its augmented batch) and without batch norm (padding would reach its statistics)")
    for model, state in zip(built, init_states or [None] * size):
        if state is not None:  # a start other than the seed's own (kdscale/train/init.py)
            model.load_state_dict(state)
    if size == 1:
        datas, single = _channels_last(datas, built[0])
        students = Single(single)
    else:
        students = Pack(built)
    autocast = precision_context(recipe, device)
    if size == 1:
        optimizer = make_optimizer(recipe, list(students.parameters()))
    else:  # the students' own learning rates and weight decays, on their stacked parameters. Not
        # torch.optim even where they share them: its first optimizer imports torch._dynamo (1.2-1.7 s
        # of a worker's first pack on 2 cores, 2026-12-01) and each step and zero_grad pass its wrapper.
        optimizer = stacked_optimizer(recipes, list(students.parameters()))
    orders = Orders(sizes, recipe.batch_size, seeds, device)
    unique_seeds = sorted(set(seeds))  # students of one seed share its augmented batch
    augment_rngs = {u: torch.Generator(device=device).manual_seed(derive_seed(u, 3)) for u in unique_seeds}
    batch_of = _batches(datas, uses_teacher)
    teacher_model = datas[0].teacher_model if augmenting and uses_teacher else None
    per_epoch, total = plans[0][1], plans[0][2]  # per_epoch differs by size only where the schedule ignores it
    report_every = [max(1, math.ceil(math.ceil(total / plan[1]) / max_reports)) for plan in plans]
    step, histories, alive = 0, [[] for _ in seeds], [True] * size
    loss_sums = torch.zeros(size, device=device)
    last_report = [0] * size  # the step of each student's last report: its running loss counts from there
    if resume is not None:
        students.load(resume["students"])
        optimizer.load_state_dict(resume["optimizer"])
        if "orders" in resume:
            orders.load(resume["orders"])
            loss_sums.copy_(resume["loss_sums"])
            last_report = list(resume["last_report"])
        else:  # a checkpoint from before per-student epochs: every student at an epoch's end, just reported
            orders.load_epoch_end(resume["order_rngs"], resume["epoch"], resume["seen"])
            last_report = [resume["step"]] * size
        for u, saved in zip(unique_seeds, resume["augment_rngs"]):
            augment_rngs[u].set_state(saved)
        step = resume["step"]
        histories, alive = [list(h) for h in resume["histories"]], list(resume["alive"])

    def state() -> dict:
        return {"students": students.state(), "optimizer": optimizer.state_dict(), "orders": orders.state(),
                "augment_rngs": [augment_rngs[u].get_state() for u in unique_seeds], "step": step,
                "loss_sums": loss_sums.clone(), "last_report": list(last_report),
                "histories": [list(h) for h in histories], "alive": list(alive)}

    final_logits = None  # the test logits of the last report, while no step has moved the weights since
    while step < total:
        idx, lengths = orders.next()  # [S, W]: each student's own batch (lengths: where some are shorter)
        if size > 1:  # the stacked optimizer: each student's base rate times the schedule's factor
            optimizer.set_lr(lr_factor(recipe, step, per_epoch, total))
        else:
            for group in optimizer.param_groups:
                group["lr"] = recipe.lr * lr_factor(recipe, step, per_epoch, total)
        inputs, labels, teacher = batch_of(idx)  # [S, W, ...], [S, W], [S, W, C]
        if augmenting:
            inputs, teacher = _augment(inputs, teacher, seeds, augment_rngs, recipe.augment, teacher_model)
        with autocast():
            logits = students.logits(inputs).float()  # [S, W, C]
        if size == 1:
            loss = objectives.loss(objective_of[0], logits[0], labels[0], teacher[0] if uses_teacher else None)
        else:  # [S]; each student's gradient is its own
            loss = objectives.pack_loss(objective_of, logits, labels, teacher, lengths)
        optimizer.zero_grad(set_to_none=True)
        (loss if size == 1 else loss.sum()).backward()
        optimizer.step()
        final_logits = None
        loss_sums += loss.detach()
        step += 1
        due = [s for s in orders.end_epochs(final=step >= total)
               if orders.epochs[s] % report_every[s] == 0 or step >= total]
        if not due:
            continue
        counts = torch.tensor([max(1, step - last_report[s]) for s in range(size)], dtype=loss_sums.dtype)
        train_losses = (loss_sums / counts.to(device)).tolist()
        for s in due:
            loss_sums[s] = 0.0
            last_report[s] = step
            alive[s] = alive[s] and math.isfinite(train_losses[s])
        if not any(alive):
            break
        test_logits = dict(zip(due, _test_logits(students, datas, due)))
        if len(due) == size:
            final_logits = [test_logits[s] for s in range(size)]
        reports: list[dict | None] = [None] * size
        for s in due:
            if alive[s]:
                reports[s] = {"epoch": orders.epochs[s], "step": step, "train_loss": train_losses[s],
                              **test_metrics(test_logits[s], datas[s].y_test),
                              "lr": recipes[s].lr * lr_factor(recipe, max(0, step - 1), per_epoch, total)}
                histories[s].append(reports[s])
        if on_report is not None:
            on_report(reports, state)

    counts = [{"steps": step, "epochs": orders.epochs[s], "pack_size": size, "samples_seen": orders.seen[s],
               "resumed_from_step": resume["step"] if resume is not None else 0} for s in range(size)]
    return _results(students, datas, alive, histories, counts, started, final_logits, forward_flops)


def _batches(datas: list[TrainData], uses_teacher: bool) -> Callable:
    """idx [S, W] (each student's rows) -> the students' inputs, labels and teacher logits [S, W, ...]."""
    if len(datas) == 1:  # one student indexes its own tensors (as fast as a plain loop); a pack gathers
        only = datas[0]

        def batch_of(idx):
            i = idx[0]
            return only.x_train[i][None], only.y_train[i][None], only.teacher_train[i][None] if uses_teacher else None
        return batch_of
    # The students' samples end to end (student s's rows from the sum of the sizes before it): a batch
    # is one index_select.
    device = datas[0].x_train.device
    starts = [0]
    for d in datas[:-1]:
        starts.append(starts[-1] + len(d.x_train))
    offsets = torch.tensor(starts, device=device)[:, None]
    flat = [torch.cat([d.x_train for d in datas]), torch.cat([d.y_train for d in datas]), None]
    if uses_teacher:  # students that read no teacher (lt in a pack with kd) may come without logits
        shape = next(d.teacher_train for d in datas if d.teacher_train is not None)
        flat[2] = torch.cat([d.teacher_train if d.teacher_train is not None else
                             torch.zeros((len(d.x_train),) + shape.shape[1:], dtype=shape.dtype, device=device)
                             for d in datas])

    def batch_of(idx):
        picked = (idx + offsets).flatten()
        return tuple(None if t is None else t.index_select(0, picked).view(idx.shape + t.shape[1:]) for t in flat)
    return batch_of


def _test_logits(students, datas: list[TrainData], members: list[int] | None = None) -> list[torch.Tensor]:
    """The logits of each student of `members` (default all) on its own test set: one pass for a test
    set the students share (trials share the data set's); with distinct sets of one shape (a search's
    validation splits), one pass of each student on its own set; else one pass of the students per
    distinct set."""
    members = list(range(len(datas))) if members is None else members
    subset = None if len(members) == len(datas) else members  # None: the whole pack, no parameter copy
    keys = [(datas[s].x_test.data_ptr(), tuple(datas[s].x_test.shape), datas[s].x_test.device) for s in members]
    if len(set(keys)) > 1 and len({k[1:] for k in keys}) == 1:
        return list(students.predict_own(torch.stack([datas[s].x_test for s in members]), subset))
    passes: dict[tuple, torch.Tensor] = {}
    out = []
    for place, (s, key) in enumerate(zip(members, keys)):
        if key not in passes:  # [len(members), n, C]: every member on this set
            passes[key] = students.predict(datas[s].x_test, subset)
        out.append(passes[key][place])
    return out


def _augment(inputs, teacher, seeds, augment_rngs, name, teacher_model):
    """Each seed's batch augmented once (its students share it) and, with a teacher model, the
    teacher's logits on it computed once for all of that seed's students."""
    inputs, teacher = inputs.clone(), None if teacher is None else teacher.clone()
    for u, rng in augment_rngs.items():
        members = [s for s, seed in enumerate(seeds) if seed == u]
        batch = augment(inputs[members[0]], name, rng)
        inputs[members] = batch
        if teacher_model is not None:
            with torch.no_grad():
                teacher[members] = teacher_model(batch).to(teacher.dtype)
    return inputs, teacher


def _results(students, datas, alive, histories, counts, started, test_logits=None, flops_fwd=None
             ) -> list[TrainResult]:
    """Per student: its trained model and final metrics (test and train accuracy, fidelity, cost; its
    `counts` of steps, epochs and samples); `test_logits`, when given, are the students' logits on
    their test sets at their final weights; `flops_fwd`, when given, a sample's forward FLOPs."""
    trained = students.models()
    if flops_fwd is None:
        flops_fwd = forward_flops(trained[0], datas[0].x_train)
    if test_logits is None:
        test_logits = _test_logits(students, datas)
    wall = time.perf_counter() - started
    results = []
    for s, (model, data) in enumerate(zip(trained, datas)):
        # forward + backward is about 3 forward passes per sample
        metrics: dict[str, Any] = {"student_params": models.count_params(model), **counts[s],
                                   "flops": 3.0 * flops_fwd * counts[s]["samples_seen"],
                                   "wall_s": wall / len(trained)}  # a pack's time, shared evenly
        status, probs = "diverged", None
        if alive[s]:
            train_logits = predict(model, data.x_train)
            if torch.isfinite(train_logits).all() and torch.isfinite(test_logits[s]).all():
                status = "ok"
                metrics.update(**test_metrics(test_logits[s], data.y_test),
                               train_acc=accuracy(train_logits, data.y_train))
                if data.teacher_train is not None:
                    metrics["fidelity_train"] = agreement(train_logits, data.teacher_train, data.y_train)
                if data.teacher_test is not None:
                    metrics["fidelity_test"] = agreement(test_logits[s], data.teacher_test, data.y_test)
                probs = test_logits[s].softmax(-1).float().cpu()
        results.append(TrainResult(status, metrics, model, probs, histories[s]))
    return results
