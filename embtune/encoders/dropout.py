"""Dropout with a cheaper mask on the CPU: SimCSE's augmentation at a lower price.

Dropout (Srivastava et al., 2014, JMLR 15) zeroes each element with probability ``p`` and scales the
survivors by ``1 / (1 − p)``. Unsup SimCSE (Gao et al., 2021, §3) uses it as its only augmentation, so
a training step draws a mask for every hidden state and attention map of both views. On a CPU,
``torch.nn.functional.dropout`` draws that mask with ``bernoulli_``, which profiling showed to be 15% of
a bf16 training step of all-MiniLM-L6-v2 (``docs/performance.md``).

Here the mask comes from 15-bit uniform integers instead: one 64-bit draw of torch's generator gives
the random bits for four elements (``random_`` on int64, viewed as four int16 lanes, each masked to 15
bits), and an element is kept when its integer is at least ``round(p · 2¹⁵)``. That is the same
Bernoulli(1 − p) keep mask with ``p`` rounded to a multiple of 2⁻¹⁵ (p = 0.1 → 0.100006), the same
scaling, and the same seeded determinism (torch's default generator; GradCache's RNG replay covers
it) — but not the same random stream as ``bernoulli_``, so a seeded run draws other masks than
before. Off the CPU :func:`dropout` is ``torch.nn.functional.dropout`` (CUDA fuses its own mask).

:func:`use_fast_dropout` puts it into a model: every ``nn.Dropout`` becomes a :class:`Dropout` (a
subclass, so ``p``, ``eval()`` and ``isinstance`` checks behave as before), and a Hugging Face model
that dispatches attention through ``AttentionInterface`` gets :func:`sdpa_with_fast_dropout`, which is
transformers' SDPA attention except when attention dropout is on and the tensors are on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from embtune.encoders.attention import needs_transformers_sdpa, replace_sdpa

MASK_BITS = 15
MASK_RANGE = 1 << MASK_BITS
ATTENTION_NAME = "embtune_sdpa"


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> Tensor:
    """A boolean mask whose elements are True independently with probability 1 − p (p in 2⁻¹⁵ steps)."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_()  # 63 uniform bits each
    lanes = words.view(torch.int16)[:n] & (MASK_RANGE - 1)  # four 15-bit integers per word
    return (lanes >= round(p * MASK_RANGE)).view(shape)


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with the mask of :func:`keep_mask` on the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0 < round(p * MASK_RANGE) < MASK_RANGE:  # p too close to 0 or 1 for 15 bits
        return F.dropout(x, p, training)
    return torch.where(keep_mask(x.shape, p, x.device), x * (1.0 / (1.0 - p)), 0.0)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`keep_mask` (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


def sdpa_with_fast_dropout(module: nn.Module, query: Tensor, key: Tensor, value: Tensor,
                           attention_mask: Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           **kwargs) -> tuple[Tensor, None]:
    """transformers' SDPA attention; with dropout on the CPU, softmax(QKᵀ·s + mask) → :func:`dropout` → ·V.

    (PyTorch's SDPA takes its unfused math path whenever ``dropout_p > 0`` on the CPU; this is that path with
    the cheaper mask, computed in fp32 and cast back to the inputs' dtype. A query row whose keys are all
    masked gets uniform weights here, zeros in SDPA; padding masks never make one.)
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or query.device.type != "cpu" or needs_transformers_sdpa(module, query, attention_mask, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = torch.matmul(query.float(), key.float().transpose(-2, -1)) * scale
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = _dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value.float()).to(value.dtype).transpose(1, 2).contiguous(), None


_dropout = dropout


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every ``nn.Dropout`` of ``model`` for :class:`Dropout` and its SDPA attention for
    :func:`sdpa_with_fast_dropout`; returns how many dropout modules were swapped."""
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                fast = Dropout(child.p, child.inplace).train(child.training)
                fast._forward_hooks, fast._forward_pre_hooks = child._forward_hooks, child._forward_pre_hooks
                setattr(parent, name, fast)
                swapped += 1
    replace_sdpa(model, ATTENTION_NAME, sdpa_with_fast_dropout)
    return swapped
