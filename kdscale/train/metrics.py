"""What a run measures on its logits: accuracy, loss, agreement with the teacher.

Two shapes: one prediction per sample (logits [n, C], labels [n]), or one per token (logits
[n, T, C], labels [n, T], schema.IGNORE_LABEL = -100 where a token has no label, torch's default
ignore_index). Token metrics count the labelled tokens only, and add the sequence accuracy: the
share of sequences whose labelled tokens are all right. Per-sample metrics are computed exactly as
before tokens existed, to the bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy; per token: over the labelled tokens."""
    if labels.dim() == 1:
        return (logits.argmax(1) == labels).float().mean().item()
    return (logits.argmax(-1) == labels)[labels >= 0].float().mean().item()


def sequence_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Per token: the share of sequences whose labelled tokens are all predicted right."""
    return ((logits.argmax(-1) == labels) | (labels < 0)).all(1).float().mean().item()


def test_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """test_acc and test_loss (mean cross-entropy; per token: of the labelled tokens), and for
    tokens test_seq_acc."""
    metrics = {"test_acc": accuracy(logits, labels),
               "test_loss": F.cross_entropy(logits.flatten(0, -2), labels.flatten()).item()}
    if labels.dim() > 1:
        metrics["test_seq_acc"] = sequence_accuracy(logits, labels)
    return metrics


def agreement(logits: torch.Tensor, other: torch.Tensor, labels: torch.Tensor | None = None) -> float:
    """Top-1 agreement (fidelity when `other` is the teacher's logits); per token, over the tokens
    `labels` marks as labelled."""
    if logits.dim() == 2:
        return (logits.argmax(1) == other.argmax(1)).float().mean().item()
    same = logits.argmax(-1) == other.argmax(-1)
    return (same if labels is None else same[labels >= 0]).float().mean().item()
