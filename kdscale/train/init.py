"""Where a student starts: its own initialisation, its teacher's, near it, or between the two.

Sarnthein et al. ("Random Teachers are Good Teachers", arXiv 2302.12091) find that a student
distilled from a random teacher learns the most when it starts close to that teacher. With
theta_T the teacher's initialisation (for an untrained teacher, its weights) and theta_0 the
student's own seed's initialisation (kdscale.train.initial_model):

- `independent`: theta_0 (the default; every trial before issue 18);
- `teacher`: theta_T, the teacher's initialisation exactly (issue 17's `--student-init teacher`);
- `near` at scale s: theta_T + s * rms(W) * eps per weight tensor W, eps ~ N(0, 1) drawn from the
  student's seed: noise relative to each tensor's own size, so a layer with small weights is not
  swamped; s = 0 is `teacher`;
- `interpolate` at t: (1 - t) * theta_T + t * theta_0; t = 0 is `teacher`, t = 1 `independent`.
  Two independent initialisations are nearly orthogonal, so the norm dips to about
  sqrt((1 - t)^2 + t^2) of theirs in between.

Buffers (batch-norm running statistics) are the teacher's for `teacher` and `near`, interpolated
for `interpolate`; integer buffers (step counts) are the student's own.
`relative_distance` measures any start: ||theta_S - theta_T|| / ||theta_T|| over the parameters.
"""
from __future__ import annotations

import torch

from kdscale.train.schedule import derive_seed

NOISE_STREAM = 4  # derive_seed purpose of the `near` noise (1 init, 2 batch order, 3 augmentation)


def initial_state(init: str, scale: float, own: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                  seed: int) -> dict[str, torch.Tensor]:
    """The starting state dict of a student (see the module doc); `own` and `teacher` are the
    state dicts of the student's own initialisation and of the teacher's, same architecture."""
    if init == "independent":
        return own
    if own.keys() != teacher.keys() or any(own[k].shape != teacher[k].shape for k in own):
        raise ValueError("a student that starts from its teacher needs the teacher's architecture")
    generator = torch.Generator(device="cpu").manual_seed(derive_seed(seed, NOISE_STREAM))
    out = {}
    for name in sorted(own):
        mine, theirs = own[name], teacher[name]
        if not theirs.is_floating_point():
            out[name] = mine.clone()
        elif init == "teacher" or (init == "near" and scale == 0.0):
            out[name] = theirs.clone()
        elif init == "near":
            noise = torch.randn(theirs.shape, generator=generator, dtype=torch.float32).to(theirs)
            out[name] = theirs + scale * theirs.float().pow(2).mean().sqrt().to(theirs) * noise
        elif init == "interpolate":
            out[name] = (1.0 - scale) * theirs + scale * mine
        else:
            raise ValueError(f"init={init!r} is unknown")
    return out


def relative_distance(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
                      parameters: set[str]) -> float:
    """||theta_S - theta_T|| / ||theta_T|| over the named parameters (buffers left out)."""
    diff = sum(float((student[k].double() - teacher[k].double()).pow(2).sum()) for k in parameters)
    norm = sum(float(teacher[k].double().pow(2).sum()) for k in parameters)
    return (diff / norm) ** 0.5 if norm > 0 else float("nan")
