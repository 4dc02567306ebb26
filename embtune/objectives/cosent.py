"""CoSENT (Su Jianlin, 2022: "CoSENT: a more efficient sentence vector scheme than Sentence-BERT").

For labelled pairs (s1_k, s2_k) with a score y_k — a graded similarity or a binary 0/1 label — and
the cosine c_k = cos(u_k, v_k) of their embeddings, every ordered pair of pairs (i, j) of the batch
with y_i > y_j should have c_i > c_j:

    loss = log(1 + Σ_{(i, j): y_i > y_j} exp(λ (c_j − c_i)))

a smooth approximation of max(0, max over those (i, j) of c_j − c_i) with scale λ (20 in the
paper). Only the order of the scores matters, so graded scores and binary labels train alike, and
the training objective is the quantity pair evaluations rank by (Spearman, average precision).
There are no in-batch negatives: a text may repeat in a batch, so batches are plainly shuffled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from embtune.data.readers import BINARY_PAIR_COLUMNS, SCORED_PAIR_COLUMNS
from embtune.data.sampler import shuffled_batches
from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective
from embtune.options import option, positive


@dataclass
class CoSENTOptions:
    cosent_lambda: float = option(20.0, "CoSENT's scale λ on cosine differences (Su 2022: 20)", check=positive)


def cosent_loss(cos: Tensor, scores: Tensor, scale: float) -> Tensor:
    """log(1 + Σ_{y_i > y_j} exp(λ (cos_j − cos_i))) for the cosines and scores of N pairs.

    Computed as a logsumexp over [0, λ(cos_j − cos_i) for every (i, j) with y_i > y_j] (stable for
    large λ); a batch without two different scores gives 0 (with a gradient of zero)."""
    diff = scale * (cos[None, :] - cos[:, None])  # [i, j] = λ (cos_j − cos_i)
    ordered = scores[:, None] > scores[None, :]  # y_i > y_j
    terms = diff.masked_fill(~ordered, -math.inf).reshape(-1)
    return torch.logsumexp(torch.cat([terms.new_zeros(1), terms]), dim=0)


class CoSENT(Objective):
    name = "cosent"
    Options = CoSENTOptions
    accepts = (SCORED_PAIR_COLUMNS, BINARY_PAIR_COLUMNS)
    default_pooler = "mean"  # mean pooling, as Sentence-BERT found best for losses on pair scores
    default_mlp_only_train = False

    def __init__(self, cosent_lambda: float = 20.0):
        super().__init__()
        if not cosent_lambda > 0:
            raise EmbtuneError(f"CoSENT λ must be > 0, got {cosent_lambda}")
        self.scale = float(cosent_lambda)

    def make_batches(self, data, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        return shuffled_batches(len(data), batch_size, seed, epoch)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(0), batch.column(1)]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        if batch is None or batch.labels is None:
            raise EmbtuneError("CoSENT needs the pairs' scores or labels (a sent0,sent1,score or sent0,sent1,label file)")
        if len(batch.labels) != embeddings.shape[1]:
            raise EmbtuneError(f"CoSENT got {len(batch.labels)} scores for {embeddings.shape[1]} pairs")
        cos = F.cosine_similarity(embeddings[0], embeddings[1], dim=-1)
        scores = torch.tensor(batch.labels, dtype=cos.dtype, device=cos.device)
        return cosent_loss(cos, scores, self.scale)
