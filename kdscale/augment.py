"""Data augmentation, batched on the training device: one call per batch, no per-sample Python.

Names (`RecipeSpec.augment`):
  none              the batch as it is
  crop-flip         random crop after zero padding of 4 pixels, random horizontal flip (the
                    standard CIFAR augmentation)
  crop-flip-rotate  the same, then a random rotation in [-15, 15] degrees (the paper's CIFAR-100)

Randomness comes from a generator the trainer seeds from the trial's seed, so augmented runs are
as reproducible as plain ones. With augmentation the teacher cannot be read from cached logits:
the trainer runs it on the same augmented batch as the student (kdscale.train).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PAD = 4
MAX_DEGREES = 15.0


def random_crop(x: torch.Tensor, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Each image [C, H, W] of the batch cropped back to H x W at a random offset of its zero-padded self."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [n, h]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # [n, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indexing over (batch, row, col); channels stay whole: [n, h, w, C] -> [n, C, h, w]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image flipped left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_rotation(x: torch.Tensor, generator: torch.Generator, degrees: float = MAX_DEGREES) -> torch.Tensor:
    """Each image rotated about its centre by an angle uniform in [-degrees, degrees], zeros outside."""
    angle = (torch.rand(len(x), generator=generator, device=generator.device).to(x.device) * 2 - 1) \
        * math.radians(degrees)
    return rotate(x, angle)


def rotate(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Image i of [B, C, H, W] rotated by angle[i] radians about its centre (bilinear, zeros outside)."""
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # [n, 2, 3]
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def augment(x: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """The batch `x` [B, C, H, W] under augmentation `name` (see module doc)."""
    if name == "none":
        return x
    x = random_flip(random_crop(x, generator), generator)
    if name == "crop-flip-rotate":
        x = random_rotation(x, generator)
    return x
