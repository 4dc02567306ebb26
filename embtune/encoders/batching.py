"""Feeding an accelerator: length-sorted batches and padded batches built on the device.

The host does O(corpus) work once — the tokenizer is called on the whole corpus, the token ids are
flattened into one array and copied to the device once (from pinned memory, asynchronously, on CUDA)
— and then every batch is cut out of that array on the device by index arithmetic: no per-sentence
Python work per batch, no host-to-device copy per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """Copy a CPU tensor to ``device``: from pinned memory, non-blocking, on CUDA; unchanged on the CPU."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        try:
            t = t.pin_memory()
        except RuntimeError:  # pinning unavailable (e.g. no CUDA driver in this process): plain copy
            pass
        return t.to(device, non_blocking=True)
    return t.to(device)


def length_sorted_batches(lengths: Sequence[int] | np.ndarray, batch_size: int,
                          token_budget: int | None = None) -> list[np.ndarray]:
    """Indices in batches of sequences of similar length, longest first.

    A batch holds at most ``batch_size`` sequences and, with ``token_budget``, at most that many
    padded positions (batch rows x its longest sequence): short sentences go in bigger batches.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    if token_budget is None:
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        width = max(1, int(lengths[order[start]]))  # the longest in this batch (sorted descending)
        n = max(1, min(batch_size, token_budget // width))
        batches.append(order[start:start + n])
        start += n
    return batches


class PackedIds:
    """A corpus of token-id lists as one flat tensor on a device, sliced into padded batches there."""

    def __init__(self, ids: Sequence[Sequence[int]], device: torch.device, pad_id: int = 0):
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        offsets = np.zeros(len(ids), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        self.lengths_np = lengths
        self.device = device
        self.pad_id = int(pad_id)
        # one transfer for the corpus (a zero at the end: pad positions read it, then get masked)
        self.flat = to_device(torch.from_numpy(np.append(flat, 0)), device)
        self.offsets = to_device(torch.from_numpy(offsets), device)
        self.lengths = to_device(torch.from_numpy(lengths), device)

    def __len__(self) -> int:
        return len(self.lengths_np)

    def batch(self, idx: np.ndarray, device_idx: Tensor | None = None) -> dict[str, Tensor]:
        """input_ids and attention_mask (long, on the device) for the sequences ``idx``, padded to their
        longest; ``device_idx``: the same indices already on the device (saves a copy per batch)."""
        width = int(self.lengths_np[idx].max())
        if device_idx is None:
            device_idx = to_device(torch.from_numpy(np.ascontiguousarray(idx)), self.device)
        lengths = self.lengths[device_idx]
        pos = torch.arange(width, device=self.device)
        mask = pos.unsqueeze(0) < lengths.unsqueeze(1)
        gather = torch.where(mask, self.offsets[device_idx].unsqueeze(1) + pos, self.flat.numel() - 1)
        input_ids = self.flat[gather].masked_fill_(~mask, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask.long()}
