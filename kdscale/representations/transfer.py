"""Linear probes of a frozen network, on its own task and on a second one (transfer).

The random-teacher study (arXiv 2302.12091, issue 18) asks how much a student's features know
compared with its teacher's, on the task it was distilled on and on another. Both probes follow
`linear_probe`'s protocol: fitted on the first N samples of the data set's training stream (the
teacher's N), scored on its test set; labels are read by the probe only.

The second task of MNIST-1D is MNIST-1D with every class template reversed in time
(data option `templates=reversed`) and the next data seed: the generator, noise and input
statistics of the first task, new class shapes and new samples. Other data sets have none yet.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from kdscale.config import DataSpec
from kdscale.errors import SpecError
from kdscale.representations.features import features_of
from kdscale.representations.probe import linear_probe


def transfer_data(spec: DataSpec) -> DataSpec:
    """The second task of `spec`'s data set (see the module doc)."""
    if spec.name != "mnist1d" or dict(spec.options).get("templates", "original") != "original":
        raise SpecError(f"extras transfer is invalid for data {spec.name} {dict(spec.options) or ''}: a second "
                        "task is defined for mnist1d (original templates) only")
    return replace(spec, seed=spec.seed + 1, options=(("templates", "reversed"),))


def probe_accuracy(model: torch.nn.Module, loaded, n: int, device: torch.device) -> float:
    """Test accuracy of a linear probe on `model`'s features, fitted on the stream's first `n`."""
    train = features_of(model, torch.as_tensor(loaded.x_pool[:n]).to(device))
    test = features_of(model, torch.as_tensor(loaded.x_test).to(device))
    return linear_probe(train, loaded.y_pool[:n], test, loaded.y_test, num_classes=loaded.info.num_classes).test_acc
