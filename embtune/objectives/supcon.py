"""Supervised contrastive learning for class-labelled texts (Khosla et al., NeurIPS 2020, "SupCon").

Every other text of the same class in the batch is a positive, every text of another class a
negative (label-aware negatives: a same-class text is never pushed away). With the paper's
L^sup_out (its eq. 2, the variant it found better), for anchors i with positives P(i) and all other
embeddings A(i):

    L = mean over anchors with |P(i)| > 0 of
        −1/|P(i)| Σ_{p ∈ P(i)} log( exp(z_i·z_p / τ) / Σ_{a ∈ A(i)} exp(z_i·z_a / τ) )

on L2-normalised embeddings z (cosine similarities, as in the paper's normalised projections).

Views: the paper builds a "multiviewed batch" — two augmentations of every sample, 2N anchors —
so that every anchor has at least one positive (its other view) and the positives include the
sample's own augmentation. For text the augmentation is SimCSE's dropout noise, so by default each
text is embedded twice with different dropout masks (``two_views``: a text of a single-text class
still trains, like unsup SimCSE); ``two_views false`` embeds each text once (half the compute) and
uses only other texts of the class as positives. τ is the SimCSE default 0.05 shared by the
contrastive objectives (the paper's 0.1 was tuned for images).

Batches come from :func:`embtune.data.class_sampler.class_batches`: groups of
``samples_per_class`` texts of one class, so most anchors have positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from embtune.data.class_sampler import class_batches
from embtune.data.readers import CLASS_COLUMNS
from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, TemperatureOptions, check_temperature
from embtune.options import at_least, option


@dataclass
class SupConOptions(TemperatureOptions):
    samples_per_class: int = option(4, "texts of one class put together in a batch (their positives)", check=at_least(2))
    two_views: bool = option(True, "embed each text twice with different dropout masks (the paper's multiviewed "
                                   "batch; every text then has a positive); false: once")


def supcon_loss(z: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """L^sup_out over the rows of ``z`` [M, d] with class ids ``labels`` [M] (Khosla et al. eq. 2).

    Anchors without a positive are left out of the mean; with none at all the loss is 0 (with a
    gradient of zero)."""
    z = F.normalize(z, dim=-1)
    logits = z @ z.T / temperature
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))  # A(i): every row but the anchor itself
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(dim=1)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(dim=1)) / count.clamp(min=1)
    has = count > 0
    if not has.any():
        return (z * 0.0).sum()
    return per_anchor[has].mean()


class SupCon(Objective):
    name = "supcon"
    Options = SupConOptions
    accepts = (CLASS_COLUMNS,)
    default_pooler = "cls"  # the unsup/sup SimCSE choice: cls with the MLP during training only
    default_mlp_only_train = True

    def __init__(self, temperature: float = 0.05, samples_per_class: int = 4, two_views: bool = True):
        super().__init__()
        self.temperature = check_temperature(temperature)
        if samples_per_class < 2:
            raise EmbtuneError(f"samples per class must be >= 2, got {samples_per_class}")
        self.samples_per_class = int(samples_per_class)
        self.two_views = bool(two_views)

    def make_batches(self, data, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        try:
            return class_batches(data.labels, batch_size, self.samples_per_class, seed, epoch)
        except EmbtuneError as e:
            raise EmbtuneError(f"{data.path}: {e}") from e

    def views(self, batch: Batch) -> list[list[list[int]]]:
        texts = batch.column(0)
        return [texts, texts] if self.two_views else [texts]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        if batch is None or batch.labels is None:
            raise EmbtuneError("supcon needs class labels (a text,label file)")
        n_views, n = embeddings.shape[0], embeddings.shape[1]
        if len(batch.labels) != n:
            raise EmbtuneError(f"supcon got {len(batch.labels)} labels for {n} texts")
        ids = {lab: k for k, lab in enumerate(dict.fromkeys(batch.labels))}
        labels = torch.tensor([ids[lab] for lab in batch.labels], device=embeddings.device).repeat(n_views)
        return supcon_loss(embeddings.reshape(n_views * n, -1), labels, self.temperature)
