"""Checkpoint selection that a noisy selection split cannot fool: a checkpoint replaces the starting model
only when it beats it with confidence, judged by a paired bootstrap over the selection items.

A selection split of a user's task is small — some 80 held-out queries, a few hundred labelled pairs — and
a checkpoint's gain on it is often noise: on 79 Mathematica queries ranked against the whole forum, the
standard error of a paired nDCG@10 difference between two checkpoints is about 1.3 points. Taking the
highest value ("best checkpoint") then returns, often, a model that is worse on the held-out data.

The rule here (the paired bootstrap test of Koehn 2004 and Efron & Tibshirani 1993, §16.4): resample the
selection items (queries or pairs) with replacement, ``resamples`` times, and recompute the metric of the
candidate and of the starting model on each resample; the **confidence** that the candidate is better is
the share of resamples where it is strictly better. A candidate is eligible when that share is at least
``confidence``; of the eligible ones (the starting model always is), the one with the highest value on the
whole split is returned. ``confidence`` 0 turns the test off (plain best value, the starting model still a
candidate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embtune.errors import EmbtuneError


@dataclass(frozen=True)
class ItemStat:
    """A metric as a function of per-item arrays (one row per query or pair), so a resample of the items can be
    scored: ``stat(*[a[idx] for a in arrays])``. ``mean`` marks a metric that is the mean of ``arrays[0]``
    (retrieval metrics per query), which the bootstrap computes in one vectorised step."""

    arrays: tuple[np.ndarray, ...]
    stat: Callable[..., float] | None = None  # None: the mean of arrays[0]

    def __len__(self) -> int:
        return len(self.arrays[0])

    def value(self, idx: np.ndarray | None = None) -> float:
        arrays = self.arrays if idx is None else tuple(a[idx] for a in self.arrays)
        return float(np.mean(arrays[0])) if self.stat is None else float(self.stat(*arrays))


def gain_confidence(start: ItemStat, candidate: ItemStat, higher_is_better: bool = True, resamples: int = 1000,
                    seed: int = 0) -> float:
    """The share of paired bootstrap resamples of the items on which ``candidate`` scores strictly better
    than ``start`` (the same resampled items for both)."""
    n = len(start)
    if len(candidate) != n:
        raise EmbtuneError(f"selection: {len(candidate)} items for the candidate, {n} for the start")
    if n == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    if start.stat is None and candidate.stat is None:  # means: one matrix operation
        diff = candidate.arrays[0][idx].mean(axis=1) - start.arrays[0][idx].mean(axis=1)
    else:
        diff = np.array([candidate.value(i) - start.value(i) for i in idx])
    wins = diff > 1e-12 if higher_is_better else diff < -1e-12
    return float(np.mean(wins))
