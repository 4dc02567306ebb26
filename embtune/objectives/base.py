"""The objective interface shared by every training method.

An objective does two things, kept apart so wrappers (gradient caching, the cross-process gather)
can reuse the second:

1. :meth:`Objective.views` turns a :class:`Batch` into V lists of N token-id sequences (the views
   to embed: two dropout views of each sentence, an augmented view, anchor/positive/hard negative);
   the training loop embeds all V*N sequences in one forward pass into a (V, N, d) tensor.
2. :meth:`Objective.loss` computes the loss from that (V, N, d) tensor (and the batch, for
   objectives such as TSDAE that reconstruct the original tokens).

To add an objective: subclass :class:`Objective` in its own file and add one line to the registry
in ``embtune/objectives/__init__.py``.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from embtune.errors import EmbtuneError
from embtune.options import option, positive


@dataclass
class Batch:
    texts: list[tuple[str, ...]]  # one string per text column of the training file
    ids: list[tuple[list[int], ...]]  # the same, tokenized once before training
    tokenize: Callable[[Sequence[str]], list[list[int]]]  # for views made at training time
    rng: random.Random  # seeded per step: augmentations are reproducible
    #: labelled data: the scores/labels of the *global* batch, in the order of the gathered
    #: embeddings the loss receives (this process's ``texts`` are a slice of it under DDP)
    labels: list | None = None

    def column(self, c: int) -> list[list[int]]:
        return [ex[c] for ex in self.ids]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class NoOptions:
    """An objective without options of its own."""


@dataclass
class TemperatureOptions:
    """The option every contrastive objective shares (declared once, inherited)."""

    temperature: float = option(0.05, "softmax temperature τ (SimCSE: 0.05)", check=positive)


class Objective(nn.Module):
    """Subclasses declare their options as a dataclass ``Options`` (fields made with
    :func:`embtune.options.option`); the CLI flags, the YAML keys and the saved config come from it,
    and the objective is built with those fields as keyword arguments."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    #: column layouts this objective accepts, e.g. (("text",),)
    accepts: ClassVar[tuple[tuple[str, ...], ...]]
    #: pooler for a plain Hugging Face model (a sentence-transformers folder keeps its own)
    default_pooler: ClassVar[str] = "cls"
    default_mlp_only_train: ClassVar[bool] = False
    #: whether the loss contrasts examples of the batch against each other (then embeddings are
    #: gathered across processes); False for per-example losses such as TSDAE's
    needs_global_batch: ClassVar[bool] = True

    @classmethod
    def from_config(cls, cfg) -> "Objective":
        """Build the objective from a :class:`~embtune.config.TrainConfig` (its ``objective_options``)."""
        return cls(**dataclasses.asdict(cfg.objective_options))

    def setup(self, encoder, data=None) -> None:
        """Called once with the encoder and the training data before training (e.g. to build a
        decoder, or to compute a teacher's embeddings)."""

    def check_columns(self, path: str, columns: tuple[str, ...]) -> None:
        if columns not in self.accepts:
            want = " or ".join("(" + ", ".join(c) + ")" for c in self.accepts)
            raise EmbtuneError(f"{path}: objective {self.name!r} expects columns {want}, the file has ({', '.join(columns)})")

    def make_batches(self, data, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
        """The epoch's batches of example indices (``data`` is a :class:`~embtune.data.TrainData`).

        Default: duplicate-free batches (in-batch negatives must be different texts); objectives that
        need another composition (several texts of a class, plain shuffling) override this."""
        from embtune.data.sampler import duplicate_free_batches

        return duplicate_free_batches(data.examples, batch_size, seed, epoch)

    def views(self, batch: Batch) -> list[list[list[int]]]:
        raise NotImplementedError

    def loss(self, embeddings: Tensor, batch: Batch | None = None) -> Tensor:
        """Loss from embeddings of shape (V, N, d), V views of N examples."""
        raise NotImplementedError


def check_temperature(t: float) -> float:
    if not t > 0:
        raise EmbtuneError(f"temperature must be > 0, got {t}")
    return float(t)
