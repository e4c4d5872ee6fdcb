"""Which samples the teacher and each student train on.

The training pool is a stream: a fixed order of samples that a generated data set extends on
demand. The teacher takes the stream's first N. A student of seed s at kappa takes the first
M = round(kappa * N) of its own order, which is
  - the teacher's N samples, shuffled by s and class-stratified, then
  - the samples after N in blocks of N, each block shuffled by (s, block) and stratified.
So for one seed the subsets are nested across kappa (a smaller kappa is a prefix of a larger
one), lie inside the teacher's samples for kappa <= 1, and take generated extra samples beyond.

Stratified means every prefix keeps each class's share of the block to within one sample: at
kappa = 0.02 on 4000 samples (80 samples, 10 classes) a plain random draw can miss a class.

A recipe search holds out part of a student's own M samples for validation (`validation_split`,
`split_for`): class-stratified, seeded, never the test set.
"""
from __future__ import annotations

import math

import numpy as np

VAL_SPLIT_KEY = 7_777_777  # the validation split's own random stream: rng_for(seed, VAL_SPLIT_KEY, M)


def rng_for(*key: int) -> np.random.Generator:
    """A numpy Generator from integer keys; the same keys give the same draws on any machine."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def strata(labels) -> np.ndarray:
    """The class of each sample, the unit of stratification; sequences (labels [n, T], one per
    token) have no one class, so they form one stratum and their orders are plain shuffles."""
    labels = np.asarray(labels)
    return labels if labels.ndim == 1 else np.zeros(len(labels), dtype=np.int64)


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of `labels`' positions in which every prefix is class-stratified.

    Each class's samples are shuffled, the r-th of n_c gets the key (r + u) / n_c with u uniform
    in [0, 1), and positions are sorted by key: classes interleave in proportion to their size.
    """
    labels = strata(labels)
    keys = np.empty(len(labels), dtype=np.float64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        where = where[rng.permutation(len(where))]
        keys[where] = (np.arange(len(where)) + rng.random(len(where))) / len(where)
    return np.argsort(keys, kind="stable")


def stream_length_for(n_teacher: int, n_train: int) -> int:
    """How much of the stream a student with M = n_train samples needs: N, or N plus whole blocks."""
    if n_train <= n_teacher:
        return n_teacher
    blocks = -(-(n_train - n_teacher) // n_teacher)  # ceil
    return n_teacher * (1 + blocks)


def student_indices(stream_labels: np.ndarray, n_teacher: int, n_train: int, seed: int) -> np.ndarray:
    """Stream positions of the M = n_train samples of the student of `seed` (see module doc).

    `stream_labels` must cover at least `stream_length_for(n_teacher, n_train)` samples, except
    for a fixed data set whose last block is partial (then it must cover n_train).
    """
    if n_train > len(stream_labels):
        raise ValueError(f"need {n_train} samples, the pool holds {len(stream_labels)}")
    order = [stratified_order(stream_labels[:n_teacher], rng_for(seed, 0))]
    taken, block = n_teacher, 1
    while taken < n_train:
        start = n_teacher * block
        stop = min(start + n_teacher, len(stream_labels))
        order.append(start + stratified_order(stream_labels[start:stop], rng_for(seed, block)))
        taken += stop - start
        block += 1
    return np.concatenate(order)[:n_train]


def validation_counts(class_counts, n_val: int) -> np.ndarray:
    """How many validation samples each class gives: its share of n_val (largest remainder, ties to
    the lower class), never its last sample, and at least one for every class of >= 2 samples as
    long as another class can spare one of two or more."""
    counts = np.asarray(class_counts, dtype=np.int64)
    cap = np.maximum(counts - 1, 0)
    if n_val > cap.sum():
        raise ValueError(f"cannot hold out {n_val} samples and keep one of each class for fitting")
    quota = n_val * counts / counts.sum()
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    for c in sorted(range(len(counts)), key=lambda c: (-(quota[c] - math.floor(quota[c])), c)) * 2:
        if take.sum() >= n_val:
            break
        if take[c] < cap[c]:
            take[c] += 1
    while take.sum() < n_val:  # remainders exhausted by the caps: fill wherever room is left
        take[int(np.argmax(cap - take))] += 1
    for c in range(len(counts)):
        if take[c] == 0 and cap[c] >= 1:
            donors = [d for d in range(len(counts)) if take[d] >= 2]
            if donors:
                donor = max(donors, key=lambda d: (take[d], -d))
                take[donor] -= 1
                take[c] += 1
    return take


def validation_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit positions, validation positions) into `labels` (one student's M samples): n_val =
    round(val_fraction * M), at least 1, class-stratified by `validation_counts`, drawn by seed."""
    labels = strata(labels)
    n = len(labels)
    n_val = min(max(1, int(math.floor(val_fraction * n + 0.5))), n - 1)
    classes = np.unique(labels)
    take = validation_counts([int((labels == c).sum()) for c in classes], n_val)
    rng = rng_for(seed, VAL_SPLIT_KEY, n)
    val = []
    for c, k in zip(classes, take):
        where = np.flatnonzero(labels == c)
        val.extend(where[rng.permutation(len(where))[:k]].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    fit = np.setdiff1d(np.arange(n), val)
    return fit, val


def split_for(stream_labels, n_teacher: int, n_train: int, seed: int, val_fraction: float):
    """Stream positions (fit, validation) of the student of `seed` with M = n_train samples."""
    indices = student_indices(stream_labels, n_teacher, n_train, seed)
    fit, val = validation_split(np.asarray(stream_labels)[indices], val_fraction, seed)
    return indices[fit], indices[val]
