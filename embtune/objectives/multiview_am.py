"""Multi-view dropout with an additive-margin softmax.

Each sentence is encoded K >= 2 times with different dropout masks; each sentence of the batch is
its own class, its K views samples of it. View k of sentence i is classified among the N classes,
class j represented by the normalized mean of sentence j's (normalized) views other than k:

    loss = mean_{k, i} -log softmax_j( (cos(z_i^k, c_j^k) - m·[i = j]) / τ )_i

with the AM-Softmax margin m (Wang et al., "Additive Margin Softmax", 2018) taken off the true
class's cosine. With K = 2 and m = 0 this is unsup SimCSE averaged over its two directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, TemperatureOptions, check_temperature
from embtune.options import at_least, option


@dataclass
class MultiViewAMOptions(TemperatureOptions):
    views: int = option(2, "dropout views per sentence K", check=at_least(2))
    margin: float = option(0.0, "additive margin m taken off the true class's cosine", check=at_least(0))


class MultiViewAMSoftmax(Objective):
    name = "multiview-am"
    Options = MultiViewAMOptions
    accepts = (("text",),)
    default_pooler = "cls"
    default_mlp_only_train = True

    def __init__(self, temperature: float = 0.05, views: int = 2, margin: float = 0.0):
        super().__init__()
        self.temperature = check_temperature(temperature)
        if views < 2:
            raise EmbtuneError(f"views (K) must be >= 2, got {views}")
        if not margin >= 0:
            raise EmbtuneError(f"margin must be >= 0, got {margin}")
        self.k, self.margin = int(views), float(margin)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(0)] * self.k

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        k, n, _ = embeddings.shape
        z = F.normalize(embeddings, dim=-1)
        labels = torch.arange(n, device=z.device)
        margin = self.margin * torch.eye(n, dtype=z.dtype, device=z.device)
        total = z.new_zeros(())
        for view in range(k):
            others = torch.cat([z[:view], z[view + 1:]], dim=0)
            centers = F.normalize(others.mean(dim=0), dim=-1)
            logits = (z[view] @ centers.T - margin) / self.temperature
            total = total + F.cross_entropy(logits, labels)
        return total / k
