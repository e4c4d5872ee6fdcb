"""One trial end to end, without Ray or MLflow: data subset, teacher logits, student, results row.

The CLI's `kdscale trial` and the engine's workers both call `run_trial`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from kdscale import data as datasets
from kdscale.config import DataSpec, TrialSpec, spec_id
from kdscale.teacher import TeacherOutputs, get_teacher
from kdscale.train import TrainData, train_students

@dataclass
class TrialOutcome:
    row: dict[str, Any]  # one row of the results table (without `study`)
    test_probs: np.ndarray | None  # float32 [n_test, C]; tokens [n_test, T, C]
    test_labels: np.ndarray  # int64 [n_test]; tokens [n_test, T]
    history: list[dict[str, Any]]
    test_features: np.ndarray | None = None  # float32 [n_test, D], with extras "features"
    model: torch.nn.Module | None = None  # the trained student (not stored: for callers that keep it)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`auto` (or None) takes a GPU when one is visible, else the CPU. A CUDA device that is not
    there is one EnvironmentFault, raised before any data is made or read; a malformed name a SpecError."""
    from kdscale.errors import EnvironmentFault, SpecError

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as error:
        raise SpecError(f"--device {device} is invalid: {error} (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise EnvironmentFault(f"device: --device {device} asks for a CUDA GPU, and torch sees none "
                                   f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not built in'}); "
                                   "use --device cpu or auto")
        if device.index is not None and device.index >= count:
            raise EnvironmentFault(f"device: --device {device} asks for GPU {device.index}, and torch sees {count} "
                                   f"(cuda:0 to cuda:{count - 1})")
    return device


def spec_row(spec: TrialSpec) -> dict[str, Any]:
    """The columns of a row that follow from the spec alone (also used for failed trials)."""
    objective, recipe = spec.objective, spec.recipe
    return {"trial_id": spec.id, "label": spec.label, "dataset": spec.data.name,
            "n_teacher": spec.data.n_teacher, "n_train": spec.n_train, "kappa": spec.kappa,
            "teacher": spec.teacher.model.label, "student": spec.student.label, "teacher_id": spec.teacher.id,
            "objective": objective.name,
            "tau": objective.tau if objective.name == "kd" else math.nan,
            "alpha": objective.alpha if objective.name in ("kd", "hard", "l2") else math.nan,
            "tau_squared": objective.tau_squared if objective.name == "kd" else None,
            "epsilon": objective.epsilon if objective.name == "ls" else math.nan,
            "tau_teacher": objective.tau_teacher if objective.name == "embed" else math.nan,
            "init": spec.init, "init_scale": spec.init_scale, "inputs": spec.inputs,
            "seed": spec.seed, "budget": recipe.budget, "lr": recipe.lr,
            "weight_decay": recipe.weight_decay, "batch_size": recipe.batch_size,
            "extras": ",".join(spec.extras)}  # what was measured beyond the metrics (a reuse needs as much)


def _tensors(spec: TrialSpec, teacher: TeacherOutputs, loaded, device: torch.device, test=None,
             teacher_model=None) -> TrainData:
    """The trial's subset, test set and teacher logits as tensors on `device` (`test`: the test
    set's (inputs, labels) tensors, shared by a pack's trials so it is evaluated once). With
    inputs "noise" the subset's inputs are Gaussian noise of their shape, and the teacher's logits
    on them come from `teacher_model()`, the teacher as a model."""
    indices = datasets.student_indices(loaded.y_pool, spec.data.n_teacher, spec.n_train, spec.seed)
    if len(teacher.logits_train) <= indices.max():
        raise ValueError(f"teacher logits cover {len(teacher.logits_train)} samples; the trial needs "
                         f"{indices.max() + 1} (call get_teacher with a larger n_pool)")

    def tensor(array):
        return torch.as_tensor(np.ascontiguousarray(array)).to(device)
    x_test, y_test = test if test is not None else (tensor(loaded.x_test), tensor(loaded.y_test))
    if spec.inputs == "noise":
        x_train = noise_inputs(loaded.x_pool[:spec.data.n_teacher], spec.n_train, spec.seed).to(device)
        from kdscale.train import predict

        return TrainData(x_train, tensor(loaded.y_pool[indices]), x_test, y_test,
                         predict(teacher_model(), x_train), tensor(teacher.logits_test))
    return TrainData(tensor(loaded.x_pool[indices]), tensor(loaded.y_pool[indices]), x_test, y_test,
                     tensor(teacher.logits_train[indices]), tensor(teacher.logits_test))


def noise_inputs(reference: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """n samples of Gaussian noise in the shape of `reference`'s samples, with its overall mean and
    standard deviation (arXiv 2302.12091's control: distillation on inputs with no structure).
    Drawn from the trial seed's own stream, so a smaller kappa's noise is a prefix of a larger's."""
    from kdscale.train import derive_seed

    generator = torch.Generator(device="cpu").manual_seed(derive_seed(seed, NOISE_INPUT_STREAM))
    noise = torch.randn((n, *reference.shape[1:]), generator=generator, dtype=torch.float32)
    return noise * float(reference.std()) + float(reference.mean())


NTK_PROBE = 100  # test samples of the NTK alignment (extras "ntk"): [100, 100] kernels, as the bench's


def check_ntk(data: DataSpec, model_specs, info=None) -> None:
    """Extras "ntk" needs real-valued inputs and a Jacobian within the NTK's memory bound for every
    model of `model_specs` (students and teachers): kdscale.study.check_study checks a study's
    pairs before any teacher trains, run_trial a lone trial's before anything trains."""
    from kdscale import models
    from kdscale.errors import SpecError
    from kdscale.representations.ntk import MAX_JACOBIAN_ELEMENTS

    info = info if info is not None else datasets.info(data)
    if info.vocab_size is not None:
        raise SpecError(f"extras 'ntk' needs real-valued inputs; data set {data.name!r} has tokens "
                        "(an NTK over token ids is not defined here)")
    params = max(models.count_params(models.build(m, info.input_shape, info.num_classes, info.vocab_size))
                 for m in model_specs)
    elements = NTK_PROBE * info.num_classes * params
    if elements > MAX_JACOBIAN_ELEMENTS:
        raise SpecError(f"extras 'ntk': the NTK's Jacobian of {NTK_PROBE} probes x {info.num_classes} classes x "
                        f"{params:,} parameters has {elements:,} elements, above the bound "
                        f"of {MAX_JACOBIAN_ELEMENTS:,} (kdscale.representations.ntk): leave 'ntk' out for models "
                        "this large")


NOISE_INPUT_STREAM = 5  # derive_seed purpose (1 init, 2 batch order, 3 augmentation, 4 init noise)


def _outcome(spec: TrialSpec, result, teacher: TeacherOutputs, loaded, tensors: TrainData,
             start: Start | None = None, teacher_model=None) -> TrialOutcome:
    row = spec_row(spec)
    row.update({"status": result.status, "error": None if result.status == "ok" else "loss became NaN or inf",
                "teacher_params": teacher.params, "teacher_test_acc": teacher.test_acc, "test_ppl": None,
                "teacher_test_ppl": None, "test_seq_acc": None, "fp_iterations": None,  # token models only (metrics, below)
                "node_id": None,  # the engine fills in where the trial ran
                "cka_teacher": None, "fa_teacher": None, "probe_acc": None, "teacher_probe_acc": None,
                "transfer_probe_acc": None, "teacher_transfer_probe_acc": None, "ntk_teacher": None,  # with spec.extras
                "init_distance": None if start is None else start.distance,
                "end_distance": _end_distance(result, start)})
    row.update(result.metrics)
    if loaded.info.next_token:  # a language model: perplexity, exp(mean cross-entropy per test token)
        row["teacher_test_ppl"] = perplexity(tensors.teacher_test, tensors.y_test)
        if result.status == "ok":
            row["test_ppl"] = math.exp(row["test_loss"])
    projected = "projection" in dict(spec.student.options)
    if projected:  # K projection outputs are no classes: accuracy and loss would be noise; see probe_acc
        row.update(test_acc=math.nan, test_loss=math.nan, train_acc=math.nan)
    if spec.objective.uses_teacher:  # the teacher's forward passes: once per sample, or per sample seen
        row["flops"] += teacher.forward_flops * (result.metrics["samples_seen"] if spec.recipe.augment != "none"
                                                 else spec.n_train)
    features = None
    if result.status == "ok":
        from kdscale.train import agreement, predict  # fidelity to this spec's own teacher (a twin's differs)

        row["fidelity_train"] = agreement(predict(result.model, tensors.x_train), tensors.teacher_train,
                                          tensors.y_train)
        row["fidelity_test"] = agreement(result.test_probs.to(tensors.teacher_test.device), tensors.teacher_test,
                                         tensors.y_test)
        if hasattr(result.model, "fixed_point_iterations"):  # the count a dense fixed-point RNN used
            row["fp_iterations"] = result.model.fixed_point_iterations(tensors.x_test)
        if spec.extras:
            extra_metrics, features = measure_extras(spec, result.model, teacher, loaded, tensors, teacher_model)
            row.update(extra_metrics)
    probs = None if result.test_probs is None or projected else result.test_probs.numpy().astype(np.float32)
    return TrialOutcome(row, probs, loaded.y_test, result.history, features, result.model)


def _end_distance(result, start: Start | None) -> float:
    """The trained student's relative distance to its teacher's initialisation (kdscale.train.init):
    how far training took it from there; NaN for another architecture or a diverged student."""
    from kdscale.train.init import relative_distance

    if start is None or start.teacher_init is None or result.status != "ok":
        return math.nan
    end = {name: value.detach().cpu() for name, value in result.model.state_dict().items()}
    return relative_distance(end, start.teacher_init, {name for name, _ in result.model.named_parameters()})


def perplexity(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """exp(mean cross-entropy over the labelled tokens) of logits [n, T, C] against labels [n, T]."""
    import torch.nn.functional as F

    return math.exp(F.cross_entropy(logits.float().flatten(0, -2), labels.flatten()).item())


def run_trial(spec: TrialSpec, teacher: TeacherOutputs | None = None, device: str | torch.device | None = None,
              cache_root: Path | None = None, on_report: Callable | None = None, resume: dict | None = None,
              log=None) -> TrialOutcome:
    """Train the student of `spec` against its teacher (trained or loaded if not given).

    `on_report(report, state)` is called at each of the trainer's reports.
    """
    single = None if on_report is None else (lambda reports, state: on_report(reports[0], state))
    teachers = None if teacher is None else {spec.teacher.id: teacher}
    return run_pack([spec], teachers, device, cache_root, single, resume, log)[0]


def training_key(spec: TrialSpec) -> str:
    """Trials with one training key train the same student: an objective that reads no teacher (lt,
    ls) trains alike whatever the pair's teacher is, so its trials of several pairs ("twins") train
    once and differ only in the columns that compare with the teacher (fidelity, and cka or fa)."""
    if spec.objective.uses_teacher or spec.init != "independent" or \
            {"cka", "fa", "teacher_probe", "transfer", "ntk"} & set(spec.extras):
        return spec.id
    return spec_id((spec.data, spec.student, spec.kappa, spec.objective, spec.recipe, spec.seed, spec.extras))


def model_key(spec: TrialSpec) -> str:
    """What a trial's forward FLOPs depend on: its student and data (kdscale.engine passes them by it)."""
    return spec_id((spec.student, spec.data))


def run_pack(specs: list[TrialSpec], teachers: dict[str, TeacherOutputs] | None = None,
             device: str | torch.device | None = None, cache_root: Path | None = None,
             on_report: Callable | None = None, resume: dict | None = None, log=None,
             forward_flops: float | None = None) -> list[TrialOutcome]:
    """Train students that differ only by seed, objective, learning rate, teacher and number of
    samples together (kdscale.train: one student trains as a plain module, several as a vmapped
    pack; of several sizes only where kdscale.train allows it); twins (`training_key`) train once.
    `teachers` maps teacher ids to their outputs (loaded if missing).

    `on_report(reports, state)` gets a list with one report per spec (None once diverged, or when
    that student's epoch did not end at this report). `forward_flops`, the student's forward FLOPs
    of one sample when the caller knows them (kdscale.engine), else counted here.
    """
    spec = specs[0]
    if any(other.data != spec.data or other.student != spec.student for other in specs):
        raise ValueError("a pack's trials must share their data and student")
    device = resolve_device(device)
    for s in specs:
        if "ntk" in s.extras:
            check_ntk(s.data, (s.student, s.teacher.model))
    n_stream = max(datasets.stream_length_for(spec.data.n_teacher, s.n_train) for s in specs)
    teachers = dict(teachers or {})
    for s in specs:
        if s.teacher.id not in teachers:
            teachers[s.teacher.id] = get_teacher(s.teacher, n_stream, root=cache_root, device=device, log=log)
    loaded = datasets.load(spec.data, n_stream)
    test = (torch.as_tensor(loaded.x_test).to(device), torch.as_tensor(loaded.y_test).to(device))
    teacher_models: dict[str, torch.nn.Module] = {}

    def teacher_model_of(s: TrialSpec):
        def get():
            from kdscale.teacher import load_model

            if s.teacher.id not in teacher_models:
                teacher_models[s.teacher.id] = load_model(teachers[s.teacher.id], device)
            return teacher_models[s.teacher.id]
        return get
    tensors = [_tensors(s, teachers[s.teacher.id], loaded, device, test, teacher_model_of(s)) for s in specs]
    keys = [training_key(s) for s in specs]  # hashed once: at every report they cost 3% of a pack's time
    trained: dict[str, int] = {}  # training key -> index of the spec whose student trains
    for i, key in enumerate(keys):
        trained.setdefault(key, i)
    unique = list(trained.values())
    place = [unique.index(trained[key]) for key in keys]  # each spec's student among the trained ones
    if spec.recipe.augment != "none" and any(s.objective.uses_teacher for s in specs):
        from kdscale.teacher import load_model  # augmented batches need the teacher itself, once

        if len({s.teacher.id for s in specs if s.objective.uses_teacher}) > 1:
            raise ValueError("an augmented pack's students must share one teacher")
        model = load_model(teachers[next(s for s in specs if s.objective.uses_teacher).teacher.id], device)
        for t in tensors:
            t.teacher_model = model
    def report(reports, state):  # each spec gets the report of the student that trains for it
        on_report([reports[p] for p in place], state)
    starts = [_start(s, loaded.info) for s in specs]
    results = train_students(spec.student, [specs[i].objective for i in unique], [specs[i].recipe for i in unique],
                             [specs[i].seed for i in unique], [tensors[i] for i in unique], loaded.info.num_classes,
                             on_report=None if on_report is None else report, resume=resume,
                             vocab_size=loaded.info.vocab_size, init_states=[starts[i].state for i in unique],
                             forward_flops=forward_flops)
    return [_outcome(s, results[p], teachers[s.teacher.id], loaded, t, start, teacher_model_of(s))
            for s, t, start, p in zip(specs, tensors, starts, place)]


class Start(NamedTuple):
    """Where a student starts (kdscale.train.init), measured against its teacher's initialisation."""
    state: dict | None  # the starting state dict; None: the seed's own initialisation, built by the trainer
    distance: float  # relative distance of the start to the teacher's initialisation; NaN: another architecture
    teacher_init: dict | None  # the teacher's initial state dict (CPU), for the end's distance; None: NaN


def _start(spec: TrialSpec, info) -> Start:
    """The student's start (see Start)."""
    from kdscale.train import initial_model
    from kdscale.train.init import initial_state, relative_distance

    if spec.student != spec.teacher.model:
        return Start(None, math.nan, None)
    shape = tuple(info.input_shape)
    own = initial_model(spec.student, spec.seed, shape, info.num_classes, info.vocab_size)
    theirs = initial_model(spec.teacher.model, spec.teacher.seed, shape, info.num_classes, info.vocab_size).state_dict()
    state = initial_state(spec.init, spec.init_scale, own.state_dict(), theirs, spec.seed)
    distance = relative_distance(state, theirs, {name for name, _ in own.named_parameters()})
    return Start(None if spec.init == "independent" else state, distance, theirs)


def measure_extras(spec: TrialSpec, model, teacher: TeacherOutputs, loaded, tensors: TrainData,
                   teacher_model=None):
    """The opt-in representation metrics of `spec.extras` (see kdscale.representations);
    `teacher_model()` gives the teacher as a model (loaded from its cache when not given)."""
    from kdscale import representations as rep
    from kdscale.teacher import teacher_features

    metrics: dict[str, Any] = {}
    student_test = rep.features_of(model, tensors.x_test)
    if "cka" in spec.extras or "fa" in spec.extras:
        teacher_test = teacher_features(teacher, tensors.x_test)
        if "cka" in spec.extras:
            metrics["cka_teacher"] = rep.linear_cka(student_test, teacher_test)
        if "fa" in spec.extras:  # coordinate-wise: defined for same-width features only
            same = student_test.shape[1] == teacher_test.shape[1]
            metrics["fa_teacher"] = rep.feature_alignment(student_test, teacher_test) if same else math.nan
    if "probe" in spec.extras:  # the paper's protocol: refit the head on the full training pool
        n = spec.data.n_teacher
        pool = torch.as_tensor(loaded.x_pool[:n]).to(tensors.x_test.device)
        probe = rep.linear_probe(rep.features_of(model, pool), loaded.y_pool[:n], student_test, loaded.y_test,
                                 num_classes=loaded.info.num_classes)
        metrics["probe_acc"] = probe.test_acc
    if {"teacher_probe", "transfer", "ntk"} & set(spec.extras):
        from kdscale.teacher import load_model

        device = tensors.x_test.device
        frozen_teacher = teacher_model() if teacher_model is not None else load_model(teacher, device)
        if "ntk" in spec.extras:  # Fig. 16: on the first NTK_PROBE test samples, in the trace form
            metrics["ntk_teacher"] = rep.ntk_alignment(model, frozen_teacher, tensors.x_test[:NTK_PROBE])
        n = spec.data.n_teacher
        if "teacher_probe" in spec.extras:  # the teacher's features, the same samples and protocol
            metrics["teacher_probe_acc"] = rep.probe_accuracy(frozen_teacher, loaded, n, device)
        if "transfer" in spec.extras:  # both on the second task (representations.transfer)
            second = datasets.load(replace(rep.transfer_data(spec.data), n_teacher=n), n)
            metrics["transfer_probe_acc"] = rep.probe_accuracy(model, second, n, device)
            metrics["teacher_transfer_probe_acc"] = rep.probe_accuracy(frozen_teacher, second, n, device)
    features = student_test.float().cpu().numpy() if "features" in spec.extras else None
    return metrics, features
