"""The permutation groups of the word problems: S5 (all 120 permutations of five items) and A5 (the
60 even ones), the smallest non-solvable groups, whose word problems no diagonal linear RNN or
SSM of fixed depth solves (Merrill et al. 2024, "The illusion of state in state-space models");
and S3 (the 6 permutations of three items), the smallest non-abelian group: solvable, but beyond
one diagonal layer (its elements do not commute), and small enough to learn on a CPU.

An element is a permutation of (0, 1, ..., n - 1) in one-line notation: p[i] is where p sends i.
Elements are indexed in lexicographic order of that notation: S5's 0 is the identity (0, 1, 2, 3,
4) and 119 is (4, 3, 2, 1, 0); A5's are S5's even permutations, in the same order, indexed 0-59.
The product p.q applies p first, then q: (p.q)[i] = q[p[i]]. The word x_1 x_2 ... x_t then stands
for x_1.x_2. ... .x_t, the arrangement reached by applying x_1, then x_2, ..., then x_t.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

GROUPS = {"s3": 3, "s5": 5, "a5": 5}  # name: degree n


def parity(p) -> int:
    """0 for an even permutation, 1 for an odd one (the parity of its number of inversions)."""
    return sum(p[i] > p[j] for i in range(len(p)) for j in range(i + 1, len(p))) % 2


@lru_cache(maxsize=None)
def elements(group: str) -> np.ndarray:
    """int64 [order, n]: the group's permutations in index order (see the module doc)."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; known: {', '.join(GROUPS)}")
    every = list(itertools.permutations(range(GROUPS[group])))
    if group.startswith("a"):
        every = [p for p in every if parity(p) == 0]
    return np.asarray(every, dtype=np.int64)


@lru_cache(maxsize=None)
def cayley_table(group: str) -> np.ndarray:
    """int64 [order, order]: table[i, j] is the index of elements[i].elements[j]."""
    perms = elements(group)
    index = {tuple(p): i for i, p in enumerate(perms)}
    return np.asarray([[index[tuple(q[p])] for q in perms] for p in perms], dtype=np.int64)


def running_products(group: str, words: np.ndarray) -> np.ndarray:
    """Element indices [n, T] -> the index of x_1. ... .x_t at every position t, [n, T]."""
    table = cayley_table(group)
    out = np.empty_like(words)
    state = words[:, 0]
    out[:, 0] = state
    for t in range(1, words.shape[1]):
        state = table[state, words[:, t]]
        out[:, t] = state
    return out
