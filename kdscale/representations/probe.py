"""Linear probes: how much a frozen representation knows, read out by the best linear classifier.

The paper's Figure 14 retrains the student's head on the full data with its features frozen
(the authors' `scripts/cifar100_linear_retraining.py` trains the reset head by SGD). The head is
a multinomial logistic regression on the features, a convex problem, so here it is solved
directly, close to its optimum: full-batch L-BFGS with a strong Wolfe line search on standardised
features, which has no learning rate or epoch count to tune and gives the same answer for the
same features.

Why torch L-BFGS rather than scikit-learn's `LogisticRegression` (also L-BFGS), measured by
`bench/representation_cost.py --probe-backends` on this project's 2-core CPU with trained cnn1d
features and 100 iterations: on one thread the two cost about the same (0.9 against 1.2 ms per
iteration at 4000 x 160; 8-12 against 8-10 ms at 16000 x 320) and reach the same test accuracy
(to 0.001); left at their default two threads beside other work, scikit-learn's OpenBLAS/OpenMP
pools took 11-280 ms per iteration, so a trial would have to wrap it in threadpoolctl; and torch
keeps the features on the GPU when a trial runs there, with no copy to the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdscale.representations.similarity import Array


@dataclass
class LinearProbe:
    """A fitted multinomial logistic regression on standardised features."""
    weight: torch.Tensor  # [C, D] (nn.Linear's layout), acting on standardised features
    bias: torch.Tensor  # [C]
    mean: torch.Tensor  # [D], training features' mean
    scale: torch.Tensor  # [D], training features' standard deviation (1 for constant features)
    train_acc: float
    test_acc: float
    iterations: int  # L-BFGS iterations used (at most max_iter)

    def logits(self, features: Array) -> torch.Tensor:
        """Class scores [n, C] for raw (unstandardised) features [n, D]."""
        features = torch.as_tensor(features).to(self.weight)
        return ((features - self.mean) / self.scale) @ self.weight.T + self.bias


def linear_probe(train_features: Array, train_labels: Array, test_features: Array, test_labels: Array,
                 l2: float = 1e-4, max_iter: int = 100, num_classes: int | None = None) -> LinearProbe:
    """Fit a linear classifier on frozen features [n_train, D] and labels [n_train] (the full training
    pool in the paper's protocol) and report its accuracy on [n_test, D], [n_test].

    Minimises mean cross-entropy + (l2 / 2) ||W||_F^2 (bias unpenalised) over W [C, D], b [C], on
    features standardised by the training mean and standard deviation, from W = 0, by full-batch
    L-BFGS (history 10, strong Wolfe line search) for at most `max_iter` iterations. In float32
    on the features' device. On MNIST-1D cnn1d features (4000 x 160 to 16000 x 320) the test
    accuracy moved by at most 0.25 points between 100 and 500 iterations, and by up to 0.8 at 50:
    100 is the default. `l2` corresponds to scikit-learn's C = 1 / (n l2).
    """
    x_train = torch.as_tensor(train_features).detach().flatten(1).float()
    x_test = torch.as_tensor(test_features).detach().flatten(1).float().to(x_train.device)
    y_train = torch.as_tensor(train_labels).to(x_train.device).long()
    y_test = torch.as_tensor(test_labels).to(x_train.device).long()
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"features and labels disagree: {len(x_train)} training rows and {len(y_train)} labels, "
                         f"{len(x_test)} test rows and {len(y_test)} labels")
    if len(x_train) == 0 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"need non-empty training features of the test features' width, got "
                         f"{tuple(x_train.shape)} and {tuple(x_test.shape)}")
    if l2 < 0 or max_iter < 1:
        raise ValueError(f"l2={l2!r} must be >= 0 and max_iter={max_iter!r} >= 1")
    classes = num_classes or int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1

    mean = x_train.double().mean(0).float()
    scale = x_train.double().std(0).float() if len(x_train) > 1 else torch.ones_like(mean)
    scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))  # a dead unit stays 0, not NaN
    # Samples along the last axis: logits [1, C, n] = W [C, D] @ A^T [D, n], with cross-entropy over
    # dim 1. With n >> C this layout ran the loss and its gradient 3.4-3.8x faster on one CPU thread
    # than [n, D] @ [D, C] (2.4 -> 0.6 ms at 4000 x 160), whose thin matmuls are slow.
    a_train_t = ((x_train - mean) / scale).T.contiguous()  # [D, n]
    targets = y_train.unsqueeze(0)  # [1, n]
    weight = torch.zeros(classes, x_train.shape[1], device=x_train.device, requires_grad=True)
    bias = torch.zeros(classes, 1, device=x_train.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=10,
                                  tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = torch.addmm(bias, weight, a_train_t).unsqueeze(0)  # [1, C, n]
        loss = F.cross_entropy(logits, targets) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # also when called under torch.no_grad(), as evaluation code often is
        optimizer.step(closure)
    iterations = optimizer.state[weight]["n_iter"]
    probe = LinearProbe(weight.detach(), bias.detach().squeeze(1), mean, scale, 0.0, float("nan"), iterations)
    with torch.no_grad():
        probe.train_acc = (probe.logits(x_train).argmax(1) == y_train).float().mean().item()
        if len(x_test):
            probe.test_acc = (probe.logits(x_test).argmax(1) == y_test).float().mean().item()
    return probe
