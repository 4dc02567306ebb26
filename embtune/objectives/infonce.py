"""InfoNCE over cosine similarities (SimCSE, Gao et al. 2021, eq. 1 and eq. 5)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """cos(a_i, b_j) for all i, j."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def info_nce(
    anchors: Tensor,
    positives: Tensor,
    temperature: float,
    hard_negatives: Tensor | None = None,
    hard_negative_weight: float = 1.0,
) -> Tensor:
    """Mean over i of -log softmax_i(positive), the candidates being every positive of the batch
    (in-batch negatives) plus, when given, every hard negative of the batch.

    ``hard_negative_weight`` is the paper's α (SimCSE appendix, eq. 5 with weights): each anchor's
    *own* hard negative enters the denominator as α·exp(cos/τ), i.e. its logit gets + log α.
    """
    logits = cosine_matrix(anchors, positives) / temperature
    if hard_negatives is not None:
        hard = cosine_matrix(anchors, hard_negatives) / temperature
        if hard_negative_weight != 1.0:
            log_alpha = math.log(hard_negative_weight) if hard_negative_weight > 0 else -math.inf
            hard = hard + torch.diag(torch.full((hard.shape[0],), log_alpha, dtype=hard.dtype, device=hard.device))
        logits = torch.cat([logits, hard], dim=1)
    labels = torch.arange(anchors.shape[0], device=anchors.device)
    return F.cross_entropy(logits, labels)


def info_nce_both_views(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """The 2N−1 variant: each of the 2N embeddings is contrasted against all 2N−1 others (its other
    view is the positive, the 2N−2 remaining ones are negatives), symmetric over the two views
    (the NT-Xent form of SimCLR, Chen et al. 2020)."""
    n = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    logits = cosine_matrix(z, z) / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, -math.inf)
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, labels)
