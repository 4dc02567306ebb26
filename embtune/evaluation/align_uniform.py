"""Alignment and uniformity (Wang & Isola, ICML 2020), as SimCSE §5 measures them.

alignment  = E_{(x, x+) ~ p_pos} ||f(x) - f(x+)||²      over STS-B dev pairs with gold score > 4
uniformity = log E_{x, y ~ p_data} exp(-2 ||f(x) - f(y)||²)  over pairs of distinct STS-B dev sentences
with f(x) L2-normalized. Lower is better for both. alignment ∈ [0, 4], uniformity ≤ 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from embtune.evaluation.sts import load_sts


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    x, y = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """log of the mean of exp(-t ||xi - xj||²) over all pairs i < j (computed stably in float64)."""
    x = torch.nn.functional.normalize(x.double(), dim=-1)
    sq = torch.pdist(x, p=2).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel()))


def evaluate_align_uniform(encoder, batch_size: int = 64, precision: str = "fp32", threshold: float = 4.0) -> dict:
    dev = load_sts("stsb", split="dev")
    sents = list(dict.fromkeys([*dev.sent1, *dev.sent2]))
    emb = encoder.encode(sents, batch_size=batch_size, precision=precision)
    return align_uniform_from(dev, sents, emb, threshold)


def align_uniform_from(dev, sents: list[str], emb: np.ndarray, threshold: float = 4.0) -> dict:
    """Both measures from embeddings already computed for ``sents`` (which cover STS-B dev)."""
    pos = dev.scores > threshold
    row = {s: i for i, s in enumerate(sents)}
    dev_rows = sorted({row[s] for s in (*dev.sent1, *dev.sent2)})
    e = torch.from_numpy(emb)
    a_idx = [row[s] for s, p in zip(dev.sent1, pos) if p]
    b_idx = [row[s] for s, p in zip(dev.sent2, pos) if p]
    return {
        "alignment": alignment(e[a_idx], e[b_idx]),
        "uniformity": uniformity(e[dev_rows]),
        "positive_pairs": int(np.sum(pos)),
        "sentences": len(dev_rows),
    }
