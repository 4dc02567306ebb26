"""Unsupervised SimCSE (Gao, Yao & Chen, EMNLP 2021, §3).

The positive of a sentence is the same sentence encoded again with another dropout mask; the
other sentences of the batch are the negatives. Like the official code, the loss is computed in
one direction (view 1 -> view 2).
"""

from __future__ import annotations

from torch import Tensor

from embtune.objectives.base import Example, Objective, check_temperature
from embtune.objectives.infonce import info_nce


class UnsupSimCSE(Objective):
    name = "unsup-simcse"
    accepts = (("text",),)
    default_pooler = "cls"  # with the MLP during training only (§6.3)
    default_mlp_only_train = True

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        self.temperature = check_temperature(temperature)

    def views(self, batch: list[Example]) -> list[list[list[int]]]:
        sents = [ex[0] for ex in batch]
        return [sents, sents]  # the same tokens twice; dropout makes the two views differ

    def loss(self, embeddings: Tensor) -> Tensor:
        return info_nce(embeddings[0], embeddings[1], self.temperature)
