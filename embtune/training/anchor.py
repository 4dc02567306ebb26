"""A regulariser toward the starting model (``--anchor-weight λ``).

Domain adaptation of an already strong encoder can drift away from what made it strong; this term
keeps each embedding near the one the frozen starting model gives the same input, in the spirit of
distillation from the model itself (Reimers & Gurevych 2020's MSE to a teacher's embeddings; the
"learning without forgetting" idea of Li & Hoiem 2017):

    L_anchor = λ · mean_i (1 − cos(e_i, e⁰_i))

where e_i is the current model's embedding of input i (as the objective sees it: with dropout and the
training-time pooler) and e⁰_i the frozen starting model's embedding of the same token ids, computed
on the fly without gradients and without dropout. The cosine form is scale-free, so λ means the same
for models with and without a Normalize layer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from embtune.encoders.base import Encoder, autocast


def anchor_loss(current: torch.Tensor, start: torch.Tensor, weight: float) -> torch.Tensor:
    """λ · mean over rows of (1 − cos(current_i, start_i)); ``start`` carries no gradient."""
    return weight * (1.0 - F.cosine_similarity(current, start.detach(), dim=-1)).mean()


class AnchorRegularizer:
    """Holds a frozen copy of the starting encoder and computes :func:`anchor_loss` for a batch's views."""

    def __init__(self, encoder: Encoder, weight: float):
        from embtune.training.trainer import disable_dropout

        self.weight = weight
        self.frozen = copy.deepcopy(encoder)
        disable_dropout(self.frozen)
        self.frozen.train()  # the same pooling path as the trained model (e.g. the training-only MLP); no dropout
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def targets(self, views: list[list[list[int]]], device: torch.device, precision: str) -> torch.Tensor:
        """The starting model's embeddings of every view's sequences -> (V·N, d), in the views' order."""
        flat = [seq for view in views for seq in view]
        with autocast(device, precision):
            return self.frozen.embed_ids(flat).float()

    def __call__(self, current: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return anchor_loss(current.reshape(targets.shape), targets, self.weight)
