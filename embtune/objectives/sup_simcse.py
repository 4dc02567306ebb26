"""Supervised SimCSE (Gao, Yao & Chen, EMNLP 2021, §4).

NLI entailment hypotheses are the positives; the contradiction hypotheses of the whole batch are
extra negatives, the anchor's own one weighted by α (``hard_negative_weight``, appendix). Pairs
without a hard-negative column train with in-batch negatives only.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from embtune.errors import EmbtuneError
from embtune.objectives.base import Batch, Objective, TemperatureOptions, check_temperature
from embtune.options import at_least, option
from embtune.objectives.infonce import info_nce


@dataclass
class SupSimCSEOptions(TemperatureOptions):
    hard_negative_weight: float = option(1.0, "the paper's α for the own hard negative (its logit + log α)",
                                         check=at_least(0))


class SupSimCSE(Objective):
    name = "sup-simcse"
    Options = SupSimCSEOptions
    accepts = (("sent0", "sent1"), ("sent0", "sent1", "hard_neg"))
    default_pooler = "cls"  # with the MLP kept at evaluation (§6.3)
    default_mlp_only_train = False

    def __init__(self, temperature: float = 0.05, hard_negative_weight: float = 1.0):
        super().__init__()
        self.temperature = check_temperature(temperature)
        if not hard_negative_weight >= 0:
            raise EmbtuneError(f"hard-negative weight α must be >= 0, got {hard_negative_weight}")
        self.hard_negative_weight = float(hard_negative_weight)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        return [batch.column(c) for c in range(len(batch.ids[0]))]

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        hard = embeddings[2] if embeddings.shape[0] > 2 else None
        return info_nce(embeddings[0], embeddings[1], self.temperature, hard, self.hard_negative_weight)
