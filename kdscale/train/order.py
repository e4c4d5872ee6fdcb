"""Each student's batch order: its own permutation per epoch, its own epochs.

A student trained alone walks epochs of its M samples: a permutation drawn from its own generator
at each epoch's start, batches of min(batch, M) rows, a short last batch when M is not a multiple.
`Orders` walks the same for every student of a pack at once. Students of one size (seeds and
objectives of one kappa) share every epoch boundary and stack their batches as they are. Students
of different sizes (one model at several kappas) keep their own epochs; a step's batches are then
stacked to the widest, a shorter one padded with its own first row, and the step's `lengths` tell
the loss which rows are real (kdscale.objectives.pack_loss leaves the padding out), so each student
sees exactly the batches it would alone. Padding would reach batch norm's statistics, so only
models without it pack across sizes (kdscale.train.students.packs_across_sizes).
"""
from __future__ import annotations

import torch

from kdscale.train.schedule import derive_seed


class Orders:
    """The batch indices of S students with `sizes[s]` samples each, from their `seeds`."""

    def __init__(self, sizes: list[int], batch: int, seeds: list[int], device: torch.device):
        self.sizes, self.device = list(sizes), device
        self.widths = [min(batch, n) for n in sizes]  # a full batch of each student
        self.uniform = len(set(sizes)) == 1
        self.rngs = [torch.Generator(device="cpu").manual_seed(derive_seed(seed, 2)) for seed in seeds]
        self.perms: list[torch.Tensor | None] = [None] * len(sizes)  # each student's epoch, on the device
        self.stacked: torch.Tensor | None = None  # uniform sizes: the perms as one [S, M] tensor
        self.positions = list(sizes)  # rows of the current epoch used; at M, the next step starts an epoch
        self.epochs = [0] * len(sizes)  # epochs finished (a last partial one counts when training ends)
        self.seen = [0] * len(sizes)  # samples trained on

    def next(self) -> tuple[torch.Tensor, list[int] | None]:
        """The step's indices [S, W] into each student's own samples, and each student's batch length
        when they differ (None when every row is real)."""
        if self.uniform:
            if self.positions[0] >= self.sizes[0]:
                self.stacked = torch.stack([torch.randperm(self.sizes[0], generator=rng) for rng in self.rngs]
                                           ).to(self.device)
                self.positions = [0] * len(self.sizes)
            start = self.positions[0]
            idx = self.stacked[:, start:start + self.widths[0]]
            self._advance([idx.shape[1]] * len(self.sizes))
            return idx, None
        parts = []
        for s, n in enumerate(self.sizes):
            if self.positions[s] >= n:
                self.perms[s] = torch.randperm(n, generator=self.rngs[s]).to(self.device)
                self.positions[s] = 0
            parts.append(self.perms[s][self.positions[s]:self.positions[s] + self.widths[s]])
        lengths = [len(p) for p in parts]
        self._advance(lengths)
        width = max(lengths)
        if min(lengths) == width:
            return torch.stack(parts), None
        return torch.stack([p if len(p) == width else torch.cat([p, p[:1].expand(width - len(p))])
                            for p in parts]), lengths

    def _advance(self, lengths: list[int]) -> None:
        for s, length in enumerate(lengths):
            self.positions[s] += length
            self.seen[s] += length

    def end_epochs(self, final: bool) -> list[int]:
        """After a step: the students whose epoch ended with it (every student when `final`, the last
        step of the run: a partial epoch then counts as one), their epoch counts moved on."""
        ended = [s for s, n in enumerate(self.sizes) if final or self.positions[s] >= n]
        for s in ended:
            self.epochs[s] += 1
        return ended

    def state(self) -> dict:
        perms = list(self.stacked.cpu()) if self.uniform and self.stacked is not None else \
            [None if p is None else p.cpu() for p in self.perms]
        return {"rngs": [rng.get_state() for rng in self.rngs], "perms": perms, "positions": list(self.positions),
                "epochs": list(self.epochs), "seen": list(self.seen)}

    def load(self, state: dict) -> None:
        for rng, saved in zip(self.rngs, state["rngs"]):
            rng.set_state(saved)
        self.positions, self.epochs, self.seen = list(state["positions"]), list(state["epochs"]), list(state["seen"])
        perms = [None if p is None else p.to(self.device) for p in state["perms"]]
        if self.uniform:
            self.stacked = None if perms[0] is None else torch.stack(perms)
        else:
            self.perms = perms

    def load_epoch_end(self, rng_states: list, epoch: int, seen: int) -> None:
        """A checkpoint of the layout before per-student epochs (every student at an epoch's end)."""
        for rng, saved in zip(self.rngs, rng_states):
            rng.set_state(saved)
        self.positions = list(self.sizes)
        self.epochs, self.seen = [epoch] * len(self.sizes), [seen] * len(self.sizes)
