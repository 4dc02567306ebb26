"""The poolers of SimCSE (Gao et al., 2021, §6.3 and the official code).

``cls``              the [CLS] token followed by an MLP (dense + tanh)
``cls_before_pooler``the [CLS] token as is
``mean``             the mean of the last layer's token states
``avg_first_last``   the mean over tokens of the average of the first and the last layer
``avg_top2``         the mean over tokens of the average of the last two layers

"first layer" is ``hidden_states[1]`` (the output of the first transformer layer), as in the
official code after its fix, not the embedding layer.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

POOLERS = ("cls", "cls_before_pooler", "mean", "avg_first_last", "avg_top2")
HIDDEN_STATE_POOLERS = ("avg_first_last", "avg_top2")


def check_pooler(name: str) -> str:
    from embtune.errors import EmbtuneError

    if name not in POOLERS:
        raise EmbtuneError(f"unknown pooler {name!r}; expected one of: {', '.join(POOLERS)}")
    return name


def masked_mean(states: Tensor, attention_mask: Tensor) -> Tensor:
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def pool(name: str, last_hidden: Tensor, attention_mask: Tensor, hidden_states: tuple[Tensor, ...] | None) -> Tensor:
    """Pool token states into one vector per sentence (no MLP: that is the encoder's job)."""
    if name in ("cls", "cls_before_pooler"):
        return last_hidden[:, 0]
    if name == "mean":
        return masked_mean(last_hidden, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooler {name!r} needs the hidden states of every layer")
    if name == "avg_first_last":
        return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    if name == "avg_top2":
        return masked_mean((hidden_states[-2] + hidden_states[-1]) / 2.0, attention_mask)
    raise ValueError(f"unknown pooler {name!r}")


def pad_ids(ids: list[list[int]], pad_id: int) -> dict[str, Tensor]:
    """Pad token-id lists to the longest one (dynamic padding) and build the attention mask.

    Vectorized: one flat copy of the ids, no per-sequence tensor (the cost does not grow with Python work per row).
    """
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max())
    mask = np.arange(width)[None, :] < lengths[:, None]
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    input_ids[mask] = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}
