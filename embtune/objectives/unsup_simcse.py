"""Unsupervised SimCSE (Gao, Yao & Chen, EMNLP 2021, §3).

The positive of a sentence is the same sentence encoded again with another dropout mask; the
other sentences of the batch are the negatives. Like the official code, the loss is computed in
one direction (view 1 -> view 2). Options:

- ``negatives="both-views"``: the 2N−1 variant (every view against all other 2N−1 embeddings).
- ``augment``: the second view is a discrete augmentation of the sentence (SimCSE Table 1,
  ESimCSE), on top of dropout, or alone when the trainer disables dropout (``--no-dropout``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from embtune.errors import EmbtuneError
from embtune.objectives.augment import augment, check_ratio, parse_augment
from embtune.objectives.augment import AUGMENTATIONS
from embtune.objectives.base import Batch, Objective, TemperatureOptions, check_temperature
from embtune.options import in_range, option
from embtune.objectives.infonce import info_nce, info_nce_both_views

NEGATIVES = ("batch", "both-views")


@dataclass
class UnsupSimCSEOptions(TemperatureOptions):
    negatives: str = option("batch", "batch: in-batch negatives; both-views: the 2N−1 variant", choices=NEGATIVES)
    augment: str | None = option(None, "comma-separated discrete augmentations for the second view: "
                                       + ",".join(AUGMENTATIONS))
    augment_ratio: float | None = option(None, "ratio p of the augmentations (each one's default when unset)",
                                         check=in_range(0, 1))


class UnsupSimCSE(Objective):
    name = "unsup-simcse"
    Options = UnsupSimCSEOptions
    accepts = (("text",),)
    default_pooler = "cls"  # with the MLP during training only (§6.3)
    default_mlp_only_train = True

    def __init__(self, temperature: float = 0.05, negatives: str = "batch", augment: str | None = None,
                 augment_ratio: float | None = None):
        super().__init__()
        self.temperature = check_temperature(temperature)
        if negatives not in NEGATIVES:
            raise EmbtuneError(f"negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
        self.negatives = negatives
        self.augment = parse_augment(augment)
        self.augment_ratio = check_ratio(augment_ratio)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        first = batch.column(0)
        if not self.augment:
            return [first, first]  # the same tokens twice; dropout makes the two views differ
        second = [augment(ex[0], self.augment, batch.rng, self.augment_ratio) for ex in batch.texts]
        return [first, batch.tokenize(second)]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        if self.negatives == "both-views":
            return info_nce_both_views(embeddings[0], embeddings[1], self.temperature)
        return info_nce(embeddings[0], embeddings[1], self.temperature)
