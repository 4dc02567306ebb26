"""Data parallelism over torch.distributed (``torchrun``): gloo on CPU, nccl on GPU.

The batch is global: every process holds a slice of it, embeddings are all-gathered so each
process contrasts against the whole batch, and the gathered copy of a process's own slice is
replaced by its local tensor so gradients flow back through it (the official SimCSE code's trick).
Each process then holds the gradient of the global loss with respect to its own examples; summing
gradients over processes gives exactly the single-process gradient of the global batch.

Every collective's tensor lives on the context's ``device`` (the training device): NCCL, the GPU
backend, has no CPU implementation ("No backend type associated with device type cpu").
A global batch smaller than the number of processes would leave a process without examples:
such batches (a short tail of an epoch) are dropped before training, counted and logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from embtune.errors import EmbtuneError

logger = logging.getLogger(__name__)


@dataclass
class DistContext:
    """This process's place in the group. ``device``: where the training (and every collective's
    tensor) lives. ``gather=False`` contrasts against the local examples only (a control for tests
    and ablations: what losing the other processes' negatives does)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    gather_embeddings: bool = True

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: torch.device, gather_embeddings: bool = True) -> "DistContext":
        """The context ``torchrun`` describes (one process when WORLD_SIZE is unset); on CUDA each
        process trains on ``cuda:LOCAL_RANK``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(device=device, gather_embeddings=gather_embeddings)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), local_rank, device, gather_embeddings)

    def drop_short_batches(self, batches: list[list[int]]) -> list[list[int]]:
        """Drop (and count, and log) the global batches with fewer examples than processes."""
        if not self.enabled:
            return batches
        short = [b for b in batches if len(b) < self.world]
        if short:
            logger.warning("dropped %d batch(es) (%d example(s)) smaller than the %d processes: a process "
                           "would have no example", len(short), sum(map(len, short)), self.world)
        return [b for b in batches if len(b) >= self.world]

    def shard(self, batch: list[int]) -> list[int]:
        """This process's slice of a global batch (sizes differ by at most one, none empty)."""
        if not self.enabled:
            return batch
        if len(batch) < self.world:
            raise EmbtuneError(f"a global batch of {len(batch)} has fewer examples than processes ({self.world}); "
                               "drop it with drop_short_batches")
        base, extra = divmod(len(batch), self.world)
        start = self.rank * base + min(self.rank, extra)
        return batch[start:start + base + (1 if self.rank < extra else 0)]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """(V, n_local, d) -> (V, n_global, d), the local part keeping its autograd graph."""
        if not self.enabled or not self.gather_embeddings:
            return local
        n = torch.tensor([local.shape[1]], device=local.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(sizes, n)
        width = int(max(s.item() for s in sizes))
        padded = torch.zeros(local.shape[0], width, *local.shape[2:], dtype=local.dtype, device=local.device)
        padded[:, : local.shape[1]] = local.detach()
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        parts = [p[:, : int(s.item())] for p, s in zip(parts, sizes)]
        parts[self.rank] = local
        return torch.cat(parts, dim=1)

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum gradients over processes in one collective."""
        if not self.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            numel = p.numel()
            p.grad = flat[offset:offset + numel].view_as(p).clone()
            offset += numel

    def all_reduce_mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def any(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item())

    def from_main(self, value: list[int]) -> list[int]:
        """The main process's list of integers, on every process (all must pass a list of the same length)."""
        if not self.enabled:
            return value
        t = torch.tensor(value if self.is_main else [0] * len(value), dtype=torch.long, device=self.device)
        dist.broadcast(t, src=0)
        return [int(v) for v in t.tolist()]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
