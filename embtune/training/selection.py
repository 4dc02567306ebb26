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
    #: the stat's name ("mean", "spearman", "ap"), so per-item scores written to a file can be scored again
    name: str = "mean"

    def __len__(self) -> int:
        return len(self.arrays[0])

    def value(self, idx: np.ndarray | None = None) -> float:
        arrays = self.arrays if idx is None else tuple(a[idx] for a in self.arrays)
        return float(np.mean(arrays[0])) if self.stat is None else float(self.stat(*arrays))


def eligible(confidence: float | None, guard_lost: float | None, *, select_confidence: float,
             guard_tolerance: float, guard_waiver: float, loss_confidence: float | None = None,
             guard_confidence: float = 0.0) -> tuple[bool, bool]:
    """(may the checkpoint be kept, was the guard waived). ``confidence``: the paired bootstrap confidence that it
    beats the start on the selection metric (None: no test); ``guard_lost``: how much of the guard metric it lost
    against the start (None: no guard). A loss beyond ``guard_tolerance`` rules it out — with ``guard_confidence``
    only when the loss itself is shown, the bootstrap confidence that the start is better on the guard
    (``loss_confidence``) reaching it — unless ``guard_waiver`` is set and the confidence reaches it; then, with
    ``select_confidence``, the confidence must reach that."""
    waived = False
    shown = not guard_confidence or loss_confidence is None or loss_confidence >= guard_confidence
    if guard_lost is not None and guard_lost > guard_tolerance and shown:
        if not (guard_waiver and confidence is not None and confidence >= guard_waiver):
            return False, False
        waived = True
    if not select_confidence or confidence is None:
        return True, waived
    return confidence >= select_confidence, waived


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


def pooled_value(folds: list[ItemStat]) -> float:
    """A metric over the folds of a cross-fitted selection: each fold's value weighted by its items (for a mean,
    the mean over every item)."""
    n = sum(len(f) for f in folds)
    return float(sum(len(f) * f.value() for f in folds) / n) if n else float("nan")


def pooled_gain_confidence(starts: list[ItemStat], candidates: list[ItemStat], higher_is_better: bool = True,
                           resamples: int = 1000, seed: int = 0) -> float:
    """:func:`gain_confidence` over cross-fitted folds: a stratified paired bootstrap — each fold's items are
    resampled within the fold (fold ``j``'s candidate is a different model from fold ``i``'s, each scored on the
    items it never trained on), the pooled difference is the folds' differences weighted by their sizes, and the
    confidence is the share of resamples where it is strictly better. With one fold it is
    :func:`gain_confidence` (same seed, same draws)."""
    if len(starts) != len(candidates) or not starts:
        raise EmbtuneError(f"selection: {len(candidates)} candidate fold(s) for {len(starts)} start fold(s)")
    sizes = [len(s) for s in starts]
    if any(len(c) != n for c, n in zip(candidates, sizes)):
        raise EmbtuneError("selection: a candidate fold has another number of items than its start")
    total = sum(sizes)
    if total == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    diff = np.zeros(resamples)
    for start, cand, n in zip(starts, candidates, sizes):
        idx = rng.integers(0, n, size=(resamples, n))
        if start.stat is None and cand.stat is None:
            d = cand.arrays[0][idx].mean(axis=1) - start.arrays[0][idx].mean(axis=1)
        else:
            d = np.array([cand.value(i) - start.value(i) for i in idx])
        diff += n / total * d
    wins = diff > 1e-12 if higher_is_better else diff < -1e-12
    return float(np.mean(wins))


def item_stat_function(name: str) -> Callable[..., float] | None:
    """The stat an :class:`ItemStat` of this name computes (None: the mean)."""
    if name == "mean":
        return None
    from embtune.evaluation.pair_eval import ITEM_STATS

    if name not in ITEM_STATS:
        raise EmbtuneError(f"per-item scores: unknown stat {name!r}; expected mean or {', '.join(ITEM_STATS)}")
    return ITEM_STATS[name]


def read_item_scores(path) -> list[tuple[int, ItemStat]]:
    """``eval_items.jsonl`` of a run trained with ``--save-item-scores``: (step, per-item scores) per evaluation."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise EmbtuneError(f"{path}: no per-item scores (train with --save-item-scores and an eval task whose "
                           "metric keeps them: retrieval, scored or binary pairs)")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out.append((int(rec["step"]), ItemStat(tuple(np.asarray(a, dtype=float) for a in rec["arrays"]),
                                                       item_stat_function(rec["stat"]), rec["stat"])))
            except (ValueError, KeyError, TypeError) as e:
                raise EmbtuneError(f"{path}:{n}: not a per-item score record ({type(e).__name__}: {e})") from None
    return out
