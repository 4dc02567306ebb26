"""Listwise distillation of a teacher's ranking on unlabeled in-domain text.

For every text i of a batch of B texts, the teacher's cosine similarities to the other B − 1 texts define
a distribution over them, and the student's do too:

    p_i = softmax_j(t_ij / τ_t),   q_i = softmax_j(s_ij / τ_s),   j ≠ i
    loss = mean_i KL(p_i ‖ q_i) = mean_i Σ_j p_ij (log p_ij − log q_ij)

— the in-batch KL between teacher and student score distributions of TCT-ColBERT (Lin, Yang & Lin 2021,
"In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense Retrieval"), here
between two bi-encoders on text–text similarities. The student learns the teacher's *ranking* of the
batch, not its absolute cosines (a 384-d student and a 768-d teacher need not share a cosine scale).

What makes the ranking worth learning is the batch: random texts of one domain are mostly unrelated, so
the teacher's distribution over them is flat and teaches little. Batches are therefore made of clusters:
an anchor and its ``cluster_size − 1`` nearest neighbours under the teacher (the teacher's embeddings of
the whole corpus, computed once and cached, ranked by the exact top-k engine) — the topic-aware batch
composition of TAS-Balanced (Hofstätter et al. 2021, §3), with the teacher's own neighbours as topics.
Each distribution then covers the near-duplicates and near-misses the domain's retrieval task is about,
plus the other clusters' texts as easy negatives.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, check_temperature
from embtune.objectives.distill import TeacherCache, TeacherOptions
from embtune.options import at_least, option, positive

logger = logging.getLogger(__name__)


def listwise_kl(student: Tensor, teacher: Tensor, student_temperature: float, teacher_temperature: float) -> Tensor:
    """mean_i KL(softmax_j(t_ij/τ_t) ‖ softmax_j(s_ij/τ_s)) over j ≠ i, for embeddings (B, d_s) and (B, d_t)
    of the same B texts (cosine similarities; the diagonal, 1 for both, is left out of both)."""
    if student.shape[0] != teacher.shape[0]:
        raise EmbtuneError(f"listwise distillation: {student.shape[0]} student rows for {teacher.shape[0]} teacher rows")
    if student.shape[0] < 3:
        raise EmbtuneError("listwise distillation needs batches of at least 3 texts (a distribution over 2 others)")
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    diag = torch.eye(len(s), dtype=torch.bool, device=s.device)
    log_q = F.log_softmax((s @ s.T / student_temperature).masked_fill(diag, -math.inf), dim=-1)
    log_p = F.log_softmax((t @ t.T / teacher_temperature).masked_fill(diag, -math.inf), dim=-1)
    return (log_p.exp() * (log_p - log_q)).masked_fill(diag, 0.0).sum(-1).mean()


def teacher_neighbours(embeddings: Tensor, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine (exact, the top-k engine); (N, k) indices."""
    from embtune.search import topk

    e = F.normalize(embeddings.float(), dim=-1).numpy()
    k = min(k, len(e) - 1)
    idx, _ = topk(e, e, k + 1)
    out = np.empty((len(e), k), dtype=np.int64)
    for i, row in enumerate(idx):  # itself is (almost always) first; drop it wherever it is
        others = row[row != i][:k]
        out[i] = others
    return out


def merge_neighbours(parts: list[np.ndarray], k: int) -> np.ndarray:
    """Per row, the first ``k`` distinct indices of the parts taken in order (the teacher's nearest, then the
    student's, then the teacher's next ones as a filler when the two overlap)."""
    out = np.empty((len(parts[0]), k), dtype=np.int64)
    for i in range(len(out)):
        row = list(dict.fromkeys(int(j) for p in parts for j in p[i]))[:k]
        out[i, : len(row)] = row
        out[i, len(row):] = row[-1] if row else i
    return out


def cluster_batches(neighbours: np.ndarray, batch_size: int, cluster_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of ``batch_size`` distinct texts built from clusters: each anchor (every text once per epoch,
    in a seeded order) with up to ``cluster_size − 1`` of its neighbours not already in the batch.

    A batch is filled with anchors' clusters until it holds ``batch_size`` texts (the last cluster cut to
    fit); an anchor already in the batch as another's neighbour starts no cluster of its own there. The
    epoch ends when every text has been an anchor or a neighbour; a final batch of fewer than 3 texts (no
    distribution over 2 others) is dropped, its texts left to the next epoch's order."""
    n = len(neighbours)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    batches: list[list[int]] = []
    current: list[int] = []
    seen: set[int] = set()
    for a in order:
        if a in seen:
            continue
        cluster = [a] + [int(j) for j in neighbours[a] if int(j) not in seen and int(j) != a][: cluster_size - 1]
        for i in cluster[: batch_size - len(current)]:
            current.append(i)
            seen.add(i)
        if len(current) >= batch_size:
            batches.append(current)
            current, seen = [], set()
    if len(current) >= 3:
        batches.append(current)
    return batches


@dataclass
class ListwiseDistillOptions(TeacherOptions):
    teacher_temperature: float = option(0.05, "τ_t of the teacher's in-batch distribution", check=positive)
    cluster_size: int = option(8, "texts per cluster: an anchor and its nearest neighbours", check=at_least(2))
    student_neighbours: int = option(3, "of a cluster's neighbours, how many are the anchor's nearest under the "
                                        "starting model (its own likely mistakes); the rest are the teacher's nearest",
                                     check=at_least(0))


class ListwiseDistill(Objective):
    name = "listwise-distill"
    Options = ListwiseDistillOptions
    accepts = (("text",),)
    default_pooler = "mean"
    needs_global_batch = False  # each process distils its own slice (the teacher rows are the slice's)

    def __init__(self, teacher: str | None, temperature: float = 0.05, teacher_temperature: float = 0.05,
                 cluster_size: int = 8, student_neighbours: int = 3, allow_pickle: bool = False,
                 precision: str = "auto", teacher_backend: str = "torch"):
        super().__init__()
        if not teacher:
            raise EmbtuneError("the listwise-distill objective needs --teacher MODEL")
        if isinstance(cluster_size, bool) or not isinstance(cluster_size, int) or cluster_size < 2:
            raise EmbtuneError(f"--cluster-size: expected an integer >= 2, got {cluster_size!r}")
        self.teacher = teacher
        self.temperature = check_temperature(temperature)
        self.teacher_temperature = check_temperature(teacher_temperature)
        if isinstance(student_neighbours, bool) or not isinstance(student_neighbours, int) or \
                not 0 <= student_neighbours < cluster_size:
            raise EmbtuneError(f"--student-neighbours: expected an integer from 0 to cluster size − 1 "
                               f"({cluster_size - 1}), got {student_neighbours!r}")
        self.cluster_size, self.student_neighbours = cluster_size, student_neighbours
        self.precision = precision
        self.cache = TeacherCache(teacher, allow_pickle=allow_pickle, precision=precision, backend=teacher_backend)
        self.targets: Tensor | None = None
        self.neighbours: np.ndarray | None = None
        self.row: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg) -> "ListwiseDistill":
        o = cfg.objective_options
        return cls(o.teacher, o.temperature, o.teacher_temperature, o.cluster_size, o.student_neighbours,
                   allow_pickle=cfg.allow_pickle_weights, precision=cfg.precision,
                   teacher_backend=o.teacher_backend)

    def setup(self, encoder, data=None) -> None:
        texts = [ex[0] for ex in data.examples]
        if len(set(texts)) != len(texts):
            raise EmbtuneError(f"{data.path}: listwise distillation needs distinct texts; "
                               f"{len(texts) - len(set(texts))} repeat an earlier line")
        if len(texts) < 3:
            raise EmbtuneError(f"{data.path}: {len(texts)} text(s); listwise distillation needs at least 3")
        self.targets = self.cache.embeddings(texts).float()
        self.row = {t: i for i, t in enumerate(texts)}
        n_teacher = self.cluster_size - 1 - self.student_neighbours
        parts = [teacher_neighbours(self.targets, self.cluster_size - 1)]
        if self.student_neighbours:  # the starting model's own nearest texts, before training
            own = torch.from_numpy(encoder.encode(texts, batch_size=128, normalize=True, precision=self.precision))
            parts = [parts[0][:, :n_teacher], teacher_neighbours(own, self.cluster_size - 1), parts[0][:, n_teacher:]]
        self.neighbours = merge_neighbours(parts, self.cluster_size - 1)
        logger.info("listwise-distill: %d texts, clusters of %d (an anchor + its nearest under %s)",
                    len(texts), self.cluster_size, self.teacher)

    def make_batches(self, data, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        if self.neighbours is None:
            raise EmbtuneError("listwise-distill: setup() must run before batches are made")
        return cluster_batches(self.neighbours, batch_size, self.cluster_size, seed, epoch)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(0)]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        student = embeddings[0]
        teacher = self.targets[[self.row[ex[0]] for ex in batch.texts]].to(student.device)
        return listwise_kl(student, teacher, self.temperature, self.teacher_temperature)
