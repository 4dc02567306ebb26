"""Class-aware batching for supervised contrastive learning on class-labelled texts.

Supervised contrastive learning (Khosla et al., NeurIPS 2020) needs several texts of a class in a
batch: they are each other's positives. A random batch of 64 out of hundreds of classes rarely
holds two texts of one class, so the sampler builds each batch from groups of ``m`` texts of the
same class (the "m per class" sampling of metric learning):

1. every class's texts are shuffled and cut into groups of ``m`` (a remainder of one joins the
   class's last group, so no group of a class with two or more texts is a singleton);
2. the groups are shuffled and packed into batches of at most ``batch_size`` texts, a group that
   does not fit starting the next batch (so a batch holds whole groups, ``batch_size // m`` classes);
3. texts of single-text classes (they have no positive of their own class) fill the room left in
   the batches, as extra negatives.

Deterministic given ``seed`` and ``epoch``; every text appears once per epoch, except that a final
batch without two texts of any class is dropped and its size logged.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import torch

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)


def class_batches(labels: Sequence[Hashable], batch_size: int, per_class: int, seed: int,
                  epoch: int = 0) -> list[list[int]]:
    """Batches (lists of example indices) holding groups of ``per_class`` texts of one class.

    Raises :class:`EmbtuneError` when a batch cannot hold two texts of a class (``batch_size < 2``,
    ``per_class`` outside [2, batch_size]) or when no class has two texts.
    """
    if per_class < 2:
        raise EmbtuneError(f"--samples-per-class {per_class}: expected >= 2 (a text's positives are the other "
                           "texts of its class in the batch)")
    if batch_size < per_class:
        raise EmbtuneError(f"a batch of {batch_size} cannot hold --samples-per-class {per_class} texts of a class; "
                           f"use --batch-size >= {per_class} or a smaller --samples-per-class")
    by_class: dict[Hashable, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    if not by_class or max(len(v) for v in by_class.values()) < 2:
        raise EmbtuneError("no class has two texts: no batch can hold a positive pair")
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)

    def shuffled(items: list) -> list:
        return [items[j] for j in torch.randperm(len(items), generator=g).tolist()]

    groups: list[list[int]] = []
    singles: list[int] = []
    for lab in sorted(by_class, key=str):  # a fixed class order: the draws do not depend on dict order
        members = shuffled(by_class[lab])
        if len(members) == 1:
            singles.extend(members)
            continue
        chunks = [members[s:s + per_class] for s in range(0, len(members), per_class)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2].extend(chunks.pop())  # a group of m + 1 may exceed the batch: split below
        for c in chunks:
            groups.extend([c] if len(c) <= batch_size else [c[:per_class], c[per_class:]])
    groups = shuffled(groups)
    singles = shuffled(singles)

    batches: list[list[int]] = []
    current: list[int] = []
    for grp in groups:
        if len(current) + len(grp) > batch_size:
            batches.append(current)
            current = []
        current = current + grp
    if current:
        batches.append(current)
    for b in batches:  # single-text classes fill the room left, as negatives
        while singles and len(b) < batch_size:
            b.append(singles.pop())
    while singles:  # more singles than room: batches of their own, joined by nothing -> no positives
        batches.append([singles.pop() for _ in range(min(batch_size, len(singles)))])
    kept = [b for b in batches if _has_positive(b, labels)]
    if len(kept) < len(batches):
        lost = sum(len(b) for b in batches if not _has_positive(b, labels))
        logger.warning("dropped %d batch(es) (%d texts) without two texts of any class (texts of single-text "
                       "classes beyond the room in the other batches)", len(batches) - len(kept), lost)
    return kept


def _has_positive(batch: list[int], labels: Sequence[Hashable]) -> bool:
    seen: set = set()
    for i in batch:
        if labels[i] in seen:
            return True
        seen.add(labels[i])
    return False
