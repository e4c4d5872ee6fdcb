"""Empirical neural tangent kernels and the alignment of two models' NTKs (Figure 16 of the paper).

The empirical NTK of a network f(x; theta) with C outputs at its current parameters is the
Gram matrix of its parameter gradients, per pair of logits:

    Theta_cc'(x, x') = <d f_c(x) / d theta, d f_c'(x') / d theta>

(Jacot, Gabriel, Hongler 2018). An n x n kernel needs a scalar per pair of samples; `form` picks it:

- "trace" (default): sum_c Theta_cc(x, x'), the trace over logits of the per-logit kernels. It is
  the Gram matrix of the flattened Jacobians [n, C * P]: every logit's gradient counts, and logits
  do not cancel each other. It is the `compute='trace'` contraction of the authors' code
  (`utils/kernels.py` in github.com/GiuliaLanzillotta/DED, after PyTorch's NTK tutorial); which
  contraction Figure 16 used is not stated in what we could read.
- "sum": the NTK of the summed logits g = sum_c f_c, i.e. sum_{c,c'} Theta_cc'(x, x'): cheaper
  (one backward pass per sample), but gradients of different logits can cancel.

For f(x) = W x + b with C outputs both forms give C (x . x' + 1); they differ once layers are shared
(for f = V U x: "trace" C (Ux).(Ux') + tr(V V^T) x.x', "sum" C (Ux).(Ux') + 1^T V V^T 1 x.x').

Jacobians come from torch.func (functional_call + vmap + jacrev) in the model's dtype, in eval
mode (batch norm uses its running statistics). Small models only: the Jacobian [n, C, P] is held
whole; `empirical_ntk` refuses more than `max_jacobian_elements` (2^27, 512 MiB in float32) rather
than exhaust memory. For n = 100 probes and C = 10 that is up to 134k parameters (cnn1d width 64
has 28k; a CIFAR ResNet-18 has 11M and needs the chunked code of the authors' `utils/ntk.py`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from kdscale.representations.similarity import Array, kernel_cka

NTK_FORMS = ("trace", "sum")
MAX_JACOBIAN_ELEMENTS = 2 ** 27


def empirical_ntk(model: nn.Module, x: Array, form: str = "trace",
                  max_jacobian_elements: int = MAX_JACOBIAN_ELEMENTS) -> torch.Tensor:
    """The empirical NTK [n, n] (float64, on the model's device) of `model` on x [n, ...]; see the
    module docstring for `form`. Raises ValueError when n * C * P (C = 1 for "sum") exceeds
    `max_jacobian_elements`."""
    if form not in NTK_FORMS:
        raise ValueError(f"form={form!r} is invalid: choose one of {', '.join(NTK_FORMS)}")
    params = {name: p.detach() for name, p in model.named_parameters()}
    if not params:
        raise ValueError("the model has no parameters: its NTK is zero")
    first = next(iter(params.values()))
    x = torch.as_tensor(x).to(device=first.device, dtype=first.dtype)
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            n_outputs = model(x[:1]).flatten(1).shape[1] if form == "trace" else 1
        elements = len(x) * n_outputs * n_params
        if elements > max_jacobian_elements:
            raise ValueError(f"the NTK's Jacobian would hold n * C * P = {len(x)} * {n_outputs} * {n_params} = "
                             f"{elements:,} elements, above max_jacobian_elements={max_jacobian_elements:,} "
                             f"({max_jacobian_elements * first.element_size() / 2 ** 20:.0f} MiB): use fewer probe "
                             f"samples, form='sum', or raise the bound if memory allows")

        def logits(p: dict, sample: torch.Tensor) -> torch.Tensor:  # one sample [...] -> [C] or []
            out = functional_call(model, (p, buffers), (sample.unsqueeze(0),)).flatten()
            return out if form == "trace" else out.sum()

        jacobians = vmap(jacrev(logits), in_dims=(None, 0))(params, x)  # name -> [n, (C,) *shape]
        flat = torch.cat([j.reshape(len(x), -1) for j in jacobians.values()], dim=1)  # [n, C * P] or [n, P]
    finally:
        model.train(was_training)
    return (flat @ flat.T).to(torch.float64)  # the sum over c and over parameters at once


def ntk_alignment(model_a: nn.Module, model_b: nn.Module, x_probe: Array, form: str = "trace",
                  max_jacobian_elements: int = MAX_JACOBIAN_ELEMENTS) -> float:
    """CKA (`kernel_cka`, eq. 4 of the paper) between the empirical NTKs of two models on the same
    probe samples x_probe [n, ...] (Figure 16 of the paper: student against teacher). The models may
    differ in width and parameter count; both must take x_probe. 1 for a model against itself."""
    return kernel_cka(empirical_ntk(model_a, x_probe, form, max_jacobian_elements),
                      empirical_ntk(model_b, x_probe, form, max_jacobian_elements))
