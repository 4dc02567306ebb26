"""Duplicate-free batching.

In-batch negatives assume every other example in the batch is a different sentence. If the same
sentence appears twice in a batch (as two examples, or as one example's positive and another's
hard negative), it becomes a false negative. The sampler shuffles, then fills each batch greedily,
deferring an example that shares any text with the batch to a later batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)


def duplicate_free_batches(
    examples: Sequence[Sequence[str]], batch_size: int, seed: int, epoch: int = 0
) -> list[list[int]]:
    """Shuffle (seeded by ``seed`` and ``epoch``) and split into batches with no shared text.

    Every example ends up in exactly one batch, except a final batch of a single example (no
    negatives are possible), which is dropped and logged.
    """
    if batch_size < 2:
        raise ValueError("batch size must be at least 2 for in-batch negatives")
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(examples), generator=g).tolist()
    batches: list[list[int]] = []
    deferred: list[int] = []
    current: list[int] = []
    seen: set[str] = set()

    def try_add(i: int) -> bool:
        texts = set(examples[i])
        if texts & seen:
            return False
        current.append(i)
        seen.update(texts)
        return True

    def flush() -> None:
        nonlocal current, seen
        if current:
            batches.append(current)
        current, seen = [], set()
        # Start the next batch with examples deferred earlier, oldest first.
        still = []
        for j in deferred:
            if len(current) >= batch_size or not try_add(j):
                still.append(j)
        deferred[:] = still

    for i in order:
        if not try_add(i):
            deferred.append(i)
        if len(current) == batch_size:
            flush()
    while current or deferred:  # an empty batch accepts any example, so this ends
        flush()
    dropped = [b for b in batches if len(b) < 2]
    batches = [b for b in batches if len(b) >= 2]
    if dropped:
        logger.warning("dropped %d example(s) left alone in a final batch (no in-batch negatives)", len(dropped))
    return batches


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int = 0) -> list[list[int]]:
    """Shuffle ``n`` examples (seeded by ``seed`` and ``epoch``) into batches of ``batch_size``.

    For losses without in-batch negatives (CoSENT compares the labelled pairs' own cosines), where a
    text repeated in a batch is no false negative. A final batch of a single example is dropped and
    logged, as in :func:`duplicate_free_batches`.
    """
    if batch_size < 2:
        raise ValueError("batch size must be at least 2")
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    batches = [order[s:s + batch_size] for s in range(0, n, batch_size)]
    if batches and len(batches[-1]) < 2:
        batches.pop()
        logger.warning("dropped 1 example left alone in a final batch")
    return batches
