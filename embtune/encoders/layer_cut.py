"""Which layers a smaller student keeps (``--student-layers``, ``--student-layer-choice``).

A student made of some of a teacher's layers starts wherever that cut leaves it, and the first ``k``
layers are a poor start for a sentence encoder: the pooled output of a model's lower layers was never
trained to be an embedding. all-MiniLM-L6-v2 cut to 3 layers scores 61.7 (first three) to 78.2 (layers
0, 3 and 5) on the STS-B/SICK-R dev average before any training (docs/small-models.md). Choices:

* ``first``  — layers 0..k-1 (the plain truncation);
* ``spread`` — evenly spaced, the first and the last kept (the layer-reduction recipe of DistilBERT,
  Sanh et al. 2019, §3, and of sentence-transformers' layer-reduction example);
* ``dev``    — the cut that scores best on the run's selection metric before training: every k-subset
  while there are at most ``max_candidates`` of them, otherwise greedy removal (drop, one at a time,
  the layer whose removal costs least).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)

LAYER_CHOICES = ("auto", "dev", "spread", "first")


def parse_student_layers(value: str) -> int | tuple[int, ...]:
    """``"3"`` -> 3 (a count); ``"0,3,5"`` -> (0, 3, 5) (the layers themselves, 0-based)."""
    items = [v.strip() for v in str(value).split(",")]
    if not all(i.lstrip("-").isdigit() for i in items):
        raise EmbtuneError(f"--student-layers: expected a count (3) or 0-based layer numbers (0,3,5), got {value!r}")
    nums = [int(i) for i in items]
    if len(nums) == 1 and "," not in str(value):
        if nums[0] < 1:
            raise EmbtuneError(f"--student-layers: a count must be at least 1, got {value!r}")
        return nums[0]
    if min(nums) < 0 or len(set(nums)) != len(nums):
        raise EmbtuneError(f"--student-layers: expected distinct layer numbers >= 0, got {value!r}")
    return tuple(nums)


def check_student_layers(value: str | None) -> str | None:
    """The option's check: what was expected, or None."""
    if value is None:
        return None
    try:
        parse_student_layers(value)
    except EmbtuneError:
        return "a count (3) or comma-separated 0-based layer numbers (0,3,5)"
    return None


def first_layers(n: int, k: int) -> tuple[int, ...]:
    return tuple(range(k))


def spread_layers(n: int, k: int) -> tuple[int, ...]:
    """``k`` of ``n`` layers evenly spaced, the first and the last kept (k = 1: the first)."""
    if k == 1:
        return (0,)
    return tuple(math.floor(i * (n - 1) / (k - 1) + 0.5) for i in range(k))


@dataclass
class LayerSearch:
    """What ``dev`` tried: each cut scored, in the order it was tried, and the one kept."""

    kept: tuple[int, ...]
    method: str  # exhaustive or greedy
    scores: list[tuple[tuple[int, ...], float]] = field(default_factory=list)

    def summary(self) -> dict:
        return {"kept": list(self.kept), "method": self.method,
                "candidates": [{"layers": list(c), "score": s} for c, s in self.scores]}


def search_layers(n: int, k: int, score: Callable[[tuple[int, ...]], float], higher_is_better: bool = True,
                  max_candidates: int = 64) -> LayerSearch:
    """The ``k``-layer cut of an ``n``-layer model that ``score`` rates best.

    Every subset when there are at most ``max_candidates``; otherwise greedy removal from all ``n``
    layers (n + (n-1) + ... + (k+1) scores). A tie keeps the cut tried first (subsets in
    lexicographic order; in greedy removal, dropping the lower layer)."""
    if not 1 <= k <= n:
        raise EmbtuneError(f"--student-layers: a count must be between 1 and {n} (the model's layers), got {k}")
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)

    def best_of(cands: Sequence[tuple[int, ...]], out: LayerSearch) -> tuple[int, ...]:
        top, top_s = None, None
        for c in cands:
            s = float(score(c))
            out.scores.append((c, s))
            logger.info("student layers %s: %.4f", ",".join(map(str, c)), s)
            if top is None or (math.isfinite(s) and (not math.isfinite(top_s) or better(s, top_s))):
                top, top_s = c, s
        return top

    if math.comb(n, k) <= max_candidates:
        res = LayerSearch(kept=(), method="exhaustive")
        res.kept = best_of(list(combinations(range(n), k)), res)
        return res
    res = LayerSearch(kept=(), method="greedy")
    current = tuple(range(n))
    while len(current) > k:
        current = best_of([current[:i] + current[i + 1:] for i in range(len(current))], res)
    res.kept = current
    return res
