"""Training objectives: what a student's logits are pulled towards.

Every objective is a pure function of (spec, student logits, labels, teacher logits) returning the
batch-mean loss. Shapes: logits [B, C], labels [B] (int64). Token models give one prediction per
token, logits [B, T, C] and labels [B, T]: `loss` flattens the labelled tokens (label >= 0; padding
carries schema.IGNORE_LABEL) into the batch, so every objective is the mean over the batch's
labelled tokens, kd at each token at temperature tau against the teacher's logits at that token.
A pack of S students (kdscale.train) gets each student's own loss, [S], from `pack_loss`, which
computes lt and kd over the students' stacked logits at once.

Eq. 1 of the paper (arXiv 2510.15516), with c = tau^2 when `tau_squared` else 1:
    L_kd = (1 - alpha) * c * KL(p_t^tau || p_s^tau) + alpha * CE(y, p_s)
where p^tau = softmax(z / tau). The tau^2 factor (Hinton et al. 2015, and the paper's own code)
keeps the soft term's gradient independent of tau; without it a high tau shrinks the gradient by
1 / tau^2, which acts like a smaller learning rate. The factor is applied the same way for every
alpha, including alpha = 0 (torchdistill's KDLoss drops it there, against its own docstring).

`embed` is label free and lives in embedding space (Sarnthein et al., "Random Teachers are Good
Teachers", arXiv 2302.12091, eq. 1, after DINO, Caron et al. 2021): teacher and student each end in
a projection head to K outputs (model option `projection=K`, kdscale.models), and
    L_embed = CE(softmax(t / tau_t), softmax(s / tau_s)) = -sum_k p_t,k log p_s,k
with each side at its own temperature (tau_s = spec.tau, tau_t = spec.tau_teacher; DINO's 0.1 and
0.04: a sharp teacher). No tau^2 factor: the two temperatures differ, and there is no label term.
It differs from KL(p_t || p_s) by the teacher's entropy, a constant, so the gradients are KL's.
DINO's teacher centring and EMA are left out: the teacher is fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kdscale.config import ObjectiveSpec
from kdscale.errors import SpecError
from kdscale.registry import Registry

OBJECTIVES: Registry = Registry("objective")


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(p_t^tau || p_s^tau), batch mean. Written out (F.kl_div's arithmetic with log_target, the
    same values bitwise) in the form `pack_loss` computes for a pack's stacked students."""
    log_s = F.log_softmax(student_logits / tau, dim=1)
    log_t = F.log_softmax(teacher_logits / tau, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum() / student_logits.shape[0]


def distillation_loss(student_logits, teacher_logits, labels, tau: float, alpha: float,
                      tau_squared: bool = True) -> torch.Tensor:
    """Eq. 1 of the paper (see module doc)."""
    scale = tau * tau if tau_squared else 1.0
    soft = kl_to_teacher(student_logits, teacher_logits, tau)
    if alpha == 0.0:
        return scale * soft
    return (1.0 - alpha) * scale * soft + alpha * F.cross_entropy(student_logits, labels)


def logit_l2(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """(1 / 2C) * ||(z_s - mean z_s) - (z_t - mean z_t)||^2, batch mean.

    This is the tau -> infinity limit of tau^2 * KL(p_t^tau || p_s^tau) (expand both softmaxes to
    first order in 1/tau), so `l2` is the end of the temperature axis of `kd`, on the same scale.
    """
    diff = student_logits - teacher_logits
    diff = diff - diff.mean(dim=1, keepdim=True)
    return 0.5 * diff.pow(2).mean(dim=1).mean()


def embedding_loss(student_outputs: torch.Tensor, teacher_outputs: torch.Tensor, tau_student: float,
                   tau_teacher: float) -> torch.Tensor:
    """CE(softmax(t / tau_t), softmax(s / tau_s)), batch mean, over projection outputs [B, K]."""
    targets = F.softmax(teacher_outputs / tau_teacher, dim=1)
    return -(targets * F.log_softmax(student_outputs / tau_student, dim=1)).sum(dim=1).mean()


def _with_labels(alpha: float, teacher_term: torch.Tensor, student_logits, labels) -> torch.Tensor:
    if alpha == 0.0:
        return teacher_term
    return (1.0 - alpha) * teacher_term + alpha * F.cross_entropy(student_logits, labels)


@OBJECTIVES.register("lt")
def label_training(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    return F.cross_entropy(student_logits, labels)


@OBJECTIVES.register("kd")
def knowledge_distillation(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    return distillation_loss(student_logits, teacher_logits, labels, spec.tau, spec.alpha, spec.tau_squared)


@OBJECTIVES.register("ls")
def label_smoothing(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    """Cross-entropy with (1 - epsilon) * one-hot + epsilon / C.

    The paper's own baseline (alpha = 0.9 towards a one-hot of 0.99 passed through a softmax at
    tau = 1) amounts to epsilon of about 0.09 for 10 classes; see docs/objectives.md.
    """
    return F.cross_entropy(student_logits, labels, label_smoothing=spec.epsilon)


@OBJECTIVES.register("hard")
def hard_teacher_labels(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    teacher_term = F.cross_entropy(student_logits, teacher_logits.argmax(dim=1))
    return _with_labels(spec.alpha, teacher_term, student_logits, labels)


@OBJECTIVES.register("l2")
def logit_regression(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    return _with_labels(spec.alpha, logit_l2(student_logits, teacher_logits), student_logits, labels)


@OBJECTIVES.register("embed")
def embedding_distillation(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None):
    return embedding_loss(student_logits, teacher_logits, spec.tau, spec.tau_teacher)


def loss(spec: ObjectiveSpec, student_logits, labels, teacher_logits=None) -> torch.Tensor:
    """The batch-mean loss of `spec`; teacher-based objectives need `teacher_logits`. Per-token
    logits [B, T, C] count each labelled token as one sample (see the module doc)."""
    if spec.uses_teacher and teacher_logits is None:
        raise SpecError(f"objective.name={spec.name!r} needs teacher logits")
    if student_logits.dim() == 3:
        labelled = labels >= 0
        student_logits, labels = student_logits[labelled], labels[labelled]
        teacher_logits = None if teacher_logits is None else teacher_logits[labelled]
    return OBJECTIVES.get(spec.name)(spec, student_logits, labels, teacher_logits)


# False: `pack_loss` calls `loss` once per student (bench/pack_scaling.py --loss compares the two).
GROUPED_LOSS = True


def _batch_mean(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """[k] means over the batch of per-sample values [k, B]; with `weights` [k, B] (1 for a real row,
    0 for padding), the means of each student's real rows."""
    if weights is None:
        return per_sample.mean(1)
    return (per_sample * weights).sum(1) / weights.sum(1)


def _stacked_ce(student_logits: torch.Tensor, labels: torch.Tensor, weights=None) -> torch.Tensor:
    """CE(y, p_s) of each of k students, [k], from logits [k, B, C] and labels [k, B]."""
    k, batch, classes = student_logits.shape
    per_sample = F.cross_entropy(student_logits.reshape(-1, classes), labels.reshape(-1), reduction="none")
    return _batch_mean(per_sample.view(k, batch), weights)


def _stacked(spec: ObjectiveSpec, student_logits, labels, teacher_logits, weights=None) -> torch.Tensor | None:
    """`loss` of k students of one spec at once, [k] (logits [k, B, C]), for lt and kd; None for others.
    `weights` [k, B], when given, leave each student's padding rows out (kdscale.train.order)."""
    if spec.name == "lt":
        return _stacked_ce(student_logits, labels, weights)
    if spec.name != "kd":
        return None
    log_s = F.log_softmax(student_logits / spec.tau, dim=2)
    log_t = F.log_softmax(teacher_logits / spec.tau, dim=2)
    if weights is None:
        soft = (log_t.exp() * (log_t - log_s)).sum((1, 2)) / student_logits.shape[1]
    else:
        soft = _batch_mean((log_t.exp() * (log_t - log_s)).sum(2), weights)
    scale = spec.tau * spec.tau if spec.tau_squared else 1.0
    if spec.alpha == 0.0:
        return scale * soft
    return (1.0 - spec.alpha) * scale * soft + spec.alpha * _stacked_ce(student_logits, labels, weights)


def pack_loss(specs: list[ObjectiveSpec], student_logits, labels, teacher_logits=None,
              lengths: list[int] | None = None) -> torch.Tensor:
    """Each student's batch-mean loss, [S], for a pack's logits [S, B, C], labels [S, B] and teacher
    logits [S, B, C] (or None when no spec reads a teacher). The students of one lt or kd spec share
    one computation over their stacked logits (a handful of kernels, not a handful per student);
    other objectives, and per-token logits [S, B, T, C] (their labelled tokens differ in number per
    student), go one student at a time through `loss`. `lengths`, when given, are the students' real
    rows: student s's batch is its first lengths[s] rows, the rest padding (kdscale.train.order)."""
    size = len(specs)
    weights = None
    if lengths is not None:
        width = student_logits.shape[1]
        weights = (torch.arange(width, device=student_logits.device)[None, :] <
                   torch.tensor(lengths, device=student_logits.device)[:, None]).to(student_logits.dtype)
    groups: dict[ObjectiveSpec, list[int]] = {}
    for s, spec in enumerate(specs):
        groups.setdefault(spec, []).append(s)
    values, order = [], []
    for spec, members in groups.items():
        value = None
        if GROUPED_LOSS and student_logits.dim() == 3:
            if len(members) == size:
                picked = (student_logits, labels, teacher_logits if spec.uses_teacher else None, weights)
            else:
                index = torch.tensor(members, device=student_logits.device)
                picked = (student_logits.index_select(0, index), labels.index_select(0, index),
                          teacher_logits.index_select(0, index) if spec.uses_teacher else None,
                          None if weights is None else weights.index_select(0, index))
            value = _stacked(spec, *picked)
        if value is None:
            real = [student_logits.shape[1] if lengths is None else lengths[s] for s in members]
            value = torch.stack([loss(spec, student_logits[s, :n], labels[s, :n],
                                      teacher_logits[s, :n] if spec.uses_teacher else None)
                                 for s, n in zip(members, real)])
        values.append(value)
        order += members
    if len(values) == 1:
        return values[0]
    inverse = torch.empty(size, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(size)
    return torch.cat(values).index_select(0, inverse.to(student_logits.device))


def paper_ls_epsilon(num_classes: int, alpha: float = 0.9, peak: float = 0.99) -> float:
    """The uniform-smoothing epsilon that the paper's label-smoothing baseline amounts to.

    Its code mixes alpha * one-hot with (1 - alpha) * softmax(peak * one-hot) at tau = 1. Every
    wrong class then gets (1 - alpha) / (e^peak + C - 1), which uniform smoothing gives as
    epsilon / C; so epsilon = (1 - alpha) * C / (e^peak + C - 1), 0.0855 for C = 10.
    """
    import math

    return (1.0 - alpha) * num_classes / (math.exp(peak) + num_classes - 1)
