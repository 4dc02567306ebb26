"""What every encoder offers: tokenize once, collate with dynamic padding, embed, encode, save."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

PRECISIONS = ("fp32", "bf16", "fp16")


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


class Encoder(nn.Module):
    """A sentence encoder: ``texts -> token ids -> padded features -> embeddings``.

    Subclasses implement :meth:`tokenize_ids`, :meth:`collate`, :meth:`forward` and :meth:`save`.
    ``forward`` returns the training embedding (with a training-only MLP when there is one); in
    eval mode it returns what the saved model returns.
    """

    max_seq_length: int

    def tokenize_ids(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        raise NotImplementedError

    def collate(self, ids: list[list[int]]) -> dict[str, Tensor]:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def embed_ids(self, ids: list[list[int]]) -> Tensor:
        feats = {k: v.to(self.device) for k, v in self.collate(ids).items()}
        return self(feats)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        normalize: bool = False,
        show_progress: bool = False,
        precision: str = "fp32",
    ) -> np.ndarray:
        """Embed ``texts`` into a float32 array of shape (len(texts), dim).

        Each distinct text is encoded once, in batches of similar length (less padding).
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        ids = self.tokenize_ids(unique)
        order = sorted(range(len(unique)), key=lambda i: -len(ids[i]))
        was_training = self.training
        self.eval()
        out = np.empty((len(unique), self.embedding_dim), dtype=np.float32)
        try:
            with autocast(self.device, precision):
                for start in tqdm(range(0, len(order), batch_size), disable=not show_progress, desc="encode"):
                    idx = order[start : start + batch_size]
                    emb = self.embed_ids([ids[i] for i in idx]).float()
                    if normalize:
                        emb = torch.nn.functional.normalize(emb, dim=-1)
                    out[idx] = emb.cpu().numpy()
        finally:
            self.train(was_training)
        pos = {t: i for i, t in enumerate(unique)}
        return out[[pos[t] for t in texts]]
