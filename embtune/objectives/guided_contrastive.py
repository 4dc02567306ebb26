"""Contrastive learning on (query, positive[, hard negative]) pairs with a teacher that removes false negatives.

The loss is supervised SimCSE's InfoNCE (Gao et al. 2021, eq. 5 with α = 1): each query's candidates are every
positive and every hard negative of the batch, its own positive the target. In-batch and mined negatives of
a domain's own data are often not negatives at all — another question of the batch on the same topic, a mined
"negative" that duplicates the query — and each such false negative pushes the student the wrong way. The
guide (GISTEmbed, Solatorio 2024, §3) is a stronger model that scores every (query, candidate) pair: a
candidate the guide finds at least as similar to the query as the query's own positive, less ``guide_margin``,

    g(q_i, c_j) > g(q_i, p_i) − margin,   j ≠ i

is left out of the query's softmax (its logit set to −∞). With ``guide_margin`` 0 exactly the candidates
the guide scores strictly above the positive are removed (a tie stays); a positive margin removes those just below it too.

The guide's embeddings of every text of the training file are computed once before training and cached by
content (:class:`embtune.objectives.distill.TeacherCache`), so the guide never runs during training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from embtune.data.readers import PAIR_COLUMNS, TRIPLE_COLUMNS
from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, check_temperature
from embtune.objectives.distill import TeacherCache, TeacherOptions
from embtune.options import option

logger = logging.getLogger(__name__)


def guided_info_nce(queries: Tensor, candidates: Tensor, guide_queries: Tensor, guide_candidates: Tensor,
                    temperature: float, margin: float = 0.0) -> tuple[Tensor, int]:
    """InfoNCE of N queries over M ≥ N candidates (candidate i is query i's positive), with every candidate
    j ≠ i that the guide scores above ``g(q_i, p_i) − margin`` masked out. Returns (loss, masked count)."""
    n = queries.shape[0]
    if candidates.shape[0] < n:
        raise EmbtuneError(f"guided contrastive loss: {candidates.shape[0]} candidates for {n} queries")
    logits = F.normalize(queries, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature
    with torch.no_grad():
        g = F.normalize(guide_queries.float(), dim=-1) @ F.normalize(guide_candidates.float(), dim=-1).T
        own = g[torch.arange(n), torch.arange(n)]
        mask = g > (own - margin)[:, None]
        mask[torch.arange(n), torch.arange(n)] = False  # the positive always stays
    logits = logits.masked_fill(mask.to(logits.device), -math.inf)
    return F.cross_entropy(logits, torch.arange(n, device=logits.device)), int(mask.sum())


@dataclass
class GuidedContrastiveOptions(TeacherOptions):
    guide_margin: float = option(0.0, "a candidate the teacher scores above the positive's score minus this is "
                                      "left out as a likely false negative (GISTEmbed)")


class GuidedContrastive(Objective):
    name = "guided"
    Options = GuidedContrastiveOptions
    accepts = (PAIR_COLUMNS, TRIPLE_COLUMNS)
    default_pooler = "mean"
    needs_global_batch = False  # the guide's rows are this process's slice

    def __init__(self, teacher: str | None, temperature: float = 0.05, guide_margin: float = 0.0,
                 allow_pickle: bool = False, precision: str = "auto", teacher_backend: str = "torch"):
        super().__init__()
        if not teacher:
            raise EmbtuneError("the guided objective needs --teacher MODEL (the guide)")
        if not math.isfinite(guide_margin):
            raise EmbtuneError(f"--guide-margin: expected a finite number, got {guide_margin!r}")
        self.teacher, self.margin = teacher, float(guide_margin)
        self.temperature = check_temperature(temperature)
        self.cache = TeacherCache(teacher, allow_pickle=allow_pickle, precision=precision, backend=teacher_backend)
        self.targets: Tensor | None = None
        self.row: dict[str, int] = {}
        self.masked = 0  # candidates removed as false negatives so far (logged, and in tests)

    @classmethod
    def from_config(cls, cfg) -> "GuidedContrastive":
        o = cfg.objective_options
        return cls(o.teacher, o.temperature, o.guide_margin, allow_pickle=cfg.allow_pickle_weights,
                   precision=cfg.precision, teacher_backend=o.teacher_backend)

    def setup(self, encoder, data=None) -> None:
        texts = list(dict.fromkeys(t for ex in data.examples for t in ex))
        self.targets = self.cache.embeddings(texts).float()
        self.row = {t: i for i, t in enumerate(texts)}

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(c) for c in range(len(batch.ids[0]))]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        v = embeddings.shape[0]
        queries, candidates = embeddings[0], embeddings[1:].reshape(-1, embeddings.shape[-1])  # positives, then negatives
        rows = lambda c: [self.row[ex[c]] for ex in batch.texts]  # noqa: E731
        g_q = self.targets[rows(0)]
        g_c = self.targets[[r for c in range(1, v) for r in rows(c)]]
        loss, masked = guided_info_nce(queries, candidates, g_q.to(queries.device), g_c.to(queries.device),
                                       self.temperature, self.margin)
        self.masked += masked
        return loss
