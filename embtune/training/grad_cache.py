"""Gradient caching (Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under
Memory Limited Setup", RepL4NLP 2021).

The loss of a batch of B sequences is computed with the activation memory of m:
1. embed the batch in chunks of m without building graphs, saving the RNG state before each chunk;
2. compute the loss on the detached embeddings and back-propagate to them (the "gradient cache");
3. re-embed each chunk with a graph, restoring its RNG state so dropout draws the very same masks
   (without this, unsup SimCSE's positive pairs would change between the passes), and
   back-propagate the cached gradients through it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def grad_cache_step(
    embed: Callable[[list[list[int]]], Tensor],
    flat: list[list[int]],
    chunk: int,
    loss_from_flat: Callable[[Tensor], Tensor],
    device: torch.device,
    scale: Callable[[Tensor], Tensor] = lambda x: x,
    restore_rng: bool = True,
) -> Tensor:
    """Run forward and backward for ``flat`` sequences in chunks; returns the (detached) loss.

    ``embed`` maps token-id lists to embeddings; ``loss_from_flat`` maps the (n, d) embeddings of
    all sequences to the loss; ``scale`` (a gradient scaler's) is applied before backward.
    ``restore_rng=False`` re-embeds with fresh dropout masks (wrong gradients: a control for tests).
    """
    states, pieces = [], []
    with torch.no_grad():
        for start in range(0, len(flat), chunk):
            states.append(_rng_state(device))
            pieces.append(embed(flat[start:start + chunk]).float())
    cached = torch.cat(pieces).requires_grad_(True)
    loss = loss_from_flat(cached)
    scale(loss).backward()
    grads = cached.grad
    end_state = _rng_state(device)
    for i, start in enumerate(range(0, len(flat), chunk)):
        if restore_rng:
            _set_rng_state(states[i], device)
        emb = embed(flat[start:start + chunk]).float()
        emb.backward(grads[start:start + emb.shape[0]])
    _set_rng_state(end_state, device)  # the step consumes the RNG exactly once
    return loss.detach()
